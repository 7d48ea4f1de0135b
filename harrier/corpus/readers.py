"""Streaming corpus readers: JSONL, Parquet and TXT files, one record at a time, never a whole file in memory.

A row that cannot become a record (bad JSON, not UTF-8, a missing or non-string text, a missing id) is a
``BadRow`` naming its file and line (Parquet: its 1-based row number), so it is reported and counted, never lost.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

FORMATS = (".jsonl", ".parquet", ".txt")
PARQUET_BATCH_ROWS = 1_024


@dataclass(frozen=True)
class ReaderConfig:
    """Which fields hold a record's id, text and (optionally) its prompt name."""

    id_field: str = "id"
    text_field: str = "text"
    prompt_field: str | None = None  # a field naming each row's prompt (None or "" there: a document)


@dataclass(frozen=True)
class Record:
    id: str
    text: str
    prompt_name: str | None  # from ``prompt_field``; None when the job's prompt applies
    file: str
    line: int


@dataclass(frozen=True)
class BadRow:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


def expand_inputs(patterns: Sequence[str]) -> list[Path]:
    """Files matching the glob patterns, sorted within each pattern, duplicates dropped; ValueError if none."""
    files: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True))
        matches = [m for m in matches if Path(m).is_file()]
        if not matches:
            raise ValueError(f"input {pattern}: no such file")
        for m in matches:
            path = Path(m).resolve()
            if path.suffix not in FORMATS:
                raise ValueError(f"input {m}: unsupported format {path.suffix or '(none)'}; use "
                                 f"{', '.join(FORMATS)}")
            if path not in files:
                files.append(path)
    return files


def count_rows(path: Path) -> int:
    """Rows in a file (lines for JSONL/TXT, from the footer for Parquet): the progress bar's total, cheaply."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    n, last = 0, b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def read_file(path: Path, cfg: ReaderConfig) -> Iterator[Record | BadRow]:
    """Records (and bad rows) of one file, in file order."""
    if path.suffix == ".parquet":
        yield from _read_parquet(path, cfg)
        return
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield BadRow(str(path), n, f"not UTF-8 ({err.reason} at byte {err.start})")
                continue
            line = line.rstrip("\r\n")
            if path.suffix == ".txt":
                yield Record(f"{path.name}:{n}", line, None, str(path), n)
            elif line.strip():
                yield _json_record(line, path, n, cfg)


def _json_record(line: str, path: Path, n: int, cfg: ReaderConfig) -> Record | BadRow:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        return BadRow(str(path), n, f"not valid JSON ({err.msg})")
    if not isinstance(obj, dict):
        return BadRow(str(path), n, f"expected a JSON object, got {type(obj).__name__}")
    return _record(obj, path, n, cfg)


def _record(obj: dict, path: Path, n: int, cfg: ReaderConfig) -> Record | BadRow:
    rid, text = obj.get(cfg.id_field), obj.get(cfg.text_field)
    if rid is None or isinstance(rid, (bool, float, dict, list)) or rid == "":  # 2.5 would be stored as "2.5"
        what = "missing" if rid is None or rid == "" else f"not a string or integer ({type(rid).__name__})"
        return BadRow(str(path), n, f"id field {cfg.id_field!r} {what}")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            return BadRow(str(path), n, f"text not UTF-8 ({err.reason} at byte {err.start})")
    if not isinstance(text, str):
        what = "missing" if text is None else f"not a string ({type(text).__name__})"
        return BadRow(str(path), n, f"text field {cfg.text_field!r} {what}")
    prompt = None
    if cfg.prompt_field is not None:
        prompt = obj.get(cfg.prompt_field)
        if prompt is not None and not isinstance(prompt, str):
            return BadRow(str(path), n, f"prompt field {cfg.prompt_field!r} not a string")
    return Record(str(rid), text, prompt or None, str(path), n)


def _read_parquet(path: Path, cfg: ReaderConfig) -> Iterator[Record | BadRow]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    names = set(pf.schema_arrow.names)
    wanted = [c for c in (cfg.id_field, cfg.text_field, cfg.prompt_field) if c is not None]
    for col in wanted[:2]:
        if col not in names:
            raise ValueError(f"input {path}: no column {col!r} (columns: {', '.join(sorted(names))})")
    columns = [c for c in wanted if c in names]
    n = 0
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
        for obj in batch.to_pylist():
            n += 1
            yield _record(obj, path, n, cfg)


def iter_rows(files: Sequence[Path], cfg: ReaderConfig) -> Iterator[Record | BadRow]:
    """Every file's records and bad rows, files in the given order."""
    for path in files:
        yield from read_file(path, cfg)
