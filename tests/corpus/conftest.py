"""Small corpora for the corpus tests: JSONL with bad rows, Parquet, TXT (texts short enough for tiny models)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

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


@pytest.fixture()
def clean_corpus(tmp_path) -> tuple[Path, list[str], list[str]]:
    """Two JSONL files (a glob picks both), 24 good rows, no bad ones."""
    texts = make_texts(24, max_words=14)
    ids = [f"d{i}" for i in range(24)]
    folder = tmp_path / "in"
    folder.mkdir()
    write_jsonl(folder / "part-0.jsonl", [{"id": i, "text": t} for i, t in zip(ids[:15], texts[:15], strict=True)])
    write_jsonl(folder / "part-1.jsonl", [{"id": i, "text": t} for i, t in zip(ids[15:], texts[15:], strict=True)])
    return folder, ids, texts
