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

from harrier.packing import BatchPrefix, PackedBatch, pack
from harrier.prefix_cache import PrefixStore
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
               normalize: bool = False, prefix_lens: Sequence[int] | None = None,
               cache: PrefixStore | None = None) -> np.ndarray:
    """One packed forward over ``ids`` (special tokens included): [B, D] float32 in the given order.

    ``prompt_lens``: each sequence's prompt tokens (mean pooling with ``include_prompt=False`` skips them); all
    zeros is the same as none. ``normalize``: the model ends in Normalize. A bf16/fp16 model normalises in its own
    precision (norms 0.998-1.002), so its rows are normalised again after the cast to float32; float32 rows are
    returned as computed (bit parity with the reference).

    ``prefix_lens`` with a ``cache`` (``forward`` is then an ``EmbeddingModel``): each sequence's first
    ``prefix_lens[i]`` tokens are a shared prompt prefix whose keys/values come from the cache (computed once per
    distinct prefix), and only the rest runs (see ``prefix_cache``). Without them, the uncached path as before.
    """
    if prompt_lens is not None:
        prompt_lens = [min(p, len(x)) for p, x in zip(prompt_lens, ids, strict=True)]
        if not any(prompt_lens):
            prompt_lens = None
    with torch.inference_mode():
        cached = prefix_lens is not None and any(0 < c < len(x) for c, x in zip(prefix_lens, ids, strict=True))
        if cache is not None and cached:
            emb_BD = _prefixed_forward(forward, ids, device, prompt_lens, prefix_lens, cache)
        else:
            emb_BD = forward(pack(ids, device, prompt_lens=prompt_lens))
    out = emb_BD.float().cpu().numpy()
    return l2_normalize(out) if normalize and emb_BD.dtype != torch.float32 else out


def _prefixed_forward(model, ids: Sequence[Sequence[int]], device, prompt_lens: Sequence[int] | None,
                      prefix_lens: Sequence[int], cache: PrefixStore) -> torch.Tensor:
    """``model`` over the sequences' own tokens, continuing their cached prefixes: [B, D] in the given order.

    Sequences are reordered so that equal suffix lengths under the same prefix are neighbours (one batched
    attention each); each distinct prefix's keys/values are concatenated once per layer for the batch.
    """
    cut = [c if 0 < c < len(x) else 0 for c, x in zip(prefix_lens, ids, strict=True)]
    keys: dict[tuple[int, ...], int] = {}
    key_B = []
    for x, c in zip(ids, cut, strict=True):
        key_B.append(keys.setdefault(tuple(x[:c]), len(keys)) if c else -1)
    uses = [0] * len(keys)
    for k in key_B:
        if k >= 0:
            uses[k] += 1
    entries = [cache.get(p, lambda p: model.prefix_kv(p, device), uses=uses[k]) for p, k in keys.items()]
    spans, start = [], 0
    for e in entries:
        spans.append((start, len(e.ids)))
        start += len(e.ids)
    layers = len(entries[0].kv)
    kv = tuple((entries[0].kv[i] if len(entries) == 1 else
                tuple(torch.cat([e.kv[i][j] for e in entries]) for j in (0, 1))) for i in range(layers))
    order = sorted(range(len(ids)), key=lambda i: (-(len(ids[i]) - cut[i]), key_B[i]))
    skip = None if prompt_lens is None else [max(0, prompt_lens[i] - cut[i]) for i in order]
    batch = pack([ids[i][cut[i]:] for i in order], device, prompt_lens=skip if skip and any(skip) else None,
                 offsets=[cut[i] for i in order], keys=[key_B[i] for i in order],
                 prefix=BatchPrefix(kv=kv, key_spans=tuple(spans)))
    emb_BD = model(batch)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return emb_BD[inverse.to(emb_BD.device)]


def show_progress(progress: bool | None, total_tokens: int) -> bool:
    """Progress bars on long jobs in a terminal, unless told otherwise."""
    if progress is not None:
        return progress
    return sys.stderr.isatty() and total_tokens > 50_000


def run_batches(forward: Callable[[PackedBatch], torch.Tensor], ids: Sequence[Sequence[int]], *, dim: int,
                batch_tokens: int, device: torch.device, prompt_lens: Sequence[int] | None = None,
                progress: bool | None = None, normalize: bool = False, prefix_lens: Sequence[int] | None = None,
                cache: PrefixStore | None = None) -> np.ndarray:
    """Embed every sequence with ``forward`` in token-budget batches and return [N, D] float32 in input order
    (``normalize``, ``prefix_lens`` and ``cache``: see ``embed_step``; with a cache, the budget counts the tokens
    that run, the cached prefixes excluded)."""
    out = np.zeros((len(ids), dim), dtype=np.float32)
    if not ids:
        return out
    if cache is None or prefix_lens is None:
        prefix_lens = None
    lengths = [len(x) for x in ids]
    run = lengths if prefix_lens is None else [n - (c if 0 < c < n else 0)
                                               for n, c in zip(lengths, prefix_lens, strict=True)]
    batches = plan_batches(run, batch_tokens)
    log.info("encoding %d texts (%d tokens, %d of them run) in %d batches of at most %d tokens", len(ids),
             sum(lengths), sum(run), len(batches), batch_tokens)
    bar = None
    if show_progress(progress, sum(lengths)):
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ids), desc="encode", unit="text")
    for idx in batches:
        out[idx] = embed_step(forward, [ids[i] for i in idx], device=device, normalize=normalize,
                              prompt_lens=None if prompt_lens is None else [prompt_lens[i] for i in idx],
                              prefix_lens=None if prefix_lens is None else [prefix_lens[i] for i in idx],
                              cache=cache)
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    return out
