"""The local index folder is one process's at a time: a second process is told why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from learning.errors import IndexUnavailable
from learning.vector_store import IndexLocation, VectorStore

HOLD = """
import sys, time
from qdrant_client import QdrantClient
client = QdrantClient(path=sys.argv[1])
print("held", flush=True)
sys.stdin.read()
"""


def test_a_folder_held_by_another_process_is_refused_with_a_hint(tmp_path: Path) -> None:
    folder = tmp_path / "qdrant"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(IndexUnavailable, match="in use by another process") as caught:
            VectorStore.open(IndexLocation.local(folder))
        assert "--server URL" in str(caught.value)
    finally:
        holder.communicate("", timeout=30)


def test_an_index_built_by_another_version_is_refused_with_a_fix(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient, models

    folder = tmp_path / "old"
    old = QdrantClient(path=str(folder))
    old.create_collection(
        "noetl_failures",
        vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE),
    )
    old.close()

    store = VectorStore.open(IndexLocation.local(folder))
    with pytest.raises(IndexUnavailable, match="built by another version") as caught:
        store.count("failures")
    assert "noetl-agent indexer --once" in str(caught.value)
    assert store.count("steps") == 0  # the other kinds are unaffected
