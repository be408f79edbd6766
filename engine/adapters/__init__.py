"""Adapters: the only place store and broker clients are imported."""
