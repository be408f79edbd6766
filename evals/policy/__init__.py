"""The closed policy loop end to end against a simulator whose truth is known (see README.md)."""
