"""The MCP eval: the README's assistant walk-through replayed over stdio."""
