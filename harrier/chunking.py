"""Texts longer than a chunk, embedded the harrier way: split by tokens with overlap, each chunk a text of its own.

Each chunk is the character span of a window of the text's tokens, encoded exactly as ``encode`` encodes a text:
the query prompt in front (queries only; documents stay raw), the checkpoint's own BOS/EOS around it, last-token
pooling on that EOS. A last-token model was trained to summarise what precedes an EOS, so every chunk vector is
in distribution. Then either one vector per chunk with its character offsets (for RAG), or one per text: the mean
of the L2-normalised chunk vectors, renormalised (``mean``), or weighted by each chunk's text tokens (``weighted``).

``chunk`` counts every token of a chunk's sequence: prompt, special tokens and text. A text that fits in one
chunk is one chunk spanning the whole text, so its vector equals ``encode``'s.

Shape legend: N = texts, C = chunks, D = embedding size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

import numpy as np

from harrier.prompts import PromptSpec
from harrier.tokenize import TextTokenizer, TokenizedItems, check_texts
from harrier.vectors import l2_normalize

log = logging.getLogger(__name__)
Aggregate = Literal["mean", "weighted", "none"]
AGGREGATES = ("mean", "weighted", "none")


class ChunkEncoder(Protocol):
    """What chunking needs from an :class:`~harrier.Embedder`."""

    tokenizer: TextTokenizer

    @property
    def dim(self) -> int: ...

    def prefix_for(self, prompt: PromptSpec) -> str: ...

    def tokenize_items(self, items: Sequence[tuple[str, PromptSpec]], *, truncation=None) -> TokenizedItems: ...

    def embed_tokenized(self, tok: TokenizedItems, *, batch_tokens: int | None = None,
                        progress: bool | None = None) -> np.ndarray: ...


@dataclass(frozen=True, kw_only=True)
class ChunkConfig:
    chunk: int = 512  # tokens per chunk: prompt + special tokens + text
    overlap: int = 64  # text tokens shared by neighbouring chunks
    aggregate: Aggregate = "mean"


@dataclass(frozen=True)
class ChunkedEmbeddings:
    """``embeddings``: [N, D] for ``mean``/``weighted``, [C, D] for ``none``. The chunk arrays ([C] each) are filled
    for every aggregate: which text each chunk came from, its index within that text, its character span
    ``text[char_start:char_end]`` and its text tokens."""

    embeddings: np.ndarray
    source: np.ndarray
    chunk_index: np.ndarray
    char_start: np.ndarray
    char_end: np.ndarray
    tokens: np.ndarray
    aggregate: Aggregate


@dataclass(frozen=True)
class Budget:
    """Text tokens per chunk after the prompt and the special tokens, and the step between chunk starts."""

    body: int
    step: int
    prompt_len: int
    specials: int


def budget(cfg: ChunkConfig, *, prompt_len: int, specials: int, max_length: int) -> Budget:
    """Check the chunk settings against the prompt and the model's length; a ValueError names the limits."""
    if cfg.aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {cfg.aggregate!r}")
    if cfg.chunk > max_length:
        raise ValueError(f"chunk {cfg.chunk} exceeds the model's max length {max_length} (cap it with max_length)")
    body = cfg.chunk - prompt_len - specials
    if body < 1:
        raise ValueError(f"chunk {cfg.chunk} leaves no room for text: the prompt takes {prompt_len} tokens and the "
                         f"special tokens {specials}; use a chunk of at least {prompt_len + specials + 1}")
    if cfg.overlap < 0 or cfg.overlap >= body:
        raise ValueError(f"overlap {cfg.overlap} must be at least 0 and below the {body} text tokens per chunk "
                         f"(chunk {cfg.chunk} - prompt {prompt_len} - special tokens {specials})")
    return Budget(body=body, step=body - cfg.overlap, prompt_len=prompt_len, specials=specials)


def token_offsets(tokenizer: TextTokenizer, text: str) -> list[tuple[int, int]]:
    """Character span of every token of ``text`` (no special tokens, no truncation).

    The tokenizer truncates at its max length with stride 0; the cut-off tokens come back in ``overflowing``, in
    order and with offsets into the full text, so joining them gives the untruncated tokenization.
    """
    trunc = tokenizer.tokenizer.truncation
    assert trunc is None or (trunc["stride"] == 0 and trunc["direction"] == "right"), trunc
    enc = tokenizer.tokenizer.encode(text, add_special_tokens=False)
    offsets = list(enc.offsets)
    for part in enc.overflowing:
        assert not part.overflowing
        offsets += part.offsets
    return offsets


def windows(offsets: list[tuple[int, int]], text_len: int, b: Budget) -> list[tuple[int, int]]:
    """Character spans of windows of ``b.body`` tokens every ``b.step`` tokens. The first span starts at 0 and the
    last ends at ``text_len``, so a text of at most ``b.body`` tokens is one span over all of it."""
    n = len(offsets)
    if n <= b.body:
        return [(0, text_len)]
    spans = []
    start = 0
    while True:
        end = min(n, start + b.body)
        spans.append((0 if start == 0 else offsets[start][0], text_len if end == n else offsets[end - 1][1]))
        if end == n:
            return spans
        start += b.step


