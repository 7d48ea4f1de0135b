"""Packed batches: sequences concatenated into one token stream with explicit boundaries (no padding).

The model, the engine's scheduler and GradCache all speak this type. Each sequence carries its own prompt length,
so texts with different instructions (and raw documents) share one batch.
Shape legend: T = packed tokens, B = sequences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch


@dataclass(frozen=True)
class SeqGroups:
    """Runs of consecutive equal-length sequences in a packed batch: ``(token_start, n_seqs, length)`` each.

    Length-sorted batches have long runs, so attention runs as a few batched SDPA calls with no padding.
    """

    runs: tuple[tuple[int, int, int], ...]

    @staticmethod
    def from_lengths(lengths: Sequence[int], keys: Sequence[int] | None = None) -> SeqGroups:
        """Runs of equal ``lengths``; with ``keys`` (e.g. each sequence's cached prefix), a run also ends where the
        key changes, so every run shares one key."""
        runs: list[tuple[int, int, int]] = []
        start = 0
        for i, n in enumerate(lengths):
            if runs and runs[-1][2] == n and (keys is None or keys[i] == keys[i - 1]):
                s, c, _ = runs[-1]
                runs[-1] = (s, c + 1, n)
            else:
                runs.append((start, 1, n))
            start += n
        return SeqGroups(tuple(runs))


@dataclass(frozen=True)
class LayerPrefix:
    """One layer's cached prefix keys and values for a packed batch: the batch's distinct prefixes concatenated
    (``k_PKE``, ``v_PKE``: [P, K, E], after k-norm and rope), and for each run of its ``SeqGroups`` the span
    ``(start, length)`` of that run's prefix in P (length 0: the run has none)."""

    k_PKE: torch.Tensor
    v_PKE: torch.Tensor
    spans: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class BatchPrefix:
    """Cached prefixes of a packed batch (see ``prefix_cache``): per layer the keys and values of its distinct
    prefixes concatenated, each prefix's span in them, and (set by ``pack``) each run's span."""

    kv: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per layer: k [P, K, E], v [P, K, E]
    key_spans: tuple[tuple[int, int], ...]  # per distinct prefix: (start, length) in P
    spans: tuple[tuple[int, int], ...] = ()  # per run of the batch's groups; (0, 0) for a run without a prefix

    def layer(self, i: int) -> LayerPrefix:
        k, v = self.kv[i]
        return LayerPrefix(k, v, self.spans)


@dataclass(frozen=True)
class PackedBatch:
    """Sequences concatenated into one token stream, with their boundaries."""

    input_ids_T: torch.Tensor  # int64 [T]
    position_ids_T: torch.Tensor  # int64 [T], restarting at 0 for each sequence
    cu_seqlens: torch.Tensor  # int32 [B + 1]
    groups: SeqGroups  # runs of equal-length sequences, for batched attention
    prompt_len_B: torch.Tensor | None = None  # tokens of prompt at the start of each sequence
    prefix: BatchPrefix | None = None  # cached prefix keys/values the sequences continue (positions offset by them)


def pack(ids: Sequence[Sequence[int]], device: torch.device | str = "cpu",
         prompt_lens: Sequence[int] | None = None, *, offsets: Sequence[int] | None = None,
         keys: Sequence[int] | None = None, prefix: BatchPrefix | None = None) -> PackedBatch:
    """Pack token-id lists into one batch (no padding); ``prompt_lens`` gives each sequence's prompt tokens.

    With a cached ``prefix``: ``ids`` are what follows each sequence's prefix, ``offsets`` the prefix lengths (each
    sequence's first position) and ``keys`` which prefix each sequence continues (runs never mix keys).
    """
    if not ids or any(len(x) == 0 for x in ids):
        raise ValueError("pack needs at least one sequence and no empty sequences")
    for name, per_seq in (("prompt lengths", prompt_lens), ("offsets", offsets), ("keys", keys)):
        if per_seq is not None and len(per_seq) != len(ids):
            raise ValueError(f"pack got {len(per_seq)} {name} for {len(ids)} sequences")
    lengths = [len(x) for x in ids]
    flat = np.fromiter((t for x in ids for t in x), dtype=np.int64, count=sum(lengths))
    starts = offsets if offsets is not None else [0] * len(ids)
    positions = np.concatenate([np.arange(s, s + n, dtype=np.int64) for s, n in zip(starts, lengths, strict=True)])
    cu = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    groups = SeqGroups.from_lengths(lengths, keys)
    if prefix is not None:
        if keys is None:
            raise ValueError("pack needs each sequence's key with a prefix")
        seq_at = {int(t): i for i, t in enumerate(cu[:-1])}  # a run's first token -> its first sequence
        prefix = replace(prefix, spans=tuple(prefix.key_spans[keys[seq_at[start]]] if keys[seq_at[start]] >= 0
                                             else (0, 0) for start, _, _ in groups.runs))
    return PackedBatch(
        input_ids_T=torch.from_numpy(flat).to(device),
        position_ids_T=torch.from_numpy(positions).to(device),
        cu_seqlens=torch.from_numpy(cu).to(device),
        groups=groups,
        prompt_len_B=None if prompt_lens is None else torch.tensor(list(prompt_lens), device=device),
        prefix=prefix,
    )
