"""In-memory adapters of the engine's ports: the test doubles and the reference behaviour."""

from engine.adapters.memory.stores import MemoryCatalogStore, MemoryEventStore

__all__ = ["MemoryCatalogStore", "MemoryEventStore"]
