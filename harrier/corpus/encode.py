"""``encode_corpus``: stream records from files, embed them window by window, write Parquet shards + a manifest.

Shard k holds good records k*shard_rows .. (k+1)*shard_rows - 1 in input order; inside a shard, windows of
consecutive records are tokenized together and sorted by length for packing, and written back in input order as
one row group each. Shard contents therefore depend only on the inputs and the settings, never on timing, so a
job killed at any point and resumed (finished shards kept, the rest redone) writes the same bytes.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harrier import faults
from harrier.corpus.manifest import (
    BAD_ROW_EXAMPLES,
    BAD_ROWS,
    MANIFEST,
    Manifest,
    ShardEntry,
    check_shards,
    input_stamp,
    model_fingerprint,
    settings_diff,
)
from harrier.corpus.readers import BadRow, ReaderConfig, Record, count_rows, expand_inputs, iter_rows
from harrier.corpus.shards import STORE_DTYPES, ShardWriter, require_pyarrow
from harrier.corpus.window import Window, WindowEngine, prompt_to_json, windows_of
from harrier.joblock import hold
from harrier.outputs import OutputError, check_dir
from harrier.prompts import PromptSpec

log = logging.getLogger(__name__)
JOB_TMP = ("shard-*.parquet.tmp", MANIFEST + ".tmp", BAD_ROWS + ".tmp")  # the temporary files a job writes
OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # disk full, quota, RLIMIT_FSIZE


@dataclass(frozen=True)
class CorpusConfig:
    """One corpus-encoding job. Everything that changes the output bytes is in ``settings`` and checked on resume."""

    inputs: tuple[str, ...]
    output: Path
    reader: ReaderConfig = ReaderConfig()
    prompt: PromptSpec = None  # the job's prompt (None: documents, no prefix)
    shard_rows: int = 100_000
    window_rows: int = 8_192  # texts tokenized and length-sorted together
    window_chars: int = 8_000_000  # ... or fewer, so long documents keep a window's memory bounded
    batch_tokens: int = 4_096
    store_dtype: str = "float32"
    strict: bool = False
    resume: bool = False
    max_shards: int | None = None  # stop after writing this many new shards (the job stays resumable)
    progress: bool | None = None

    def __post_init__(self) -> None:
        for name in ("shard_rows", "window_rows", "window_chars", "batch_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.store_dtype not in STORE_DTYPES:
            raise ValueError(f"store dtype {self.store_dtype!r} is not supported; supported: {', '.join(STORE_DTYPES)}")


@dataclass(frozen=True)
class CorpusResult:
    manifest: Manifest
    encoded_rows: int  # rows embedded by this call (not counting shards kept from an earlier run)
    encoded_tokens: int
    seconds: float


class RowStream:
    """Records of the inputs with bad rows counted, written to ``bad_rows.jsonl`` and (``strict``) fatal."""

    def __init__(self, cfg: CorpusConfig, files: list[Path], known_prompts: set[str], bad_file) -> None:
        self._rows = iter_rows(files, cfg.reader)
        self.strict = cfg.strict
        self.known_prompts = known_prompts
        self.bad_file = bad_file
        self.seen = 0
        self.bad = 0
        self.examples: list[str] = []

    def __iter__(self) -> Iterator[Record]:
        for row in self._rows:
            self.seen += 1
            if isinstance(row, Record) and row.prompt_name is not None and row.prompt_name not in self.known_prompts:
                row = BadRow(row.file, row.line, f"unknown prompt name {row.prompt_name!r}")
            if isinstance(row, BadRow):
                self._bad(row)
                continue
            yield row

    def _bad(self, row: BadRow) -> None:
        if self.strict:
            raise ValueError(f"bad row {row} (--strict)")
        self.bad += 1
        if len(self.examples) < BAD_ROW_EXAMPLES:
            self.examples.append(str(row))
            log.warning("skipping bad row %s", row)
        self.bad_file.write(json.dumps({"file": row.file, "line": row.line, "reason": row.reason},
                                       ensure_ascii=False) + "\n")


def job_settings(cfg: CorpusConfig, files: list[Path], model, fingerprint: str) -> dict:
    from harrier import __version__

    return {
        "inputs": input_stamp(files), "id_field": cfg.reader.id_field, "text_field": cfg.reader.text_field,
        "prompt_field": cfg.reader.prompt_field, "prompt": prompt_to_json(cfg.prompt),
        "prefix": model.prefix_for(cfg.prompt), "model_fingerprint": fingerprint,
        "dtype": str(model.dtype).removeprefix("torch."), "device": model.device.type,
        "max_length": model.max_length, "truncation": model.truncation, "dim": model.dim,
        "store_dtype": cfg.store_dtype, "shard_rows": cfg.shard_rows, "window_rows": cfg.window_rows,
        "window_chars": cfg.window_chars, "batch_tokens": cfg.batch_tokens, "harrier_version": __version__,
    }


def lock_output(out: Path):
    """The job lock of an output folder (a context manager; the folder is created): one writer at a time."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} is a file; corpus output is a directory")
    check_dir(out, "output")
    return hold(out, f"output {out}")


