"""Encoders and prompt policies over real runtimes: harrier's Embedder and sentence-transformers, on tiny random
checkpoints (tests/conftest.py) and, marked ``real``, on EmbeddingGemma-300M.
Run: pytest tests/eval/test_encoders.py -q  (add -m 'not real' to skip real weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harrier.eval.cache import CachedEncoder
from harrier.eval.encoders import (
    HarrierEncoder,
    InstructionPrompts,
    NamedPrompts,
    NoPrompts,
    SentenceTransformerEncoder,
    choose_policy,
    load_encoder,
)
from harrier.eval.local import load_task_file
from harrier.eval.run import evaluate

TEXTS = ["A man is playing a guitar.", "Ein Mann spielt Gitarre.", "The sky is blue today."]


def test_policy_choice(bow_factory):
    assert isinstance(choose_policy(bow_factory()), NoPrompts)
    gemma_like = bow_factory(prompts={"STS": "task: sentence similarity | query: ", "query": "q: "})
    assert isinstance(choose_policy(gemma_like), NamedPrompts)
    harrier_like = bow_factory(prompts={"sts_query": "Instruct: Retrieve semantically similar text\nQuery: "})
    harrier_like.instruction_model = True
    assert isinstance(choose_policy(harrier_like), InstructionPrompts)
    assert isinstance(choose_policy(gemma_like, "none"), NoPrompts)
    with pytest.raises(ValueError, match="no prompts keyed"):
        choose_policy(bow_factory(), "model")
    with pytest.raises(ValueError, match="unknown prompt mode"):
        choose_policy(bow_factory(), "sometimes")


def test_missing_model_directory(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_encoder(str(tmp_path / "nope"))


def test_harrier_backend_on_tiny_checkpoint(tiny_gemma3_dir, tmp_path):
    enc = load_encoder(str(tiny_gemma3_dir), backend="harrier")
    assert isinstance(enc, HarrierEncoder)
    e = enc.encode(TEXTS, prompt="Instruct: x\nQuery:")
    assert e.shape[0] == 3 and e.dtype == np.float32
    rows = [{"sentence1": a, "sentence2": b, "score": s} for a, b, s in
            [(TEXTS[0], TEXTS[1], 4.0), (TEXTS[0], TEXTS[2], 0.5), (TEXTS[1], TEXTS[2], 1.0)]]
    path = tmp_path / "mini.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    [res] = evaluate(enc, [load_task_file(path, "STS")], prompts="instructions")
    assert res.prompts == {"all": "Instruct: Retrieve semantically similar text.\nQuery:"}


def test_sentence_transformers_backend_agrees_with_harrier(tiny_gemma3_dir):
    pytest.importorskip("sentence_transformers")
    ours = load_encoder(str(tiny_gemma3_dir), backend="harrier").encode(TEXTS, prompt="Instruct: x\nQuery:")
    st = load_encoder(str(tiny_gemma3_dir), backend="sentence-transformers")
    assert isinstance(st, SentenceTransformerEncoder)
    theirs = st.encode(TEXTS, prompt="Instruct: x\nQuery:")
    assert np.allclose(ours, theirs, atol=1e-4)


@pytest.mark.parametrize("backend", ["harrier", "sentence-transformers"])
def test_bf16_embeddings_are_renormalised_in_float32(tiny_gemma3_dir, backend):
    # bf16 rounding after the model's Normalize leaves norms 1 +- 0.4%; dot-product metrics (PAWS-X max AP) would
    # drift from cosine. The eval encoders renormalise in fp32 and key their cache apart from raw bf16 vectors.
    if backend == "sentence-transformers":
        pytest.importorskip("sentence_transformers")
    texts = TEXTS * 20 + [f"sentence number {i} about something else" for i in range(60)]
    bf16 = load_encoder(str(tiny_gemma3_dir), backend=backend, dtype="bfloat16")
    fp32 = load_encoder(str(tiny_gemma3_dir), backend=backend, dtype="float32")
    assert bf16.renormalize and not fp32.renormalize
    assert "+unit@" in bf16.cache_key and "+unit" not in fp32.cache_key
    e = bf16.encode(texts, prompt="Instruct: x\nQuery:")
    assert np.abs(np.linalg.norm(e, axis=1) - 1).max() < 1e-6
    bf16.renormalize = False
    raw = bf16.encode(texts, prompt="Instruct: x\nQuery:")
    if backend == "sentence-transformers":
        assert np.abs(np.linalg.norm(raw, axis=1) - 1).max() > 1e-4  # what the renormalisation fixes
    else:  # harrier's Embedder renormalises low-precision outputs itself (README: unit norm in every dtype)
        assert np.abs(np.linalg.norm(raw, axis=1) - 1).max() < 1e-6
    assert np.allclose(e, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-7)


def test_cache_never_mixes_models_that_share_a_directory_name(tmp_path):
    # two training runs export to runs/a/model and runs/b/model; one cache dir serves both evaluations
    from tiny import build_gemma3  # tests/ is on sys.path (tests/conftest.py)

    a = build_gemma3(tmp_path / "a" / "model", seed=1)
    b = build_gemma3(tmp_path / "b" / "model", seed=2)
    cache = tmp_path / "cache"
    ea = CachedEncoder(load_encoder(str(a), backend="harrier"), cache)
    eb = CachedEncoder(load_encoder(str(b), backend="harrier"), cache)
    assert ea.name == eb.name and ea.path != eb.path
    va, vb = ea.encode(TEXTS), eb.encode(TEXTS)
    assert eb.misses == len(TEXTS) and not np.allclose(va, vb)
    assert np.array_equal(CachedEncoder(load_encoder(str(a), backend="harrier"), cache).encode(TEXTS), va)


@pytest.mark.real
@pytest.mark.slow
def test_embeddinggemma_prompts_and_backends(embeddinggemma_dir):
    pytest.importorskip("sentence_transformers")
    ours = load_encoder(str(embeddinggemma_dir), backend="harrier")
    policy = choose_policy(ours)
    assert isinstance(policy, NamedPrompts)
    st = load_encoder(str(embeddinggemma_dir), backend="sentence-transformers")
    prompt = policy.prompts["STS"]
    assert np.allclose(ours.encode(TEXTS, prompt=prompt), st.encode(TEXTS, prompt=prompt), atol=2e-4)
