"""``Embedder.encode_query`` / ``encode_document``: sentence-transformers v5's methods, harrier's query prompt."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from harrier import Embedder
from harrier.prompts import HARRIER_PROMPTS, side_prompt_name

QUERIES = ["how much protein should a female eat", "what is the capital of France"]
DOCS = ["Protein needs depend on weight and activity.", "Paris is the capital and largest city of France.", "a"]


@pytest.fixture(scope="module")
def harrier_model(tiny_gemma3_dir):
    return Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def gemma_model(tiny_embeddinggemma_dir):
    return Embedder.from_pretrained(tiny_embeddinggemma_dir, device="cpu", dtype="float32")


def test_side_prompt_rule():
    assert side_prompt_name(HARRIER_PROMPTS, "query") == "web_search_query"
    assert side_prompt_name(HARRIER_PROMPTS, "document") is None
    card = {"query": "q: ", "passage": "p: ", "corpus": "c: "}
    assert side_prompt_name(card, "query") == "query"
    assert side_prompt_name(card, "document") == "passage"
    assert side_prompt_name({}, "query") is None
    with pytest.raises(ValueError, match="side must be one of query, document"):
        side_prompt_name(card, "queries")


def test_harrier_checkpoint_queries_get_web_search_query(harrier_model):
    m = harrier_model
    q = m.encode_query(QUERIES)
    np.testing.assert_array_equal(q, m.encode(QUERIES, prompt_name="web_search_query"))
    assert not np.allclose(q, m.encode(QUERIES), atol=1e-3)  # the prompt changes the vectors
    np.testing.assert_array_equal(m.encode_document(DOCS), m.encode(DOCS))


def test_explicit_prompt_sources_win(harrier_model):
    m = harrier_model
    np.testing.assert_array_equal(m.encode_query(QUERIES, prompt_name="sts_query"),
                                  m.encode(QUERIES, prompt_name="sts_query"))
    np.testing.assert_array_equal(m.encode_query(QUERIES, instruction="Find the answer"),
                                  m.encode(QUERIES, instruction="Find the answer"))
    np.testing.assert_array_equal(m.encode_query(QUERIES, task="ArguAna"), m.encode(QUERIES, task="ArguAna"))
    np.testing.assert_array_equal(m.encode_query(QUERIES, prompt="Q: "), m.encode(QUERIES, prompt="Q: "))
    with pytest.raises(ValueError, match="at most one of"):
        m.encode_query(QUERIES, prompt_name="sts_query", task="ArguAna")
    with pytest.raises(ValueError, match="unknown prompt name 'web_search'"):
        m.encode_query(QUERIES, prompt_name="web_search")


@pytest.mark.parametrize("side", ["query", "document"])
def test_matches_sentence_transformers_v5(gemma_model, tiny_embeddinggemma_dir, side):
    """A card with ``query`` / ``document`` prompts: the same vectors as sentence-transformers' own methods."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(tiny_embeddinggemma_dir), device="cpu")
    texts = QUERIES if side == "query" else DOCS
    ref = getattr(st, f"encode_{side}")(texts, convert_to_numpy=True)
    got = getattr(gemma_model, f"encode_{side}")(texts)
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.99999, cos
    np.testing.assert_array_equal(got, gemma_model.encode(texts, prompt_name=side))


def test_default_prompt_name_is_not_used(tiny_gemma3_dir, tmp_path):
    """As in sentence-transformers v5: a card's default prompt applies to ``encode``, not to these methods."""
    import json
    import shutil

    path = tmp_path / "with-default"
    shutil.copytree(tiny_gemma3_dir, path)
    cfg = json.loads((path / "config_sentence_transformers.json").read_text())
    cfg["default_prompt_name"] = "sts_query"
    (path / "config_sentence_transformers.json").write_text(json.dumps(cfg))
    m = Embedder.from_pretrained(path, device="cpu", dtype="float32")
    np.testing.assert_array_equal(m.encode_document(DOCS), m.encode(DOCS, prompt=""))
    np.testing.assert_array_equal(m.encode_query(QUERIES), m.encode(QUERIES, prompt_name="web_search_query"))
    assert not np.allclose(m.encode(DOCS), m.encode(DOCS, prompt=""), atol=1e-3)


def test_sentence_transformers_options(harrier_model, caplog):
    m = harrier_model
    one = m.encode_query(QUERIES[0])
    assert one.shape == (m.dim,)
    np.testing.assert_array_equal(one, m.encode_query(QUERIES)[0])
    t = m.encode_document(DOCS, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
    assert isinstance(t, torch.Tensor) and t.shape == (len(DOCS), m.dim)
    np.testing.assert_allclose(t.numpy(), m.encode(DOCS), atol=1e-6)
    with caplog.at_level(logging.WARNING, logger="harrier.embedder"):
        m.encode_document(DOCS, batch_size=32)
    assert "batch_size=32 ignored" in caplog.text
    with pytest.raises(ValueError, match="unknown option.*precision"):
        m.encode_query(QUERIES, precision="int8")
    with pytest.raises(ValueError, match="progress or show_progress_bar"):
        m.encode_query(QUERIES, progress=False, show_progress_bar=False)
