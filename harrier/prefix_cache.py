"""The prefix cache: a prompt's keys and values computed once, then reused by every text that starts with it.

Why it is exact: with causal attention a token attends only to the tokens before it, so the keys and values of a
sequence's first P tokens depend on those P token ids alone, not on what follows. A query ``[BOS] Instruct: ...
Query: how much protein ... [EOS]`` therefore shares its first P keys and values, in every layer, with every other
text under the same instruction. We run those P tokens once per distinct prefix (``Decoder.prefix_kv``), keep their
per-layer K/V here, and run each text's own tokens only, at positions P, P+1, ..., attending to the cached K/V plus
their own causal keys. Only the row blocking of the matrix products differs from the uncached path, so vectors
agree to float rounding (fp32 cosine >= 0.99999), not bit for bit; ``prefix_cache=False`` is the uncached path.

What is cached is the token prefix texts really share, not the prompt string: a tokenizer can merge the prompt's
last piece with the text's first (the card template ends in a space that Gemma-3 merges into the next word), so the
shared prefix is the prompt's ids less any trailing tokens that change when text follows
(``TextTokenizer.prompt``), and each text is checked against its own full ids; a text that does not start with
them runs in full (counted as a fallback). The store is keyed by the exact token ids and owned by one loaded model
(its key names source, revision, dtype and mode), so an entry can only serve that model.

Where it cannot apply: bidirectional models (EmbeddingGemma), whose prompt tokens attend to the text; and pooling
that reads the prompt's own hidden states (CLS, or mean pooling with ``include_prompt=True``). Training never uses
it: the student's gradients flow through its prompt.

Shape legend: P = prefix tokens, K = key/value heads, E = head dim.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)
DEFAULT_MAX_MB = 256  # the store's bound: ~7,000 prefix tokens of harrier-270m in fp32, ~250 of harrier-27b
MEAN_FAMILY = ("mean", "max", "mean_sqrt_len_tokens", "weightedmean")


def unsupported_reason(*, causal: bool, pooling_mode: str, include_prompt: bool) -> str | None:
    """Why a model cannot use the prefix cache, or None where it can."""
    if not causal:
        return "bidirectional attention: the prompt's tokens attend to the text, so they differ per text"
    if pooling_mode == "cls":
        return "CLS pooling reads the prompt's first token"
    if pooling_mode in MEAN_FAMILY and include_prompt:
        return f"{pooling_mode} pooling over the prompt's tokens (include_prompt=True)"
    if pooling_mode == "weightedmean":
        return "weighted-mean pooling weights tokens by their position"
    return None


KV = tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per layer: k [P, K, E], v [P, K, E]


@dataclass(frozen=True)
class PrefixEntry:
    ids: tuple[int, ...]
    kv: KV
    nbytes: int


def kv_bytes(kv: KV) -> int:
    return sum(t.numel() * t.element_size() for pair in kv for t in pair)


class PrefixStore:
    """Least-recently-used prefix keys/values of one loaded model, bounded by ``max_mb``; thread-safe (the server's
    worker and request threads share it). ``model_key`` names the model, dtype and mode the entries belong to."""

    def __init__(self, model_key: str, *, max_mb: float = DEFAULT_MAX_MB) -> None:
        if isinstance(max_mb, bool) or not isinstance(max_mb, int | float) or max_mb < 0:
            raise ValueError(f"the prefix store's size must be a number of MB >= 0, got {max_mb!r}")
        self.model_key = model_key
        self.max_bytes = int(max_mb * 2**20)
        self._entries: OrderedDict[tuple[str, tuple[int, ...]], PrefixEntry] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = self.misses = self.evictions = self.fallbacks = 0
        self.tokens_saved = 0  # prefix tokens not recomputed: sum over texts of their cached length
        self.weights_version: int | None = None

    def check_weights(self, version: int) -> None:
        """Drop every entry when the model's weights changed since they were computed (``version``: see
        ``weights_version``), e.g. an ``Embedder`` over a model that is being trained, or new weights loaded."""
        with self._lock:
            if version != self.weights_version:
                if self._entries:
                    log.info("model weights changed: dropping %d cached prefixes", len(self._entries))
                self._entries.clear()
                self.bytes = 0
                self.weights_version = version

    def get(self, ids: tuple[int, ...], compute: Callable[[tuple[int, ...]], KV], *, uses: int = 1) -> PrefixEntry:
        """The entry for ``ids``, computed with ``compute`` on a miss; ``uses``: texts of the batch that reuse it."""
        key = (self.model_key, ids)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += uses
                self.tokens_saved += uses * len(ids)
                return entry
        kv = compute(ids)  # outside the lock: a slow forward must not block other threads' hits
        entry = PrefixEntry(ids, kv, kv_bytes(kv))
        with self._lock:
            self.misses += 1
            self.hits += uses - 1
            self.tokens_saved += (uses - 1) * len(ids)
            if key not in self._entries and entry.nbytes <= self.max_bytes:
                self._entries[key] = entry
                self.bytes += entry.nbytes
                while self.bytes > self.max_bytes:
                    _, old = self._entries.popitem(last=False)
                    self.bytes -= old.nbytes
                    self.evictions += 1
        return entry

    def count_fallbacks(self, n: int) -> None:
        """Texts whose prompt's shared prefix did not match their own ids (they ran in full)."""
        if n:
            with self._lock:
                self.fallbacks += n

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"entries": len(self._entries), "bytes": self.bytes, "max_bytes": self.max_bytes,
                    "hits": self.hits, "misses": self.misses, "evictions": self.evictions,
                    "tokens_saved": self.tokens_saved, "fallbacks": self.fallbacks}


def weights_version(model: torch.nn.Module) -> int:
    """A number that changes whenever any parameter or buffer is modified in place (an optimizer step,
    ``load_state_dict``, ``copy_``): the sum of their version counters. Microseconds for a model's few hundred
    tensors, so it is checked once per ``embed_ids`` call."""
    return sum(t._version for t in model.parameters()) + sum(t._version for t in model.buffers())