def plan_chunks(encoder: ChunkEncoder, texts: Sequence[str], prompt: PromptSpec,
                cfg: ChunkConfig) -> tuple[list[tuple[int, int, int]], TokenizedItems, Budget]:
    """Chunks of every text as ``(source, char_start, char_end)`` with their tokenized sequences (prompt and special
    tokens included), in text order."""
    tok = encoder.tokenizer
    prefix = encoder.prefix_for(prompt)
    b = budget(cfg, prompt_len=tok.prompt(prefix).text_tokens, specials=len(tok.with_specials([])),
               max_length=tok.max_length)
    spans: list[tuple[int, int, int]] = []
    for i, text in enumerate(texts):
        spans += [(i, s, e) for s, e in windows(token_offsets(tok, text), len(text), b)]
    items = encoder.tokenize_items([(texts[i][s:e], prompt) for i, s, e in spans], truncation="silent")
    over = {spans[k][0] for k, ids in enumerate(items.ids) if len(ids) > cfg.chunk} | {
        spans[k][0] for k in items.truncated}
    if not over:
        return spans, replace(items, truncated=[]), b
    # a window's text can tokenize to more tokens than the window held when tokens merge differently at a cut
    # (rare): plan those texts again one chunk at a time, shortening each chunk until it fits
    out_spans, out_ids, out_lens, out_prefix = [], [], [], []
    for k, span in enumerate(spans):
        i = span[0]
        if i not in over:
            out_spans.append(span)
            out_ids.append(items.ids[k])
            out_lens.append(items.prompt_lens[k])
            out_prefix.append(items.prefix_lens[k])
        elif k == 0 or spans[k - 1][0] != i:
            for s, e, one in _fitted_windows(encoder, texts[i], prompt, b, cfg.chunk):
                out_spans.append((i, s, e))
                out_ids.append(one.ids[0])
                out_lens.append(one.prompt_lens[0])
                out_prefix.append(one.prefix_lens[0])
    return out_spans, TokenizedItems(ids=out_ids, prompt_lens=out_lens, truncated=[], prefix_lens=out_prefix,
                                     fallbacks=items.fallbacks), b


def _fitted_windows(encoder: ChunkEncoder, text: str, prompt: PromptSpec, b: Budget, chunk: int):
    """``(char_start, char_end, tokenized)`` of windows planned one at a time, each shortened until it fits
    ``chunk``."""
    offsets = token_offsets(encoder.tokenizer, text)
    n, start = len(offsets), 0
    while True:
        end = min(n, start + b.body)
        while True:
            s = 0 if start == 0 else offsets[start][0]
            e = len(text) if end == n else offsets[end - 1][1]
            one = encoder.tokenize_items([(text[s:e], prompt)], truncation="silent")
            excess = len(one.ids[0]) - chunk
            if excess <= 0 and not one.truncated:
                break
            end -= max(1, excess)
            if end <= start:
                raise ValueError(f"chunk {chunk} is too small for the text at characters {s}:{e}; use a larger chunk")
        yield s, e, one
        if end == n:
            return
        start = max(start + 1, end - (b.body - b.step))


def aggregate(vectors_CD: np.ndarray, source_C: np.ndarray, n: int, weights_C: np.ndarray | None) -> np.ndarray:
    """One vector per text: the (weighted) mean of its L2-normalised chunk vectors, L2-normalised: [N, D]."""
    unit = l2_normalize(vectors_CD).astype(np.float64)
    w = np.ones(len(unit), dtype=np.float64) if weights_C is None else weights_C.astype(np.float64)
    sums = np.zeros((n, unit.shape[1]), dtype=np.float64)
    np.add.at(sums, source_C, unit * w[:, None])
    return l2_normalize(sums)


def encode_chunked(encoder: ChunkEncoder, texts: Sequence[str], prompt: PromptSpec, cfg: ChunkConfig, *,
                   batch_tokens: int | None = None, progress: bool | None = None) -> ChunkedEmbeddings:
    """Chunk, embed every chunk in packed batches, then aggregate per ``cfg.aggregate``."""
    texts = check_texts(texts, "encode_chunked")
    spans, items, b = plan_chunks(encoder, texts, prompt, cfg)
    source = np.array([i for i, _, _ in spans], dtype=np.int64)
    counts = np.bincount(source, minlength=len(texts))
    index = np.concatenate([np.arange(c) for c in counts]) if len(spans) else np.zeros(0, np.int64)
    tokens = np.array([max(0, len(x) - b.prompt_len - b.specials) for x in items.ids], dtype=np.int64)
    log.info("%d texts -> %d chunks (at most %d tokens, overlap %d)", len(texts), len(spans), cfg.chunk, cfg.overlap)
    vectors = (encoder.embed_tokenized(items, batch_tokens=batch_tokens, progress=progress)
               if spans else np.zeros((0, encoder.dim), dtype=np.float32))
    if cfg.aggregate != "none":
        vectors = aggregate(vectors, source, len(texts), np.maximum(tokens, 1) if cfg.aggregate == "weighted" else None)
    return ChunkedEmbeddings(
        embeddings=vectors, source=source, chunk_index=index.astype(np.int64),
        char_start=np.array([s for _, s, _ in spans], dtype=np.int64),
        char_end=np.array([e for _, _, e in spans], dtype=np.int64), tokens=tokens, aggregate=cfg.aggregate,
    )
