"""PubMedQA PQA-L (``ori_pqal.json``, 1,000 expert-labelled items keyed by PMID): biomedical question -> its
PubMed abstract (the context sections followed by the conclusion, ``LONG_ANSWER``, as the abstract reads)."""

from __future__ import annotations

import json
from pathlib import Path

from harrier.train.adapters.common import QA, check_allowed
from harrier.train.adapters.shapes import QAItem, qa_records
from harrier.train.records import MemoryDataset


def pubmedqa(root: str | Path, *, max_records: int | None = None) -> list[MemoryDataset]:
    """Question -> abstract, one English dataset (``pubmedqa-en``); every item is its own article, so there are
    no natural hard negatives."""
    path = Path(root) / "ori_pqal.json"
    check_allowed(path)
    items = [QAItem(v["QUESTION"], " ".join([*v["CONTEXTS"], v.get("LONG_ANSWER", "")]), pmid)
             for pmid, v in json.loads(path.read_text(encoding="utf-8")).items()]
    return [MemoryDataset("pubmedqa-en", qa_records(items, prefix=QA, negatives=0, seed=0)[:max_records])]
