"""The pure core: events in, decisions out. No I/O, no clock, no randomness."""
