"""PostgreSQL adapters: the event store and catalog store of the distributed mode (asyncpg)."""

from engine.adapters.postgres.stores import (
    PostgresCatalogStore,
    PostgresDatabase,
    PostgresEventStore,
)

__all__ = ["PostgresCatalogStore", "PostgresDatabase", "PostgresEventStore"]
