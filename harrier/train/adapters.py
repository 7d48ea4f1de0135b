"""Turn the training sets under ``shared/data`` into records, one dataset per language (pair) for homogeneous
batches.

Only training material is read: WMT newstest (not an MTEB set), MASSIVE utterances of the *train* partition,
STSb-multi-mt *train* pairs, SciFact *train* claims. SIB-200, Tatoeba, XQuAD, every STS test split and every
test/dev split are evaluation data; no adapter opens them (``test_adapters`` checks the files touched).
Instructions use mteb's template (no trailing space) with the task-type instruction the evaluation uses, so the
training prefix is the one the model meets at evaluation time.
"""

from __future__ import annotations

import ast
import csv
import inspect
import io
import json
import logging
import re
import tokenize
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from harrier.prompts import MTEB_TEMPLATE, instruction_prefix
from harrier.train.data import MemoryDataset, Record

log = logging.getLogger(__name__)
BITEXT = instruction_prefix("Retrieve parallel sentences", template=MTEB_TEMPLATE)
STS = instruction_prefix("Retrieve semantically similar text", template=MTEB_TEMPLATE)
INTENT = instruction_prefix("Given a user utterance as query, find the user intents", template=MTEB_TEMPLATE)
SCIFACT = instruction_prefix("Given a scientific claim, retrieve documents that support or refute the claim",
                             template=MTEB_TEMPLATE)
ICT = instruction_prefix("Given a sentence, retrieve the passage it was taken from", template=MTEB_TEMPLATE)
EVAL_SETS = ("sib-200", "tatoeba", "xquad")
EVAL_SPLITS = ("test", "dev", "validation")


def _check_allowed(path: Path) -> None:
    """Refuse evaluation data sets and test/dev split files."""
    parts = [p.lower() for p in path.parts]
    split_words = set(re.split(r"[-_.]", parts[-1])) if parts else set()
    bad = [s for s in EVAL_SETS if any(p.startswith(s) for p in parts)] + [w for w in EVAL_SPLITS if w in split_words]
    if bad:
        raise ValueError(f"{path} is evaluation data ({bad[0]}); harrier never trains on it")


def wmt_newstest(root: str | Path, *, max_per_pair: int | None = None, paragraph: int = 1) -> list[MemoryDataset]:
    """``<xxx>-eng/newstest201{6,7,8}.{xxx,eng}`` line-aligned pairs; query = non-English side.

    ``paragraph: N`` (> 1) joins N consecutive lines of each file (newstest files are whole news articles in
    order) into one text per side: paragraph-length bitext, so students also learn to embed longer inputs.
    """
    if paragraph < 1:
        raise ValueError(f"wmt-newstest: paragraph must be >= 1, got {paragraph}")
    by_lang: dict[str, list[Record]] = {}
    for lang, src, tgt in _newstest_files(Path(root)):
        records = by_lang.setdefault(lang, [])
        a = src.read_text(encoding="utf-8").splitlines()
        b = tgt.read_text(encoding="utf-8").splitlines()
        if len(a) != len(b):
            raise ValueError(f"{src} and {tgt} are not line-aligned ({len(a)} vs {len(b)} lines)")
        pairs = [(x.strip(), y.strip()) for x, y in zip(a, b, strict=True) if x.strip() and y.strip()]
        if paragraph > 1:
            chunks = [pairs[i:i + paragraph] for i in range(0, len(pairs) - paragraph + 1, paragraph)]
            pairs = [(" ".join(x for x, _ in c), " ".join(y for _, y in c)) for c in chunks]
        records += [Record(x, (y,), prefix=BITEXT) for x, y in pairs]
    suffix = f"-p{paragraph}" if paragraph > 1 else ""
    return [MemoryDataset(f"wmt-{lang}-eng{suffix}", records[:max_per_pair]) for lang, records in by_lang.items()]


def _newstest_files(root: Path) -> Iterator[tuple[str, Path, Path]]:
    """(language, ``newstest*.<xxx>``, its ``.eng`` side) under ``<xxx>-eng/`` directories, in sorted order."""
    pairs = sorted(p for p in root.iterdir() if p.is_dir() and p.name.endswith("-eng"))
    if not pairs:
        raise ValueError(f"{root} has no <xxx>-eng directories")
    for pair_dir in pairs:
        lang = pair_dir.name.split("-")[0]
        for src in sorted(pair_dir.glob(f"newstest*.{lang}")):
            tgt = src.with_suffix(".eng")
            _check_allowed(src)
            _check_allowed(tgt)
            yield lang, src, tgt


