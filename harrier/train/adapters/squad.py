"""SQuAD-format extractive QA sets as question -> paragraph retrieval (``shared/data/train``): ARCD (ar), CMRC 2018
(zh), DRCD (zh-Hant), PIAF (fr), JSQuAD (ja), TyDi QA GoldP train (en, ko, sw), iApp Wiki QA (th, SQuAD fields as
JSON lines in a zip).

The paragraph holding the answer is the positive; the other paragraphs of the same article (same title) are the
natural hard negatives, ``negatives`` of them per question, drawn reproducibly from ``seed``. One dataset per
corpus and language; ``max_records`` keeps the first N questions.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from harrier.train.adapters.common import QA, check_allowed
from harrier.train.adapters.shapes import QAItem, pick_languages, qa_records
from harrier.train.records import MemoryDataset


def squad_items(path: Path) -> Iterator[QAItem]:
    """Every (question, paragraph) of a SQuAD JSON file; the article is its title (or its position when untitled)."""
    check_allowed(path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    for n, article in enumerate(doc["data"]):
        key = article.get("title") or f"{path.name}#{n}"
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                yield QAItem(qa["question"], para["context"], key)


def _files(root: str | Path, pattern: str) -> list[Path]:
    files = sorted(Path(root).glob(pattern))
    if not files:
        raise ValueError(f"{root} has no {pattern} files")
    return files


def _dataset(name: str, items: Iterable[QAItem], negatives: int, seed: int,
             max_records: int | None) -> MemoryDataset:
    return MemoryDataset(name, qa_records(items, prefix=QA, negatives=negatives, seed=seed)[:max_records])


def _from_files(name: str, files: list[Path], negatives: int, seed: int,
                max_records: int | None) -> list[MemoryDataset]:
    return [_dataset(name, (it for f in files for it in squad_items(f)), negatives, seed, max_records)]


def arcd(root: str | Path, *, negatives: int = 3, seed: int = 0,
         max_records: int | None = None) -> list[MemoryDataset]:
    """ARCD (``arcd-*.json``): Arabic Wikipedia questions -> paragraph."""
    return _from_files("arcd-ar", _files(root, "arcd-*.json"), negatives, seed, max_records)


def cmrc2018(root: str | Path, *, negatives: int = 3, seed: int = 0,
             max_records: int | None = None) -> list[MemoryDataset]:
    """CMRC 2018 (``cmrc2018_*.json``): Simplified Chinese questions -> paragraph (one paragraph per article)."""
    return _from_files("cmrc2018-zh", _files(root, "cmrc2018_*.json"), negatives, seed, max_records)


def drcd(root: str | Path, *, negatives: int = 3, seed: int = 0,
         max_records: int | None = None) -> list[MemoryDataset]:
    """DRCD (``DRCD_*.json``): Traditional Chinese Wikipedia questions -> paragraph."""
    return _from_files("drcd-zh-hant", _files(root, "DRCD_*.json"), negatives, seed, max_records)


def piaf(root: str | Path, *, negatives: int = 3, seed: int = 0,
         max_records: int | None = None) -> list[MemoryDataset]:
    """PIAF (``piaf-*.json``): French Wikipedia questions -> paragraph."""
    return _from_files("piaf-fr", _files(root, "piaf-*.json"), negatives, seed, max_records)


def jsquad(root: str | Path, *, negatives: int = 3, seed: int = 0,
           max_records: int | None = None) -> list[MemoryDataset]:
    """JSQuAD (``jsquad-v*/*.json`` under the JGLUE folder): Japanese questions -> paragraph; JSQuAD's
    ``"<title> [SEP] "`` paragraph prefix is dropped (raw paragraphs, as retrieval corpora hold them)."""
    items = (QAItem(it.question, it.passage.split(" [SEP] ", 1)[-1], it.article)
             for f in _files(root, "jsquad-v*/*.json") for it in squad_items(f))
    return [_dataset("jsquad-ja", items, negatives, seed, max_records)]


def tydiqa_goldp(root: str | Path, *, languages: list[str] | None = None, negatives: int = 3, seed: int = 0,
                 max_records: int | None = None) -> list[MemoryDataset]:
    """TyDi QA GoldP **train** files (``**/tydiqa.goldp.<lang>.train.json``), one dataset per language. Only train
    files are read: TyDi dev questions are Mr.TyDi's and MIRACL's test queries. Each gold passage is its own
    article, so there are no hard negatives; the stray ``<b>``/``</b>`` tags of some passages are removed."""
    files = {f.name.split(".")[2]: f for f in _files(root, "**/tydiqa.goldp.*.train.json")}
    out = []
    for lang in pick_languages(files, languages, "tydiqa-goldp"):
        items = (QAItem(it.question, re.sub(r"</?b>", "", it.passage), it.article) for it in squad_items(files[lang]))
        out.append(_dataset(f"tydiqa-{lang}", items, negatives, seed, max_records))
    return out


def iapp_wiki_qa(root: str | Path, *, negatives: int = 3, seed: int = 0,
                 max_records: int | None = None) -> list[MemoryDataset]:
    """iApp Wiki QA (``data.zip``: ``data/{train,valid,test}.jsonl``, all training data here): Thai questions ->
    Wikipedia article text; the article is ``article_id`` (one text each, so no hard negatives in practice)."""
    zpath = Path(root) / "data.zip"
    check_allowed(zpath)
    items = []
    with zipfile.ZipFile(zpath) as z:
        for member in sorted(n for n in z.namelist() if n.endswith(".jsonl")):
            check_allowed(zpath / member)
            for line in z.read(member).decode("utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    items.append(QAItem(row["question"], row["context"], row["article_id"]))
    return [_dataset("iapp-th", items, negatives, seed, max_records)]
