"""PostgreSQL adapters of the distributed mode (asyncpg): the event store, the catalog
store, and the command store with its claims behind the distributed command queue."""

from engine.adapters.postgres.commands import Claim, DueCommand, PostgresCommandStore
from engine.adapters.postgres.queue import DistributedCommandQueue
from engine.adapters.postgres.stores import (
    PostgresCatalogStore,
    PostgresDatabase,
    PostgresEventStore,
)

__all__ = [
    "Claim",
    "DistributedCommandQueue",
    "DueCommand",
    "PostgresCatalogStore",
    "PostgresCommandStore",
    "PostgresDatabase",
    "PostgresEventStore",
]
