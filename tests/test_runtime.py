"""Runtime details against the references: config parsing, backward, heads, truncation, sharding, saving, long
inputs, prompt strings. ``pytest tests/test_runtime.py``.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tiny
import torch

from harrier import Embedder
from harrier.models import decoder_config
from harrier.models import layers as layers_mod
from harrier.packing import SeqGroups, pack
from harrier.prompts import HARRIER_PROMPTS, task_instructions, task_prefix
from harrier.tokenize import TruncationError


def cos(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def st_encode(path, texts, **kw):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(path), device="cpu")
    if "max_seq_length" in kw:
        st.max_seq_length = kw.pop("max_seq_length")
    return st, st.encode(texts, convert_to_numpy=True, batch_size=4, **kw)


# -- configs: harrier 270m / 0.6b / 27b shapes parse as transformers reads them ---------------------------------

HARRIER_270M = dict(model_type="gemma3_text", vocab_size=262144, hidden_size=640, intermediate_size=2048,
                    num_hidden_layers=18, num_attention_heads=4, num_key_value_heads=1, head_dim=256,
                    query_pre_attn_scalar=256, rope_theta=1e6, rope_local_base_freq=1e4, sliding_window=512,
                    layer_types=["full_attention"] * 18, max_position_embeddings=32768,
                    hidden_activation="gelu_pytorch_tanh")
HARRIER_06B = dict(model_type="qwen3", vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                   num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                   rope_theta=1e6, max_position_embeddings=32768, hidden_act="silu", use_sliding_window=False,
                   sliding_window=None, max_window_layers=28)
GEMMA3_27B = dict(model_type="gemma3_text", vocab_size=262208, hidden_size=5376, intermediate_size=21504,
                  num_hidden_layers=62, num_attention_heads=32, num_key_value_heads=16, head_dim=128,
                  query_pre_attn_scalar=168, rope_theta=1e6, rope_local_base_freq=1e4, sliding_window=1024,
                  sliding_window_pattern=6, rope_scaling={"rope_type": "linear", "factor": 8.0},
                  max_position_embeddings=131072, hidden_activation="gelu_pytorch_tanh")


@pytest.mark.parametrize("hf", [HARRIER_270M, HARRIER_06B, GEMMA3_27B], ids=["270m", "0.6b", "27b"])
def test_config_parsing_agrees_with_transformers(hf):
    from transformers import AutoConfig

    ref = AutoConfig.for_model(**hf)
    ours = decoder_config(hf)
    assert list(ours.layer_types) == list(ref.layer_types)
    assert ours.num_kv_heads == ref.num_key_value_heads and ours.head_dim == ref.head_dim
    params = ref.rope_parameters
    for layer_type in set(ours.layer_types):
        p = params.get(layer_type, params) if "full_attention" in params else params
        assert ours.rope[layer_type].theta == p["rope_theta"]
        assert ours.rope[layer_type].factor == (p.get("factor", 1.0) if p.get("rope_type") == "linear" else 1.0)
    if hf["model_type"] == "gemma3_text":
        assert ours.attn_scale == ref.query_pre_attn_scalar**-0.5 and ours.embed_scale == hf["hidden_size"] ** 0.5


def test_unsupported_architecture_names_the_supported(tiny_qwen3_dir, tmp_path):
    bad = tmp_path / "llama"
    shutil.copytree(tiny_qwen3_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "model_type": "llama"}))
    with pytest.raises(ValueError, match="model_type 'llama' is not supported; supported: gemma3_text, qwen3"):
        Embedder.from_pretrained(bad)
    modules = json.loads((tiny_qwen3_dir / "modules.json").read_text())
    modules[1]["type"] = "sentence_transformers.models.WeightedLayerPooling"
    (bad / "config.json").write_text(json.dumps(cfg))
    (bad / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match="WeightedLayerPooling.*supported: Transformer, Pooling, Dense, Normalize"):
        Embedder.from_pretrained(bad)


# -- backward: gradients equal transformers' on the same weights (fp32) -----------------------------------------

@pytest.mark.parametrize("fixture", ["tiny_gemma3_dir", "tiny_qwen3_dir"])
def test_backward_matches_transformers(fixture, request):
    from transformers import AutoModel

    path = request.getfixturevalue(fixture)
    ours = Embedder.from_pretrained(path, dtype="float32")
    ref = AutoModel.from_pretrained(path, dtype=torch.float32)
    texts = tiny.mixed_texts()[3:9]
    ids = ours.tokenize(texts)
    weights = torch.randn(len(ids), ours.dim, generator=torch.Generator().manual_seed(0))
    ours.model.train()
    loss = (ours.model(pack(ids)) * weights).sum()
    loss.backward()
    ref_emb = torch.stack([ref(input_ids=torch.tensor([x])).last_hidden_state[0, -1] for x in ids])
    ref_loss = (torch.nn.functional.normalize(ref_emb, dim=-1) * weights).sum()
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    ref_grads = dict(ref.named_parameters())
    for name, p in ours.model.backbone.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name].grad, rtol=1e-4, atol=1e-6, msg=name)


def test_gradient_checkpointing_gives_same_gradients(tiny_gemma3_dir):
    ours = Embedder.from_pretrained(tiny_gemma3_dir, dtype="float32")
    batch = pack(ours.tokenize(tiny.mixed_texts()[3:7]))
    ours.model.train()
    grads = []
    for ckpt in (False, True):
        ours.model.zero_grad(set_to_none=True)
        ours.model.backbone.gradient_checkpointing = ckpt
        ours.model(batch).sum().backward()
        grads.append({n: p.grad.clone() for n, p in ours.model.named_parameters() if p.grad is not None})
    # every trainable parameter gets a gradient, and each equals the one without checkpointing
    trainable = {n for n, p in ours.model.named_parameters() if p.requires_grad}
    assert set(grads[0]) == trainable and set(grads[1]) == trainable
    for name, ref in grads[0].items():
        torch.testing.assert_close(grads[1][name], ref, msg=name)


def test_bf16_close_to_fp32(tiny_embeddinggemma_dir):
    texts = tiny.mixed_texts()
    a = Embedder.from_pretrained(tiny_embeddinggemma_dir, dtype="float32").encode(texts)
    b = Embedder.from_pretrained(tiny_embeddinggemma_dir, dtype="bfloat16").encode(texts)
    assert b.dtype == np.float32 and cos(a, b).min() > 0.99


# -- heads: cls pooling, mean pooling without the prompt ----------------------------------------------------------

@pytest.mark.parametrize("mode,include_prompt", [("cls", True), ("mean", False), ("lasttoken", True)])
def test_pooling_modes_match_sentence_transformers(mode, include_prompt, tiny_embeddinggemma_dir, tmp_path):
    path = tmp_path / "m"
    shutil.copytree(tiny_embeddinggemma_dir, path)
    cfg = json.loads((path / "1_Pooling" / "config.json").read_text())
    cfg.update({"pooling_mode_mean_tokens": mode == "mean", "pooling_mode_cls_token": mode == "cls",
                "pooling_mode_lasttoken": mode == "lasttoken", "include_prompt": include_prompt})
    (path / "1_Pooling" / "config.json").write_text(json.dumps(cfg))
    texts = tiny.mixed_texts()
    _, ref = st_encode(path, texts, prompt_name="STS")
    got = Embedder.from_pretrained(path, dtype="float32").encode(texts, prompt_name="STS")
    assert cos(got, ref).min() >= 0.99999


# -- tokens: truncation keeps BOS/EOS, matches the reference; 'error' refuses ------------------------------------

def test_truncation_keeps_special_tokens_and_matches_reference(tiny_gemma3_dir):
    texts = tiny.mixed_texts()
    ours = Embedder.from_pretrained(tiny_gemma3_dir, dtype="float32", max_length=16)
    st, ref = st_encode(tiny_gemma3_dir, texts, max_seq_length=16)
    ids = ours.tokenize(texts)
    tok = st.tokenize(texts)
    for i, row in enumerate(ids):
        assert row == tok["input_ids"][i][tok["attention_mask"][i].bool()].tolist()
        assert len(row) <= 16 and row[0] == 2 and row[-1] == 1  # <bos> ... <eos>
    assert max(len(r) for r in ids) == 16
    assert cos(ours.encode(texts), ref).min() >= 0.99999
    strict = Embedder.from_pretrained(tiny_gemma3_dir, max_length=16, truncation="error")
    with pytest.raises(TruncationError, match="exceed 16 tokens"):
        strict.encode(texts)


def test_empty_inputs(tiny_qwen3_dir):
    m = Embedder.from_pretrained(tiny_qwen3_dir)
    assert m.encode([]).shape == (0, 64)
    out = m.encode(["", "x"])
    assert np.isfinite(out).all() and m.tokenize([""]) == [[m.tokenizer.tokenizer.token_to_id("<|im_end|>")]]
    with pytest.raises(ValueError, match="list of texts"):
        m.encode("a single string")
    with pytest.raises(ValueError, match="at most one of"):
        m.encode(["a"], prompt_name="sts_query", task="STS17")


# -- loading and saving ---------------------------------------------------------------------------------------------

def test_sharded_safetensors(tiny_qwen3_dir, tmp_path):
    from transformers import AutoModel

    path = tmp_path / "sharded"
    shutil.copytree(tiny_qwen3_dir, path)
    (path / "model.safetensors").unlink()
    AutoModel.from_pretrained(tiny_qwen3_dir).save_pretrained(path, max_shard_size="100KB")
    assert (path / "model.safetensors.index.json").is_file()
    texts = tiny.mixed_texts()[:6]
    a = Embedder.from_pretrained(path).encode(texts)
    b = Embedder.from_pretrained(tiny_qwen3_dir).encode(texts)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fixture", ["tiny_gemma3_dir", "tiny_embeddinggemma_dir"])
def test_save_pretrained_round_trip(fixture, request, tmp_path):
    path = request.getfixturevalue(fixture)
    texts = tiny.mixed_texts()
    m = Embedder.from_pretrained(path, dtype="float32")
    m.save_pretrained(tmp_path / "out")
    again = Embedder.from_pretrained(tmp_path / "out", dtype="float32").encode(texts)
    np.testing.assert_array_equal(again, m.encode(texts))
    _, ref = st_encode(tmp_path / "out", texts)
    assert cos(again, ref).min() >= 0.99999


# -- long inputs: windowed attention in blocks equals the dense mask; 32k tokens run -----------------------------

def test_windowed_attention_blocks_equal_dense_mask(tiny_embeddinggemma_dir, monkeypatch):
    m = Embedder.from_pretrained(tiny_embeddinggemma_dir, dtype="float32")
    texts = [" ".join(tiny.TRAIN_TEXT)]
    full = m.encode(texts)
    monkeypatch.setattr(layers_mod, "WINDOW_BLOCK", 7)
    np.testing.assert_allclose(m.encode(texts), full, atol=2e-6)


@pytest.mark.parametrize("causal", [True, False])
def test_windowed_attention_in_blocks_equals_one_dense_mask(causal, monkeypatch):
    """Packed runs through the blocked sliding-window path equal SDPA over each whole sequence with the dense window
    mask, for blocks smaller and larger than the window, GQA included."""
    torch.manual_seed(0)
    lengths, heads, kv_heads, window = (50, 50, 9, 23), 4, 2, 8
    t = sum(lengths)
    q, k, v = torch.randn(t, heads, 16), torch.randn(t, kv_heads, 16), torch.randn(t, kv_heads, 16)
    groups = SeqGroups.from_lengths(lengths)
    want, start = [], 0
    for n in lengths:
        qq, kk, vv = (x[start:start + n].transpose(0, 1)[None] for x in (q, k, v))
        idx = torch.arange(n)
        mask = layers_mod._window_mask(idx, idx, window, causal)
        want.append(torch.nn.functional.scaled_dot_product_attention(
            qq, kk, vv, attn_mask=mask, scale=0.25, enable_gqa=True)[0].transpose(0, 1))
        start += n
    want = torch.cat(want)
    for block in (3, 7, 64):
        monkeypatch.setattr(layers_mod, "CAUSAL_WINDOW_BLOCK", block)
        monkeypatch.setattr(layers_mod, "WINDOW_BLOCK", block)
        got = layers_mod.varlen_attention(q, k, v, groups, causal=causal, window=window, scale=0.25)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_32k_token_input(tiny_gemma3_dir):
    m = Embedder.from_pretrained(tiny_gemma3_dir, dtype="float32", max_length=32_768)
    text = " ".join(tiny.TRAIN_TEXT * 200)
    ids = m.tokenize([text])
    assert len(ids[0]) == 32_768 and ids[0][-1] == 1
    out = m.encode([text])
    assert out.shape == (1, 64) and np.isfinite(out).all()


# -- prompt strings: the card's named prompts, mteb's exact template and task table ------------------------------

def test_prompt_strings_match_card_and_mteb():
    from mteb.models.model_implementations import harrier_models as hm
    from mteb.types import PromptType

    assert HARRIER_PROMPTS == tiny.HARRIER_PROMPTS  # the literal strings of the published checkpoints
    assert task_instructions() == hm.harrier_task_prompts
    assert len(task_instructions()) == 131
    for task, instruction in task_instructions().items():
        assert task_prefix(task) == hm.instruction_template(instruction, PromptType.query)
    assert task_prefix("Tatoeba") == "Instruct: Retrieve parallel sentences\nQuery:"


def test_task_and_instruction_prefixes_in_encode(tiny_gemma3_dir):
    m = Embedder.from_pretrained(tiny_gemma3_dir, dtype="float32")
    q = ["how much protein should a female eat"]
    np.testing.assert_array_equal(m.encode(q, instruction="Retrieve semantically similar text"),
                                  m.encode(q, prompt_name="sts_query"))
    np.testing.assert_array_equal(m.encode(q, task="STSBenchmark"),
                                  m.encode(q, prompt="Instruct: Retrieve semantically similar text\nQuery:"))
    assert not np.array_equal(m.encode(q, task="STSBenchmark"), m.encode(q, prompt_name="sts_query"))


def test_bf16_backward_runs(tiny_qwen3_dir):
    m = Embedder.from_pretrained(tiny_qwen3_dir, dtype="bfloat16")
    m.model.train()
    out = m.model(pack(m.tokenize(tiny.mixed_texts()[:5])))
    assert out.dtype == torch.bfloat16
    out.float().pow(2).sum().backward()
    grads = [p.grad for p in m.model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_auto_dtype_picks_bf16_on_a_cpu_only_when_a_timed_probe_finds_it_faster(monkeypatch):
    import torch

    from harrier import loading

    bf16_config = {"torch_dtype": "bfloat16"}
    cpu = torch.device("cpu")
    for bf16_seconds, expected in ((0.5, torch.bfloat16), (1.0, torch.float32), (2.0, torch.float32)):
        loading.cpu_bf16_is_faster.cache_clear()
        monkeypatch.delenv("HARRIER_CPU_BF16", raising=False)
        monkeypatch.setattr(loading, "cpu_has_native_bf16", lambda: True)
        monkeypatch.setattr(loading, "_matmul_seconds", lambda dtype, s=bf16_seconds: s if dtype == torch.bfloat16
                            else 1.0)
        assert loading.resolve_dtype("auto", cpu, bf16_config, "qwen3") == expected
    loading.cpu_bf16_is_faster.cache_clear()
    monkeypatch.setattr(loading, "cpu_has_native_bf16", lambda: False)  # no instructions: no probe, float32
    monkeypatch.setattr(loading, "_matmul_seconds", lambda dtype: pytest.fail("probed without the instructions"))
    assert loading.resolve_dtype("auto", cpu, bf16_config, "qwen3") == torch.float32
    for forced, expected in (("1", torch.bfloat16), ("0", torch.float32)):
        loading.cpu_bf16_is_faster.cache_clear()
        monkeypatch.setenv("HARRIER_CPU_BF16", forced)
        assert loading.resolve_dtype("auto", cpu, bf16_config, "qwen3") == expected
    loading.cpu_bf16_is_faster.cache_clear()
