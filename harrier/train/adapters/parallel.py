"""Line-aligned parallel text as bitext (``shared/data/train``): TICO-19 (en -> 38 languages, COVID-19 domain),
the UN Parallel Corpus dev/test sets (6-way: ar en es fr ru zh), WMT news test sets 2008-2015 (fra, spa, hin <->
eng) and the RO-STS sentences with their English originals.

Query = the non-English side (the pivot's partner for the UN sets), positive = its translation, bitext
instruction; one dataset per language pair. A sentence met twice keeps one record with each distinct
translation as a positive; ``max_records`` keeps the first N records of each dataset.
"""

from __future__ import annotations

from pathlib import Path

from harrier.train.adapters.common import BITEXT
from harrier.train.adapters.shapes import join_lines, pair_records, pick_languages, read_aligned
from harrier.train.records import MemoryDataset

UN_LANGUAGES = ("ar", "en", "es", "fr", "ru", "zh")


def _bitext(name: str, pairs: list[tuple[str, str]], max_records: int | None) -> MemoryDataset:
    return MemoryDataset(name, pair_records(((x, y, True) for x, y in pairs), prefix=BITEXT)[:max_records])


def tico19(root: str | Path, *, languages: list[str] | None = None,
           max_records: int | None = None) -> list[MemoryDataset]:
    """``testsets/en-<xx>/tico19-test.{<xx>,en}`` (2,100 lines each): <xx> sentence -> English, ``tico19-<xx>-en``
    (codes as in the folder names: ``es_LA``, ``pt_BR``, ``ti_ER``, ...)."""
    dirs = {d.name.removeprefix("en-"): d for d in (Path(root) / "testsets").glob("en-*") if d.is_dir()}
    if not dirs:
        raise ValueError(f"{root} has no testsets/en-<xx> folders")
    return [_bitext(f"tico19-{xx}-en", read_aligned(dirs[xx] / f"tico19-test.{xx}", dirs[xx] / "tico19-test.en"),
                    max_records) for xx in pick_languages(dirs, languages, "tico19")]


def un_parallel(root: str | Path, *, pivot: str = "en", languages: list[str] | None = None,
                max_records: int | None = None) -> list[MemoryDataset]:
    """``testsets/{devset,testset}/UNv1.0.<set>.<lang>`` (4,000 + 4,000 lines, aligned across all six languages):
    <lang> sentence -> ``pivot`` sentence, one dataset per other language (``un-ar-en``)."""
    if pivot not in UN_LANGUAGES:
        raise ValueError(f"un-parallel: pivot must be one of {', '.join(UN_LANGUAGES)}, got {pivot!r}")
    sets = sorted(d for d in (Path(root) / "testsets").glob("*set") if d.is_dir())
    if not sets:
        raise ValueError(f"{root} has no testsets/devset or testsets/testset folders")
    out = []
    for lang in pick_languages([x for x in UN_LANGUAGES if x != pivot], languages, "un-parallel"):
        pairs = [p for d in sets for p in read_aligned(d / f"UNv1.0.{d.name}.{lang}", d / f"UNv1.0.{d.name}.{pivot}")]
        out.append(_bitext(f"un-{lang}-{pivot}", pairs, max_records))
    return out


def wmt_news_2008_2015(root: str | Path, *, languages: list[str] | None = None, paragraph: int = 1,
                       max_records: int | None = None) -> list[MemoryDataset]:
    """``<xxx>-eng/<set>.{<xxx>,eng}`` (news-test2008 ... newsdiscusstest2015): <xxx> sentence -> English,
    ``wmt08-15-<xxx>-eng``; ``paragraph: N`` (> 1) joins N consecutive lines per side, as ``wmt-newstest`` does."""
    if paragraph < 1:
        raise ValueError(f"wmt-news-2008-2015: paragraph must be >= 1, got {paragraph}")
    dirs = {d.name.split("-")[0]: d for d in Path(root).glob("*-eng") if d.is_dir()}
    if not dirs:
        raise ValueError(f"{root} has no <xxx>-eng folders")
    out = []
    suffix = f"-p{paragraph}" if paragraph > 1 else ""
    for lang in pick_languages(dirs, languages, "wmt-news-2008-2015"):
        pairs = []
        for src in sorted(dirs[lang].glob(f"*.{lang}")):
            found = read_aligned(src, src.with_suffix(".eng"))
            pairs += join_lines(found, paragraph) if paragraph > 1 else found
        out.append(_bitext(f"wmt08-15-{lang}-eng{suffix}", pairs, max_records))
    return out


def ro_sts_parallel(root: str | Path, *, max_records: int | None = None) -> list[MemoryDataset]:
    """``dataset/ro-en/RO-STS.train.{ro,en}`` (RO-STS *train* sentences, line-aligned with the English STSb train
    originals): Romanian -> English, ``ro-sts-ro-en``."""
    d = Path(root) / "dataset" / "ro-en"
    return [_bitext("ro-sts-ro-en", read_aligned(d / "RO-STS.train.ro", d / "RO-STS.train.en"), max_records)]
