"""The learning layer: what the event log teaches.

Search over execution history (``documents`` → ``embedder`` → ``vector_store``, kept up
to date by ``indexer``; queried by ``search``, ``clusters`` and ``anomalies``) and the
analytics store (``learning.analytics``). Imports only ``engine``.
"""
