"""Tool executors: one module per tool kind."""
