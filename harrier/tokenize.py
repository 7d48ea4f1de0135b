"""Tokenization with the checkpoint's own ``tokenizer.json``: its post-processor adds BOS/EOS exactly as the
reference does, so last-token pooling lands on the same token. Truncation keeps the special tokens and is reported.
"""

from __future__ import annotations

import json
import logging
import numbers
from dataclasses import dataclass
from typing import Literal

from tokenizers import Tokenizer

log = logging.getLogger(__name__)
TruncationPolicy = Literal["warn", "error", "silent"]
TRUNCATION_POLICIES: tuple[TruncationPolicy, ...] = ("warn", "error", "silent")


class TruncationError(ValueError):
    """A text is longer than the model's max length and truncation was set to 'error'."""


@dataclass(frozen=True)
class Tokenized:
    ids: list[list[int]]
    truncated: list[int]  # indices of texts that were cut to max_length


@dataclass(frozen=True)
class TokenizedItems:
    """Texts with their own prompts, tokenized: what one packed batch needs per sequence."""

    ids: list[list[int]]  # special tokens included, at most max_length each
    prompt_lens: list[int]  # tokens of each text's prompt (0 for none)
    truncated: list[int]  # indices of texts that were cut to max_length


def check_texts(texts: object, caller: str) -> list[str]:
    """``texts`` as a list of str, or a ValueError naming the first item that is not one (a bare str is refused:
    it would be read as a list of characters; None and other non-iterables are refused by name)."""
    if isinstance(texts, str):
        raise ValueError(f"{caller} takes a list of texts; wrap a single text in a list")
    if texts is None or isinstance(texts, bytes | dict) or not hasattr(texts, "__iter__"):
        raise ValueError(f"{caller} takes a list of texts, got {'None' if texts is None else type(texts).__name__}")
    texts = list(texts)  # type: ignore[call-overload]
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ValueError(f"text #{bad[0]} is {type(texts[bad[0]]).__name__}, not str")
    return texts


def check_truncation(truncation: object) -> TruncationPolicy:
    """A truncation policy, or a ValueError listing the valid ones."""
    if truncation not in TRUNCATION_POLICIES:
        raise ValueError(f"truncation {truncation!r} is not supported; supported: {', '.join(TRUNCATION_POLICIES)}")
    return truncation  # type: ignore[return-value]


def check_max_length(max_length: object, positions: int | None = None, *, allow_over_positions: bool = False) -> int:
    """``max_length`` as an int of at least 2; above the model's ``positions`` only with ``allow_over_positions``
    (then one warning: a rotary model runs there, but was never trained on such positions)."""
    if isinstance(max_length, bool) or not isinstance(max_length, numbers.Integral) or max_length < 2:
        raise ValueError(f"max_length must be an int of at least 2 (tokens per text, special tokens included), "
                         f"got {max_length!r}")
    if positions is not None and max_length > positions:
        if not allow_over_positions:
            raise ValueError(f"max_length {max_length} exceeds the model's {positions} positions; pass "
                             "allow_over_positions=True (CLI: --allow-over-positions) to run past them anyway")
        log.warning("max_length %d exceeds the model's %d positions (allowed): texts longer than %d tokens run on "
                    "positions the model was not trained on", max_length, positions, positions)
    return int(max_length)


def _unicode_error(texts: list[str]) -> ValueError | None:
    """A ValueError naming the first text that is not valid Unicode (a lone surrogate), if any."""
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            return ValueError(f"text #{i} is not valid Unicode ({err.reason} at character {err.start})")
    return None


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` plus the special-token facts pooling and prompts depend on."""

    def __init__(self, tokenizer: Tokenizer, *, max_length: int, special_ids: frozenset[int]) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.special_ids = special_ids
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        self._untruncated: Tokenizer | None = None
        self._specials = self._special_frame()

    @staticmethod
    def from_json(text: str, *, max_length: int, extra_special: dict | None = None) -> TextTokenizer:
        tok = Tokenizer.from_str(text)
        special: set[int] = set()
        for added in json.loads(text).get("added_tokens", []):
            if added.get("special"):
                special.add(int(added["id"]))
        for value in (extra_special or {}).values():
            if isinstance(value, int):
                special.add(value)
        return TextTokenizer(tok, max_length=max_length, special_ids=frozenset(special))

    def _special_frame(self) -> tuple[list[int], list[int]]:
        """The special tokens the post-processor puts before and after a text (e.g. [BOS], [EOS])."""
        plain = self.tokenizer.encode("a", add_special_tokens=False).ids
        full = self.tokenizer.encode("a", add_special_tokens=True).ids
        for start in range(len(full) - len(plain) + 1):
            if full[start:start + len(plain)] == plain:
                return full[:start], full[start + len(plain):]
        raise ValueError("this tokenizer's post-processor changes the text's own tokens; token-id input is unsupported")

    def with_specials(self, ids: list[int]) -> list[int]:
        """Raw token ids framed with the special tokens the checkpoint's post-processor adds (BOS/EOS)."""
        before, after = self._specials
        return [*before, *ids, *after]

    def set_max_length(self, max_length: int) -> None:
        self.max_length = max_length
        self.tokenizer.enable_truncation(max_length)

    def _encode_batch(self, texts: list[str], tokenizer: Tokenizer):
        try:
            return tokenizer.encode_batch(texts, add_special_tokens=True)
        except TypeError as err:  # tokenizers refuses str that cannot be UTF-8 encoded with a TypeError
            raise _unicode_error(texts) or err from err

    def encode(self, texts: list[str], *, truncation: TruncationPolicy = "warn") -> Tokenized:
        """Token ids per text (special tokens included); over-long texts are cut to ``max_length``."""
        check_truncation(truncation)
        encodings = self._encode_batch(texts, self.tokenizer)
        ids = [e.ids for e in encodings]
        truncated = [i for i, e in enumerate(encodings) if e.overflowing]
        if truncated:
            msg = (f"{len(truncated)} of {len(texts)} texts exceed {self.max_length} tokens and were truncated "
                   f"(first: #{truncated[0]})")
            if truncation == "error":
                raise TruncationError(msg.replace("and were truncated", "(truncation='error')"))
            if truncation == "warn":
                log.warning(msg)
        empty = [i for i, x in enumerate(ids) if not x]
        if empty:
            raise ValueError(f"text #{empty[0]} tokenizes to no tokens and this tokenizer adds no special tokens; "
                             "there is nothing to embed")
        return Tokenized(ids=ids, truncated=truncated)

    def encode_full(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text (special tokens included) with no truncation: what a text would take in full."""
        if self._untruncated is None:  # a copy: the shared tokenizer's truncation setting is never toggled
            self._untruncated = Tokenizer.from_str(self.tokenizer.to_str())
            self._untruncated.no_truncation()
        return [e.ids for e in self._encode_batch(texts, self._untruncated)]

    def prompt_length(self, prefix: str) -> int:
        """Tokens the prefix occupies at the start of a text, as sentence-transformers counts them: the prefix
        tokenized alone, minus a trailing special token (EOS) the post-processor appended."""
        if not prefix:
            return 0
        ids = self.tokenizer.encode(prefix, add_special_tokens=True).ids
        return len(ids) - 1 if ids and ids[-1] in self.special_ids else len(ids)
