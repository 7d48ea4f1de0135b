"""MASSIVE, *train* partition only: locale utterances aligned with en-US by id (``massive-parallel``) and en-US
utterances paired by intent (``massive-intents``)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from harrier.train.adapters.common import BITEXT, INTENT, check_allowed
from harrier.train.records import MemoryDataset, Record


def _massive_train(root: Path) -> list[dict]:
    path = root / "ttd" / "en-US_train.jsonl"
    check_allowed(path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = [r["id"] for r in rows if r.get("partition") != "train"]
    if bad:
        raise ValueError(f"{path} has non-train rows (first id {bad[0]})")
    return rows


def _massive_locale(xlsx: Path) -> dict[str, str]:
    from harrier.extras import require

    load_workbook = require("openpyxl", "train", "the MASSIVE adapters").load_workbook

    wb = load_workbook(xlsx, read_only=True)
    rows = wb.active.iter_rows(values_only=True)
    header = next(rows)
    i_id, i_utt = header.index("id"), header.index("utt")
    out = {str(r[i_id]): str(r[i_utt]) for r in rows if r[i_id] is not None and r[i_utt]}
    wb.close()
    return out


def massive_parallel(root: str | Path, *, locales: list[str] | None = None,
                     max_per_locale: int | None = None) -> list[MemoryDataset]:
    """MASSIVE utterances aligned by id: (locale utterance, en-US utterance), train-partition ids only."""
    root = Path(root)
    train = {r["id"]: r["utt"] for r in _massive_train(root)}
    out = []
    for xlsx in sorted((root / "xlsx").glob("en-*.xlsx")):
        locale = xlsx.stem.removeprefix("en-")
        if locale == "en-US" or (locales is not None and locale not in locales):
            continue
        utts = _massive_locale(xlsx)
        records = [Record(utts[i], (en,), prefix=BITEXT) for i, en in train.items() if i in utts]
        out.append(MemoryDataset(f"massive-{locale}", records[:max_per_locale]))
    return out


def massive_intents(root: str | Path, *, seed: int = 0, negatives: int = 1) -> list[MemoryDataset]:
    """en-US train utterances: positive = another utterance with the same intent, negatives from other intents."""
    rows = _massive_train(Path(root))
    by_intent: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        by_intent[r["intent"]].append(r["utt"])
    intents = sorted(by_intent)
    rng = np.random.default_rng(seed)
    records = []
    for r in rows:
        same = [u for u in by_intent[r["intent"]] if u != r["utt"]]
        if not same:
            continue
        others = [i for i in intents if i != r["intent"]]
        negs = tuple(str(rng.choice(by_intent[str(rng.choice(others))])) for _ in range(negatives))
        records.append(Record(r["utt"], (str(rng.choice(same)),), negs, prefix=INTENT))
    return [MemoryDataset("massive-intents-en-US", records)]
