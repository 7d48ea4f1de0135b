"""Search a corpus written by ``encode_corpus``: exact cosine top-k streamed shard by shard (memory bounded by one
batch of rows, a running top-k per query), or an HNSW index (faiss) whose recall@k against exact is measured.

Shape legend: Q = queries, N = corpus rows in a batch, D = embedding size, K = top-k.
"""

from __future__ import annotations

import json
import logging
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harrier.corpus.manifest import Manifest, check_shards
from harrier.corpus.shards import read_vectors, require_pyarrow
from harrier.extras import require
from harrier.joblock import hold
from harrier.outputs import atomic_file
from harrier.vectors import l2_normalize

log = logging.getLogger(__name__)
ANN_FILE = "ann-hnsw.faiss"
ANN_INFO = "ann.json"
SCORE_ELEMENTS = 1 << 24  # Q x N scores per step (64 MiB of float32)


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    row: int  # global row number (shard order, then row order)


def open_index(index: Path, action: str = "cannot search") -> Manifest:
    """The manifest of a corpus folder after checking every finished shard against it (one line naming the first
    shard that is missing, changed or made by another job)."""
    require_pyarrow()
    manifest = Manifest.load(index)
    if not manifest.complete:
        log.warning("%s is an unfinished corpus job: searching its %d finished shards", index, len(manifest.shards))
    if not manifest.shards:
        raise ValueError(f"index {index} has no finished shards")
    check_shards(index, manifest, action)
    return manifest


def _merge(best_s: np.ndarray, best_r: np.ndarray, s_QN: np.ndarray, r_N: np.ndarray, k: int):
    """Running top-k: scores desc, ties to the lower global row (as a stable argsort of the full matrix)."""
    scores = np.concatenate([best_s, s_QN], axis=1)
    rows = np.concatenate([best_r, np.broadcast_to(r_N, s_QN.shape)], axis=1)
    out_s = np.empty((scores.shape[0], min(k, scores.shape[1])), dtype=np.float32)
    out_r = np.empty(out_s.shape, dtype=np.int64)
    for q in range(scores.shape[0]):
        order = np.lexsort((rows[q], -scores[q]))[: out_s.shape[1]]
        out_s[q], out_r[q] = scores[q, order], rows[q, order]
    return out_s, out_r


def _prefilter(s_QN: np.ndarray, k: int) -> np.ndarray:
    """Columns that can still enter some query's top-k (cheap cut before the exact merge)."""
    if s_QN.shape[1] <= k:
        return np.arange(s_QN.shape[1])
    kth = np.partition(s_QN, s_QN.shape[1] - k, axis=1)[:, s_QN.shape[1] - k]
    return np.flatnonzero((s_QN >= kth[:, None]).any(axis=0))


