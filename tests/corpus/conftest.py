"""Small corpora for the corpus tests: JSONL with bad rows, Parquet, TXT (texts short enough for tiny models)."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus_helpers import make_texts, write_jsonl


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
