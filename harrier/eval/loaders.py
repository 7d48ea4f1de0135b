"""Readers for the raw dataset files under the data root (each folder documents its origin in SOURCE.txt).

Each reader returns the texts exactly as mteb's Hugging Face copy of the dataset holds them (checked against the
character counts in mteb's descriptive statistics, see tests/eval/test_loaders.py), so scores are comparable with
published ones. Known residual differences are noted where they occur.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import tarfile
import tokenize
import zipfile
from functools import cache
from pathlib import Path

from harrier.eval.data import BitextData, ClassificationData, ClusteringData, PairData, RetrievalData

csv.field_size_limit(1 << 30)


def _need(path: Path) -> Path:
    if not path.exists():
        raise ValueError(f"data file {path} does not exist; check --data-root")
    return path


def _read_lines_keep_newline(path: Path) -> list[str]:
    # mteb's Tatoeba keeps each line's trailing newline (its character counts are one per line higher)
    text = _need(path).read_text(encoding="utf-8")
    return text.splitlines(keepends=True)


def tatoeba(root: Path, subset: str, split: str) -> BitextData:
    """LASER Tatoeba ``xxx-eng``: sentence1 = xxx, sentence2 = eng, each with its trailing newline (as in mteb)."""
    lang = subset.split("-")[0]
    folder = root / "tatoeba-laser"
    return BitextData(_read_lines_keep_newline(folder / f"tatoeba.{lang}-eng.{lang}"),
                      _read_lines_keep_newline(folder / f"tatoeba.{lang}-eng.eng"))


def stsbenchmark_en(root: Path, subset: str, split: str) -> PairData:
    """Original STS Benchmark tarball (genre, file, year, id, score, sentence1, sentence2)."""
    name = {"test": "sts-test.csv", "validation": "sts-dev.csv", "dev": "sts-dev.csv", "train": "sts-train.csv"}[split]
    with tarfile.open(_need(root / "stsbenchmark-en" / "Stsbenchmark.tar.gz")) as tar:
        member = tar.extractfile(f"stsbenchmark/{name}")
        assert member is not None
        lines = member.read().decode("utf-8").splitlines()
    rows = [line.split("\t") for line in lines if line.strip()]
    return PairData([r[5] for r in rows], [r[6] for r in rows], scores=[float(r[4]) for r in rows])


def stsb_multi_mt(root: Path, subset: str, split: str) -> PairData:
    """PhilipMay/stsb-multi-mt CSV without header: sentence1, sentence2, score."""
    path = _need(root / "stsb-multi-mt" / f"stsb-{subset}-{split}.csv")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    return PairData([r[0] for r in rows], [r[1] for r in rows], scores=[float(r[2]) for r in rows])


# mteb STS17 subset -> SemEval-2017 track file; mteb's en-ar/en-tr keep the files' column order (English first)
STS17_TRACKS = {"ar-ar": "track1.ar-ar", "en-ar": "track2.ar-en", "es-es": "track3.es-es", "es-en": "track4a.es-en",
                "en-en": "track5.en-en", "en-tr": "track6.tr-en"}


def sts17(root: Path, subset: str, split: str) -> PairData:
    """SemEval-2017 STS tracks. Track 6 (tr-en) has 500 input lines for 250 gold scores: the first 250 are the pairs
    (their lengths equal mteb's). Arabic texts differ from mteb's copy by a few characters (release v1.1 vs the
    sentence-transformers re-export)."""
    track = STS17_TRACKS[subset]
    folder = root / "sts17-semeval"
    with zipfile.ZipFile(_need(folder / "Sts2017.eval.v1.1.zip")) as z:
        lines = z.read(f"STS2017.eval.v1.1/STS.input.{track}.txt").decode("utf-8").split("\n")
    with zipfile.ZipFile(_need(folder / "Sts2017.gs.zip")) as z:
        gold = [float(x) for x in z.read(f"STS2017.gs/STS.gs.{track}.txt").decode("utf-8").split("\n") if x.strip()]
    pairs = [line.split("\t") for line in lines[: len(gold)]]
    return PairData([p[0] for p in pairs], [p[1] for p in pairs], scores=gold)


def pawsx_de(root: Path, subset: str, split: str) -> PairData:
    """PAWS-X German (id, sentence1, sentence2, label); mteb's validation split is the dev file."""
    name = {"test": "test.tsv", "validation": "dev.tsv"}[split]
    path = _need(root / "pawsx-de" / name)
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return PairData([r["sentence1"] for r in rows], [r["sentence2"] for r in rows],
                    labels=[int(r["label"]) for r in rows])


def _sib_rows(root: Path, subset: str, split: str) -> list[dict[str, str]]:
    name = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}[split]
    path = _need(root / "sib-200" / "annotated" / subset / name)
    with path.open(encoding="utf-8", newline="") as f:  # quoted fields are unquoted, as in mteb's copy
        return list(csv.DictReader(f, delimiter="\t"))


def sib200_classification(root: Path, subset: str, split: str) -> ClassificationData:
    """SIB-200 topic classification: train split is the training pool; train, validation and test are evaluated."""
    train = _sib_rows(root, subset, "train")
    rows = _sib_rows(root, subset, split)
    return ClassificationData([r["text"] for r in train], [r["category"] for r in train],
                              [r["text"] for r in rows], [r["category"] for r in rows])


def sib200_clustering(root: Path, subset: str, split: str) -> ClusteringData:
    """SIB-200 clustering: all 1,004 sentences (train + validation + test, in that order) with their topics."""
    rows = [r for s in ("train", "validation", "test") for r in _sib_rows(root, subset, s)]
    return ClusteringData([r["text"] for r in rows], [r["category"] for r in rows])


