"""SQLite adapters: the embedded default event store and catalog store (one file, WAL)."""

from engine.adapters.sqlite.stores import SqliteCatalogStore, SqliteDatabase, SqliteEventStore

__all__ = ["SqliteCatalogStore", "SqliteDatabase", "SqliteEventStore"]
