"""Parquet shards of embeddings: columns id, embedding, n_tokens, truncated; file metadata says what made them.

Arrow has no bfloat16, so bfloat16 vectors are stored as ``fixed_size_list<uint16>`` holding the raw bf16 bits,
with ``"embedding_dtype": "bfloat16"`` in the metadata; ``read_vectors`` turns them back into float32 exactly.
Writes are deterministic (the same rows give the same bytes: no timestamps, fixed row groups) and atomic (a
``.tmp`` file renamed into place after it is closed), which is what makes a resumed job byte-identical.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from harrier import faults
from harrier.extras import require

STORE_DTYPES = ("float32", "bfloat16")
METADATA_KEY = b"harrier"


def require_pyarrow() -> None:
    """A clear ImportError (one CLI line) when the corpus extra is missing."""
    require("pyarrow.parquet", "corpus", "harrier corpus")


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns as uint16 (round to nearest even, as torch rounds)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(torch.bfloat16).view(torch.int16) \
        .numpy().view(np.uint16)


def from_bf16_bits(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32, exactly."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def schema(dim: int, store_dtype: str, metadata: dict):
    import pyarrow as pa

    if store_dtype not in STORE_DTYPES:
        raise ValueError(f"store dtype {store_dtype!r} is not supported; supported: {', '.join(STORE_DTYPES)}")
    value = pa.float32() if store_dtype == "float32" else pa.uint16()
    meta = {**metadata, "embedding_dtype": store_dtype, "dim": dim}
    return pa.schema([
        pa.field("id", pa.string(), nullable=False),
        pa.field("embedding", pa.list_(value, dim), nullable=False),
        pa.field("n_tokens", pa.int32(), nullable=False),
        pa.field("truncated", pa.bool_(), nullable=False),
    ], metadata={METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})


class ShardWriter:
    """Writes one shard as row groups (one per encoded window) into ``path.tmp``; ``commit`` renames it."""

    def __init__(self, path: Path, dim: int, store_dtype: str, metadata: dict) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        self.dim = dim
        self.store_dtype = store_dtype
        self.schema = schema(dim, store_dtype, metadata)
        self.rows = 0
        self._writer = pq.ParquetWriter(self.tmp, self.schema, compression="zstd",
                                        write_statistics=["id", "n_tokens", "truncated"])

    def write(self, ids: Sequence[str], emb: np.ndarray, n_tokens: Sequence[int], truncated: Sequence[bool]) -> None:
        import pyarrow as pa

        assert emb.shape == (len(ids), self.dim), (emb.shape, len(ids), self.dim)
        if self.store_dtype == "bfloat16":
            flat = pa.array(to_bf16_bits(emb).reshape(-1), type=pa.uint16())
        else:
            flat = pa.array(np.ascontiguousarray(emb, dtype=np.float32).reshape(-1), type=pa.float32())
        table = pa.Table.from_arrays([
            pa.array(list(ids), type=pa.string()),
            pa.FixedSizeListArray.from_arrays(flat, self.dim),
            pa.array(np.asarray(n_tokens, dtype=np.int32)),
            pa.array(np.asarray(truncated, dtype=bool)),
        ], schema=self.schema)
        self._writer.write_table(table, row_group_size=max(1, len(ids)))
        self.rows += len(ids)
        faults.point("shard.window")

    def commit(self) -> None:
        """Close, flush to disk and rename into place."""
        self._writer.close()
        with self.tmp.open("rb") as f:
            os.fsync(f.fileno())
        faults.point("shard.closed")
        os.replace(self.tmp, self.path)
        faults.point("shard.renamed")


def shard_metadata(path: Path) -> dict:
    import pyarrow.parquet as pq

    raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError(f"{path}: not a harrier shard (no '{METADATA_KEY.decode()}' metadata)")
    return json.loads(raw)


def shard_footer(path: Path) -> tuple[dict, int]:
    """A shard's harrier metadata and row count from its Parquet footer (ValueError naming a file that is not a
    readable shard)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable Parquet shard ({str(err).splitlines()[0][:200]})") from err
    raw = (meta.schema.to_arrow_schema().metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError(f"{path}: not a harrier shard (no '{METADATA_KEY.decode()}' metadata)")
    return json.loads(raw), meta.num_rows


def read_vectors(path: Path, batch_rows: int = 65_536,
                 columns: Sequence[str] = ("id", "embedding")) -> Iterator[dict]:
    """A shard's rows in batches of at most ``batch_rows``: {"embedding": float32 [n, D], other columns as lists}."""
    import pyarrow.parquet as pq

    meta = shard_metadata(path)
    dim, bf16 = int(meta["dim"]), meta["embedding_dtype"] == "bfloat16"
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=batch_rows, columns=list(columns)):
        out: dict = {}
        for name in columns:
            col = batch.column(name)
            if name == "embedding":
                values = col.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
                out[name] = from_bf16_bits(values) if bf16 else values.astype(np.float32, copy=False)
            else:
                out[name] = col.to_pylist()
        yield out