@cache
def _massive_partition(root: Path, partition: str) -> tuple[tuple[str, str, str], ...]:
    path = _need(root / "massive-partial" / "ttd" / f"en-US_{partition}.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return tuple((str(r["id"]), r["intent"], r["scenario"]) for r in rows)


@cache
def _massive_texts(root: Path, locale: str) -> dict[str, str]:
    from harrier.extras import require

    openpyxl = require("openpyxl", "eval", "reading MASSIVE's .xlsx files")

    book = openpyxl.load_workbook(_need(root / "massive-partial" / "xlsx" / f"en-{locale}.xlsx"), read_only=True)
    rows = book.active.iter_rows(values_only=True)
    next(rows)
    out = {str(r[0]): str(r[1]) for r in rows if r[0] is not None}
    book.close()
    return out


MASSIVE_LOCALES = {
    "af": "af-ZA", "am": "am-ET", "ar": "ar-SA", "az": "az-AZ", "bn": "bn-BD", "cy": "cy-GB", "da": "da-DK",
    "de": "de-DE", "el": "el-GR", "en": "en-US", "es": "es-ES", "fa": "fa-IR", "fi": "fi-FI", "fr": "fr-FR",
    "he": "he-IL", "hi": "hi-IN", "hu": "hu-HU", "hy": "hy-AM", "id": "id-ID", "is": "is-IS", "it": "it-IT",
    "ja": "ja-JP", "jv": "jv-ID", "ka": "ka-GE", "km": "km-KH", "kn": "kn-IN", "ko": "ko-KR", "lv": "lv-LV",
    "ml": "ml-IN", "mn": "mn-MN", "ms": "ms-MY", "my": "my-MM", "nb": "nb-NO", "nl": "nl-NL", "pl": "pl-PL",
    "pt": "pt-PT", "ro": "ro-RO", "ru": "ru-RU", "sl": "sl-SL", "sq": "sq-AL", "sv": "sv-SE", "sw": "sw-KE",
    "ta": "ta-IN", "te": "te-IN", "th": "th-TH", "tl": "tl-PH", "tr": "tr-TR", "ur": "ur-PK", "vi": "vi-VN",
    "zh-CN": "zh-CN", "zh-TW": "zh-TW",
}


def _massive(root: Path, subset: str, split: str, field: int) -> ClassificationData:
    texts = _massive_texts(root, MASSIVE_LOCALES[subset])
    partition = {"validation": "dev", "test": "test", "train": "train"}[split]
    train = _massive_partition(root, "train")
    rows = _massive_partition(root, partition)
    return ClassificationData([texts[r[0]] for r in train], [r[field] for r in train],
                              [texts[r[0]] for r in rows], [r[field] for r in rows])


def massive_intent(root: Path, subset: str, split: str) -> ClassificationData:
    """MASSIVE 1.1 intents: locale texts (xlsx) joined by id with en-US labels and partitions, en-US row order."""
    return _massive(root, subset, split, 1)


def massive_scenario(root: Path, subset: str, split: str) -> ClassificationData:
    return _massive(root, subset, split, 2)


def _masakha_rows(root: Path, subset: str) -> list[dict[str, str]]:
    path = _need(root / "masakhanews" / subset / "test.tsv")
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def masakhanews_clustering(root: Path, subset: str, split: str) -> ClusteringData:
    """MasakhaNEWS headlines of the test split, one clustering set per language."""
    rows = _masakha_rows(root, subset)
    return ClusteringData([r["headline"] for r in rows], [r["category"] for r in rows])


def xquad(root: Path, subset: str, split: str) -> RetrievalData:
    """XQuAD as retrieval: each question retrieves its paragraph; duplicate question texts are kept once."""
    doc = json.loads(_need(root / "xquad" / f"xquad.{subset}.json").read_text(encoding="utf-8"))
    corpus: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    seen: dict[str, str] = {}
    for article in doc["data"]:
        for para in article["paragraphs"]:
            did = f"d{len(corpus)}"
            corpus[did] = para["context"]
            for qa in para["qas"]:
                qid = seen.setdefault(qa["question"], f"q{len(seen)}")
                queries[qid] = qa["question"]
                qrels.setdefault(qid, {})[did] = 1
    return RetrievalData(queries, corpus, qrels)


def _abstract_sentences(cell: str) -> list[str]:
    # the CSV holds numpy's repr of a string array: quoted literals separated by whitespace, no commas
    tokens = tokenize.generate_tokens(io.StringIO(cell).readline)
    return [ast.literal_eval(t.string) for t in tokens if t.type == tokenize.STRING]


def scifact(root: Path, subset: str, split: str) -> RetrievalData:
    """BEIR SciFact test: the 300 validation claims against the 5,183 abstracts (title + " " + sentences).

    Queries match mteb's exactly; the corpus text is 0.2% longer than mteb's (BEIR's own sentence joining)."""
    with zipfile.ZipFile(_need(root / "scifact" / "scifact.zip")) as z:
        corpus_rows = list(csv.DictReader(io.StringIO(z.read("corpus_train.csv").decode("utf-8"))))
        claim_rows = list(csv.DictReader(io.StringIO(z.read("claims_validation.csv").decode("utf-8"))))
    corpus = {r["doc_id"]: (r["title"] + " " + " ".join(_abstract_sentences(r["abstract"]))).strip()
              for r in corpus_rows}
    queries = {r["id"]: r["claim"] for r in claim_rows}
    # BEIR's qrels are the claims' cited documents (present in the corpus)
    qrels = {r["id"]: {d: 1 for d in r["cited_doc_ids"].strip("[]").split() if d in corpus} for r in claim_rows}
    return RetrievalData(queries, corpus, qrels)
