"""noetl_agent."""
