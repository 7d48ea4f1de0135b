"""The corpus manifest (``manifest.json``): the settings a job ran with, its finished shards, rows and bad rows.

It is rewritten atomically after every shard, so after a kill it names exactly the shards that are complete.
It holds no timings, so a resumed job leaves the same manifest as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harrier import faults

FORMAT = "harrier-corpus/1"
# what each shard's metadata must agree on with the manifest's settings (the shard's "shard" is its own number)
SHARD_SETTINGS = ("model_fingerprint", "prompt", "prefix", "dtype", "harrier_version")
MANIFEST = "manifest.json"
BAD_ROWS = "bad_rows.jsonl"
MODEL_SUFFIXES = (".safetensors", ".gguf", ".json", ".bin")
BAD_ROW_EXAMPLES = 20


def model_fingerprint(path: str | Path) -> str:
    """sha256 over a checkpoint's weight and config files by content (names relative to the model directory), so
    the same model copied elsewhere or onto another node has the same fingerprint and a retrained one does not."""
    root = Path(path).expanduser().resolve()
    files = [root] if root.is_file() else sorted(
        f for f in root.rglob("*") if f.is_file() and f.suffix in MODEL_SUFFIXES and not f.name.startswith("."))
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(root) if f != root else f.name}\0".encode())
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 24):
                h.update(chunk)
    return h.hexdigest()[:32]


def input_stamp(files: list[Path]) -> list[dict]:
    """What identifies the inputs for a resume check: each file's path, size and modification time."""
    out = []
    for f in files:
        st = f.stat()
        out.append({"path": str(f), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


@dataclass(frozen=True)
class ShardEntry:
    file: str
    rows: int
    first_id: str
    last_id: str
    bytes: int


@dataclass
class Manifest:
    """What ``manifest.json`` holds. ``settings`` is compared key by key on ``--resume``."""

    settings: dict
    shards: list[ShardEntry] = field(default_factory=list)
    rows: int = 0
    bad_rows: int = 0
    bad_row_examples: list[str] = field(default_factory=list)
    complete: bool = False
    format: str = FORMAT

    def save(self, out_dir: Path) -> None:
        path = out_dir / MANIFEST
        tmp = path.with_name(path.name + ".tmp")
        data = (json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n").encode()
        with tmp.open("wb") as f:  # in two writes only so that a fault test can stop it half way
            f.write(data[: len(data) // 2])
            f.flush()
            faults.point("manifest.half")
            f.write(data[len(data) // 2:])
        faults.point("manifest.written")
        os.replace(tmp, path)
        faults.point("manifest.saved")

    @staticmethod
    def load(out_dir: Path) -> Manifest:
        path = out_dir / MANIFEST
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: cannot read the corpus manifest ({err})") from err
        if raw.get("format") != FORMAT:
            raise ValueError(f"{path}: format {raw.get('format')!r} is not {FORMAT!r}")
        try:
            raw["shards"] = [ShardEntry(**s) for s in raw.get("shards", [])]
            return Manifest(**raw)
        except TypeError as err:
            raise ValueError(f"{path}: not a harrier corpus manifest ({err})") from err


def settings_diff(old: dict, new: dict) -> list[str]:
    """Keys whose values differ, as 'key: old -> new' (inputs compared file by file)."""
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            a, b = json.dumps(old.get(key))[:120], json.dumps(new.get(key))[:120]
            out.append(f"{key}: {a} -> {b}")
    return out


def check_shards(folder: Path, manifest: Manifest, action: str) -> None:
    """Every finished shard the manifest lists is there, has the size and row count it records, and was made with
    the manifest's settings (model, prompt, dtype, store dtype, dim); a ValueError naming the first shard that is
    not. Reads only the Parquet footers, so it is cheap before a search."""
    from harrier.corpus.shards import shard_footer

    settings = manifest.settings
    want = {**{k: settings.get(k) for k in SHARD_SETTINGS}, "embedding_dtype": settings.get("store_dtype"),
            "dim": settings.get("dim")}
    for k, entry in enumerate(manifest.shards):
        path = folder / entry.file
        where = f"{action} {folder}: shard {entry.file}"
        if not path.is_file():
            raise ValueError(f"{where} is missing (the manifest lists it as finished)")
        size = path.stat().st_size
        if size != entry.bytes:
            raise ValueError(f"{where} has {size} bytes, the manifest says {entry.bytes} (changed or truncated)")
        try:
            meta, rows = shard_footer(path)
        except ValueError as err:
            raise ValueError(f"{action} {folder}: {err}") from err
        if rows != entry.rows:
            raise ValueError(f"{where} has {rows} rows, the manifest says {entry.rows}")
        diff = [f"{key} {json.dumps(meta.get(key))[:80]} (manifest: {json.dumps(value)[:80]})"
                for key, value in {**want, "shard": k}.items() if meta.get(key) != value]
        if diff:
            raise ValueError(f"{where} was written by another job: {'; '.join(diff)}")
