"""Shared fixtures of the evaluation tests: a bag-of-words encoder (deterministic, non-trivial scores) and the
data root (tests that read real data skip when it is missing)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

DATA_ROOT = Path(os.environ.get("HARRIER_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")


class BowEncoder:
    """Hashed bag of words (plus the prompt's words) with a fixed random projection: similar texts, similar rows."""

    name = "bow-test"
    instruction_model = False

    def __init__(self, dim: int = 32, prompts: dict[str, str] | None = None) -> None:
        self.dim = dim
        self.prompts = prompts or {}
        self.calls: list[tuple[int, str | None]] = []
        self.proj = np.random.default_rng(0).normal(size=(512, dim)).astype(np.float32)

    def encode(self, texts, *, prompt=None):
        self.calls.append((len(texts), prompt))
        out = np.zeros((len(texts), 512), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in ((prompt or "") + " " + t).lower().split():
                out[i, int(hashlib.md5(w.encode()).hexdigest()[:8], 16) % 512] += 1.0
        return out @ self.proj


@pytest.fixture
def bow() -> BowEncoder:
    return BowEncoder()


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "tatoeba-laser").is_dir():
        pytest.skip(f"real data not found at {DATA_ROOT}")
    return DATA_ROOT


@pytest.fixture
def bow_factory() -> type[BowEncoder]:
    return BowEncoder
