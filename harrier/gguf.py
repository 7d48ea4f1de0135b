"""Read a GGUF file (llama.cpp's format) into a Hugging Face style config, float32 weights and a tokenizer.json.

Community quantized builds of Gemma-3 and Qwen3 backbones ship as one GGUF file: its metadata is the config and
the tokenizer, its tensors carry llama.cpp names and sometimes quantized blocks. We dequantize with the ``gguf``
package and undo what llama.cpp's converter did, as transformers does when it loads a GGUF
(``modeling_gguf_pytorch_utils.py``, ``integrations/gguf/``):

- names: ``blk.N.attn_q.weight`` -> ``layers.N.self_attn.q_proj.weight`` etc. (GGUF ``ffn_norm`` is Gemma's
  ``pre_feedforward_layernorm`` but Qwen3's ``post_attention_layernorm``); ``output.weight`` (lm_head) is dropped;
- Gemma: every RMSNorm weight is stored as ``w + 1`` (Gemma computes ``x * (1 + w)``), so we subtract 1 in float32;
- Qwen3 and Gemma-3 need no Q/K row permutation (llama.cpp only permutes llama-family attention).

The tokenizer is rebuilt from ``tokenizer.ggml.*`` the way transformers rebuilds it, so both give the same ids:
a Gemma sentencepiece vocabulary becomes a byte-fallback BPE whose merges are recovered from the vocabulary order;
a ``gpt2`` vocabulary (Qwen) becomes a byte-level BPE with the file's merges and Qwen's split regex. BOS/EOS are
added exactly as the file's ``add_bos_token`` / ``add_eos_token`` flags say (the Gemma-3 270M file: BOS only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from harrier.extras import require

if TYPE_CHECKING:
    from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

GEMMA_ARCHITECTURES = ("gemma3", "gemma-embedding")
SUPPORTED_ARCHITECTURES = (*GEMMA_ARCHITECTURES, "qwen3")

# llama.cpp tensor leaf -> transformers module path, per family. GGUF `ffn_norm` is the norm before the MLP.
_BLOCK_COMMON = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLOCK_GEMMA = {
    **_BLOCK_COMMON,
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}
_BLOCK_QWEN3 = {**_BLOCK_COMMON, "ffn_norm": "post_attention_layernorm"}
_TOP_LEVEL = {"token_embd": "embed_tokens", "output_norm": "norm"}
_DROPPED = {"output"}  # the lm_head: an embedding model does not use it

# Qwen2/Qwen3's published pre-tokenizer split (GGUF `tokenizer.ggml.pre` = "qwen2").
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_BYTE_LEVEL_SPLITS = {"qwen2": _QWEN2_SPLIT, "deepseek-r1-qwen": _QWEN2_SPLIT}
_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token types


@dataclass(frozen=True)
class GGUFCheckpoint:
    """What a GGUF file holds, in Hugging Face terms.

    ``config``: a ``config.json`` style dict (``model_type`` "gemma3_text" or "qwen3"); ``state_dict``: dense
    tensors (float32 unless asked otherwise) named as in ``Gemma3TextModel`` / ``Qwen3Model`` without the
    ``model.`` prefix, lm_head dropped; ``tokenizer_json``: a ``tokenizers`` serialization with the file's
    BOS/EOS post-processing.
    """

    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    tokenizer_json: str


def read_gguf(path: str | Path, *, dtype: torch.dtype = torch.float32) -> GGUFCheckpoint:
    """Load a Gemma-3 or Qwen3 GGUF file, dequantizing every tensor (float32: 4 bytes per parameter).

    ``dtype=torch.bfloat16`` halves the memory of large models; values are computed in float32 and cast last.
    """
    gguf = require("gguf", "gguf", "reading GGUF files")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no GGUF file at {path}")
    reader = gguf.GGUFReader(str(path))
    meta = _Metadata(reader, path.name)
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ValueError(
            f"{path.name}: GGUF architecture {arch!r} is not supported; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    _check_tensor_types(reader, gguf, path.name)
    shapes = {t.name: tuple(int(d) for d in reversed(t.shape.tolist())) for t in reader.tensors}
    if "token_embd.weight" not in shapes:
        raise ValueError(f"{path.name}: no token_embd.weight tensor, so this is not a complete {arch} model")
    config = _gemma3_config(meta, shapes) if arch in GEMMA_ARCHITECTURES else _qwen3_config(meta, shapes)
    tokenizer_json = _tokenizer(arch, meta).to_str()  # before the slow part, so a bad tokenizer fails fast
    state_dict = _read_state_dict(reader, gguf, arch, config["num_hidden_layers"], dtype)
    config["dtype"] = str(dtype).removeprefix("torch.")
    logger.info("read %s: %s, %d tensors", path.name, config["model_type"], len(state_dict))
    return GGUFCheckpoint(config=config, state_dict=state_dict, tokenizer_json=tokenizer_json)


class _Metadata:
    """Key/value access to a GGUF header; arrays of strings come back as lists of str."""

    def __init__(self, reader: Any, source: str):
        self._fields = reader.fields
        self._source = source

    def get(self, key: str, default: Any = None) -> Any:
        field = self._fields.get(key)
        return default if field is None else field.contents()

    def arch(self, key: str, default: Any = None) -> Any:
        """``{architecture}.{key}``."""
        return self.get(f"{self.get('general.architecture')}.{key}", default)

    def need(self, key: str) -> Any:
        """``{architecture}.{key}``, which the file must have."""
        value = self.arch(key)
        if value is None:
            raise ValueError(f"{self._source}: GGUF metadata lacks {self.get('general.architecture')}.{key}")
        return value


# ---------------------------------------------------------------------------------------------------- config


def _common_config(meta: _Metadata, shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    heads = int(meta.need("attention.head_count"))
    hidden = int(meta.need("embedding_length"))
    head_dim = meta.arch("attention.key_length") or meta.arch("rope.dimension_count") or hidden // heads
    config = {
        "vocab_size": shapes["token_embd.weight"][0],
        "hidden_size": hidden,
        "intermediate_size": int(meta.need("feed_forward_length")),
        "num_hidden_layers": int(meta.need("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(meta.arch("attention.head_count_kv", heads)),
        "head_dim": int(head_dim),
        "rms_norm_eps": float(meta.need("attention.layer_norm_rms_epsilon")),
        "max_position_embeddings": int(meta.need("context_length")),
        "rope_theta": float(meta.arch("rope.freq_base", 10_000.0)),
        "attention_bias": "blk.0.attn_q.bias" in shapes,
        # llama.cpp writes the output projection only when it is not the embedding matrix
        "tie_word_embeddings": "output.weight" not in shapes,
        "bos_token_id": meta.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": meta.get("tokenizer.ggml.eos_token_id"),
        "pad_token_id": meta.get("tokenizer.ggml.padding_token_id"),
    }
    scaling = meta.arch("rope.scaling.type")
    if scaling and scaling != "none":
        config["rope_scaling"] = {"rope_type": scaling, "factor": float(meta.arch("rope.scaling.factor", 1.0))}
    return config


def _gemma3_config(meta: _Metadata, shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    config = _common_config(meta, shapes)
    n = config["num_hidden_layers"]
    window = meta.arch("attention.sliding_window")
    pattern = meta.arch("attention.sliding_window_pattern")
    if isinstance(pattern, list):  # one bool per layer, True = sliding
        if len(pattern) != n:
            raise ValueError(f"GGUF sliding_window_pattern has {len(pattern)} entries for {n} layers")
        layer_types = ["sliding_attention" if p else "full_attention" for p in pattern]
    elif window:
        # Gemma-3's 5 local : 1 global pattern, which transformers and llama.cpp both assume for this architecture
        every = int(pattern or 6)
        layer_types = ["full_attention" if (i + 1) % every == 0 else "sliding_attention" for i in range(n)]
    else:
        # llama.cpp's converter omits the window when every layer is global (sliding_window_pattern == 1)
        layer_types = ["full_attention"] * n
    # llama.cpp scales queries by 1/sqrt(head_dim), except for the 62-layer 27B: 1/sqrt(hidden / heads)
    scalar = config["hidden_size"] // config["num_attention_heads"] if n == 62 else config["head_dim"]
    causal = meta.arch("attention.causal", True)
    return {
        "model_type": "gemma3_text",
        "architectures": ["Gemma3TextModel"],
        **config,
        "hidden_activation": "gelu_pytorch_tanh",
        "rope_local_base_freq": float(meta.arch("rope.freq_base_swa", 10_000.0)),
        "sliding_window": int(window) if window else None,
        "layer_types": layer_types,
        "query_pre_attn_scalar": scalar,
        "final_logit_softcapping": meta.arch("final_logit_softcapping"),
        "attn_logit_softcapping": None,
        "use_bidirectional_attention": not causal,
        "unk_token_id": meta.get("tokenizer.ggml.unknown_token_id"),
    }


def _qwen3_config(meta: _Metadata, shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    config = _common_config(meta, shapes)
    n = config["num_hidden_layers"]
    return {
        "model_type": "qwen3",
        "architectures": ["Qwen3Model"],
        **config,
        "hidden_act": "silu",
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": n,
        "layer_types": ["full_attention"] * n,
    }


# ---------------------------------------------------------------------------------------------------- tensors


def _supported_types(gguf: Any) -> set[Any]:
    quant = gguf.GGMLQuantizationType
    # `quants._type_traits` is where gguf-py registers every type its numpy dequantizer implements
    return {quant.F32, quant.F16, *getattr(gguf.quants, "_type_traits", {})}


def _check_tensor_types(reader: Any, gguf: Any, name: str) -> None:
    supported = _supported_types(gguf)
    bad = sorted({t.tensor_type.name for t in reader.tensors if t.tensor_type not in supported})
    if bad:
        names = ", ".join(sorted(t.name for t in supported))
        raise ValueError(f"{name}: tensor types {bad} cannot be dequantized; supported: {names}")


def _hf_name(gguf_name: str, block_map: dict[str, str]) -> str | None:
    """The transformers parameter name (no ``model.`` prefix), or None for a tensor we do not know."""
    stem, _, suffix = gguf_name.rpartition(".")
    if suffix not in ("weight", "bias"):
        return None
    if stem in _TOP_LEVEL:
        return f"{_TOP_LEVEL[stem]}.{suffix}"
    parts = stem.split(".")
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in block_map:
        return f"layers.{parts[1]}.{block_map[parts[2]]}.{suffix}"
    return None


def _expected_names(block_map: dict[str, str], num_layers: int) -> set[str]:
    leaves = set(block_map.values())
    names = {f"layers.{i}.{leaf}.weight" for i in range(num_layers) for leaf in leaves}
    return names | {"embed_tokens.weight", "norm.weight"}


def _dequantize(tensor: Any, gguf: Any, dtype: torch.dtype, rows_per_chunk: int = 8192) -> torch.Tensor:
    """One tensor, in row chunks so that a large embedding table needs no full-size float32 temporaries."""
    shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
    rows = tensor.data.reshape(-1, tensor.data.shape[-1])  # blocks: (rows, bytes); floats: (rows, cols)
    out = torch.empty(shape, dtype=dtype)
    flat = out.view(-1, shape[-1])
    for start in range(0, rows.shape[0], rows_per_chunk):
        chunk = gguf.quants.dequantize(rows[start : start + rows_per_chunk], tensor.tensor_type)
        # "W": F32 chunks are read-only views of the file map, so those (and only those) get copied
        flat[start : start + rows_per_chunk] = torch.from_numpy(np.require(chunk, np.float32, ["C", "W"]))
    return out


def _read_state_dict(reader: Any, gguf: Any, arch: str, num_layers: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    gemma = arch in GEMMA_ARCHITECTURES
    block_map = _BLOCK_GEMMA if gemma else _BLOCK_QWEN3
    state_dict: dict[str, torch.Tensor] = {}
    skipped = []
    for tensor in reader.tensors:
        name = _hf_name(tensor.name, block_map)
        if name is None:
            if tensor.name.rpartition(".")[0] not in _DROPPED:
                skipped.append(tensor.name)
            continue
        if gemma and name.endswith("norm.weight"):
            # stored as w + 1: subtract in float32 (as transformers' loader does), then cast
            state_dict[name] = (_dequantize(tensor, gguf, torch.float32) - 1.0).to(dtype)
        else:
            state_dict[name] = _dequantize(tensor, gguf, dtype)
    if skipped:
        logger.warning("ignoring %d GGUF tensors harrier does not use: %s", len(skipped), ", ".join(skipped[:8]))
    missing = _expected_names(block_map, num_layers) - set(state_dict)
    if missing:
        raise ValueError(f"GGUF file lacks {len(missing)} tensors of a {arch} model, e.g. {sorted(missing)[:4]}")
    return state_dict


# ---------------------------------------------------------------------------------------------------- tokenizer


def _tokenizer(arch: str, meta: _Metadata) -> Tokenizer:
    kind = meta.get("tokenizer.ggml.model")
    tokens: list[str] = meta.get("tokenizer.ggml.tokens") or []
    if kind == "llama" and arch in GEMMA_ARCHITECTURES:
        tokenizer, vocab = _gemma_tokenizer(tokens, meta)
    elif kind == "gpt2":
        tokenizer, vocab = _byte_level_tokenizer(tokens, meta)
    else:
        raise ValueError(
            f"GGUF tokenizer {kind!r} for architecture {arch!r} is not supported; supported: "
            f"'llama' (sentencepiece) with {' or '.join(GEMMA_ARCHITECTURES)}, 'gpt2' (byte-level BPE)"
        )
    _add_special_tokens(tokenizer, tokens, vocab, meta, byte_level=kind == "gpt2")
    _set_post_processor(tokenizer, tokens, meta, add_bos_default=kind == "llama")
    return tokenizer


def _gemma_tokenizer(tokens: list[str], meta: _Metadata) -> tuple[Tokenizer, dict[str, int]]:
    """Byte-fallback BPE over ``▁``-spelled text, as Gemma's own tokenizer.json is built."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE

    # Runs of 2+ spaces are stored as real spaces; the BPE sees them as "▁" runs.
    spelled = ["\u2581" * len(t) if " " in t and not t.strip() else t for t in tokens]
    vocab = {token: index for index, token in enumerate(spelled)}
    unk_id = meta.get("tokenizer.ggml.unknown_token_id")
    unk = tokens[unk_id] if unk_id is not None else "<unk>"
    model = BPE(vocab=vocab, merges=_merges_from_vocab(vocab), unk_token=unk, fuse_unk=True, byte_fallback=True)
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.Replace(" ", "\u2581")
    tokenizer.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    tokenizer.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    return tokenizer, vocab


