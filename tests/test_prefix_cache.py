"""The prefix cache (``harrier/prefix_cache.py``): with it on, every path gives the uncached path's vectors to float
rounding (fp32 cosine >= 0.99999); it never applies where it cannot be exact; and the checks are seen failing on
planted breaks (an off-by-one position offset, a prompt whose last token merges with the text)."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import tiny
import torch

from harrier import Embedder, engine
from harrier.models import long
from harrier.prefix_cache import PrefixStore
from harrier.prompts import Prompt

COS_MIN = 0.99999
TEXTS = tiny.mixed_texts() + ["  leading spaces", "\ttab", "東京は日本の首都です。", "12 34", ".dot"]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64) / np.linalg.norm(a, axis=1, keepdims=True)
    b = b.astype(np.float64) / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def pair(path, **kw) -> tuple[Embedder, Embedder]:
    on = Embedder.from_pretrained(path, device="cpu", dtype=kw.pop("dtype", "float32"), **kw)
    off = Embedder.from_pretrained(path, device="cpu", dtype="float32", prefix_cache=False,
                                   **{k: v for k, v in kw.items() if k not in ("compile",)})
    return on, off


def mixed_items(m: Embedder) -> list[tuple[str, object]]:
    """Queries under each named prompt, an instruction, an MTEB task and raw documents, interleaved."""
    specs = [*m.prompts, Prompt(instruction="Retrieve parallel sentences"), Prompt(task="STS17"), None]
    return [(t, specs[i % len(specs)]) for i, t in enumerate(TEXTS * 2)]


@pytest.fixture(scope="module")
def tiny_window_dir(tmp_path_factory):
    """The harrier-270m-shaped tiny Gemma-3 (causal) with a sliding window of 8 tokens on two of its three layers,
    so long texts slide past their prompt."""
    path = tiny.build_gemma3(tmp_path_factory.mktemp("tiny-gemma3-window"))
    cfg = json.loads((path / "config.json").read_text())
    cfg["layer_types"] = ["sliding_attention", "sliding_attention", "full_attention"]
    cfg["sliding_window"] = 8
    (path / "config.json").write_text(json.dumps(cfg))
    return path


@pytest.fixture(scope="module")
def tiny_mean_dir(tmp_path_factory, tiny_gemma3_dir):
    """A causal model with mean pooling that skips the prompt (``include_prompt=False``)."""
    path = tmp_path_factory.mktemp("tiny-gemma3-mean") / "m"
    shutil.copytree(tiny_gemma3_dir, path)
    pool = json.loads((path / "1_Pooling" / "config.json").read_text())
    pool.update(pooling_mode_lasttoken=False, pooling_mode_mean_tokens=True, include_prompt=False)
    pool.pop("pooling_mode", None)
    (path / "1_Pooling" / "config.json").write_text(json.dumps(pool))
    return path


@pytest.mark.parametrize("fixture", ["tiny_gemma3_dir", "tiny_qwen3_dir", "tiny_window_dir", "tiny_mean_dir"])
def test_cached_equals_uncached(fixture, request):
    on, off = pair(request.getfixturevalue(fixture))
    assert on.prefix_cache is not None and on.info().prefix_cache.startswith("on")
    for name in on.prompts:
        cos = cosines(on.encode(TEXTS, prompt_name=name, batch_tokens=300),
                      off.encode(TEXTS, prompt_name=name, batch_tokens=300))
        assert cos.min() >= COS_MIN, (name, int(cos.argmin()), cos.min())
    items = mixed_items(on)
    cos = cosines(on.encode_items(items, batch_tokens=500), off.encode_items(items, batch_tokens=500))
    assert cos.min() >= COS_MIN, (int(cos.argmin()), cos.min())
    stats = on.prefix_cache.stats()
    assert stats["hits"] > len(TEXTS) and stats["misses"] >= len(on.prompts) and stats["tokens_saved"] > 0
    assert 0 < stats["bytes"] <= stats["max_bytes"]


def test_raw_documents_and_off_switch_take_the_uncached_path(tiny_gemma3_dir, monkeypatch):
    on, off = pair(tiny_gemma3_dir)
    assert off.prefix_cache is None and off.info().prefix_cache == "off (prefix_cache=False)"
    assert np.array_equal(on.encode(TEXTS), off.encode(TEXTS))  # no prompt: nothing to reuse, bit for bit
    called = []
    monkeypatch.setattr(engine, "_prefixed_forward", lambda *a, **k: called.append(1))
    off.encode(TEXTS, prompt_name="web_search_query")
    assert not called


def test_bidirectional_models_never_use_it(tiny_embeddinggemma_dir, monkeypatch):
    m = Embedder.from_pretrained(tiny_embeddinggemma_dir, device="cpu", dtype="float32")
    assert m.prefix_cache is None
    assert m.info().prefix_cache.startswith("not applicable: bidirectional attention")
    monkeypatch.setattr(engine, "_prefixed_forward", lambda *a, **k: pytest.fail("cache used on bidirectional"))
    m.encode(TEXTS, prompt_name="query")


def test_planted_position_offset_break_is_caught(tiny_gemma3_dir, monkeypatch):
    """The parity check is sensitive: positions one off after the prefix give visibly different vectors."""
    on, off = pair(tiny_gemma3_dir)
    real_pack = engine.pack

    def off_by_one(ids, device, prompt_lens=None, *, offsets=None, keys=None, prefix=None):
        offsets = None if offsets is None else [o + 1 for o in offsets]
        return real_pack(ids, device, prompt_lens, offsets=offsets, keys=keys, prefix=prefix)

    monkeypatch.setattr(engine, "pack", off_by_one)
    cos = cosines(on.encode(TEXTS, prompt_name="web_search_query"), off.encode(TEXTS, prompt_name="web_search_query"))
    assert cos.min() < 0.9999, cos.min()


def test_long_path(tiny_gemma3_dir, tiny_window_dir, monkeypatch):
    monkeypatch.setattr(long, "LONG_TOKENS", 64)
    monkeypatch.setattr(long, "TOKEN_CHUNK", 16)
    for path in (tiny_gemma3_dir, tiny_window_dir):
        on, off = pair(path)
        texts = [t for t in TEXTS if len(t) > 20] * 3
        cos = cosines(on.encode(texts, prompt_name="sts_query", batch_tokens=4096),
                      off.encode(texts, prompt_name="sts_query", batch_tokens=4096))
        assert cos.min() >= COS_MIN, cos.min()


def test_truncation_keeps_the_prefix(tiny_gemma3_dir):
    for max_length in (24, 12, 6):  # 24: texts cut after the prompt; 12 and 6: shorter than the prompt itself
        on, off = pair(tiny_gemma3_dir, max_length=max_length, truncation="silent")
        cos = cosines(on.encode(TEXTS, prompt_name="web_search_query"),
                      off.encode(TEXTS, prompt_name="web_search_query"))
        assert cos.min() >= COS_MIN, (max_length, cos.min())
        tok = on.tokenize_items([(t, "web_search_query") for t in TEXTS])
        assert all(0 <= p < len(x) for p, x in zip(tok.prefix_lens, tok.ids, strict=True))
        assert all(len(x) <= max_length for x in tok.ids)


def test_dtypes_and_modes(tiny_gemma3_dir):
    _, off = pair(tiny_gemma3_dir)
    ref = off.encode(TEXTS, prompt_name="web_search_query")
    bf16 = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="bfloat16")
    assert bf16.prefix_cache is not None
    assert cosines(bf16.encode(TEXTS, prompt_name="web_search_query"), ref).min() >= 0.999
    int8_on, int8_off = (Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="int8", prefix_cache=c)
                         for c in (True, False))
    cos = cosines(int8_on.encode(TEXTS, prompt_name="web_search_query"),
                  int8_off.encode(TEXTS, prompt_name="web_search_query"))
    assert cos.min() >= 0.9999, cos.min()
    # fused q/k/v: the cached keys/values own their memory (a view would keep the whole projection output alive,
    # uncounted by the store, and a strided input makes the compiled prefix graph compile again)
    kv = [t for entry in int8_on.prefix_cache._entries.values() for pair in entry.kv for t in pair]
    assert kv and int8_on.model.backbone.layers[-1].self_attn.qkv_proj is not None
    assert all(t.is_contiguous() and t.untyped_storage().nbytes() == t.numel() * t.element_size() for t in kv)


@pytest.mark.slow
def test_compiled(tiny_gemma3_dir):
    on = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="float32", compile=True)
    assert on.model.backbone.compiled.active
    _, off = pair(tiny_gemma3_dir)
    items = mixed_items(on)
    cos = cosines(on.encode_items(items, batch_tokens=500), off.encode_items(items, batch_tokens=500))
    assert cos.min() >= COS_MIN, cos.min()


def test_token_id_input(tiny_gemma3_dir):
    on, off = pair(tiny_gemma3_dir)
    tok = on.tokenize_items([(t, "web_search_query") for t in TEXTS])
    assert np.array_equal(on.embed_ids(tok.ids, tok.prompt_lens), off.embed_ids(tok.ids, tok.prompt_lens))
    cos = cosines(on.embed_ids(tok.ids, tok.prompt_lens, prefix_lens=tok.prefix_lens),
                  off.embed_ids(tok.ids, tok.prompt_lens))
    assert cos.min() >= COS_MIN
    with pytest.raises(ValueError, match="prefix lengths"):
        on.embed_ids(tok.ids, prefix_lens=[1])


def test_chunked_queries(tiny_gemma3_dir):
    on, off = pair(tiny_gemma3_dir)
    long_texts = [" ".join(tiny.TRAIN_TEXT[:10]) * 3, "short one"]
    for aggregate in ("none", "mean"):
        a = on.encode_chunked(long_texts, chunk=48, overlap=8, aggregate=aggregate, prompt_name="sts_query")
        b = off.encode_chunked(long_texts, chunk=48, overlap=8, aggregate=aggregate, prompt_name="sts_query")
        assert np.array_equal(a.char_start, b.char_start) and np.array_equal(a.tokens, b.tokens)
        assert cosines(a.embeddings, b.embeddings).min() >= COS_MIN
    assert on.prefix_cache.stats()["hits"] > 2


def test_weights_change_drops_the_cache(tiny_gemma3_dir):
    on, off = pair(tiny_gemma3_dir)
    on.encode(TEXTS[:4], prompt_name="web_search_query")
    assert on.prefix_cache.stats()["entries"] >= 1
    with torch.no_grad():
        for m in (on, off):
            m.model.backbone.layers[0].self_attn.k_proj.weight.mul_(1.5)
    cos = cosines(on.encode(TEXTS, prompt_name="web_search_query"), off.encode(TEXTS, prompt_name="web_search_query"))
    assert cos.min() >= COS_MIN, cos.min()


def test_store_is_bounded_least_recently_used_and_keyed():
    def kv(n):  # 64 bytes a token
        return tuple((torch.zeros(n, 1, 4), torch.zeros(n, 1, 4)) for _ in range(2))

    store = PrefixStore("model-a", max_mb=640 / 2**20)  # 640 bytes: 10 tokens
    computed = []

    def compute(ids):
        computed.append(ids)
        return kv(len(ids))

    store.get((1, 2, 3, 4), compute, uses=3)
    store.get((1, 2, 3, 4), compute)
    assert computed == [(1, 2, 3, 4)]
    store.get((5, 6, 7, 8), compute)
    store.get((1, 2, 3, 4), compute)  # now the most recent
    store.get((9, 9, 9), compute)  # 4 + 4 + 3 tokens > 10: the least recent, (5, 6, 7, 8), goes
    stats = store.stats()
    assert stats["entries"] == 2 and stats["bytes"] == 7 * 64 <= stats["max_bytes"] and stats["evictions"] == 1
    assert stats["hits"] == 2 + 1 + 1 and stats["misses"] == 3 and stats["tokens_saved"] == 4 * 4
    store.get(tuple(range(11)), compute)  # larger than the bound: used, never stored
    assert store.stats()["entries"] == 2
    other = PrefixStore("model-b", max_mb=1)
    other.get((1, 2, 3, 4), compute)
    assert computed[-1] == (1, 2, 3, 4) and len(computed) == 5  # another model's store computes its own
    with pytest.raises(ValueError, match="MB"):
        PrefixStore("x", max_mb=-1)
    with pytest.raises(ValueError, match="prefix_cache"):
        Embedder.from_pretrained("/nonexistent", prefix_cache="yes")


@pytest.mark.real
@pytest.mark.parametrize("full_attention", [True, False])
def test_real_gemma3_270m_harrier_shaped(gemma3_gguf, full_attention):
    """The real Gemma-3-270M made harrier-shaped (causal, last token, EOS appended), all-full or with its
    512-token sliding windows; the card template's trailing space merges with the text's first word."""
    from test_parity_real import multilingual_sentences

    from harrier.train.student import embedder_from_decoder_lm

    on = embedder_from_decoder_lm(gemma3_gguf, device="cpu", max_length=2048, full_attention=full_attention)
    off = copy.copy(on)  # the same model and tokenizer, without the store: the uncached path
    off.prefix_cache = None
    texts = multilingual_sentences(n_per_lang=2) + ["", " spaced", "東京"]
    card = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: "
    for prompt in (card, "Instruct: Retrieve semantically similar text\nQuery:"):
        cos = cosines(on.encode(texts, prompt=prompt), off.encode(texts, prompt=prompt))
        assert cos.min() >= COS_MIN, (prompt, int(cos.argmin()), cos.min())
    # the boundary: the card prompt alone ends in a lone "▁" that "▁how" absorbs, so a text shares one token less
    prompt_ids = on.tokenizer.prompt(card).ids
    tok = on.tokenizer.encode_prompted(["how much protein", ""], [card, card])
    assert tok.prefix_lens == [len(prompt_ids) - 1, len(prompt_ids)]
    # planted break: caching the prompt's own ids and appending the text tokenized apart (what a cache keyed by
    # the prompt string would do) is visibly wrong; the parity check above would catch it
    naive = [list(prompt_ids) + on.tokenizer.tokenizer.encode(t, add_special_tokens=False).ids + [ids[-1]]
             for t, ids in zip(["how much protein", "what is the capital of France"],
                               on.tokenize(["how much protein", "what is the capital of France"], card), strict=True)]
    right = off.encode(["how much protein", "what is the capital of France"], prompt=card)
    assert cosines(off.embed_ids(naive), right).min() < 0.9999
