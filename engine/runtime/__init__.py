"""I/O shells around the pure core: running tools and driving executions."""
