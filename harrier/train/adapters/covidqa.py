"""deepset COVID-QA (``data/``): FAQ question -> answer from official sites (``covid-faq``: de en it pl sv, and an
Arabic machine translation of the English CovidBERT FAQ), question -> section of a CORD-19 paper
(``covid-qa-papers``, SQuAD JSON), and question -> question with the same meaning (``covid-question-pairs``, de en;
deepset's own evaluation set for its FAQ bot, not one of ours)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from harrier.train.adapters.common import DUPLICATE_QUESTION, QA, check_allowed
from harrier.train.adapters.shapes import QAItem, pair_records, pick_languages, qa_records
from harrier.train.records import MemoryDataset

FAQ_FILES = (("faq_200327.tsv", "\t"), ("faq_covidbert.csv", ","))


def _csv_rows(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    check_allowed(path)
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter=delimiter))


def covid_faq(root: str | Path, *, languages: list[str] | None = None, negatives: int = 3, seed: int = 0,
              max_records: int | None = None) -> list[MemoryDataset]:
    """FAQ question -> answer, one dataset per language (``covid-faq-de``); hard negatives are other answers of
    the same FAQ page. English merges both FAQ files (a question in both is kept once)."""
    faqs = Path(root) / "data" / "faqs"
    items: dict[str, list[QAItem]] = {}
    for name, delimiter in FAQ_FILES:
        for r in _csv_rows(faqs / name, delimiter):
            items.setdefault(r["lang"], []).append(QAItem(r["question"], r["answer"], f"{r['lang']}:{r['name']}"))
    for r in _csv_rows(faqs / "MT_ar_faq_covidbert.csv"):
        items.setdefault("ar", []).append(QAItem(r["question_ar"], r["answer_ar"], f"ar:{r['name']}"))
    out = []
    for lang in pick_languages(items, languages, "covid-faq"):
        records = qa_records(items[lang], prefix=QA, negatives=negatives, seed=seed)
        out.append(MemoryDataset(f"covid-faq-{lang}", records[:max_records]))
    return out


def _windows(text: str, max_chars: int) -> list[tuple[int, int]]:
    """Spans of ``text``: its blank-line-separated paragraphs, long ones cut after a sentence end (or hard at
    ``max_chars`` when a sentence is longer) into pieces of at most ``max_chars`` characters."""
    spans = []
    for m in re.finditer(r"(?:(?!\n\n).)+", text, re.S):
        start, end = m.span()
        while end - start > max_chars:
            cuts = [c.end() for c in re.finditer(r"[.!?]\s+", text[start:start + max_chars])]
            cut = start + (cuts[-1] if cuts else max_chars)
            spans.append((start, cut))
            start = cut
        spans.append((start, end))
    return spans


def covid_qa_papers(root: str | Path, *, max_chars: int = 1000, negatives: int = 3, seed: int = 0,
                    max_records: int | None = None) -> list[MemoryDataset]:
    """COVID-QA (``data/question-answering/*.json``, SQuAD JSON, one whole paper per context): question -> the
    piece of its paper holding the answer (paragraphs cut to ``max_chars``, so the answer survives a 256-token
    truncation); other pieces of the same paper of at least 200 characters are the hard negatives."""
    files = sorted((Path(root) / "data" / "question-answering").glob("*.json"))
    if not files:
        raise ValueError(f"{root} has no data/question-answering/*.json files")
    items = []
    for path in files:
        check_allowed(path)
        for n, article in enumerate(json.loads(path.read_text(encoding="utf-8"))["data"]):
            paper = f"{path.name}#{n}"
            for para in article["paragraphs"]:
                text = para["context"]
                pieces = [(s, e, text[s:e].strip()) for s, e in _windows(text, max_chars)]
                items += [QAItem("", p, paper) for _, _, p in pieces if len(p) >= 200]
                for qa in para["qas"]:
                    if qa.get("is_impossible") or not qa["answers"]:
                        continue
                    start = qa["answers"][0]["answer_start"]
                    items += [QAItem(qa["question"], p, paper) for s, e, p in pieces if s <= start < e]
    records = qa_records(items, prefix=QA, negatives=negatives, seed=seed)
    return [MemoryDataset("covid-papers-en", records[:max_records])]


def covid_question_pairs(root: str | Path, *, languages: list[str] | None = None,
                         max_records: int | None = None) -> list[MemoryDataset]:
    """``data/eval_question_similarity_<lang>.csv``: question_1 -> the question_2s marked similar, with those
    marked not similar as negatives, one dataset per language (``covid-questions-de``)."""
    files = {p.stem.rsplit("_", 1)[1]: p for p in (Path(root) / "data").glob("eval_question_similarity_*.csv")}
    out = []
    for lang in pick_languages(files, languages, "covid-question-pairs"):
        rows = ((r["question_1"], r["question_2"], r["similar"] == "1") for r in _csv_rows(files[lang]))
        records = pair_records(rows, prefix=DUPLICATE_QUESTION)
        out.append(MemoryDataset(f"covid-questions-{lang}", records[:max_records]))
    return out
