"""Sentence pairs with the STS instruction (``shared/data/train``): STS *train* pairs scoring at least
``min_score`` of 5 (RO-STS, JSTS), and NLI pairs (KLUE-NLI, JNLI): premise -> entailed hypothesis, with the
premise's contradicted hypotheses as hard negatives (neutral ones are not used). One dataset per corpus.

Only STS train splits are read: RO-STS dev/test translate STSBenchmark's dev/test and MTEB evaluates JSTS valid
(none of them is in ``shared/data/train`` either).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from harrier.train.adapters.common import STS, check_allowed
from harrier.train.adapters.shapes import pair_records
from harrier.train.records import MemoryDataset


def _sts(name: str, rows: Iterable[tuple[str, str, float]], min_score: float,
         max_records: int | None) -> MemoryDataset:
    records = pair_records(((a, b, True) for a, b, s in rows if s >= min_score), prefix=STS)
    return MemoryDataset(name, records[:max_records])


def _nli(name: str, rows: Iterable[tuple[str, str, str]], max_records: int | None) -> MemoryDataset:
    """(premise, hypothesis, label) rows: entailment -> positive, contradiction -> negative, neutral dropped."""
    kept = ((p, h, label == "entailment") for p, h, label in rows if label in ("entailment", "contradiction"))
    return MemoryDataset(name, pair_records(kept, prefix=STS)[:max_records])


def _json_lines(path: Path) -> list[dict]:
    check_allowed(path)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def ro_sts(root: str | Path, *, min_score: float = 4.0, max_records: int | None = None) -> list[MemoryDataset]:
    """RO-STS *train* (``dataset/text-similarity/RO-STS.train.tsv``: score TAB sentence1 TAB sentence2)."""
    path = Path(root) / "dataset" / "text-similarity" / "RO-STS.train.tsv"
    check_allowed(path)
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [_sts("ro-sts-ro", ((a, b, float(s)) for s, a, b in rows), min_score, max_records)]


def jsts(root: str | Path, *, min_score: float = 4.0, max_records: int | None = None) -> list[MemoryDataset]:
    """JSTS *train* (``jsts-v*/train-v*.json`` under the JGLUE folder, JSON lines, label 0-5)."""
    files = sorted(Path(root).glob("jsts-v*/train-v*.json"))
    if not files:
        raise ValueError(f"{root} has no jsts-v*/train-v*.json file")
    rows = [(r["sentence1"], r["sentence2"], float(r["label"])) for f in files for r in _json_lines(f)]
    return [_sts("jsts-ja", rows, min_score, max_records)]


def jnli(root: str | Path, *, max_records: int | None = None) -> list[MemoryDataset]:
    """JNLI (``jnli-v*/*.json`` under the JGLUE folder, JSON lines; valid and test are training data here)."""
    files = sorted(Path(root).glob("jnli-v*/*.json"))
    if not files:
        raise ValueError(f"{root} has no jnli-v*/*.json files")
    return [_nli("jnli-ja", ((r["sentence1"], r["sentence2"], r["label"]) for f in files for r in _json_lines(f)),
                 max_records)]


def klue_nli(root: str | Path, *, max_records: int | None = None) -> list[MemoryDataset]:
    """KLUE-NLI (``klue-nli-*.json``, a JSON list; each premise has one entailed, one neutral and one
    contradicted hypothesis)."""
    files = sorted(Path(root).glob("klue-nli-*.json"))
    if not files:
        raise ValueError(f"{root} has no klue-nli-*.json files")
    rows = []
    for f in files:
        check_allowed(f)
        rows += [(r["premise"], r["hypothesis"], r["gold_label"]) for r in json.loads(f.read_text(encoding="utf-8"))]
    return [_nli("klue-nli-ko", rows, max_records)]
