"""WMT newstest 2016-2018 (``<xxx>-eng/newstest201{6,7,8}.{xxx,eng}``, not an MTEB set): line-aligned bitext
(``wmt-newstest``) and inverse-cloze retrieval pairs from its articles (``wmt-ict``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from harrier.train.adapters.common import BITEXT, ICT, check_allowed
from harrier.train.adapters.shapes import join_lines, read_aligned
from harrier.train.records import MemoryDataset, Record


def wmt_newstest(root: str | Path, *, max_per_pair: int | None = None, paragraph: int = 1) -> list[MemoryDataset]:
    """``<xxx>-eng/newstest201{6,7,8}.{xxx,eng}`` line-aligned pairs; query = non-English side.

    ``paragraph: N`` (> 1) joins N consecutive lines of each file (newstest files are whole news articles in
    order) into one text per side: paragraph-length bitext, so students also learn to embed longer inputs.
    """
    if paragraph < 1:
        raise ValueError(f"wmt-newstest: paragraph must be >= 1, got {paragraph}")
    by_lang: dict[str, list[Record]] = {}
    for lang, src, tgt in _newstest_files(Path(root)):
        pairs = read_aligned(src, tgt)
        if paragraph > 1:
            pairs = join_lines(pairs, paragraph)
        by_lang.setdefault(lang, []).extend(Record(x, (y,), prefix=BITEXT) for x, y in pairs)
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
            check_allowed(src)
            check_allowed(tgt)
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
