"""Sentence-Transformers heads over packed hidden states: pooling (last/mean/cls), Dense layers, Normalize.

Pooling uses explicit sequence boundaries (``cu_seqlens``), never a guessed padding side.
Shape legend: T = packed tokens, D = hidden size, B = sequences, O = output size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

PoolingMode = Literal["lasttoken", "mean", "cls"]
SUPPORTED_POOLING = ("lasttoken", "mean", "cls")
# Sentence-Transformers' Pooling config keys (older files have only these booleans, newer ones also pooling_mode)
ST_POOLING_KEYS = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens",
                   "max": "pooling_mode_max_tokens", "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
                   "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}
SUPPORTED_ACTIVATIONS = {
    "torch.nn.modules.linear.Identity": None,
    "torch.nn.Identity": None,
    "torch.nn.modules.activation.Tanh": torch.tanh,
    "torch.nn.Tanh": torch.tanh,
}


def last_token_pool(hidden_TD: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """Hidden state of each sequence's last token (the appended EOS for harrier): [B, D]."""
    return hidden_TD[cu_seqlens[1:].long() - 1]


def cls_pool(hidden_TD: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """Hidden state of each sequence's first token: [B, D]."""
    return hidden_TD[cu_seqlens[:-1].long()]


def mean_pool(hidden_TD: torch.Tensor, cu_seqlens: torch.Tensor, skip_B: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over each sequence's tokens, optionally skipping its first ``skip_B[b]`` tokens (the prompt): [B, D].

    Sums in fp32 like sentence-transformers' masked sum, then casts back.
    """
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    seg_T = torch.repeat_interleave(torch.arange(lengths.numel(), device=hidden_TD.device), lengths)
    weight_T = torch.ones(hidden_TD.shape[0], device=hidden_TD.device, dtype=torch.float32)
    count_B = lengths.float()
    if skip_B is not None:
        pos_T = torch.arange(hidden_TD.shape[0], device=hidden_TD.device) - cu_seqlens[:-1].long()[seg_T]
        weight_T = (pos_T >= skip_B.long()[seg_T]).float()
        count_B = torch.zeros_like(count_B).index_add_(0, seg_T, weight_T)
    sums = torch.zeros(lengths.numel(), hidden_TD.shape[1], device=hidden_TD.device, dtype=torch.float32)
    sums.index_add_(0, seg_T, hidden_TD.float() * weight_T[:, None])
    return (sums / count_B.clamp(min=1e-9)[:, None]).to(hidden_TD.dtype)


@dataclass(frozen=True, kw_only=True)
class PoolingConfig:
    mode: PoolingMode
    include_prompt: bool = True

    def __post_init__(self) -> None:  # every way pooling enters (checkpoint, training config, code) passes here
        if self.mode not in SUPPORTED_POOLING:
            raise ValueError(f"pooling {self.mode!r} is not supported; supported: {', '.join(SUPPORTED_POOLING)}")


def pooling_from_st_config(raw: dict) -> PoolingConfig:
    """Our pooling from a Sentence-Transformers ``Pooling/config.json``; unsupported modes are refused."""
    mode = raw.get("pooling_mode")
    if mode is None:
        modes = [m for m, key in ST_POOLING_KEYS.items() if raw.get(key)]
        mode = modes[0] if len(modes) == 1 else modes
    if isinstance(mode, list):
        mode = mode[0] if len(mode) == 1 else mode
    return PoolingConfig(mode=mode, include_prompt=bool(raw.get("include_prompt", True)))


def st_pooling_config(pooling: PoolingConfig, dim: int) -> dict:
    """The Sentence-Transformers ``Pooling/config.json`` for ``pooling`` over ``dim``-wide hidden states."""
    return {"word_embedding_dimension": dim, **{key: pooling.mode == m for m, key in ST_POOLING_KEYS.items()},
            "include_prompt": pooling.include_prompt}


@dataclass(frozen=True, kw_only=True)
class DenseConfig:
    in_features: int
    out_features: int
    bias: bool
    activation: str = "torch.nn.modules.linear.Identity"


class Dense(nn.Module):
    """Sentence-Transformers ``Dense``: ``activation(W x + b)``; weights saved as ``linear.weight``."""

    def __init__(self, cfg: DenseConfig) -> None:
        super().__init__()
        if cfg.activation not in SUPPORTED_ACTIVATIONS:
            raise ValueError(f"Dense activation {cfg.activation!r} is not supported; supported: "
                             + ", ".join(SUPPORTED_ACTIVATIONS))
        self.cfg = cfg
        self.linear = nn.Linear(cfg.in_features, cfg.out_features, bias=cfg.bias)
        self.act = SUPPORTED_ACTIVATIONS[cfg.activation]

    def forward(self, x_BD: torch.Tensor) -> torch.Tensor:
        y = self.linear(x_BD)
        return self.act(y) if self.act is not None else y


class Head(nn.Module):
    """Pooling, then Dense layers in order, then optional L2 normalisation."""

    def __init__(self, pooling: PoolingConfig, dense: list[DenseConfig], normalize: bool) -> None:
        super().__init__()
        self.pooling = pooling
        self.dense = nn.ModuleList(Dense(c) for c in dense)
        self.normalize = normalize

    def forward(self, hidden_TD: torch.Tensor, cu_seqlens: torch.Tensor, prompt_len_B: torch.Tensor | None = None):
        mode = self.pooling.mode
        if mode == "lasttoken":
            x = last_token_pool(hidden_TD, cu_seqlens)
        elif mode == "cls":
            x = cls_pool(hidden_TD, cu_seqlens)
        else:
            skip = None if self.pooling.include_prompt else prompt_len_B
            x = mean_pool(hidden_TD, cu_seqlens, skip)
        for layer in self.dense:
            x = layer(x)
        return F.normalize(x, p=2, dim=-1) if self.normalize else x
