"""Embedding a step's texts in token-budget mini-batches, with or without GradCache.

GradCache (Gao et al. 2021) makes the contrastive batch independent of memory: (1) embed every mini-batch without
a graph, (2) compute the loss on the cached embeddings and back-propagate to them only, (3) re-run each
mini-batch with a graph and push the cached embedding gradient through it. The parameter gradients equal the
full-batch gradients (the loss sees the same embeddings; the chain rule is split at the embeddings). RNG state
is replayed per mini-batch so stochastic layers see the same draws in both passes.

Mini-batches hold at most ``budget_tokens`` tokens (length-sorted, as at inference), so a batch of long documents
costs the same memory as one of short queries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from harrier.engine import plan_batches
from harrier.packing import pack

SyncContext = Callable[[bool], contextlib.AbstractContextManager]
LossFn = Callable[[list[Tensor]], tuple[Tensor, dict[str, float]]]


def _no_sync(_last: bool) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


@dataclass(frozen=True)
class _Chunk:
    group: int
    rows: list[int]
    rng_cpu: Tensor
    rng_cuda: Tensor | None


def _forward(model: nn.Module, ids: list[list[int]], device: torch.device, autocast: torch.dtype | None) -> Tensor:
    batch = pack(ids, device)
    with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
        return model(batch)


def _plan(groups: Sequence[list[list[int]]], budget: int) -> list[tuple[int, list[int]]]:
    return [(g, rows) for g, ids in enumerate(groups) for rows in plan_batches([len(x) for x in ids], budget)]


def _assemble(parts: list[Tensor], rows: list[list[int]], n: int) -> Tensor:
    """Stack mini-batch outputs back into input order."""
    order = torch.tensor([r for rs in rows for r in rs], device=parts[0].device)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(n, device=order.device)
    return torch.cat(parts)[inverse]


def embed_groups(model: nn.Module, groups: Sequence[list[list[int]]], *, budget_tokens: int,
                 device: torch.device, autocast: torch.dtype | None = None) -> list[Tensor]:
    """Embed each group of token-id lists (with autograd graph), in token-budget mini-batches, input order kept.

    Empty groups give ``[0, D]`` tensors."""
    outputs: dict[int, tuple[list[Tensor], list[list[int]]]] = {g: ([], []) for g in range(len(groups))}
    for g, rows in _plan(groups, budget_tokens):
        outputs[g][0].append(_forward(model, [groups[g][r] for r in rows], device, autocast))
        outputs[g][1].append(rows)
    dim = next((p[0].shape[-1] for p, _ in outputs.values() if p), None)
    result = []
    for g, ids in enumerate(groups):
        parts, rows = outputs[g]
        result.append(_assemble(parts, rows, len(ids)) if parts else torch.zeros(0, dim or 1, device=device))
    return result


def direct_step(model: nn.Module, groups: Sequence[list[list[int]]], loss_fn: LossFn, *, budget_tokens: int,
                device: torch.device, autocast: torch.dtype | None = None) -> tuple[float, dict[str, float]]:
    """Plain step: embed everything with a graph, compute the loss, backward."""
    embs = embed_groups(model, groups, budget_tokens=budget_tokens, device=device, autocast=autocast)
    loss, parts = loss_fn([e.float() for e in embs])
    loss.backward()
    return float(loss.detach()), parts


def cached_step(model: nn.Module, groups: Sequence[list[list[int]]], loss_fn: LossFn, *, budget_tokens: int,
                device: torch.device, autocast: torch.dtype | None = None,
                sync: SyncContext = _no_sync) -> tuple[float, dict[str, float]]:
    """GradCache step; parameter gradients equal :func:`direct_step`'s.

    ``sync(last)`` is entered around each re-forward/backward: DDP's ``no_sync`` / FSDP's gradient-sync switch
    for all but the last mini-batch, so gradients are reduced once per step.
    """
    plan = _plan(groups, budget_tokens)
    cache: dict[int, tuple[list[Tensor], list[list[int]]]] = {g: ([], []) for g in range(len(groups))}
    chunks: list[_Chunk] = []
    use_cuda = device.type == "cuda"
    with torch.no_grad():
        for g, rows in plan:
            cuda_rng = torch.cuda.get_rng_state(device) if use_cuda else None
            chunks.append(_Chunk(g, rows, torch.get_rng_state(), cuda_rng))
            cache[g][0].append(_forward(model, [groups[g][r] for r in rows], device, autocast).float())
            cache[g][1].append(rows)
    dim = next((p[0].shape[-1] for p, _ in cache.values() if p), 1)
    leaves = [(_assemble(p, r, len(groups[g])) if p else torch.zeros(0, dim, device=device)).requires_grad_(True)
              for g, (p, r) in cache.items()]
    loss, parts = loss_fn(leaves)
    loss.backward()
    grads = [leaf.grad if leaf.grad is not None else torch.zeros_like(leaf) for leaf in leaves]
    devices = [device] if use_cuda else []
    for i, chunk in enumerate(chunks):
        with sync(i == len(chunks) - 1), torch.random.fork_rng(devices=devices):
            torch.set_rng_state(chunk.rng_cpu)
            if chunk.rng_cuda is not None:
                torch.cuda.set_rng_state(chunk.rng_cuda, device)
            emb = _forward(model, [groups[chunk.group][r] for r in chunk.rows], device, autocast)
            grad = grads[chunk.group][chunk.rows].to(emb.dtype)
            torch.sum(emb * grad).backward()
    return float(loss.detach()), parts
