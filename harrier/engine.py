"""The encoding engine: a scheduler (token-budget batches of length-sorted texts) and one step (embed one packed
batch). The step is what the server's batcher and the corpus workers call; nothing here knows about files, HTTP or
prompts beyond each sequence's prompt length.

Shape legend: B = sequences, D = embedding size.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

import numpy as np
import torch

from harrier.packing import PackedBatch, pack
from harrier.vectors import l2_normalize

log = logging.getLogger(__name__)
DEFAULT_BATCH_TOKENS = {"cpu": 4_096, "cuda": 16_384}  # CPU: activations stay in cache (measured fastest)


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


def embed_step(forward: Callable[[PackedBatch], torch.Tensor], ids: Sequence[Sequence[int]], *,
               device: torch.device | str, prompt_lens: Sequence[int] | None = None,
               normalize: bool = False) -> np.ndarray:
    """One packed forward over ``ids`` (special tokens included): [B, D] float32 in the given order.

    ``prompt_lens``: each sequence's prompt tokens (mean pooling with ``include_prompt=False`` skips them); all
    zeros is the same as none. ``normalize``: the model ends in Normalize. A bf16/fp16 model normalises in its own
    precision (norms 0.998-1.002), so its rows are normalised again after the cast to float32; float32 rows are
    returned as computed (bit parity with the reference).
    """
    if prompt_lens is not None:
        prompt_lens = [min(p, len(x)) for p, x in zip(prompt_lens, ids, strict=True)]
        if not any(prompt_lens):
            prompt_lens = None
    with torch.inference_mode():
        emb_BD = forward(pack(ids, device, prompt_lens=prompt_lens))
    out = emb_BD.float().cpu().numpy()
    return l2_normalize(out) if normalize and emb_BD.dtype != torch.float32 else out


def show_progress(progress: bool | None, total_tokens: int) -> bool:
    """Progress bars on long jobs in a terminal, unless told otherwise."""
    if progress is not None:
        return progress
    return sys.stderr.isatty() and total_tokens > 50_000


def run_batches(forward: Callable[[PackedBatch], torch.Tensor], ids: Sequence[Sequence[int]], *, dim: int,
                batch_tokens: int, device: torch.device, prompt_lens: Sequence[int] | None = None,
                progress: bool | None = None, normalize: bool = False) -> np.ndarray:
    """Embed every sequence with ``forward`` in token-budget batches and return [N, D] float32 in input order
    (``normalize``: see ``embed_step``)."""
    out = np.zeros((len(ids), dim), dtype=np.float32)
    if not ids:
        return out
    lengths = [len(x) for x in ids]
    batches = plan_batches(lengths, batch_tokens)
    log.info("encoding %d texts (%d tokens) in %d batches of at most %d tokens", len(ids), sum(lengths),
             len(batches), batch_tokens)
    bar = None
    if show_progress(progress, sum(lengths)):
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ids), desc="encode", unit="text")
    for idx in batches:
        out[idx] = embed_step(forward, [ids[i] for i in idx], device=device, normalize=normalize,
                              prompt_lens=None if prompt_lens is None else [prompt_lens[i] for i in idx])
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    return out
