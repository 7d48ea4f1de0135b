"""An embedding cache keyed by (model, prompt, text), so re-running an evaluation only embeds new texts.

One SQLite file per model under the cache directory; vectors are stored as float32 bytes. The model key is the
encoder's ``cache_key`` when it has one, else its ``name`` (which includes the backend and dtype).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from harrier.eval.encoders import Encoder


def _key(prompt: str | None, text: str) -> str:
    return hashlib.sha256(((prompt or "") + "\x00" + text).encode("utf-8")).hexdigest()


class CachedEncoder:
    """Wraps an ``Encoder``: looks texts up in the cache, embeds only the missing unique ones, stores them."""

    def __init__(self, encoder: Encoder, cache_dir: str | Path) -> None:
        self.encoder = encoder
        self.name = encoder.name
        self.prompts: Mapping[str, str] = encoder.prompts
        self.instruction_model = getattr(encoder, "instruction_model", False)
        model_key = str(getattr(encoder, "cache_key", encoder.name))
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_key)[:80]
        digest = hashlib.sha256(model_key.encode()).hexdigest()[:12]
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(cache_dir) / f"{safe}-{digest}.sqlite"
        self._db = sqlite3.connect(self.path)
        self._db.execute("CREATE TABLE IF NOT EXISTS emb (k TEXT PRIMARY KEY, v BLOB)")
        self.hits = 0
        self.misses = 0

    def encode(self, texts: Sequence[str], *, prompt: str | None = None) -> np.ndarray:
        keys = [_key(prompt, t) for t in texts]
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            rows = self._db.execute(f"SELECT k, v FROM emb WHERE k IN ({','.join('?' * len(chunk))})", chunk)
            found.update({k: np.frombuffer(v, dtype=np.float32) for k, v in rows})
        missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in found}
        self.hits += len(unique) - len(missing)
        self.misses += len(missing)
        if missing:
            vecs = self.encoder.encode(list(missing.values()), prompt=prompt)
            new = dict(zip(missing, np.asarray(vecs, dtype=np.float32), strict=True))
            self._db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)", [(k, v.tobytes()) for k, v in new.items()])
            self._db.commit()
            found.update(new)
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[k] for k in keys])

    def close(self) -> None:
        self._db.close()


class DedupEncoder:
    """In-memory counterpart of ``CachedEncoder``: each distinct (prompt, text) is embedded once while it lives
    (``evaluate`` keeps one per task, so e.g. a classification training pool is shared by all evaluated splits)."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.name = encoder.name
        self.prompts = encoder.prompts
        self.instruction_model = getattr(encoder, "instruction_model", False)
        self.memo: dict[tuple[str | None, str], np.ndarray] = {}

    def encode(self, texts: Sequence[str], *, prompt: str | None = None) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if (prompt, t) not in self.memo]
        if missing:
            vecs = np.asarray(self.encoder.encode(missing, prompt=prompt), dtype=np.float32)
            self.memo.update({(prompt, t): v for t, v in zip(missing, vecs, strict=True)})
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self.memo[(prompt, t)] for t in texts])
