"""Workers: take commands of one pool, run them, report their events."""
