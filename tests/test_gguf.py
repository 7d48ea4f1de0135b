"""harrier.gguf: tiny GGUF files written here round-trip and match transformers' GGUF loader bit for bit; the real
Gemma-3-270M Q4_K_M file matches transformers' weights, config and tokenizer ids."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
from harrier.gguf import _byte_alphabet, read_gguf  # noqa: E402

Q = gguf.GGMLQuantizationType
CONTROL, USER, BYTE, NORMAL = 3, 4, 6, 1

COMMON_FIELDS = (
    "vocab_size hidden_size intermediate_size num_hidden_layers num_attention_heads num_key_value_heads head_dim "
    "rms_norm_eps max_position_embeddings sliding_window layer_types bos_token_id eos_token_id pad_token_id "
    "tie_word_embeddings attention_bias"
).split()
GEMMA_FIELDS = (*COMMON_FIELDS, "query_pre_attn_scalar", "hidden_activation", "use_bidirectional_attention")
QWEN3_FIELDS = (*COMMON_FIELDS, "hidden_act", "use_sliding_window")

# ------------------------------------------------------------------------------------------------ tiny files

GEMMA_TOKENS = (
    [("<pad>", CONTROL), ("<eos>", CONTROL), ("<bos>", CONTROL), ("<unk>", CONTROL), ("<mask>", CONTROL)]
    + [("[multimodal]", USER), ("<start_of_turn>", CONTROL), ("\n", USER), ("  ", USER), ("   ", NORMAL)]
    + [(f"<0x{b:02X}>", BYTE) for b in range(256)]
    + [(t, NORMAL) for t in "▁ h e l o w r d é 日 he ll llo hello ▁h ▁hello ▁w or wor world ▁world ld ▁日".split()]
)
QWEN3_MERGES = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld"]
QWEN3_TOKENS = (
    [(_byte_alphabet()[b], NORMAL) for b in range(256)]
    + [("".join(m.split()), NORMAL) for m in QWEN3_MERGES]
    + [("日本", NORMAL), ("<|endoftext|>", CONTROL), ("<|im_start|>", CONTROL), ("<|im_end|>", CONTROL)]
    + [("<think>", USER)]
)
TEXTS = [
    "hello world",
    "hello  world",
    "  hello",
    "",
    " ",
    "héllo 日本 😀 wörld",
    "<start_of_turn>hello\n\nworld",
    "[multimodal]x<unk> <bos>",
    "<|im_start|>hello<|im_end|> <think>world",
]


def _rng_array(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.standard_normal(shape) * 0.1).astype(np.float32)


def _add(writer, expected: dict, gguf_name: str, hf_name: str, values: np.ndarray, qtype, shift: float = 0.0):
    """Write ``values + shift`` as ``qtype``; remember what a reader must give back (dequantized, minus shift)."""
    stored = values + np.float32(shift)
    if qtype == Q.F32:
        writer.add_tensor(gguf_name, stored)
        back = stored
    elif qtype == Q.F16:
        half = stored.astype(np.float16)
        writer.add_tensor(gguf_name, half)
        back = half.astype(np.float32)
    else:
        blocks = gguf.quants.quantize(stored, qtype)
        writer.add_tensor(gguf_name, blocks, raw_shape=blocks.shape, raw_dtype=qtype)
        back = gguf.quants.dequantize(blocks, qtype)
    expected[hf_name] = torch.from_numpy(back - np.float32(shift))


def _write_tokenizer(writer, tokens, **ids):
    writer.add_token_list([t for t, _ in tokens])
    writer.add_token_types([k for _, k in tokens])
    writer.add_token_scores([-float(i) for i in range(len(tokens))])
    for key, value in ids.items():
        getattr(writer, f"add_{key}")(value)


def _header(writer, *, hidden: int, heads: int, kv: int, head_dim: int, inter: int, context: int) -> None:
    writer.add_context_length(context)
    writer.add_embedding_length(hidden)
    writer.add_block_count(2)
    writer.add_feed_forward_length(inter)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(1e6)


def _write_weights(writer, rng, top: list, block: list) -> dict[str, torch.Tensor]:
    """``top`` / ``block``: (gguf name, hf name, shape, qtype, shift) rows; block rows are written for 2 layers."""
    expected: dict[str, torch.Tensor] = {}
    rows = top + [(f"blk.{i}.{g}", f"layers.{i}.{h}", *rest) for i in range(2) for g, h, *rest in block]
    for gguf_name, hf_name, shape, qtype, shift in rows:
        _add(writer, expected, gguf_name, hf_name, _rng_array(rng, *shape), qtype, shift)
    return expected


def write_tiny_gemma3(
    path: Path, *, window: int | None = 4, pattern=None, arch: str = "gemma3", extra: dict | None = None
) -> dict[str, torch.Tensor]:
    """A 2-layer gemma3 GGUF (F32, F16 and Q8_0 tensors, norms stored as w + 1); returns the expected weights."""
    hidden, heads, kv, head_dim, inter = 64, 2, 1, 256, 128
    w = gguf.GGUFWriter(str(path), arch)
    _header(w, hidden=hidden, heads=heads, kv=kv, head_dim=head_dim, inter=inter, context=512)
    if window is not None:
        w.add_sliding_window(window)
    if pattern is not None:
        w.add_sliding_window_pattern(pattern)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    ids = dict(bos_token_id=2, eos_token_id=1, unk_token_id=3, pad_token_id=0)
    _write_tokenizer(w, GEMMA_TOKENS, **ids, add_bos_token=True, add_eos_token=False, add_space_prefix=False)
    top = [
        ("token_embd.weight", "embed_tokens.weight", (len(GEMMA_TOKENS), hidden), Q.Q8_0, 0.0),
        ("output_norm.weight", "norm.weight", (hidden,), Q.F32, 1.0),
    ]
    block = [
        ("attn_q.weight", "self_attn.q_proj.weight", (heads * head_dim, hidden), Q.F16, 0.0),
        ("attn_k.weight", "self_attn.k_proj.weight", (kv * head_dim, hidden), Q.Q8_0, 0.0),
        ("attn_v.weight", "self_attn.v_proj.weight", (kv * head_dim, hidden), Q.F32, 0.0),
        ("attn_output.weight", "self_attn.o_proj.weight", (hidden, heads * head_dim), Q.Q8_0, 0.0),
        ("ffn_gate.weight", "mlp.gate_proj.weight", (inter, hidden), Q.Q8_0, 0.0),
        ("ffn_up.weight", "mlp.up_proj.weight", (inter, hidden), Q.F16, 0.0),
        ("ffn_down.weight", "mlp.down_proj.weight", (hidden, inter), Q.Q8_0, 0.0),
        ("attn_norm.weight", "input_layernorm.weight", (hidden,), Q.F32, 1.0),
        ("post_attention_norm.weight", "post_attention_layernorm.weight", (hidden,), Q.F32, 1.0),
        ("ffn_norm.weight", "pre_feedforward_layernorm.weight", (hidden,), Q.F16, 1.0),
        ("post_ffw_norm.weight", "post_feedforward_layernorm.weight", (hidden,), Q.F32, 1.0),
        ("attn_q_norm.weight", "self_attn.q_norm.weight", (head_dim,), Q.F32, 1.0),
        ("attn_k_norm.weight", "self_attn.k_norm.weight", (head_dim,), Q.F32, 1.0),
    ]
    expected = _write_weights(w, np.random.default_rng(0), top, block)
    for name, values in (extra or {}).items():
        w.add_tensor(name, values)
    _finish(w)
    return expected


def write_tiny_qwen3(path: Path) -> dict[str, torch.Tensor]:
    """A 2-layer qwen3 GGUF with a byte-level BPE tokenizer that appends EOS; returns the expected weights."""
    hidden, heads, kv, head_dim, inter = 64, 2, 1, 128, 96
    w = gguf.GGUFWriter(str(path), "qwen3")
    _header(w, hidden=hidden, heads=heads, kv=kv, head_dim=head_dim, inter=inter, context=1024)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_merges(QWEN3_MERGES)
    index = {t: i for i, (t, _) in enumerate(QWEN3_TOKENS)}
    end, im_end = index["<|endoftext|>"], index["<|im_end|>"]
    ids = dict(bos_token_id=end, eos_token_id=im_end, pad_token_id=end)
    _write_tokenizer(w, QWEN3_TOKENS, **ids, add_bos_token=False, add_eos_token=True)
    top = [
        ("token_embd.weight", "embed_tokens.weight", (len(QWEN3_TOKENS), hidden), Q.Q8_0, 0.0),
        ("output_norm.weight", "norm.weight", (hidden,), Q.F32, 0.0),
    ]
    block = [
        ("attn_q.weight", "self_attn.q_proj.weight", (heads * head_dim, hidden), Q.Q8_0, 0.0),
        ("attn_k.weight", "self_attn.k_proj.weight", (kv * head_dim, hidden), Q.F16, 0.0),
        ("attn_v.weight", "self_attn.v_proj.weight", (kv * head_dim, hidden), Q.F32, 0.0),
        ("attn_output.weight", "self_attn.o_proj.weight", (hidden, heads * head_dim), Q.Q8_0, 0.0),
        ("ffn_gate.weight", "mlp.gate_proj.weight", (inter, hidden), Q.F16, 0.0),
        ("ffn_up.weight", "mlp.up_proj.weight", (inter, hidden), Q.Q8_0, 0.0),
        ("ffn_down.weight", "mlp.down_proj.weight", (hidden, inter), Q.F32, 0.0),
        ("attn_norm.weight", "input_layernorm.weight", (hidden,), Q.F32, 0.0),
        ("ffn_norm.weight", "post_attention_layernorm.weight", (hidden,), Q.F32, 0.0),  # Qwen3's pre-MLP norm
        ("attn_q_norm.weight", "self_attn.q_norm.weight", (head_dim,), Q.F32, 0.0),
        ("attn_k_norm.weight", "self_attn.k_norm.weight", (head_dim,), Q.F32, 0.0),
    ]
    expected = _write_weights(w, np.random.default_rng(1), top, block)
    _finish(w)
    return expected


def _finish(writer) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# ------------------------------------------------------------------------------------------------ helpers


def _assert_same_weights(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> None:
    assert set(ours) == set(theirs), (sorted(set(ours) ^ set(theirs)))[:8]
    for name, tensor in ours.items():
        assert tensor.dtype == torch.float32 and tensor.shape == theirs[name].shape, name
        assert torch.equal(tensor, theirs[name].to(tensor.dtype)), name


def _hf_weights(model) -> dict[str, torch.Tensor]:
    """transformers' backbone weights, named like ours (no ``model.`` prefix, no lm_head)."""
    return {k.removeprefix("model."): v for k, v in model.state_dict().items() if k.startswith("model.")}


