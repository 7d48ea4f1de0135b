"""Per-text prompts in one packed batch (``encode_items``), token-id input, and a loaded model that keeps no
checkpoint weights. ``pytest tests/test_encode_items.py``."""

from __future__ import annotations

import gc
import json
import shutil
import warnings

import numpy as np
import pytest
import tiny
import torch

from harrier import Embedder
from harrier.engine import embed_step, plan_batches
from harrier.prompts import Prompt

QUERIES = [t for t in dict.fromkeys(tiny.TRAIN_TEXT) if "Instruct" not in t]
DOCS = [" ".join(QUERIES[i:i + 3]) for i in range(len(QUERIES))]


def cos(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def mixed_equals_separate(m: Embedder, first: Prompt | str, second: Prompt | str) -> None:
    """One call over queries under two prompts plus raw documents equals three separate calls."""
    def kwargs(p):
        return {"prompt_name": p} if isinstance(p, str) else {k: v for k, v in vars(p).items() if v is not None}

    a = m.encode(QUERIES[:5], **kwargs(first), progress=False)
    b = m.encode(QUERIES[5:], **kwargs(second), progress=False)
    d = m.encode(DOCS, progress=False)
    items = ([(t, first) for t in QUERIES[:5]] + [(t, None) for t in DOCS] + [(t, second) for t in QUERIES[5:]])
    order = np.random.default_rng(0).permutation(len(items))  # interleave them
    got = m.encode_items([items[i] for i in order], batch_tokens=10_000, progress=False)
    back = np.empty_like(got)
    back[order] = got
    want = np.concatenate([a, d, b])
    assert want.shape == back.shape
    assert cos(want, back).min() >= 0.99999
    assert not np.allclose(a[0], m.encode(QUERIES[:1], progress=False)[0], atol=1e-4)  # the prompts do matter


@pytest.mark.parametrize("fixture", ["tiny_gemma3_dir", "tiny_qwen3_dir", "tiny_embeddinggemma_dir"])
def test_mixed_prompts_in_one_call_equal_separate_calls(fixture, request):
    m = Embedder.from_pretrained(request.getfixturevalue(fixture), device="cpu", dtype="float32")
    mixed_equals_separate(m, Prompt(instruction="Retrieve parallel sentences"), Prompt(task="STS17"))


def without_prompt_in_mean(src, dst):
    """A copy of a mean-pooling checkpoint whose pooling excludes the prompt (weights symlinked, not copied)."""
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).symlink_to(p) if p.is_file() and p.suffix == ".safetensors" else (
            shutil.copytree(p, dst / p.name, symlinks=True) if p.is_dir() else shutil.copy(p, dst / p.name))
    cfg_file = dst / "1_Pooling" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    assert cfg["pooling_mode_mean_tokens"], "the fixture must use mean pooling"
    cfg["include_prompt"] = False
    cfg_file.unlink()
    cfg_file.write_text(json.dumps(cfg))
    return dst


def test_mean_pooling_without_prompt_excludes_each_texts_own_prompt(tiny_embeddinggemma_dir, tmp_path):
    m = Embedder.from_pretrained(without_prompt_in_mean(tiny_embeddinggemma_dir, tmp_path / "m"), device="cpu",
                                 dtype="float32")
    assert m.model.head.pooling.include_prompt is False
    mixed_equals_separate(m, "query", Prompt(instruction="Retrieve parallel sentences"))
    # and against sentence-transformers, which skips the prompt tokens itself
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(tmp_path / "m"), device="cpu")
    ref = st.encode(QUERIES[:4], prompt_name="query", convert_to_numpy=True)
    got = m.encode_items([(t, "query") for t in QUERIES[:4]] + [(DOCS[0], None)], progress=False)
    assert cos(ref, got[:4]).min() >= 0.99999


@pytest.mark.real
def test_mixed_prompts_real_embeddinggemma(embeddinggemma_dir, tmp_path):
    m = Embedder.from_pretrained(embeddinggemma_dir, device="cpu", dtype="float32")
    mixed_equals_separate(m, "query", Prompt(task="STS17"))
    m = Embedder.from_pretrained(without_prompt_in_mean(embeddinggemma_dir, tmp_path / "m"), device="cpu",
                                 dtype="float32")
    mixed_equals_separate(m, "query", Prompt(instruction="Retrieve parallel sentences"))


