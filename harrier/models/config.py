"""Backbone configuration: one frozen dataclass for the Gemma-3 and Qwen3 decoders, parsed from ``config.json``.

The two families differ in data, not in code paths: Gemma-3 scales embeddings by sqrt(hidden), multiplies by
``1 + w`` in its RMSNorms, wraps attention and MLP in "sandwich" norms, uses gelu-tanh and ``query_pre_attn_scalar``,
and alternates sliding/full layers with their own rope bases. Qwen3 is a plain pre-norm decoder with q/k norms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

SUPPORTED_MODEL_TYPES = ("gemma3_text", "qwen3")
SUPPORTED_ROPE_TYPES = ("default", "linear")
LayerType = Literal["full_attention", "sliding_attention"]


@dataclass(frozen=True, kw_only=True)
class RopeConfig:
    """Rotary embedding for one layer type: ``inv_freq = 1 / (theta ** (2i / d)) / factor``."""

    theta: float
    factor: float = 1.0


@dataclass(frozen=True, kw_only=True)
class DecoderConfig:
    """Everything our forward pass needs to know about a decoder backbone."""

    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    activation: Literal["gelu_tanh", "silu"]
    attn_scale: float
    layer_types: tuple[LayerType, ...]
    sliding_window: int | None  # tokens a query may reach: q - k < W (causal) or |q - k| < W (bidirectional)
    rope: dict[str, RopeConfig]
    causal: bool
    attention_bias: bool
    # Gemma-isms
    embed_scale: float | None
    norm_offset: float
    sandwich_norms: bool
    max_position_embeddings: int
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None


def _rope_from_legacy(hf: dict[str, Any], theta_key: str, scaled: bool) -> RopeConfig:
    theta = float(hf[theta_key])
    scaling = hf.get("rope_scaling") if scaled else None
    if not scaling:
        return RopeConfig(theta=theta)
    return _rope_from_params({**scaling, "rope_theta": theta})


def _rope_from_params(params: dict[str, Any]) -> RopeConfig:
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise ValueError(f"rope type {rope_type!r} is not supported; supported: {', '.join(SUPPORTED_ROPE_TYPES)}")
    factor = float(params.get("factor", 1.0)) if rope_type == "linear" else 1.0
    return RopeConfig(theta=float(params["rope_theta"]), factor=factor)


def _rope_by_layer_type(hf: dict[str, Any], gemma: bool) -> dict[str, RopeConfig]:
    params = hf.get("rope_parameters")
    if params:
        if "full_attention" in params or "sliding_attention" in params:
            return {k: _rope_from_params(v) for k, v in params.items() if v}
        rope = _rope_from_params(params)
        return {"full_attention": rope, "sliding_attention": rope}
    full = _rope_from_legacy(hf, "rope_theta", scaled=True)
    if gemma:
        # Gemma-3 applies rope_scaling to global layers only; local layers use rope_local_base_freq unscaled.
        local = RopeConfig(theta=float(hf.get("rope_local_base_freq", 10_000.0)))
    else:
        local = full
    return {"full_attention": full, "sliding_attention": local}


def _layer_types(hf: dict[str, Any], gemma: bool, n: int) -> tuple[LayerType, ...]:
    if hf.get("layer_types"):
        types = tuple(hf["layer_types"])
        if len(types) != n:
            raise ValueError(f"layer_types has {len(types)} entries for {n} layers")
        bad = set(types) - {"full_attention", "sliding_attention"}
        if bad:
            raise ValueError(f"unsupported layer types {sorted(bad)}; supported: full_attention, sliding_attention")
        return types  # type: ignore[return-value]
    if gemma:
        pattern = int(hf.get("sliding_window_pattern", hf.get("_sliding_window_pattern", 6)))
        return tuple("full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(n))
    if hf.get("use_sliding_window") and hf.get("sliding_window"):
        start = int(hf.get("max_window_layers", n))
        return tuple("sliding_attention" if i >= start else "full_attention" for i in range(n))
    return tuple("full_attention" for _ in range(n))


def decoder_config(hf: dict[str, Any]) -> DecoderConfig:
    """Parse a Hugging Face ``config.json`` dict for ``gemma3_text`` or ``qwen3``."""
    model_type = hf.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"model_type {model_type!r} is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    gemma = model_type == "gemma3_text"
    n = int(hf["num_hidden_layers"])
    heads = int(hf["num_attention_heads"])
    hidden = int(hf["hidden_size"])
    head_dim = int(hf.get("head_dim") or hidden // heads)
    act = hf.get("hidden_activation") or hf.get("hidden_act")
    activation = {"gelu_pytorch_tanh": "gelu_tanh", "gelu_tanh": "gelu_tanh", "silu": "silu", "swish": "silu"}.get(act)
    if activation is None:
        raise ValueError(f"activation {act!r} is not supported; supported: gelu_pytorch_tanh, silu")
    if gemma and hf.get("attn_logit_softcapping"):
        raise ValueError("attn_logit_softcapping is not supported (Gemma-2 style); Gemma-3 checkpoints set it to null")
    layer_types = _layer_types(hf, gemma, n)
    window = hf.get("sliding_window") if "sliding_attention" in layer_types else None
    causal = not bool(hf.get("use_bidirectional_attention", False))
    if window and not causal:
        # transformers (Gemma3TextConfig) reads a bidirectional window W as W // 2 + 1 tokens each side, exclusive:
        # a query sees keys with |q - k| <= W // 2.
        window = int(window) // 2 + 1
    return DecoderConfig(
        model_type=model_type,
        vocab_size=int(hf["vocab_size"]),
        hidden_size=hidden,
        intermediate_size=int(hf["intermediate_size"]),
        num_layers=n,
        num_heads=heads,
        num_kv_heads=int(hf.get("num_key_value_heads") or heads),
        head_dim=head_dim,
        rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        activation=activation,
        attn_scale=float(hf.get("query_pre_attn_scalar", head_dim)) ** -0.5 if gemma else head_dim**-0.5,
        layer_types=layer_types,
        sliding_window=int(window) if window else None,
        rope=_rope_by_layer_type(hf, gemma),
        causal=causal,
        attention_bias=bool(hf.get("attention_bias", False)),
        embed_scale=math.sqrt(hidden) if gemma else None,
        norm_offset=1.0 if gemma else 0.0,
        sandwich_norms=gemma,
        max_position_embeddings=int(hf.get("max_position_embeddings", 32_768)),
        pad_token_id=hf.get("pad_token_id"),
        bos_token_id=hf.get("bos_token_id"),
        eos_token_id=hf.get("eos_token_id"),
    )