def _assert_config_agrees(ours: dict, hf_config, fields) -> None:
    from transformers import AutoConfig

    theirs = hf_config.to_dict()
    for key in fields:
        assert ours[key] == theirs[key], (key, ours[key], theirs[key])
    rope = theirs["rope_parameters"]
    if ours["model_type"] == "gemma3_text":
        assert ours["rope_theta"] == rope["full_attention"]["rope_theta"]
        assert ours["rope_local_base_freq"] == rope["sliding_attention"]["rope_theta"]
    else:
        assert ours["rope_theta"] == rope["rope_theta"]
    rebuilt = AutoConfig.for_model(**ours).to_dict()  # our dict is a valid transformers config, equal on the fields
    assert {k: rebuilt[k] for k in fields} == {k: theirs[k] for k in fields}
    assert rebuilt["rope_parameters"] == rope


def _assert_same_ids(tokenizer_json: str, hf_tokenizer, texts) -> None:
    from tokenizers import Tokenizer

    ours = [e.ids for e in Tokenizer.from_str(tokenizer_json).encode_batch(texts)]
    theirs = hf_tokenizer(list(texts))["input_ids"]
    for text, a, b in zip(texts, ours, theirs, strict=True):
        assert a == b, (text[:80], a[:20], b[:20])


def _load_hf(directory: Path, name: str, *, auto_tokenizer: bool = True):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING

    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name)
    # the class AutoTokenizer resolves to for this config; calling it directly skips AutoTokenizer's own
    # (third, ~10 s on the real file) parse of the GGUF header
    tokenizer_class = AutoTokenizer if auto_tokenizer else TOKENIZER_MAPPING[type(model.config)]
    return model, tokenizer_class.from_pretrained(directory, gguf_file=name)


