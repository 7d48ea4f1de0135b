"""SciFact *train* claims with their evidence abstracts (``scifact.zip``: claims_train.csv, corpus_train.csv)."""

from __future__ import annotations

import ast
import csv
import io
import re
import tokenize
import zipfile
from pathlib import Path

from harrier.train.adapters.common import SCIFACT
from harrier.train.records import MemoryDataset, Record


def _abstract_sentences(raw: str) -> str:
    """corpus_train.csv stores abstracts as a numpy repr (``['s1'\\n 's2']``); join the string literals."""
    tokens = tokenize.generate_tokens(io.StringIO(raw).readline)
    parts = [ast.literal_eval(t.string) for t in tokens if t.type == tokenize.STRING]
    return re.sub(r"\s+", " ", " ".join(parts)).strip()


def scifact_train(root: str | Path) -> list[MemoryDataset]:
    """SciFact *train* claims with their evidence abstracts (title + abstract) as positives."""
    zpath = Path(root) / "scifact.zip"
    with zipfile.ZipFile(zpath) as z:
        def rows(name: str) -> list[dict]:
            return list(csv.DictReader(io.TextIOWrapper(z.open(name), encoding="utf-8")))

        corpus = {r["doc_id"]: f"{r['title']} {_abstract_sentences(r['abstract'])}".strip()
                  for r in rows("corpus_train.csv")}
        claims: dict[str, tuple[str, set[str]]] = {}
        for r in rows("claims_train.csv"):
            if r["evidence_doc_id"]:
                claims.setdefault(r["id"], (r["claim"], set()))[1].add(r["evidence_doc_id"])
    records = [Record(claim, tuple(corpus[d] for d in sorted(docs) if d in corpus), prefix=SCIFACT)
               for claim, docs in claims.values()]
    return [MemoryDataset("scifact-train", [r for r in records if r.positives])]