def _merges_from_vocab(vocab: dict[str, int]) -> list[tuple[str, str]]:
    """Every split of a token into two vocabulary pieces, in the order the vocabulary lists the tokens.

    A Gemma GGUF has no merge table and its scores do not follow the merge order; the token order does. Within a
    token, the split with the longer left piece comes first (as transformers orders them).
    """
    merges = []
    for token in sorted(vocab, key=vocab.__getitem__):
        for cut in range(len(token) - 1, 0, -1):
            left, right = token[:cut], token[cut:]
            if left in vocab and right in vocab:
                merges.append((left, right))
    return merges


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's byte -> printable character table used by byte-level BPE vocabularies."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in printable}
    for offset, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + offset)
    return table


def _byte_level_tokenizer(tokens: list[str], meta: _Metadata) -> tuple[Tokenizer, dict[str, int]]:
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    alphabet = _byte_alphabet()
    chars = set(alphabet.values())
    # Tokens are written in the byte alphabet, except stray raw-UTF-8 ones, which we respell.
    vocab = {t if set(t) <= chars else "".join(alphabet[b] for b in t.encode("utf-8")): i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ")) for m in meta.get("tokenizer.ggml.merges") or []]
    model = BPE(vocab=vocab, merges=merges, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False)
    tokenizer = Tokenizer(model)
    pre = meta.get("tokenizer.ggml.pre")
    if pre in _BYTE_LEVEL_SPLITS:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_BYTE_LEVEL_SPLITS[pre]), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        logger.warning("GGUF pre-tokenizer %r is not known; using GPT-2's byte-level split", pre)
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer, vocab


