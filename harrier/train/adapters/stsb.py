"""STSb-multi-mt *train* pairs (``stsb-<lang>-train.csv``; the dev and test files are evaluation data)."""

from __future__ import annotations

import csv
from pathlib import Path

from harrier.train.adapters.common import STS, check_allowed
from harrier.train.records import MemoryDataset, Record


def stsb_multi_mt(root: str | Path, *, min_score: float = 4.0) -> list[MemoryDataset]:
    """STSb-multi-mt *train* pairs scoring at least ``min_score`` (of 5), one dataset per language."""
    out = []
    for path in sorted(Path(root).glob("stsb-*-train.csv")):
        check_allowed(path)
        lang = path.stem.split("-")[1]
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        records = [Record(a, (b,), prefix=STS) for a, b, s in rows if float(s) >= min_score and a.strip() and b.strip()]
        out.append(MemoryDataset(f"stsb-{lang}", records))
    if not out:
        raise ValueError(f"{root} has no stsb-*-train.csv files")
    return out