def test_items_accept_every_prompt_form_and_refuse_bad_ones(tiny_gemma3_dir):
    m = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="float32")
    text = QUERIES[0]
    want = m.encode([text], prompt_name="sts_query", progress=False)
    for spec in ("sts_query", Prompt(prompt_name="sts_query"), Prompt(prompt=m.prompts["sts_query"]),
                 Prompt(instruction="Retrieve semantically similar text")):
        assert np.array_equal(m.encode_items([(text, spec)], progress=False), want), spec
    assert m.encode_items([]).shape == (0, m.dim)
    with pytest.raises(ValueError, match="unknown prompt name 'nope'"):
        m.encode_items([(text, "nope")])
    with pytest.raises(ValueError, match="at most one"):
        m.encode_items([(text, Prompt(task="STS17", instruction="x"))])
    with pytest.raises(ValueError, match="item #1 is not a \\(text, prompt\\) pair"):
        m.encode_items([(text, None), text])
    with pytest.raises(ValueError, match="a prompt is a prompt name"):
        m.encode_items([(text, 3)])


def test_token_ids_with_specials_equal_text_input(tiny_gemma3_dir, tiny_qwen3_dir):
    for path in (tiny_gemma3_dir, tiny_qwen3_dir):
        m = Embedder.from_pretrained(path, device="cpu", dtype="float32")
        raw = [m.tokenizer.tokenizer.encode(t, add_special_tokens=False).ids for t in QUERIES]
        ids = [m.tokenizer.with_specials(r) for r in raw]
        assert ids == m.tokenize(QUERIES)
        assert np.array_equal(m.embed_ids(ids, progress=False), m.encode(QUERIES, progress=False))
        with pytest.raises(ValueError, match="outside the vocabulary"):
            m.embed_ids([[1, 10**9]])
        with pytest.raises(ValueError, match="over max_length"):
            m.embed_ids([[1] * (m.max_length + 1)])


def test_engine_step_is_one_packed_forward(tiny_qwen3_dir):
    m = Embedder.from_pretrained(tiny_qwen3_dir, device="cpu", dtype="float32")
    ids = m.tokenize(QUERIES)
    batches = plan_batches([len(x) for x in ids], 64)
    assert sorted(i for b in batches for i in b) == list(range(len(ids)))
    assert all(sum(len(ids[i]) for i in b) <= 64 or len(b) == 1 for b in batches)
    full = m.encode(QUERIES, progress=False)
    for b in batches:
        step = embed_step(m.model, [ids[i] for i in b], device="cpu")
        assert step.dtype == np.float32 and cos(step, full[b]).min() >= 0.99999


def float32_tensors(min_numel: int = 4096) -> list[torch.Tensor]:
    """Every live float32 tensor of at least ``min_numel`` elements (tensors are tracked by the collector)."""
    gc.collect()
    with warnings.catch_warnings():  # touching some lazy module attributes warns
        warnings.simplefilter("ignore")
        return [o for o in gc.get_objects() if type(o) in (torch.Tensor, torch.nn.Parameter)
                and o.dtype == torch.float32 and o.numel() >= min_numel and o.device.type != "meta"]


def test_bf16_model_holds_no_float32_weights(tiny_gemma3_dir):
    before = {id(t) for t in float32_tensors()}
    m = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="bfloat16")
    assert {p.dtype for p in m.model.parameters()} == {torch.bfloat16}
    assert not hasattr(m, "checkpoint")
    leaked = [tuple(t.shape) for t in float32_tensors() if id(t) not in before]
    assert leaked == [], f"float32 tensors alive after a bf16 load: {leaked[:5]}"
    # the check can fail: a float32 copy kept anywhere is found
    keep = {k: v.float() for k, v in m.model.state_dict().items() if v.numel() >= 4096}
    assert len(keep) > 5 and len([t for t in float32_tensors() if id(t) not in before]) == len(keep)


@pytest.mark.real
def test_real_bf16_load_holds_no_float32_weights(embeddinggemma_dir):
    before = {id(t) for t in float32_tensors()}
    m = Embedder.from_pretrained(embeddinggemma_dir, device="cpu", dtype="bfloat16")
    assert {p.dtype for p in m.model.parameters()} == {torch.bfloat16}
    leaked = [tuple(t.shape) for t in float32_tensors() if id(t) not in before]
    assert leaked == [], f"float32 tensors alive after a bf16 load: {leaked[:5]}"
