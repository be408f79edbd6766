"""The demo's example playbooks (package data, read with ``importlib.resources``)."""
