"""Hard-negative mining with an embedding model, with a margin that drops likely false negatives.

For each query: rank the corpus by cosine, skip its positives, skip candidates scoring above
``score(positive) - margin`` (probably unlabelled positives, as sentence-transformers' ``absolute_margin``), and keep
``k`` negatives from ranks ``[range_min, range_max)`` of what remains.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from harrier.joblock import hold
from harrier.outputs import atomic_file
from harrier.train.records import JsonlDataset, Record, data_files

log = logging.getLogger(__name__)


def read_records(path: str | Path, *, strict: bool = True) -> list[tuple[dict, Record]]:
    """Every record of a JSONL/TXT path with its raw JSON object (for rewriting with additions)."""
    out = []
    for f in data_files(path):
        ds = JsonlDataset(f, strict=strict)
        with f.open(encoding="utf-8") as fh:
            raws = [line for line in fh if line.strip()]
        for i in range(len(ds)):
            rec = ds.get(i)
            if rec is not None:
                raw = json.loads(raws[i]) if f.suffix == ".jsonl" else {"text": raws[i].strip()}
                out.append((raw, rec))
    return out


def encode_prefixed(embedder, texts: list[str], prefixes: list[str], batch_tokens: int = 16_384) -> np.ndarray:
    """Encode texts whose prefixes differ, one ``encode`` call per distinct prefix, rows in input order."""
    out = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    for prefix in sorted(set(prefixes)):
        idx = [i for i, p in enumerate(prefixes) if p == prefix]
        out[idx] = embedder.encode([texts[i] for i in idx], prompt=prefix, batch_tokens=batch_tokens)
    return out


def mine_hard_negatives(q_emb: np.ndarray, pos_emb: np.ndarray, c_emb: np.ndarray, positives: list[set[int]], *,
                        k: int = 7, range_min: int = 0, range_max: int = 100, margin: float = 0.05) -> list[list[int]]:
    """Corpus indices of hard negatives per query (best first). Inputs are L2-normalised embeddings."""
    if k < 1 or range_min < 0 or range_max <= range_min:
        raise ValueError("need k >= 1 and 0 <= range_min < range_max")
    sims = q_emb @ c_emb.T
    pos_score = np.einsum("nd,nd->n", q_emb, pos_emb)
    depth = min(c_emb.shape[0], range_max + max((len(p) for p in positives), default=0))
    top = np.argsort(-sims, axis=1)[:, :depth]
    out = []
    for i, row in enumerate(top):
        kept = [int(j) for j in row if j not in positives[i] and sims[i, j] <= pos_score[i] - margin]
        out.append(kept[range_min:range_max][:k])
    return out


def mine_file(embedder, queries: str | Path, corpus: str | Path, output: str | Path, *, k: int = 7,
              range_min: int = 0, range_max: int = 100, margin: float = 0.05, batch_tokens: int = 16_384) -> int:
    """Write ``output`` (holding its job lock): the query records with ``negatives`` filled from ``corpus``.
    Returns records written."""
    with hold(output, f"output {output}", folder=False):
        return _mine_file(embedder, queries, corpus, output, k=k, range_min=range_min, range_max=range_max,
                          margin=margin, batch_tokens=batch_tokens)


def _mine_file(embedder, queries: str | Path, corpus: str | Path, output: str | Path, *, k: int, range_min: int,
               range_max: int, margin: float, batch_tokens: int) -> int:
    qs = read_records(queries)
    if any(r.text_only for _, r in qs):
        raise ValueError(f"{queries}: mining needs query records with positives")
    docs = [r.query if r.text_only else r.positives[0] for _, r in read_records(corpus)]
    doc_index = {d: i for i, d in enumerate(docs)}
    q_emb = encode_prefixed(embedder, [r.query for _, r in qs], [r.prefix for _, r in qs], batch_tokens)
    pos_emb = embedder.encode([r.positives[0] for _, r in qs], batch_tokens=batch_tokens)
    c_emb = embedder.encode(docs, batch_tokens=batch_tokens)
    positives = [{doc_index[p] for p in r.positives if p in doc_index} for _, r in qs]
    negs = mine_hard_negatives(q_emb, pos_emb, c_emb, positives, k=k, range_min=range_min, range_max=range_max,
                               margin=margin)
    with atomic_file(output, "w", encoding="utf-8") as f:
        for (raw, _), idx in zip(qs, negs, strict=True):
            raw = {**raw, "negatives": [docs[j] for j in idx]}
            raw.pop("teacher_scores", None)  # scores no longer match the new negatives
            f.write(json.dumps(raw, ensure_ascii=False) + "\n")
    short = sum(len(n) < k for n in negs)
    if short:
        log.warning("%d of %d queries got fewer than %d negatives (corpus too small or margin too strict)",
                    short, len(qs), k)
    return len(qs)
