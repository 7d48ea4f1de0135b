"""Tokenization with the checkpoint's own ``tokenizer.json``: its post-processor adds BOS/EOS exactly as the
reference does, so last-token pooling lands on the same token. Truncation keeps the special tokens and is reported.
"""

from __future__ import annotations

import json
import logging
import numbers
from collections.abc import Sequence
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
    prompt_lens: list[int]  # tokens of each text's prompt (0 for none), as sentence-transformers counts them
    truncated: list[int]  # indices of texts that were cut to max_length
    # leading tokens of each sequence that equal its prompt's own tokens (0 for none): what the prefix cache may
    # reuse (see TextTokenizer.encode_prompted). Not prompt_lens, which counts as sentence-transformers does.
    prefix_lens: list[int] | None = None
    fallbacks: int = 0  # texts with a prompt that share no prompt tokens beyond the special ones (they run in full)


@dataclass(frozen=True)
class PromptTokens:
    """What a prompt occupies at the start of a text. ``length``: its tokens as sentence-transformers counts them
    (the prefix tokenized alone with the front special tokens, e.g. BOS, and without a trailing EOS; what
    ``include_prompt=False`` skips). ``text_tokens``: the same without special tokens. ``ids``: those ``length``
    token ids. A text under this prompt starts with most of them, but not always all: a tokenizer can merge the
    prompt's last piece with the text's first (Gemma-3 merges the card template's trailing space into the text's
    first word), so what a text shares with its prompt is checked against its own ids
    (``TextTokenizer.encode_prompted``)."""

    length: int
    text_tokens: int
    ids: tuple[int, ...]


def shared_length(prompt_ids: Sequence[int], ids: Sequence[int]) -> int:
    """How many leading tokens ``ids`` shares with ``prompt_ids``."""
    n = min(len(prompt_ids), len(ids))
    for i in range(n):
        if prompt_ids[i] != ids[i]:
            return i
    return n


def with_prompt(prefix: str, text: str) -> str:
    """The string a text is tokenized as under a prompt: the one place a prompt meets its text."""
    return prefix + text


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
        self._prompts: dict[str, PromptTokens] = {}

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
        """Tokens the prefix occupies at the start of a text, as sentence-transformers counts them (see
        ``PromptTokens.length``)."""
        return self.prompt(prefix).length

    def prompt(self, prefix: str) -> PromptTokens:
        """The token facts of a prompt (cached per prompt string): see ``PromptTokens``."""
        got = self._prompts.get(prefix)
        if got is not None:
            return got
        if not prefix:
            got = PromptTokens(0, 0, ())
        else:
            ids = self.tokenizer.encode(prefix, add_special_tokens=True).ids
            if ids and ids[-1] in self.special_ids:  # the trailing special token (EOS) the post-processor appended
                ids = ids[:-1]
            got = PromptTokens(length=len(ids), text_tokens=len(ids) - len(self._specials[0]), ids=tuple(ids))
        if len(self._prompts) < 4096:  # bounded: a server sees arbitrary literal prompts
            self._prompts[prefix] = got
        return got

    def encode_prompted(self, texts: list[str], prefixes: list[str], *, truncation: TruncationPolicy = "warn",
                        full: bool = False) -> TokenizedItems:
        """Token ids of each text under its own prompt (``prefixes[i] + texts[i]``, special tokens included), each
        prompt's length, and each text's ``prefix_lens``: the leading tokens its own ids share with its prompt's
        (``PromptTokens.ids``; a text whose first word merged with the prompt's trailing space shares one token
        less), always leaving it at least one token of its own. A text with a prompt that shares nothing beyond the
        special tokens gets 0 and counts in ``fallbacks``. ``full``: no truncation (what a text would take in full);
        else cut to ``max_length`` per ``truncation``."""
        joined = [with_prompt(p, t) for p, t in zip(prefixes, texts, strict=True)]
        if full:
            ids, truncated = self.encode_full(joined), []
        else:
            tok = self.encode(joined, truncation=truncation)
            ids, truncated = tok.ids, tok.truncated
        prompts = {p: self.prompt(p) for p in set(prefixes)}
        front = len(self._specials[0])
        prefix_lens, fallbacks = [], 0
        for x, p in zip(ids, prefixes, strict=True):
            n = min(shared_length(prompts[p].ids, x), len(x) - 1) if p else 0
            prefix_lens.append(n if n > front else 0)
            fallbacks += bool(p) and n <= front
        if fallbacks:
            log.debug("%d of %d texts share no prompt tokens with their prompt; they run in full", fallbacks,
                      len(texts))
        return TokenizedItems(ids=ids, prompt_lens=[prompts[p].length for p in prefixes], truncated=truncated,
                              prefix_lens=prefix_lens, fallbacks=fallbacks)