# ------------------------------------------------------------------------------------------------ tiny tests


def test_tiny_gemma3_round_trips(tmp_path):
    expected = write_tiny_gemma3(tmp_path / "tiny.gguf")
    ckpt = read_gguf(tmp_path / "tiny.gguf")
    _assert_same_weights(ckpt.state_dict, expected)  # dequantized exactly, norms un-shifted by 1
    cfg = ckpt.config
    assert cfg["model_type"] == "gemma3_text" and cfg["vocab_size"] == len(GEMMA_TOKENS)
    shape = ("hidden_size", "num_hidden_layers", "head_dim", "intermediate_size")
    assert tuple(cfg[k] for k in shape) == (64, 2, 256, 128)
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["sliding_window"]) == (2, 1, 4)
    assert cfg["rope_theta"] == 1e6 and cfg["rope_local_base_freq"] == 10_000.0 and cfg["tie_word_embeddings"]
    assert cfg["layer_types"] == ["sliding_attention"] * 2 and cfg["query_pre_attn_scalar"] == 256
    single = json.loads(ckpt.tokenizer_json)["post_processor"]["single"]
    assert single == [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]


def test_tiny_gemma3_matches_transformers(tmp_path):
    write_tiny_gemma3(tmp_path / "tiny.gguf")
    ckpt = read_gguf(tmp_path / "tiny.gguf")
    model, tokenizer = _load_hf(tmp_path, "tiny.gguf")
    _assert_same_weights(ckpt.state_dict, _hf_weights(model))
    _assert_config_agrees(ckpt.config, model.config, GEMMA_FIELDS)
    _assert_same_ids(ckpt.tokenizer_json, tokenizer, TEXTS)


