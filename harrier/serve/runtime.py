"""The server's view of a loaded model: tokenize a request (on any thread), embed one packed batch (on the one
model worker thread). ``Runtime`` is the seam the app and the batcher depend on; ``EmbedderRuntime`` implements it
with the library's ``Embedder``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from harrier.prompts import Prompt
from harrier.tokenize import TruncationError, with_prompt

log = logging.getLogger(__name__)


class InputError(ValueError):
    """A request's input is invalid for this model (HTTP 400 or 422, see ``status``)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Prepared:
    """Token ids of one request, ready for the batcher."""

    ids: list[list[int]]  # special tokens included, within max_length
    prompt_lens: list[int]  # prompt tokens at the start of each sequence (excluded from pooling when asked)
    truncated: list[int]  # indices that were cut to max_length
    prefix_lens: list[int] | None = None  # leading tokens the prefix cache may reuse (TokenizedItems.prefix_lens)

    @property
    def num_tokens(self) -> int:
        return sum(len(x) for x in self.ids)


@dataclass(frozen=True)
class PromptChoice:
    """How a request asks for its query prefix: at most one field set (the library's three ways)."""

    prompt_name: str | None = None
    instruction: str | None = None
    task: str | None = None

    def is_empty(self) -> bool:
        return self.prompt_name is None and self.instruction is None and self.task is None


class Runtime(Protocol):
    """What the server needs from a model. ``embed`` is called from one worker thread only."""

    model_id: str
    dim: int
    max_length: int
    normalizes: bool
    description: dict

    def prefix(self, choice: PromptChoice) -> str: ...

    def tokenize_texts(self, texts: Sequence[str], prefix: str, truncate: bool | None) -> Prepared: ...

    def prepare_ids(self, ids: Sequence[Sequence[int]], truncate: bool | None) -> Prepared: ...

    def token_table(self, texts: Sequence[str], prefix: str) -> list[list[dict]]: ...

    def embed(self, ids: list[list[int]], prompt_lens: list[int], prefix_lens: list[int]) -> np.ndarray: ...


def _policy(truncate: bool | None, default: str) -> str:
    if truncate is None:
        return default
    return "silent" if truncate else "error"


class EmbedderRuntime:
    """``Runtime`` over a ``harrier.Embedder``."""

    def __init__(self, embedder, model_id: str) -> None:
        self.embedder = embedder
        self.model_id = model_id
        self.dim = embedder.dim
        self.max_length = embedder.max_length
        self.normalizes = bool(embedder.model.head.normalize)
        self.vocab_size = int(embedder.model.cfg.vocab_size)
        info = embedder.info()
        self.description = {"model_id": model_id, "source": info.source, "architecture": info.architecture,
                            "dim": info.dim, "max_length": info.max_length, "pooling": info.pooling,
                            "dtype": info.dtype, "device": info.device, "prompts": info.prompts,
                            "prefix_cache": info.prefix_cache, "cpu_malloc": info.cpu_malloc}

    def prefix(self, choice: PromptChoice) -> str:
        """The literal prefix (library resolution: unknown names and conflicts raise ValueError)."""
        try:
            return self.embedder.prefix(prompt_name=choice.prompt_name, instruction=choice.instruction,
                                        task=choice.task)
        except ValueError as err:
            raise InputError(str(err)) from err

    def tokenize_texts(self, texts: Sequence[str], prefix: str, truncate: bool | None) -> Prepared:
        m = self.embedder
        spec = Prompt(prompt=prefix)  # already resolved (a literal "" stays raw, whatever the checkpoint's default)
        try:
            tok = m.tokenize_items([(t, spec) for t in texts], truncation=_policy(truncate, m.truncation))
        except TruncationError as err:
            raise InputError(f"{err}; send truncate=true to cut them") from err
        if m.prefix_cache is not None:
            m.prefix_cache.count_fallbacks(tok.fallbacks)
        return Prepared(ids=tok.ids, prompt_lens=list(tok.prompt_lens), truncated=list(tok.truncated),
                        prefix_lens=tok.prefix_lens)

    def prepare_ids(self, ids: Sequence[Sequence[int]], truncate: bool | None) -> Prepared:
        """Raw token ids (no special tokens) -> the checkpoint's BOS/EOS added; over-long ones cut or refused."""
        out, truncated = [], []
        for n, seq in enumerate(ids):
            bad = [t for t in seq if not 0 <= t < self.vocab_size]
            if bad:
                raise InputError(f"input[{n}] holds token id {bad[0]} outside this model's vocabulary "
                                 f"(0..{self.vocab_size - 1})")
            full = self.embedder.tokenizer.with_specials(list(seq))
            if len(full) > self.max_length:
                if _policy(truncate, self.embedder.truncation) == "error":
                    raise InputError(f"input[{n}] has {len(full)} tokens with special tokens, over this model's "
                                     f"max length {self.max_length}; send truncate=true to cut it")
                if _policy(truncate, self.embedder.truncation) == "warn":
                    log.warning("token input #%d has %d tokens and was cut to max_length %d", n, len(full),
                                self.max_length)
                keep = self.max_length - (len(full) - len(seq))
                full = self.embedder.tokenizer.with_specials(list(seq[:keep]))
                truncated.append(n)
            out.append(full)
        return Prepared(ids=out, prompt_lens=[0] * len(out), truncated=truncated)

    def token_table(self, texts: Sequence[str], prefix: str) -> list[list[dict]]:
        """TEI ``/tokenize``: {id, text, special, start, stop} per token of ``prefix + text``, specials included."""
        tok = self.embedder.tokenizer
        out = []
        for text, enc in zip(texts, tok.tokenizer.encode_batch([with_prompt(prefix, t) for t in texts]), strict=True):
            full = with_prompt(prefix, text)
            out.append([{"id": i, "text": piece if i in tok.special_ids else full[a:b],
                         "special": i in tok.special_ids, "start": None if i in tok.special_ids else a,
                         "stop": None if i in tok.special_ids else b}
                        for i, piece, (a, b) in zip(enc.ids, enc.tokens, enc.offsets, strict=True)])
        return out

    def embed(self, ids: list[list[int]], prompt_lens: list[int], prefix_lens: list[int]) -> np.ndarray:
        """One batch of the batcher, through the library's ``embed_ids`` (its checks, the prefix cache); the batcher
        already keeps a batch within the token budget, so this is one forward."""
        return self.embedder.embed_ids(ids, prompt_lens, prefix_lens=prefix_lens, batch_tokens=1 << 30,
                                       progress=False)
