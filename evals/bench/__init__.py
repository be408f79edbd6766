"""Engine benchmark: ``noetl-agent run`` against its peers (see README.md)."""
