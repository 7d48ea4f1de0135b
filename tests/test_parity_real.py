"""Parity on real weights (downloaded once by shared/models/fetch-*.sh and cached):
``pytest -m real tests/test_parity_real.py``.

EmbeddingGemma-300M (bidirectional Gemma-3, sliding windows, mean pooling, two Dense, Normalize) against
sentence-transformers with its own prompts, on multilingual sentences from ../shared/data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from realweights import missing

from harrier import Embedder

pytestmark = pytest.mark.real
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def multilingual_sentences(n_per_lang: int = 4) -> list[str]:
    """Short Tatoeba sentences in 8 languages plus long XQuAD paragraphs (some over the 512-token window)."""
    if not DATA.is_dir():
        missing(f"shared data not at {DATA}")
    texts = []
    for lang in ("deu", "fra", "rus", "cmn", "jpn", "ara", "hin", "swh"):
        lines = (DATA / "tatoeba-laser" / f"tatoeba.{lang}-eng.{lang}").read_text(encoding="utf-8").splitlines()
        texts += lines[:n_per_lang]
    for lang in ("en", "de", "zh", "ar"):
        doc = json.loads((DATA / "xquad" / f"xquad.{lang}.json").read_text(encoding="utf-8"))
        paragraphs = [p["context"] for art in doc["data"][:3] for p in art["paragraphs"][:1]]
        texts += paragraphs
    texts.append(" ".join(texts[-4:]) * 2)  # ~1,500 tokens: crosses every sliding window
    return texts


def test_embeddinggemma_matches_sentence_transformers(embeddinggemma_dir):
    from sentence_transformers import SentenceTransformer

    texts = multilingual_sentences()
    ours = Embedder.from_pretrained(embeddinggemma_dir, device="cpu", dtype="float32")
    st = SentenceTransformer(str(embeddinggemma_dir), device="cpu")
    for name in ("STS", "document"):
        ref = st.encode(texts, prompt_name=name, batch_size=8, convert_to_numpy=True)
        got = ours.encode(texts, prompt_name=name)
        cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
        assert cos.min() >= 0.9999, (name, int(cos.argmin()), float(cos.min()))
        tok = st.tokenize([st.prompts[name] + t for t in texts])
        ids = ours.tokenize(texts, ours.prefix(prompt_name=name))
        for i, row in enumerate(ids):
            assert row == tok["input_ids"][i][tok["attention_mask"][i].bool()].tolist()
