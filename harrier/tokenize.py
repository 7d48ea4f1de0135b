"""Tokenization with the checkpoint's own ``tokenizer.json``: its post-processor adds BOS/EOS exactly as the
reference does, so last-token pooling lands on the same token. Truncation keeps the special tokens and is reported.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Literal

from tokenizers import Tokenizer

log = logging.getLogger(__name__)
TruncationPolicy = Literal["warn", "error", "silent"]


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
    it would be read as a list of characters)."""
    if isinstance(texts, str):
        raise ValueError(f"{caller} takes a list of texts; wrap a single text in a list")
    texts = list(texts)  # type: ignore[call-overload]
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ValueError(f"text #{bad[0]} is {type(texts[bad[0]]).__name__}, not str")
    return texts


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` plus the special-token facts pooling and prompts depend on."""

    def __init__(self, tokenizer: Tokenizer, *, max_length: int, special_ids: frozenset[int]) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.special_ids = special_ids
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
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

    def encode(self, texts: list[str], *, truncation: TruncationPolicy = "warn") -> Tokenized:
        """Token ids per text (special tokens included); over-long texts are cut to ``max_length``."""
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=True)
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

    def prompt_length(self, prefix: str) -> int:
        """Tokens the prefix occupies at the start of a text, as sentence-transformers counts them: the prefix
        tokenized alone, minus a trailing special token (EOS) the post-processor appended."""
        if not prefix:
            return 0
        ids = self.tokenizer.encode(prefix, add_special_tokens=True).ids
        return len(ids) - 1 if ids and ids[-1] in self.special_ids else len(ids)
