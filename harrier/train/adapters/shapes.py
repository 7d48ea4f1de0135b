"""Record shapes several adapters share: question -> passage with same-article hard negatives (``qa_records``),
pairs merged per query (``pair_records``), and line-aligned bitext files (``read_aligned``).

Every shape keeps one record per distinct query (first-seen order): a query met twice, with another passage or
translation, gets both as positives (the loop draws one per step), and never one of its own positives as a
negative. Duplicate queries as separate records would also sit in one batch as each other's false negatives.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harrier.train.adapters.common import check_allowed
from harrier.train.records import Record


@dataclass(frozen=True)
class QAItem:
    """One question with one passage that answers it; ``article`` groups the passages of one source document
    (their other passages are the question's hard negatives); ``None`` when the corpus does not say. A blank
    question makes the item a passage of its article that answers nothing here (a hard-negative candidate)."""

    question: str
    passage: str
    article: str | None = None


def qa_records(items: Iterable[QAItem], *, prefix: str, negatives: int, seed: int) -> list[Record]:
    """One record per distinct question: its passages as positives, and up to ``negatives`` other passages of the
    same article(s) as hard negatives, drawn reproducibly from ``(seed, record index)``. An item with a blank
    question only adds its passage to its article's candidates; blank passages are skipped; surrounding whitespace
    is stripped."""
    if negatives < 0:
        raise ValueError(f"negatives must be >= 0, got {negatives}")
    # dicts as insertion-ordered sets
    found: dict[str, tuple[dict[str, None], dict[str, None]]] = {}  # question -> (passages, articles)
    by_article: dict[str, dict[str, None]] = {}
    for item in items:
        q, p = item.question.strip(), item.passage.strip()
        if not p:
            continue
        if item.article is not None:
            by_article.setdefault(item.article, {})[p] = None
        if q:
            passages, articles = found.setdefault(q, ({}, {}))
            passages[p] = None
            if item.article is not None:
                articles[item.article] = None
    records = []
    for i, (q, (passages, articles)) in enumerate(found.items()):
        pool = list(dict.fromkeys(p for a in articles for p in by_article[a] if p not in passages))
        k = min(negatives, len(pool))
        picked = sorted(np.random.default_rng([seed, i]).choice(len(pool), size=k, replace=False)) if k else []
        records.append(Record(q, tuple(passages), tuple(pool[j] for j in picked), prefix=prefix))
    return records


def pair_records(rows: Iterable[tuple[str, str, bool]], *, prefix: str) -> list[Record]:
    """``(query, text, positive?)`` rows -> one record per distinct query: its positive texts, and its other texts
    (``positive? = False``: an NLI contradiction, a dissimilar question) as negatives. Queries without a positive
    are dropped; blank texts and texts equal to their query are skipped."""
    found: dict[str, tuple[dict[str, None], dict[str, None]]] = {}  # query -> (positives, negatives), ordered sets
    for query, text, positive in rows:
        q, t = query.strip(), text.strip()
        if q and t and q != t:
            found.setdefault(q, ({}, {}))[0 if positive else 1][t] = None
    return [Record(q, tuple(pos), tuple(t for t in neg if t not in pos), prefix=prefix)
            for q, (pos, neg) in found.items() if pos]


def read_aligned(src: Path, tgt: Path) -> list[tuple[str, str]]:
    """The stripped line pairs of two line-aligned files where both sides are non-blank (each file checked by
    the evaluation-data guard)."""
    check_allowed(src)
    check_allowed(tgt)
    a = src.read_text(encoding="utf-8").splitlines()
    b = tgt.read_text(encoding="utf-8").splitlines()
    if len(a) != len(b):
        raise ValueError(f"{src} and {tgt} are not line-aligned ({len(a)} vs {len(b)} lines)")
    return [(x.strip(), y.strip()) for x, y in zip(a, b, strict=True) if x.strip() and y.strip()]


def join_lines(pairs: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """Consecutive runs of ``n`` pairs joined into one pair per side (a trailing partial run is dropped)."""
    chunks = [pairs[i:i + n] for i in range(0, len(pairs) - n + 1, n)]
    return [(" ".join(x for x, _ in c), " ".join(y for _, y in c)) for c in chunks]


def pick_languages(available: Iterable[str], wanted: list[str] | None, adapter: str) -> list[str]:
    """``available`` (sorted) filtered by an adapter's ``languages`` option; unknown codes are a ValueError."""
    available = sorted(available)
    if wanted is None:
        return available
    unknown = sorted(set(wanted) - set(available))
    if unknown:
        raise ValueError(f"{adapter}: unknown languages {unknown}; available: {', '.join(available)}")
    return [x for x in available if x in wanted]
