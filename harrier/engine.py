"""Encoding engine: token-budget batches of length-sorted texts, packed without padding, order restored.

Shape legend: T = packed tokens, B = sequences, D = embedding size.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from harrier.models.layers import SeqGroups

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackedBatch:
    """Sequences concatenated into one token stream, with their boundaries."""

    input_ids_T: torch.Tensor  # int64 [T]
    position_ids_T: torch.Tensor  # int64 [T], restarting at 0 for each sequence
    cu_seqlens: torch.Tensor  # int32 [B + 1]
    groups: SeqGroups  # runs of equal-length sequences, for batched attention
    prompt_len_B: torch.Tensor | None = None  # tokens of prompt at the start of each sequence

    @property
    def num_seqs(self) -> int:
        return self.cu_seqlens.numel() - 1

    @property
    def num_tokens(self) -> int:
        return self.input_ids_T.numel()


def pack(ids: Sequence[Sequence[int]], device: torch.device | str = "cpu",
         prompt_lens: Sequence[int] | None = None) -> PackedBatch:
    """Pack token-id lists into one batch (no padding)."""
    if not ids or any(len(x) == 0 for x in ids):
        raise ValueError("pack needs at least one sequence and no empty sequences")
    lengths = [len(x) for x in ids]
    flat = np.fromiter((t for x in ids for t in x), dtype=np.int64, count=sum(lengths))
    positions = np.concatenate([np.arange(n, dtype=np.int64) for n in lengths])
    cu = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return PackedBatch(
        input_ids_T=torch.from_numpy(flat).to(device),
        position_ids_T=torch.from_numpy(positions).to(device),
        cu_seqlens=torch.from_numpy(cu).to(device),
        groups=SeqGroups.from_lengths(lengths),
        prompt_len_B=None if prompt_lens is None else torch.tensor(list(prompt_lens), device=device),
    )


def plan_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped into batches of at most ``batch_tokens`` tokens, longest texts first.

    Sorting by length makes neighbours equal-length (cheap batched attention); a text longer than the budget gets a
    batch of its own.
    """
    if batch_tokens < 1:
        raise ValueError(f"batch_tokens must be positive, got {batch_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i in order:
        if current and used + lengths[i] > batch_tokens:
            batches.append(current)
            current, used = [], 0
        current.append(i)
        used += lengths[i]
    if current:
        batches.append(current)
    return batches


def show_progress(progress: bool | None, total_tokens: int) -> bool:
    """Progress bars on long jobs in a terminal, unless told otherwise."""
    if progress is not None:
        return progress
    return sys.stderr.isatty() and total_tokens > 50_000


def run_batches(
    forward: Callable[[PackedBatch], torch.Tensor],
    ids: list[list[int]],
    *,
    dim: int,
    batch_tokens: int,
    device: torch.device,
    prompt_len: int = 0,
    progress: bool | None = None,
) -> np.ndarray:
    """Embed every sequence with ``forward`` and return [N, D] float32 in the input order."""
    out = np.zeros((len(ids), dim), dtype=np.float32)
    if not ids:
        return out
    lengths = [len(x) for x in ids]
    batches = plan_batches(lengths, batch_tokens)
    bar = None
    if show_progress(progress, sum(lengths)):
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ids), desc="encode", unit="text")
    with torch.inference_mode():
        for idx in batches:
            batch = pack([ids[i] for i in idx], device,
                         prompt_lens=[min(prompt_len, lengths[i]) for i in idx] if prompt_len else None)
            emb = forward(batch)
            out[idx] = emb.float().cpu().numpy()
            if bar is not None:
                bar.update(len(idx))
    if bar is not None:
        bar.close()
    return out
