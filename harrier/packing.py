"""Packed batches: sequences concatenated into one token stream with explicit boundaries (no padding).

The model, the engine's scheduler and GradCache all speak this type. Each sequence carries its own prompt length,
so texts with different instructions (and raw documents) share one batch.
Shape legend: T = packed tokens, B = sequences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class SeqGroups:
    """Runs of consecutive equal-length sequences in a packed batch: ``(token_start, n_seqs, length)`` each.

    Length-sorted batches have long runs, so attention runs as a few batched SDPA calls with no padding.
    """

    runs: tuple[tuple[int, int, int], ...]

    @staticmethod
    def from_lengths(lengths: Sequence[int]) -> SeqGroups:
        runs: list[tuple[int, int, int]] = []
        start = 0
        for n in lengths:
            if runs and runs[-1][2] == n:
                s, c, _ = runs[-1]
                runs[-1] = (s, c + 1, n)
            else:
                runs.append((start, 1, n))
            start += n
        return SeqGroups(tuple(runs))


@dataclass(frozen=True)
class PackedBatch:
    """Sequences concatenated into one token stream, with their boundaries."""

    input_ids_T: torch.Tensor  # int64 [T]
    position_ids_T: torch.Tensor  # int64 [T], restarting at 0 for each sequence
    cu_seqlens: torch.Tensor  # int32 [B + 1]
    groups: SeqGroups  # runs of equal-length sequences, for batched attention
    prompt_len_B: torch.Tensor | None = None  # tokens of prompt at the start of each sequence


def pack(ids: Sequence[Sequence[int]], device: torch.device | str = "cpu",
         prompt_lens: Sequence[int] | None = None) -> PackedBatch:
    """Pack token-id lists into one batch (no padding); ``prompt_lens`` gives each sequence's prompt tokens."""
    if not ids or any(len(x) == 0 for x in ids):
        raise ValueError("pack needs at least one sequence and no empty sequences")
    if prompt_lens is not None and len(prompt_lens) != len(ids):
        raise ValueError(f"pack got {len(prompt_lens)} prompt lengths for {len(ids)} sequences")
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
