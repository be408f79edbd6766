"""The embedder gives what ``model.encode`` gives, in the order of the texts."""

from __future__ import annotations

import numpy as np

from learning.embedder import SentenceEmbedder, _token_counts

TEXTS = [
    "connection refused by the database at db.internal:5432 while loading the orders",
    "KeyError: 'id'",
    "a much longer text " * 80,  # beyond the model's window: truncated as encode does
    "error",
    "the nightly ETL playbook failed in its publish step after three retries "
    "because the reporting bucket denied the write",
]


def test_vectors_match_encode_in_the_order_of_the_texts(embedder: SentenceEmbedder) -> None:
    model = embedder._load()
    expected = model.encode(TEXTS, batch_size=2, normalize_embeddings=True, convert_to_numpy=True)
    small_batches = SentenceEmbedder(batch_size=2)
    small_batches._model = model
    for vectors in (embedder.embed(TEXTS), small_batches.embed(TEXTS)):
        found = np.array(vectors)
        assert found.shape == (len(TEXTS), embedder.dimension)
        assert np.allclose(found, expected, atol=1e-5)
        assert np.allclose(np.linalg.norm(found, axis=1), 1.0, atol=1e-5)
    single = np.array(embedder.embed([TEXTS[1]])[0])
    assert np.allclose(single, expected[1], atol=1e-5)
    assert embedder.embed([]) == []


def test_texts_are_ordered_by_their_tokens_after_truncation(embedder: SentenceEmbedder) -> None:
    model = embedder._load()
    counts = _token_counts(model, TEXTS)
    assert counts[2] == model.max_seq_length  # truncated
    assert counts[3] < counts[1] < counts[0]  # "error" is one token, plus [CLS] and [SEP]
    assert counts[3] == 3