def test_tiny_qwen3_matches_transformers(tmp_path):
    expected = write_tiny_qwen3(tmp_path / "tiny.gguf")
    ckpt = read_gguf(tmp_path / "tiny.gguf")
    _assert_same_weights(ckpt.state_dict, expected)  # no value transforms for Qwen3
    model, tokenizer = _load_hf(tmp_path, "tiny.gguf")
    _assert_same_weights(ckpt.state_dict, _hf_weights(model))
    _assert_config_agrees(ckpt.config, model.config, QWEN3_FIELDS)
    assert ckpt.config["model_type"] == "qwen3" and ckpt.config["head_dim"] == 128
    _assert_same_ids(ckpt.tokenizer_json, tokenizer, TEXTS)
    from tokenizers import Tokenizer

    ids = Tokenizer.from_str(ckpt.tokenizer_json).encode("hello world").ids
    assert ids[-1] == QWEN3_TOKENS.index(("<|im_end|>", CONTROL))  # the file's add_eos_token = True


@pytest.mark.parametrize(
    ("window", "pattern", "layer_types"),
    [
        (None, None, ["full_attention", "full_attention"]),  # no window written: every layer global
        (4, [False, True], ["full_attention", "sliding_attention"]),  # per-layer pattern in the file
        (4, 2, ["sliding_attention", "full_attention"]),
    ],
)
def test_gemma3_layer_types_follow_the_file(tmp_path, window, pattern, layer_types):
    write_tiny_gemma3(tmp_path / "tiny.gguf", window=window, pattern=pattern)
    cfg = read_gguf(tmp_path / "tiny.gguf").config
    assert cfg["layer_types"] == layer_types
    assert cfg["sliding_window"] == window


def test_gemma_embedding_file_loads_and_skips_dense_heads(tmp_path, caplog):
    dense = {"dense_2.weight": np.zeros((96, 64), np.float32), "dense_3.weight": np.zeros((64, 96), np.float32)}
    expected = write_tiny_gemma3(tmp_path / "emb.gguf", arch="gemma-embedding", extra=dense)
    with caplog.at_level("WARNING", logger="harrier.gguf"):
        ckpt = read_gguf(tmp_path / "emb.gguf")
    _assert_same_weights(ckpt.state_dict, expected)
    assert ckpt.config["model_type"] == "gemma3_text" and "dense_2.weight" in caplog.text


def test_bfloat16_casts_after_the_norm_shift(tmp_path):
    expected = write_tiny_gemma3(tmp_path / "tiny.gguf")
    ckpt = read_gguf(tmp_path / "tiny.gguf", dtype=torch.bfloat16)
    assert ckpt.config["dtype"] == "bfloat16"
    _assert_same_weights(
        {k: v.float() for k, v in ckpt.state_dict.items()}, {k: v.bfloat16().float() for k, v in expected.items()}
    )


def test_incomplete_file_is_a_value_error(tmp_path):
    w = gguf.GGUFWriter(str(tmp_path / "bare.gguf"), "qwen3")
    w.add_embedding_length(64)
    w.add_tensor("token_embd.weight", np.zeros((4, 64), np.float32))
    _finish(w)
    with pytest.raises(ValueError, match="lacks qwen3.attention.head_count"):
        read_gguf(tmp_path / "bare.gguf")


def test_unsupported_architecture_is_a_value_error(tmp_path):
    w = gguf.GGUFWriter(str(tmp_path / "llama.gguf"), "llama")
    w.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
    _finish(w)
    with pytest.raises(ValueError, match="supported: gemma3, gemma-embedding, qwen3"):
        read_gguf(tmp_path / "llama.gguf")