def _newstest_sides(root: Path) -> Iterator[tuple[str, list[str]]]:
    """(language, lines) for each side of each ``<xxx>-eng/newstest*`` file (English once per distinct file)."""
    seen: set[str] = set()
    for lang, src, tgt in _newstest_files(root):
        for path, side in ((src, lang), (tgt, "eng")):
            text = path.read_text(encoding="utf-8")
            if side == "eng" and text in seen:
                continue
            seen.add(text)
            yield side, [x.strip() for x in text.splitlines() if x.strip()]


def _words(text: str, lang: str) -> int:
    """Whitespace words; Chinese (no spaces) also counts 3 characters as a word."""
    n = len(text.split())
    return max(n, len(text) // 3) if lang == "zho" else n


def wmt_ict(root: str | Path, *, paragraph: int = 6, min_words: int = 5, seed: int = 0) -> list[MemoryDataset]:
    """Inverse cloze task over newstest articles: query = one sentence of an N-sentence passage, positive = the
    passage without it (Lee et al., 2019). Monolingual retrieval pairs in every newstest language, one dataset
    per language (``ict-<xxx>``); the query sentence is drawn reproducibly from ``seed``."""
    if paragraph < 3:
        raise ValueError(f"wmt-ict: paragraph must be >= 3, got {paragraph}")
    root = Path(root)
    by_lang: dict[str, list[Record]] = defaultdict(list)
    for lang, lines in _newstest_sides(root):
        for start in range(0, len(lines) - paragraph + 1, paragraph):
            chunk = lines[start:start + paragraph]
            ok = [i for i, x in enumerate(chunk) if _words(x, lang) >= min_words]  # short sentences make no query
            if not ok:
                continue
            k = ok[int(np.random.default_rng([seed, len(by_lang[lang])]).integers(len(ok)))]
            rest = " ".join(x for i, x in enumerate(chunk) if i != k)
            by_lang[lang].append(Record(chunk[k], (rest,), prefix=ICT))
    return [MemoryDataset(f"ict-{lang}", records) for lang, records in sorted(by_lang.items())]


def _massive_train(root: Path) -> list[dict]:
    path = root / "ttd" / "en-US_train.jsonl"
    _check_allowed(path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = [r["id"] for r in rows if r.get("partition") != "train"]
    if bad:
        raise ValueError(f"{path} has non-train rows (first id {bad[0]})")
    return rows


def _massive_locale(xlsx: Path) -> dict[str, str]:
    from openpyxl import load_workbook  # the [eval] extra; only this adapter needs it

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


def stsb_multi_mt(root: str | Path, *, min_score: float = 4.0) -> list[MemoryDataset]:
    """STSb-multi-mt *train* pairs scoring at least ``min_score`` (of 5), one dataset per language."""
    out = []
    for path in sorted(Path(root).glob("stsb-*-train.csv")):
        _check_allowed(path)
        lang = path.stem.split("-")[1]
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        records = [Record(a, (b,), prefix=STS) for a, b, s in rows if float(s) >= min_score and a.strip() and b.strip()]
        out.append(MemoryDataset(f"stsb-{lang}", records))
    if not out:
        raise ValueError(f"{root} has no stsb-*-train.csv files")
    return out


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


ADAPTERS: dict[str, Callable[..., list[MemoryDataset]]] = {
    "wmt-newstest": wmt_newstest,
    "wmt-ict": wmt_ict,
    "massive-parallel": massive_parallel,
    "massive-intents": massive_intents,
    "stsb-multi-mt": stsb_multi_mt,
    "scifact-train": scifact_train,
}


def load_adapter(name: str, path: str | Path, **options) -> list[MemoryDataset]:
    if name not in ADAPTERS:
        raise ValueError(f"unknown adapter {name!r}; known: {', '.join(ADAPTERS)}")
    _check_allowed(Path(path))
    params = inspect.signature(ADAPTERS[name]).parameters.values()
    known = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"adapter {name!r}: unknown options {unknown}; known: {', '.join(known) or 'none'}")
    datasets = ADAPTERS[name](path, **options)
    log.info("adapter %s: %s", name, ", ".join(f"{d.name}={len(d)}" for d in datasets))
    return datasets