def exact_search(index: Path, queries_QD: np.ndarray, top_k: int) -> list[list[Hit]]:
    """Cosine top-k of every query over every finished shard, streamed."""
    if top_k < 1:
        raise ValueError(f"top_k must be positive, got {top_k}")
    manifest = open_index(index)
    q_QD = l2_normalize(queries_QD)
    n_q = q_QD.shape[0]
    best_s = np.empty((n_q, 0), dtype=np.float32)
    best_r = np.empty((n_q, 0), dtype=np.int64)
    ids: dict[int, str] = {}
    base = 0
    batch_rows = max(1_024, SCORE_ELEMENTS // max(n_q, 1))
    for shard in manifest.shards:
        for batch in read_vectors(index / shard.file, batch_rows=batch_rows):
            e_ND = l2_normalize(batch["embedding"])
            if e_ND.shape[1] != q_QD.shape[1]:
                raise ValueError(f"queries have dim {q_QD.shape[1]}, index {index} has dim {e_ND.shape[1]}")
            s_QN = q_QD @ e_ND.T
            keep = _prefilter(s_QN, top_k)
            rows = base + keep
            best_s, best_r = _merge(best_s, best_r, s_QN[:, keep], rows, top_k)
            alive = set(best_r.ravel().tolist())
            ids = {r: i for r, i in ids.items() if r in alive}
            ids.update({int(base + j): batch["id"][j] for j in keep if base + j in alive})
            base += e_ND.shape[0]
    return [[Hit(ids[int(r)], float(s), int(r)) for s, r in zip(best_s[q], best_r[q], strict=True)]
            for q in range(n_q)]


def ids_for_rows(index: Path, manifest: Manifest, rows: list[int]) -> dict[int, str]:
    """Ids of global row numbers (reads only the id column of the shards involved)."""
    import pyarrow.parquet as pq

    starts = np.cumsum([0] + [s.rows for s in manifest.shards]).tolist()
    by_shard: dict[int, list[int]] = {}
    for r in rows:
        by_shard.setdefault(bisect_right(starts, r) - 1, []).append(r)
    out = {}
    for k, rs in by_shard.items():
        col = pq.read_table(index / manifest.shards[k].file, columns=["id"]).column("id")
        out.update({r: col[r - starts[k]].as_py() for r in rs})
    return out


def _faiss():
    return require("faiss", "corpus", "the ANN index")


def build_ann(index: Path, *, m: int = 32, ef_construction: int = 200) -> Path:
    """An HNSW (inner product on unit vectors) over all finished shards, written next to them under the folder's
    job lock (not while a corpus job or another index build writes it). Holds every vector in memory while it
    builds (as any in-memory ANN index does)."""
    faiss = _faiss()
    with hold(index, f"index {index}"):
        manifest = open_index(index, "cannot index")
        for name in (ANN_FILE, ANN_INFO):  # a killed build's temporary files (atomic_file names)
            for tmp in index.glob(f".{name}.*.tmp"):
                tmp.unlink()
        dim = int(manifest.settings["dim"])
        ann = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        ann.hnsw.efConstruction = ef_construction
        for shard in manifest.shards:
            for batch in read_vectors(index / shard.file, columns=("embedding",)):
                ann.add(np.ascontiguousarray(l2_normalize(batch["embedding"])))
        path = index / ANN_FILE
        with atomic_file(path, "wb") as f:
            f.write(faiss.serialize_index(ann).tobytes())
        info = {"kind": "faiss-hnsw-flat-ip", "m": m, "ef_construction": ef_construction, "rows": manifest.rows,
                "shards": [s.file for s in manifest.shards]}
        with atomic_file(index / ANN_INFO, "w", encoding="utf-8") as f:
            f.write(json.dumps(info, indent=2) + "\n")
    return path


def ann_search(index: Path, queries_QD: np.ndarray, top_k: int, *, ef_search: int = 64) -> list[list[Hit]]:
    faiss = _faiss()
    manifest = open_index(index)
    info_path = index / ANN_INFO
    if not info_path.is_file():
        raise ValueError(f"index {index} has no ANN index; build one with: harrier corpus index --index {index}")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if info["shards"] != [s.file for s in manifest.shards]:
        raise ValueError(f"the ANN index of {index} is stale (built over other shards); rebuild it")
    ann = faiss.read_index(str(index / ANN_FILE))
    ann.hnsw.efSearch = max(ef_search, top_k)
    s_QK, r_QK = ann.search(np.ascontiguousarray(l2_normalize(queries_QD)), top_k)
    ids = ids_for_rows(index, manifest, sorted({int(r) for r in r_QK.ravel() if r >= 0}))
    return [[Hit(ids[int(r)], float(s), int(r)) for s, r in zip(s_q, r_q, strict=True) if r >= 0]
            for s_q, r_q in zip(s_QK, r_QK, strict=True)]


def recall_at_k(approx: list[list[Hit]], exact: list[list[Hit]]) -> float:
    """Mean over queries of |approx top-k ∩ exact top-k| / k."""
    if not exact:
        return float("nan")
    return float(np.mean([len({h.row for h in a} & {h.row for h in e}) / max(len(e), 1)
                          for a, e in zip(approx, exact, strict=True)]))


def sample_vectors(index: Path, n: int, seed: int = 0) -> np.ndarray:
    """``n`` corpus vectors chosen uniformly at random (seeded): stand-in queries for a recall check (each is its own
    nearest neighbour in both searches, so this recall is slightly optimistic next to held-out queries)."""
    manifest = open_index(index)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(manifest.rows, size=min(n, manifest.rows), replace=False))
    out, base = [], 0
    for shard in manifest.shards:
        for batch in read_vectors(index / shard.file, columns=("embedding",)):
            e = batch["embedding"]
            sel = rows[(rows >= base) & (rows < base + len(e))] - base
            out.append(e[sel])
            base += len(e)
    return np.concatenate(out) if out else np.zeros((0, int(manifest.settings["dim"])), np.float32)
