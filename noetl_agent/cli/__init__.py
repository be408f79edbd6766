"""The `noetl-agent` command line."""
