"""Checkpoint merging (Qwen3-Embedding's last stage): weighted average or spherical interpolation (slerp).

Slerp is applied tensor by tensor: ``slerp(a, b, t) = sin((1-t)θ)/sin θ · a + sin(tθ)/sin θ · b`` with θ the angle
between the flattened tensors; nearly parallel tensors fall back to linear interpolation. More than two models
are merged left to right with running weights, so equal weights treat every model alike.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation between two same-shape tensors (computed in float64)."""
    a64, b64 = a.double().flatten(), b.double().flatten()
    na, nb = a64.norm(), b64.norm()
    if na < eps or nb < eps:
        return ((1 - t) * a64 + t * b64).view_as(a).to(a.dtype)
    cos = torch.clamp((a64 / na) @ (b64 / nb), -1.0, 1.0)
    theta = torch.arccos(cos)
    if theta.abs() < 1e-4:
        out = (1 - t) * a64 + t * b64
    else:
        s = torch.sin(theta)
        out = torch.sin((1 - t) * theta) / s * a64 + torch.sin(t * theta) / s * b64
    return out.view_as(a).to(a.dtype)


def merge_states(states: Sequence[dict[str, torch.Tensor]], *, method: str = "slerp",
                 weights: Sequence[float] | None = None) -> dict[str, torch.Tensor]:
    """Merge state dicts with identical keys and shapes."""
    if len(states) < 2:
        raise ValueError("merging needs at least two models")
    weights = list(weights) if weights is not None else [1.0] * len(states)
    if len(weights) != len(states) or any(w <= 0 for w in weights):
        raise ValueError("give one positive weight per model")
    keys = set(states[0])
    for i, s in enumerate(states[1:], 1):
        if set(s) != keys:
            raise ValueError(f"model {i} has different parameters than model 0 (same architecture needed)")
        bad = [k for k in keys if s[k].shape != states[0][k].shape]
        if bad:
            raise ValueError(f"model {i}: shape mismatch for {bad[0]}")
    if method not in ("slerp", "average"):
        raise ValueError(f"merge method must be slerp or average, got {method!r}")
    total = sum(weights)
    out = {}
    for k in states[0]:
        if not states[0][k].is_floating_point():
            out[k] = states[0][k]
            continue
        if method == "average":
            mean = sum(w * s[k].double() for w, s in zip(weights, states, strict=True)) / total
            out[k] = mean.to(states[0][k].dtype)
            continue
        acc, acc_w = states[0][k], weights[0]
        for w, s in zip(weights[1:], states[1:], strict=True):
            acc = slerp(acc, s[k], w / (acc_w + w))
            acc_w += w
        out[k] = acc
    return out


def merge_models(paths: Sequence[str | Path], output: str | Path, *, method: str = "slerp",
                 weights: Sequence[float] | None = None) -> Path:
    """Merge harrier/Sentence-Transformers checkpoints of one architecture; the first gives tokenizer and head."""
    from harrier import Embedder

    embedders = [Embedder.from_pretrained(p, device="cpu", dtype="float32") for p in paths]
    merged = merge_states([e.model.state_dict() for e in embedders], method=method, weights=weights)
    base = embedders[0]
    base.model.load_state_dict(merged)
    out = Path(output)
    base.save_pretrained(out)
    log.info("merged %d models (%s) into %s", len(paths), method, out)
    return out
