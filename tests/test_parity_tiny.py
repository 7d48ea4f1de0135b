"""Parity with sentence-transformers on tiny random checkpoints (fp32): ``pytest tests/test_parity_tiny.py``."""

from __future__ import annotations

import numpy as np
import pytest
import tiny

from harrier import Embedder

COS_MIN = 0.99999


def reference(path, texts, **kw):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(path), device="cpu")
    return st, st.encode(texts, convert_to_numpy=True, batch_size=8, **kw)


def cosines(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


@pytest.mark.parametrize("fixture", ["tiny_gemma3_dir", "tiny_qwen3_dir", "tiny_embeddinggemma_dir"])
@pytest.mark.parametrize("prompt_name", [None, "sts_query"])
def test_matches_sentence_transformers(fixture, prompt_name, request):
    path = request.getfixturevalue(fixture)
    texts = tiny.mixed_texts()
    ours = Embedder.from_pretrained(path, device="cpu", dtype="float32")
    name = prompt_name if prompt_name in ours.prompts else None
    st, ref = reference(path, texts, prompt_name=name)
    got = ours.encode(texts, prompt_name=name, batch_tokens=300)
    assert got.shape == ref.shape == (len(texts), ours.dim)
    cos = cosines(got, ref)
    assert cos.min() >= COS_MIN, (cos.argmin(), cos.min())
    # same tokens, same special tokens, same last-token position
    tok = st.tokenize([(st.prompts.get(name, "") if name else "") + t for t in texts])
    ids = ours.tokenize(texts, ours.prefix(prompt_name=name))
    for i, row in enumerate(ids):
        mask = tok["attention_mask"][i].bool()
        assert row == tok["input_ids"][i][mask].tolist()


def test_lengths_span_one_to_hundreds(tiny_gemma3_dir):
    m = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="float32")
    lengths = [len(x) for x in m.tokenize(tiny.mixed_texts())]
    assert min(lengths) <= 3 and max(lengths) >= 300


def test_batching_does_not_change_embeddings(tiny_qwen3_dir):
    m = Embedder.from_pretrained(tiny_qwen3_dir, device="cpu", dtype="float32")
    texts = tiny.mixed_texts()
    one_by_one = np.stack([m.encode([t])[0] for t in texts])
    packed = m.encode(texts, batch_tokens=100_000)
    assert cosines(one_by_one, packed).min() > 0.999999