def _add_special_tokens(
    tokenizer: Tokenizer, tokens: list[str], vocab: dict[str, int], meta: _Metadata, *, byte_level: bool
) -> None:
    """Keep control tokens (and the named BOS/EOS/UNK/PAD) whole as special tokens, user-defined ones as plain
    added tokens, all matched on the raw text."""
    from tokenizers import AddedToken

    types = meta.get("tokenizer.ggml.token_type") or []
    chars = set(_byte_alphabet().values()) if byte_level else None
    special = [
        t for t, kind in zip(tokens, types, strict=False) if kind == _CONTROL and (chars is None or set(t) <= chars)
    ]
    for key in ("bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id"):
        token_id = meta.get(f"tokenizer.ggml.{key}")
        if token_id is not None and tokens[token_id] in vocab:
            special.append(tokens[token_id])
    if not byte_level and "<mask>" in vocab:
        special.append("<mask>")  # GemmaTokenizer's mask token
    user = [t for t, kind in zip(tokens, types, strict=False) if kind == _USER_DEFINED and t in vocab]
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in dict.fromkeys(special)])
    tokenizer.add_tokens([AddedToken(t, normalized=False, special=False) for t in user])


def _set_post_processor(tokenizer: Tokenizer, tokens: list[str], meta: _Metadata, *, add_bos_default: bool) -> None:
    from tokenizers import processors

    bos_id = meta.get("tokenizer.ggml.bos_token_id")
    eos_id = meta.get("tokenizer.ggml.eos_token_id")
    # llama.cpp adds BOS to a sentencepiece vocabulary unless the file says otherwise
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", add_bos_default)) and bos_id is not None
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False)) and eos_id is not None
    bos = tokens[bos_id] if add_bos else ""
    eos = tokens[eos_id] if add_eos else ""
    single = f"{bos + ':0 ' if add_bos else ''}$A:0{' ' + eos + ':0' if add_eos else ''}"
    pair = f"{single}{' ' + bos + ':1' if add_bos else ''} $B:1{' ' + eos + ':1' if add_eos else ''}"
    special = [(bos, bos_id)] * add_bos + [(eos, eos_id)] * add_eos
    tokenizer.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=special)