def check_output(out: Path, *, resume: bool) -> None:
    """The cheap checks of a job's output folder, run before the model loads (under its lock): a folder files can
    be made in (it is created), holding this job's manifest only with ``resume`` and no stray Parquet files."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} is a file; corpus output is a directory")
    existing = (out / MANIFEST).is_file()
    if existing and not resume:
        raise ValueError(f"output {out} already holds a corpus job ({MANIFEST}); pass --resume to continue it, "
                         "or choose another directory")
    if not existing and out.is_dir() and any(p.suffix == ".parquet" for p in out.iterdir()):
        raise ValueError(f"output {out} holds Parquet files but no {MANIFEST}; choose an empty directory")
    check_dir(out, "output")


def open_job(cfg: CorpusConfig, settings: dict) -> Manifest:
    """A fresh manifest, or (``resume``) the existing one after checking its settings and its shards."""
    out = cfg.output
    check_output(out, resume=cfg.resume)
    if not (out / MANIFEST).is_file():
        manifest = Manifest(settings=settings)
        manifest.save(out)  # before any shard: a job killed at any later moment has a manifest to resume from
        return manifest
    manifest = Manifest.load(out)
    diff = settings_diff(manifest.settings, settings)
    if diff:
        raise ValueError(f"cannot resume {out}: settings differ from the first run ({'; '.join(diff)})")
    check_shards(out, manifest, "cannot resume")
    remove_job_tmp(out)
    return manifest


def encode_corpus(cfg: CorpusConfig, model, engine: WindowEngine) -> CorpusResult:
    """Run (or resume) a corpus job with a loaded ``Embedder`` (settings, fingerprint) and an engine (compute),
    holding the output's job lock; the engine is closed at the end.

    When the job fails, its temporary files are removed (a new job that finished no shard leaves no job behind,
    so the same command can simply be run again). A full output (no space, quota, file size limit) is one
    ``OutputError``: the manifest still lists exactly the finished shards, so ``resume`` continues."""
    try:
        with lock_output(cfg.output):
            fresh = not (cfg.output / MANIFEST).is_file()
            try:
                return _run(cfg, model, engine)
            except BaseException as err:
                _clean_after_failure(cfg.output, fresh)
                if not isinstance(err, OSError) or err.errno not in OUT_OF_SPACE:
                    raise
                reason = os.strerror(err.errno)
                raise OutputError(f"output {cfg.output}: cannot write the job's files ({reason}); the finished "
                                  f"shards are kept: free space and continue with --resume") from err
    finally:
        engine.close()


def _clean_after_failure(out: Path, fresh: bool) -> None:
    """Remove a failed run's temporary files; for a new job with no finished shard, its manifest and any shard it
    renamed into place before failing to list it (the folder held no Parquet files when it started)."""
    remove_job_tmp(out)
    if fresh and (out / MANIFEST).is_file() and not Manifest.load(out).shards:
        for shard in out.glob("shard-*.parquet"):
            shard.unlink()
        (out / MANIFEST).unlink()


def remove_job_tmp(out: Path) -> None:
    """Remove the temporary files a job writes (call under the job lock: they are a dead or failed run's)."""
    for pattern in JOB_TMP:
        for tmp in out.glob(pattern):
            log.info("removing %s, left by an interrupted run", tmp)
            tmp.unlink()


def _run(cfg: CorpusConfig, model, engine: WindowEngine) -> CorpusResult:
    require_pyarrow()
    files = expand_inputs(cfg.inputs)
    model.prefix_for(cfg.prompt)  # an unknown prompt name fails here, before any work
    settings = job_settings(cfg, files, model, model_fingerprint(model_path(model)))
    manifest = open_job(cfg, settings)
    if manifest.complete:
        log.info("%s is already complete (%d rows)", cfg.output, manifest.rows)
        return CorpusResult(manifest, 0, 0, 0.0)
    done = len(manifest.shards)
    shard_meta = {k: settings[k] for k in ("model_fingerprint", "prompt", "prefix", "dtype", "harrier_version")}
    shard_meta["model"] = str(model_path(model))
    bad_tmp = cfg.output / (BAD_ROWS + ".tmp")
    start, encoded, tokens, written = time.perf_counter(), 0, 0, 0
    with bad_tmp.open("w", encoding="utf-8") as bad_file:
        stream = RowStream(cfg, files, set(model.prompts), bad_file)
        records = iter(stream)
        skipped = sum(1 for _ in itertools.islice(records, done * cfg.shard_rows))
        if skipped != manifest.rows:
            raise ValueError(f"cannot resume {cfg.output}: the inputs now give {skipped} rows for the finished "
                             f"shards, the manifest says {manifest.rows}")
        bar = _progress_bar(cfg, files, stream.seen)
        for k in itertools.count(done):
            if cfg.max_shards is not None and written >= cfg.max_shards:
                break
            shard_records = itertools.islice(records, cfg.shard_rows)
            windows = windows_of(shard_records, cfg.window_rows, cfg.window_chars, cfg.prompt)
            entry, n_tok = _write_shard(cfg, k, windows, engine, model.dim, shard_meta, stream, bar)
            if entry is None:
                manifest.complete = True
                break
            encoded += entry.rows
            tokens += n_tok
            written += 1
            manifest.shards.append(entry)
            manifest.rows += entry.rows
            manifest.bad_rows, manifest.bad_row_examples = stream.bad, stream.examples
            manifest.save(cfg.output)
        if bar is not None:
            bar.close()
    if manifest.complete:
        os.replace(bad_tmp, cfg.output / BAD_ROWS)
        faults.point("bad_rows.renamed")
        manifest.bad_rows, manifest.bad_row_examples = stream.bad, stream.examples
        manifest.save(cfg.output)
    else:
        bad_tmp.unlink()
    return CorpusResult(manifest, encoded, tokens, time.perf_counter() - start)


def _write_shard(cfg: CorpusConfig, k: int, windows: Iterator[Window], engine: WindowEngine, dim: int,
                 shard_meta: dict, stream: RowStream, bar: Progress | None) -> tuple[ShardEntry | None, int]:
    """Embed and write shard ``k`` (atomically); (None, 0) when the inputs are exhausted."""
    first = next(windows, None)
    if first is None:
        return None, 0
    name = f"shard-{k:05d}.parquet"
    writer = ShardWriter(cfg.output / name, dim, cfg.store_dtype, {**shard_meta, "shard": k})
    pending: deque[Window] = deque()

    def handed_out() -> Iterator[Window]:  # the engine pulls windows lazily; results come back in the same order
        for w in itertools.chain([first], windows):
            pending.append(w)
            yield w

    first_id, last_id, n_tok = first.ids[0], "", 0
    for result in engine.encode(handed_out()):
        window = pending.popleft()
        assert result.emb_ND.shape[0] == len(window.ids), (result.emb_ND.shape, len(window.ids))
        writer.write(window.ids, result.emb_ND, result.n_tokens, result.truncated)
        last_id, n_tok = window.ids[-1], n_tok + sum(result.n_tokens)
        if bar is not None:
            bar.advance(stream.seen, len(window.ids), sum(result.n_tokens))
    assert not pending, "engine returned fewer results than windows"
    writer.commit()
    entry = ShardEntry(file=name, rows=writer.rows, first_id=first_id, last_id=last_id,
                       bytes=(cfg.output / name).stat().st_size)
    return entry, n_tok


class Progress:
    """A tqdm bar over input rows (lines / Parquet rows, bad ones included) with texts/s, tokens/s and its ETA."""

    def __init__(self, total: int, initial: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, unit="row", desc="corpus", smoothing=0.05)
        self.t0, self.texts, self.tokens = time.perf_counter(), 0, 0

    def advance(self, seen: int, texts: int, tokens: int) -> None:
        self.texts += texts
        self.tokens += tokens
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"{self.texts / elapsed:.1f} texts/s, {self.tokens / elapsed:.0f} tokens/s",
                                 refresh=False)
        self.bar.update(seen - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _progress_bar(cfg: CorpusConfig, files: list[Path], seen: int) -> Progress | None:
    if cfg.progress is False or (cfg.progress is None and not sys.stderr.isatty()):
        return None
    return Progress(sum(count_rows(f) for f in files), seen)


def model_path(model) -> Path:
    """The local directory or file the model was loaded from (for the fingerprint and the actors)."""
    return Path(model.info().source)
