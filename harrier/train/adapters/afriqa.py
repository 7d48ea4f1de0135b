"""AfriQA (``data/gold_passages/<lang>/gold_span_passages.afriqa.<lang>.<pivot>.<split>.json``, ``data/queries/...``):
questions in 10 African languages with human translations into the pivot language (English, French for fon and
wol) and gold passages from pivot-language Wikipedia. Every split here is training data (``shared/data/train``).

``afriqa``: cross-lingual question -> passage retrieval, one dataset per question language (``afriqa-hau-en``);
``question: translated`` uses the pivot-language translation instead (``afriqa-hau-en-translated``). Other
passages with the same Wikipedia title are the hard negatives. ``afriqa-bitext``: question -> its translation.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from harrier.train.adapters.common import BITEXT, QA, check_allowed
from harrier.train.adapters.shapes import QAItem, pair_records, pick_languages, qa_records
from harrier.train.records import MemoryDataset

QUESTION_FIELDS = {"original": "question_lang", "translated": "question_translated"}


def _text(value: object) -> str:
    """A field as text; the files mark missing values as NaN, ``None`` or the string "None"."""
    return value.strip() if isinstance(value, str) and value.strip() != "None" else ""


def _rows(root: Path, folder: str) -> dict[tuple[str, str], list[dict]]:
    """(language, pivot) -> the JSON-lines rows of every split file under ``data/<folder>/<lang>/``."""
    found: dict[tuple[str, str], list[dict]] = defaultdict(list)
    files = sorted((root / "data" / folder).glob("*/*.afriqa.*.*.*.json"))
    if not files:
        raise ValueError(f"{root} has no data/{folder}/<lang>/*.afriqa.<lang>.<pivot>.<split>.json files")
    for path in files:
        check_allowed(path)
        lang, pivot = path.name.split(".")[2:4]
        lines = path.read_text(encoding="utf-8").splitlines()
        found[lang, pivot] += [json.loads(line) for line in lines if line.strip()]
    return found


def afriqa(root: str | Path, *, question: str = "original", languages: list[str] | None = None,
           negatives: int = 3, seed: int = 0, max_records: int | None = None) -> list[MemoryDataset]:
    """Gold passages: question (``original`` African-language text or its ``translated`` pivot form) ->
    pivot-language Wikipedia passage. Rows without a passage (NaN/"None" in the files) are skipped."""
    if question not in QUESTION_FIELDS:
        raise ValueError(f"afriqa: question must be one of {', '.join(QUESTION_FIELDS)}, got {question!r}")
    rows = _rows(Path(root), "gold_passages")
    wanted = pick_languages({lang for lang, _ in rows}, languages, "afriqa")
    suffix = "-translated" if question == "translated" else ""
    out = []
    for (lang, pivot), found in sorted(rows.items()):
        if lang in wanted:
            items = (QAItem(_text(r[QUESTION_FIELDS[question]]), _text(r["context"]), _text(r["title"]) or None)
                     for r in found)
            records = qa_records(items, prefix=QA, negatives=negatives, seed=seed)
            out.append(MemoryDataset(f"afriqa-{lang}-{pivot}{suffix}", records[:max_records]))
    return out


def afriqa_bitext(root: str | Path, *, languages: list[str] | None = None,
                  max_records: int | None = None) -> list[MemoryDataset]:
    """Queries: African-language question -> its human translation into the pivot language, one dataset per
    language (``afriqa-bitext-hau-en``)."""
    rows = _rows(Path(root), "queries")
    wanted = pick_languages({lang for lang, _ in rows}, languages, "afriqa-bitext")
    out = []
    for (lang, pivot), found in sorted(rows.items()):
        if lang in wanted:
            records = pair_records(((_text(r["question"]), _text(r["translated_question"]), True) for r in found),
                                   prefix=BITEXT)
            out.append(MemoryDataset(f"afriqa-bitext-{lang}-{pivot}", records[:max_records]))
    return out
