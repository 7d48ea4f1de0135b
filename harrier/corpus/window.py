"""One window of a corpus: texts tokenized together, sorted by length into token-budget batches, embedded.

Both engines run exactly this function on exactly the same windows, which is why the local and the Ray engine
give the same vectors. Shape legend: N = texts in the window, D = embedding size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from harrier.prompts import Prompt, PromptSpec
from harrier.tokenize import TruncationError


@dataclass(frozen=True)
class Window:
    """Consecutive records of one shard (input order)."""

    ids: list[str]
    texts: list[str]
    prompts: list[PromptSpec]


@dataclass(frozen=True)
class WindowResult:
    emb_ND: np.ndarray  # float32, window order
    n_tokens: list[int]  # tokens embedded per text (special tokens and prompt included, after truncation)
    truncated: list[bool]


class WindowEngine(Protocol):
    """Embeds a shard's windows and yields their results in window order."""

    def encode(self, windows: Iterable[Window]) -> Iterator[WindowResult]: ...

    def close(self) -> None: ...


def encode_window(model, window: Window, batch_tokens: int) -> WindowResult:
    """Embed one window with ``model`` (an ``Embedder``): length-sorted token-budget batches, input order out.

    Truncation is recorded per row (the ``truncated`` column) instead of warning once per window; a model set to
    ``truncation="error"`` still raises.
    """
    tok = model.tokenize_items(list(zip(window.texts, window.prompts, strict=True)), truncation="silent")
    if tok.truncated and model.truncation == "error":
        raise TruncationError(f"record {window.ids[tok.truncated[0]]!r} is longer than max_length {model.max_length} "
                              f"tokens (truncation='error'; {len(tok.truncated)} such in its window)")
    lengths = [len(x) for x in tok.ids]
    emb_ND = model.embed_tokenized(tok, batch_tokens=batch_tokens, progress=False)
    cut = set(tok.truncated)
    return WindowResult(emb_ND, lengths, [i in cut for i in range(len(lengths))])


class LocalEngine:
    """Windows embedded one after another in this process."""

    def __init__(self, model, batch_tokens: int) -> None:
        self.model = model
        self.batch_tokens = batch_tokens

    def encode(self, windows: Iterable[Window]) -> Iterator[WindowResult]:
        for window in windows:
            yield encode_window(self.model, window, self.batch_tokens)

    def close(self) -> None:
        pass


def prompt_to_json(p: PromptSpec) -> dict | str | None:
    """An item's prompt in a JSON-safe form (for shipping windows to Ray actors)."""
    if p is None or isinstance(p, str):
        return p
    return {k: v for k, v in vars(p).items() if v is not None}


def prompt_from_json(p: dict | str | None) -> PromptSpec:
    return Prompt(**p) if isinstance(p, dict) else p


def windows_of(records: Iterable, max_rows: int, max_chars: int, job_prompt: PromptSpec) -> Iterator[Window]:
    """Group consecutive records into windows of at most ``max_rows`` records and (unless one record alone is
    longer) ``max_chars`` characters; a record's own prompt name overrides the job's prompt."""
    ids: list[str] = []
    texts: list[str] = []
    prompts: list[PromptSpec] = []
    chars = 0
    for r in records:
        if ids and chars + len(r.text) > max_chars:
            yield Window(ids, texts, prompts)
            ids, texts, prompts, chars = [], [], [], 0
        ids.append(r.id)
        texts.append(r.text)
        prompts.append(r.prompt_name if r.prompt_name is not None else job_prompt)
        chars += len(r.text)
        if len(ids) == max_rows:
            yield Window(ids, texts, prompts)
            ids, texts, prompts, chars = [], [], [], 0
    if ids:
        yield Window(ids, texts, prompts)