def test_unsupported_tensor_type_is_a_value_error(tmp_path):
    w = gguf.GGUFWriter(str(tmp_path / "int.gguf"), "qwen3")
    w.add_tensor("token_embd.weight", np.zeros((4, 32), np.int32))
    _finish(w)
    with pytest.raises(ValueError, match=r"\['I32'\] cannot be dequantized; supported: .*Q4_K"):
        read_gguf(tmp_path / "int.gguf")


def test_missing_gguf_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(ImportError, match=r"pip install 'harrier-embed\[gguf\]'"):
        read_gguf(tmp_path / "x.gguf")


# ------------------------------------------------------------------------------------------------ real file

DATA = Path(os.environ.get("HARRIER_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
ID_FIELDS = ("normalizer", "pre_tokenizer", "model", "added_tokens", "post_processor", "decoder")


def _real_texts() -> list[str]:
    """~35 texts: edge cases, one line per language, and (when shared/data is there) tatoeba and xquad text."""
    texts = [
        "",
        " ",
        "Hello world",
        "  two leading spaces",
        "tabs\tand\nnew\n\nlines\r\n",
        "emoji 😀👍🏽🇫🇷 ok",
        "<start_of_turn>user\nhi<end_of_turn>",
        "<bos>literal special",
        "def f(x):\n    return x ** 2",
        "Instruct: Retrieve parallel sentences\nQuery: ",
        "Größere Straßen führen über die Brücke.",
        "¿Dónde está la estación de tren?",
        "Ça coûte combien, s'il vous plaît ?",
        "東京は日本の首都です。",
        "我们明天去北京。",
        "서울은 한국의 수도입니다.",
        "Москва — столица России.",
        "القاهرة هي عاصمة مصر.",
        "नमस्ते, आप कैसे हैं?",
        "กรุงเทพมหานครเป็นเมืองหลวง",
    ]
    for lang in ("jpn", "cmn", "ara", "rus", "hin", "kor", "tha", "heb", "ell", "amh", "deu", "fra", "tur", "vie"):
        path = DATA / "tatoeba-laser" / f"tatoeba.{lang}-eng.{lang}"
        if path.is_file():
            texts += path.read_text(encoding="utf-8").splitlines()[:1]
    for lang in ("hi", "th", "zh", "ru", "ar"):
        path = DATA / "xquad" / f"xquad.{lang}.json"
        if path.is_file():
            context = json.loads(path.read_text(encoding="utf-8"))["data"][0]["paragraphs"][0]["context"]
            texts.append(context)
    texts.append(" ".join(texts) * 3)  # long
    return texts


@pytest.fixture(scope="module")
def real_pair(gemma3_gguf):
    ckpt = read_gguf(gemma3_gguf)
    model, tokenizer = _load_hf(gemma3_gguf.parent, gemma3_gguf.name, auto_tokenizer=False)
    return ckpt, model, tokenizer


@pytest.mark.real
def test_real_gemma3_270m_weights_equal_transformers(real_pair):
    ckpt, model, _ = real_pair
    _assert_same_weights(ckpt.state_dict, _hf_weights(model))  # max abs diff 0 on all 236 tensors


@pytest.mark.real
def test_real_gemma3_270m_config_agrees(real_pair):
    ckpt, model, _ = real_pair
    _assert_config_agrees(ckpt.config, model.config, GEMMA_FIELDS)
    assert ckpt.config["vocab_size"] == 262_144 and ckpt.config["hidden_size"] == 640


@pytest.mark.real
def test_real_gemma3_270m_tokenizer_ids_equal_transformers(real_pair):
    from tokenizers import Tokenizer

    ckpt, _, tokenizer = real_pair
    texts = _real_texts()
    assert len(texts) >= 21
    _assert_same_ids(ckpt.tokenizer_json, tokenizer, texts)
    ours, theirs = json.loads(ckpt.tokenizer_json), json.loads(tokenizer.backend_tokenizer.to_str())
    for key in ID_FIELDS:  # the whole pipeline is the same, not just these texts' ids
        assert ours[key] == theirs[key], key
    # The GGUF says add_bos_token=True, add_eos_token=False: BOS only (a harrier checkpoint also appends <eos>).
    assert Tokenizer.from_str(ckpt.tokenizer_json).encode("Hello world").ids == [2, 9259, 1902]
