"""The tool groups, one module each (see INTERFACES.md "MCP server")."""
