"""Helpers of the corpus tests: small random texts and JSONL writing (a module of its own, not conftest, so that
test files import it by a name no other test folder uses)."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = ("the quick brown fox jumps over lazy dog der schnelle braune fuchs le renard brun rapide "
         "how much protein should a female eat").split()


def make_texts(n: int, seed: int = 0, max_words: int = 24) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, max_words))) for _ in range(n)]


def write_jsonl(path: Path, rows: list) -> Path:
    with path.open("wb") as f:
        for row in rows:
            f.write(row if isinstance(row, bytes) else (json.dumps(row, ensure_ascii=False) + "\n").encode())
    return path
