"""The background indexer picks up what reaches the log without the engine's listeners."""

from __future__ import annotations

import asyncio

from learning.embedder import SentenceEmbedder
from learning.indexer import BackgroundIndexer, Indexer
from learning.vector_store import VectorStore
from tests.learning import corpus
from tests.learning.conftest import Stack


async def test_a_registration_alone_wakes_the_indexer(
    stack: Stack, store: VectorStore, embedder: SentenceEmbedder
) -> None:
    indexer = Indexer(stack.engine.events, stack.engine.catalog, store, embedder=embedder)
    background = BackgroundIndexer(indexer.run_once, delay=0.01, idle=0.2)
    stack.engine.subscribe(background.notify)
    background.start()
    try:
        async with asyncio.timeout(30):
            while background.passes == 0:  # the first pass, over an empty log
                await asyncio.sleep(0.02)
            await stack.engine.register(corpus.SALES_REPORT)  # listeners hear playbook.registered
            while store.count("playbooks") == 0:
                await asyncio.sleep(0.05)
    finally:
        await background.aclose()
    assert store.count("playbooks") == 1
