"""Random decoder models built from a config in memory (no checkpoint), for long-input tests at 32k tokens."""

from __future__ import annotations

import dataclasses

import torch

from harrier.heads import Head, PoolingConfig
from harrier.model import EmbeddingModel
from harrier.models.config import DecoderConfig, RopeConfig


def decoder_config(**overrides) -> DecoderConfig:
    """A small Gemma-3-like causal config (GQA, sandwich norms, 32k positions); ``overrides`` replace fields."""
    cfg = DecoderConfig(
        model_type="gemma3_text", vocab_size=300, hidden_size=64, intermediate_size=128, num_layers=2,
        num_heads=2, num_kv_heads=1, head_dim=16, rms_norm_eps=1e-6, activation="gelu_tanh", attn_scale=0.25,
        layer_types=("full_attention", "full_attention"), sliding_window=None,
        rope={"full_attention": RopeConfig(theta=1e6), "sliding_attention": RopeConfig(theta=1e4)}, causal=True,
        attention_bias=False, embed_scale=8.0, norm_offset=1.0, sandwich_norms=True, max_position_embeddings=65_536,
    )
    return dataclasses.replace(cfg, **overrides)


def random_model(cfg: DecoderConfig, seed: int = 0) -> EmbeddingModel:
    torch.manual_seed(seed)
    model = EmbeddingModel(cfg, Head(PoolingConfig(mode="lasttoken"), [], normalize=True))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(0.0, 0.3)
    return model.eval()


def random_ids(n: int, vocab: int, seed: int = 0) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (n,), generator=g).tolist()
