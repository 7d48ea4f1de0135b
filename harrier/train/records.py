"""Training records and the dataset types that hold them: parsing and validation, in-memory datasets (adapters)
and streaming JSONL/TXT readers.

Record format (one JSON object per line; the full description is in ``docs/training.md``)::

    {"query": "...", "positive": "..." | "positives": ["..."], "negatives": ["..."],
     "task": "<MTEB task name>" | "instruction": "<one sentence>" | "prompt": "<literal prefix>",
     "teacher_scores": [score(positive), score(negative 1), ...]}
    {"text": "..."}                      # plain text, for text-only distillation

The instruction prefixes the query only; positives and negatives are embedded raw, as harrier does at inference.
A ``.txt`` file is read as one plain text per non-empty line.

Files are never loaded whole: a first pass records the byte offset of every line, records are parsed on access.
A bad line is reported with its file and line number and skipped (``strict=False``, the default for training)
or raised (``strict=True``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from harrier.prompts import instruction_prefix, task_prefix

log = logging.getLogger(__name__)
RECORD_KEYS = frozenset({"query", "positive", "positives", "negatives", "task", "instruction", "prompt",
                         "teacher_scores", "text", "id", "lang", "meta"})


class RecordError(ValueError):
    """A training record is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Record:
    """One training example after validation. ``prefix`` is the resolved query-side instruction."""

    query: str
    positives: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()
    prefix: str = ""
    teacher_scores: tuple[float, ...] | None = None

    @property
    def text_only(self) -> bool:
        return not self.positives


def _str_list(raw: Any, key: str) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ValueError(f"{key!r} must be a string or a list of strings")
    if any(not x.strip() for x in raw):
        raise ValueError(f"{key!r} contains an empty string")
    return tuple(raw)


def _prefix(obj: Mapping[str, Any], default_prefix: str) -> str:
    given = [k for k in ("prompt", "instruction", "task") if obj.get(k) is not None]
    if len(given) > 1:
        raise ValueError(f"give at most one of prompt, instruction, task (got {', '.join(given)})")
    if not given:
        return default_prefix
    key = given[0]
    if key == "prompt":
        return str(obj["prompt"])
    if key == "instruction":
        return instruction_prefix(str(obj["instruction"]))
    return task_prefix(str(obj["task"]))


def parse_record(obj: Any, default_prefix: str = "") -> Record:
    """Validate one decoded JSON object; ``ValueError`` says what is wrong (the caller adds file and line)."""
    if not isinstance(obj, dict):
        raise ValueError(f"a record must be a JSON object, got {type(obj).__name__}")
    unknown = set(obj) - RECORD_KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; known: {', '.join(sorted(RECORD_KEYS))}")
    if "text" in obj:
        if set(obj) & {"query", "positive", "positives", "negatives"}:
            raise ValueError("'text' (plain text) cannot be combined with query/positives/negatives")
        (text,) = _str_list(obj["text"], "text")
        return Record(query=text, prefix=_prefix(obj, default_prefix))
    if "query" not in obj:
        raise ValueError("missing 'query' (or 'text' for plain text)")
    (query,) = _str_list(obj["query"], "query")
    if "positive" in obj and "positives" in obj:
        raise ValueError("give 'positive' or 'positives', not both")
    raw_pos = obj.get("positives", obj.get("positive"))
    if raw_pos is None:
        raise ValueError("missing 'positive'/'positives'")
    positives = _str_list(raw_pos, "positives")
    if not positives:
        raise ValueError("'positives' is empty")
    negatives = _str_list(obj.get("negatives", []), "negatives")
    scores = obj.get("teacher_scores")
    if scores is not None:
        if not isinstance(scores, list) or not all(isinstance(s, int | float) for s in scores):
            raise ValueError("'teacher_scores' must be a list of numbers")
        if len(scores) != 1 + len(negatives):
            raise ValueError(f"'teacher_scores' needs 1 + len(negatives) = {1 + len(negatives)} numbers "
                             f"(first positive, then each negative), got {len(scores)}")
        scores = tuple(float(s) for s in scores)
    return Record(query=query, positives=positives, negatives=negatives, prefix=_prefix(obj, default_prefix),
                  teacher_scores=scores)


class Dataset(Protocol):
    """Random access to records; ``get`` returns ``None`` for a bad record that was reported and skipped."""

    name: str

    def __len__(self) -> int: ...

    def get(self, index: int) -> Record | None: ...


@dataclass
class MemoryDataset:
    """Records already in memory (adapters)."""

    name: str
    records: Sequence[Record]

    def __len__(self) -> int:
        return len(self.records)

    def get(self, index: int) -> Record | None:
        return self.records[index]


def _line_offsets(path: Path) -> np.ndarray:
    """Byte offset of every non-blank line, in one streaming pass."""
    offsets: list[int] = []
    pos = 0
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                offsets.append(pos)
            pos += len(line)
    return np.asarray(offsets, dtype=np.int64)


@dataclass
class JsonlDataset:
    """A ``.jsonl`` (records) or ``.txt`` (one plain text per line) file, parsed line by line on access."""

    path: Path
    name: str = ""
    default_prefix: str = ""
    strict: bool = False
    bad_lines: int = 0
    _offsets: np.ndarray | None = field(default=None, repr=False)
    _line_numbers: np.ndarray | None = field(default=None, repr=False)
    _reported: set[int] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.is_file():
            raise ValueError(f"training data file {self.path} does not exist")
        self.name = self.name or self.path.stem

    def _index(self) -> np.ndarray:
        if self._offsets is None:
            self._offsets = _line_offsets(self.path)
            if len(self._offsets) == 0:
                raise ValueError(f"{self.path} has no records")
        return self._offsets

    def __len__(self) -> int:
        return len(self._index())

    def _line_number(self, index: int) -> int:
        if self._line_numbers is None:
            with self.path.open("rb") as f:
                starts = np.cumsum([0] + [len(line) for line in f])[:-1]
            self._line_numbers = np.searchsorted(starts, self._index()) + 1
        return int(self._line_numbers[index])

    def get(self, index: int) -> Record | None:
        with self.path.open("rb") as f:
            f.seek(int(self._index()[index]))
            raw = f.readline()
        try:
            text = raw.decode("utf-8")
            if self.path.suffix == ".txt":
                return parse_record({"text": text.strip()}, self.default_prefix)
            return parse_record(json.loads(text), self.default_prefix)
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as err:
            msg = f"{self.path}:{self._line_number(index)}: bad record: {err}"
            if self.strict:
                raise RecordError(msg) from err
            if index not in self._reported:  # once per line, however often the sampler draws it
                self._reported.add(index)
                self.bad_lines += 1
                log.warning("%s (skipped)", msg)
            return None


def data_files(path: str | Path) -> list[Path]:
    """The ``.jsonl``/``.txt`` files of a path (a file, or a directory searched recursively, sorted)."""
    p = Path(path).expanduser()
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix in (".jsonl", ".txt") and f.is_file())
        if not files:
            raise ValueError(f"{p} contains no .jsonl or .txt files")
        return files
    raise ValueError(f"training data path {p} does not exist")


def spec_prefix(instruction: str | None, task: str | None, prompt: str | None) -> str:
    """A dataset's default query prefix from its spec (records may override it)."""
    return _prefix({"instruction": instruction, "task": task, "prompt": prompt}, "")
