"""The registry of built-in tasks: mteb's name, type, splits, subsets (in mteb's order) and the local reader.

Subset names and split names are mteb's, so result files and published scores line up. ``--langs`` matches a
subset by its name or by any ISO 639-3 code in ``languages`` (for Tatoeba only the non-English side).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harrier.eval import loaders
from harrier.eval.data import TaskData
from harrier.eval.metadata import MetadataUse
from harrier.eval.protocols import (
    ClassificationProtocol,
    ClusteringProtocol,
    LegacyClusteringProtocol,
    TaskProtocol,
    check_protocol,
    default_protocol,
)
from harrier.prompts import unknown_name_error

TASK_TYPES = ("BitextMining", "STS", "PairClassification", "Classification", "MultilabelClassification", "Clustering",
              "Retrieval", "Reranking", "InstructionReranking")
# the types scored by ranking documents for queries (query and document prompts, RetrievalProtocol)
RANKING_TYPES = ("Retrieval", "Reranking", "InstructionReranking")
# mteb's AbsTask*.abstask_prompt: the instruction an instruction model gets when the task has none of its own
DEFAULT_INSTRUCTIONS = {
    "BitextMining": "Retrieve parallel sentences.",
    "STS": "Retrieve semantically similar text.",
    "PairClassification": "Retrieve text that are semantically similar to the given text.",
    "Classification": "Classify user passages.",
    "MultilabelClassification": "Classify user passages.",
    "Clustering": "Identify categories in user passages.",
    "Retrieval": "Retrieve text based on user query.",
    "Reranking": "Retrieve text based on user query.",
    "InstructionReranking": "Retrieve text based on user query.",
}
MAIN_SCORES = {"BitextMining": "f1", "STS": "cosine_spearman", "PairClassification": "max_ap",
               "Classification": "accuracy", "Clustering": "v_measure", "Retrieval": "ndcg_at_10",
               "Reranking": "map_at_1000", "MultilabelClassification": "accuracy", "InstructionReranking": "p-MRR"}
_SIMILARITIES = ("similarity", "cosine", "manhattan", "euclidean", "dot", "max")
# the scores each task type's scorer produces (Retrieval/Reranking: at any k of the protocol)
SCORE_NAMES: dict[str, tuple[str, ...]] = {
    "BitextMining": ("f1", "precision", "recall", "accuracy"),
    "STS": ("cosine_spearman", "cosine_pearson", "manhattan_spearman", "manhattan_pearson", "euclidean_spearman",
            "euclidean_pearson", "spearman", "pearson"),
    "PairClassification": tuple(f"{s}_{m}" for s in _SIMILARITIES for m in ("ap", "accuracy", "f1", "precision",
                                                                            "recall")),
    "Classification": ("accuracy", "f1", "f1_weighted", "precision", "precision_weighted", "recall",
                       "recall_weighted", "ap", "ap_weighted"),
    "MultilabelClassification": ("accuracy", "lrap", "f1", "hamming"),
    "Clustering": ("v_measure", "ami"),
    "Retrieval": ("ndcg_at_k", "map_at_k", "recall_at_k", "precision_at_k", "mrr_at_k"),
}
SCORE_NAMES["Reranking"] = SCORE_NAMES["Retrieval"]
SCORE_NAMES["InstructionReranking"] = ("p-MRR", *SCORE_NAMES["Retrieval"])


def producible(task_type: str, score: str) -> bool:
    """Whether the scorer of ``task_type`` produces a score named ``score``."""
    if task_type in RANKING_TYPES:
        head, sep, k = score.rpartition("_at_")
        if sep and k.isdigit():
            return f"{head}_at_k" in SCORE_NAMES[task_type]
    return score in SCORE_NAMES.get(task_type, ())


SYMMETRIC_TYPES = ("BitextMining", "STS", "PairClassification", "Classification", "MultilabelClassification",
                   "Clustering")


@dataclass(frozen=True)
class TaskSpec:
    """One evaluable task. ``load(root, subset, split)`` reads one subset/split from the data root; ``protocol``
    (default: the task type's, see ``protocols.py``) holds the scoring constants; ``source`` names where a task
    that is not built in came from (recorded in its results)."""

    name: str
    type: str
    splits: tuple[str, ...]
    subsets: tuple[str, ...]
    load: Callable[[Path, str, str], TaskData]
    languages: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    main_score: str = ""
    prompt: str | Mapping[str, str] | None = None  # mteb TaskMetadata.prompt
    revision: str | None = None  # mteb dataset revision the published scores used
    protocol: TaskProtocol | None = None
    folder: str = ""  # the data-root folder holding the files
    source: str | None = None
    metadata: MetadataUse | None = None  # the MTEB task metadata the protocol came from (results record it)

    def __post_init__(self) -> None:
        if self.type not in TASK_TYPES:
            raise ValueError(f"unknown task type {self.type!r}; expected one of {', '.join(TASK_TYPES)}")
        if not self.main_score:
            object.__setattr__(self, "main_score", MAIN_SCORES[self.type])
        if not producible(self.type, self.main_score):
            raise ValueError(f"task {self.name}: a {self.type} task cannot produce main score {self.main_score!r} "
                             f"(e.g. {', '.join(SCORE_NAMES[self.type][:6])})")
        if self.protocol is None:
            object.__setattr__(self, "protocol", default_protocol(self.type))
        check_protocol(self.type, self.protocol)


TATOEBA_LANGS = (
    "sqi fry kur tur deu nld ron ang ido jav isl slv cym kaz est heb gla mar lat bel pms gle pes nob bul cbk hun uig "
    "rus spa hye tel afr mon arz hrv nov gsw nds ukr uzb lit ina lfn zsm ita cmn lvs glg ceb bre ben swg arq kab fra "
    "por tat oci pol war aze vie nno cha mhr dan ell amh pam hsb srp epo kzj awa fao mal ile bos cor cat eus yue swe "
    "dtp kat jpn csb xho orv ind tuk max swh hin dsb ber tam slk tgl ast mkd khm ces tzl urd ara kor yid fin tha wuu"
).split()
STSB_MULTI = {"en": "eng", "de": "deu", "es": "spa", "fr": "fra", "it": "ita", "nl": "nld", "pl": "pol", "pt": "por",
              "ru": "rus", "zh": "cmn"}
STS17 = {"ar-ar": ("ara",), "en-ar": ("eng", "ara"), "en-en": ("eng",), "en-tr": ("eng", "tur"),
         "es-en": ("spa", "eng"), "es-es": ("spa",)}
_MASSIVE_ISO3 = ("afr amh ara aze ben cym dan deu ell eng spa fas fin fra heb hin hun hye ind isl ita jpn jav kat khm "
                 "kan kor lav mal mon msa mya nob nld pol por ron rus slv sqi swe swa tam tel tha tgl tur urd vie "
                 "cmn cmn").split()
MASSIVE_ISO = dict(zip(loaders.MASSIVE_LOCALES, _MASSIVE_ISO3, strict=True))
MASAKHA = ("amh", "eng", "fra", "hau", "ibo", "lin", "lug", "orm", "pcm", "run", "sna", "som", "swa", "tir", "xho",
           "yor")
XQUAD = {"ar": "arb", "de": "deu", "el": "ell", "en": "eng", "es": "spa", "hi": "hin", "ro": "ron", "ru": "rus",
         "th": "tha", "tr": "tur", "vi": "vie", "zh": "zho"}
# SIB-200 folders that mteb's SIB200 tasks do not include (mteb has 197 subsets, sorted by name)
SIB_NOT_IN_MTEB = frozenset({"ace_Arab", "arb_Arab", "bjn_Arab", "kas_Arab", "knc_Arab", "min_Arab", "taq_Latn",
                             "zho_Hans"})


def sib_subsets(root: Path) -> tuple[str, ...]:
    folder = root / "sib-200" / "annotated"
    if not folder.is_dir():
        return ()
    return tuple(sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in SIB_NOT_IN_MTEB))


def builtin_tasks(root: Path) -> dict[str, TaskSpec]:
    """All built-in tasks; SIB-200 subsets are listed from the data root (the others are fixed)."""
    sib = sib_subsets(root)
    sib_langs = {s: (s.split("_")[0],) for s in sib}
    specs = [
        TaskSpec("Tatoeba", "BitextMining", ("test",), tuple(f"{x}-eng" for x in TATOEBA_LANGS), loaders.tatoeba,
                 {f"{x}-eng": (x,) for x in TATOEBA_LANGS}, revision="69e8f12da6e31d59addadda9a9c8a2e601a0e282",
                 folder="tatoeba-laser"),
        TaskSpec("STSBenchmark", "STS", ("test",), ("default",), loaders.stsbenchmark_en, {"default": ("eng",)},
                 revision="b0fddb56ed78048fa8b90373c8a3cfc37b684831", folder="stsbenchmark-en"),
        TaskSpec("STSBenchmarkMultilingualSTS", "STS", ("dev", "test"), tuple(STSB_MULTI), loaders.stsb_multi_mt,
                 {k: (v,) for k, v in STSB_MULTI.items()}, revision="29afa2569dcedaaa2fe6a3dcfebab33d28b82e8c",
                 folder="stsb-multi-mt"),
        TaskSpec("STS17", "STS", ("test",), tuple(STS17), loaders.sts17, STS17,
                 revision="faeb762787bd10488a50c8b5be4a3b82e411949c", folder="sts17-semeval"),
        TaskSpec("PawsXPairClassification", "PairClassification", ("test", "validation"), ("de",), loaders.pawsx_de,
                 {"de": ("deu",)}, revision="558da352e7dba3ed3229fc4922aef2ebaff0a90b", folder="pawsx-de"),
        TaskSpec("SIB200Classification", "Classification", ("train", "validation", "test"), sib,
                 loaders.sib200_classification, sib_langs, revision="a74d7350ea12af010cfb1c21e34f1f81fd2e615b",
                 protocol=ClassificationProtocol(n_experiments=10, samples_per_label=8), folder="sib-200"),
        TaskSpec("SIB200ClusteringS2S", "Clustering", ("test",), sib, loaders.sib200_clustering, sib_langs,
                 revision="a74d7350ea12af010cfb1c21e34f1f81fd2e615b", protocol=ClusteringProtocol(max_documents=1004),
                 folder="sib-200"),
        TaskSpec("MassiveIntentClassification", "Classification", ("validation", "test"), tuple(MASSIVE_ISO),
                 loaders.massive_intent, {k: (v,) for k, v in MASSIVE_ISO.items()},
                 prompt="Given a user utterance as query, find the user intents",
                 revision="4672e20407010da34463acc759c162ca9734bca6", folder="massive-partial"),
        TaskSpec("MassiveScenarioClassification", "Classification", ("validation", "test"), tuple(MASSIVE_ISO),
                 loaders.massive_scenario, {k: (v,) for k, v in MASSIVE_ISO.items()},
                 prompt="Given a user utterance as query, find the user scenarios",
                 revision="fad2c6e8459f9e1c45d9315f4953d921437d70f8", folder="massive-partial"),
        TaskSpec("MasakhaNEWSClusteringS2S", "Clustering", ("test",), MASAKHA, loaders.masakhanews_clustering,
                 {k: (k,) for k in MASAKHA}, revision="5dddcb139010208a28c3dcc2568560061c210097",
                 protocol=LegacyClusteringProtocol(sets=5), folder="masakhanews"),
        TaskSpec("XQuADRetrieval", "Retrieval", ("validation",), tuple(XQUAD), loaders.xquad,
                 {k: (v,) for k, v in XQUAD.items()}, revision="194842d6a49baddf6cd3f4d5130ab3c7756268d2",
                 folder="xquad"),
        TaskSpec("SciFact", "Retrieval", ("test",), ("default",), loaders.scifact, {"default": ("eng",)},
                 prompt={"query": "Given a scientific claim, retrieve documents that support or refute the claim"},
                 revision="d56462d0e63a25450459c4f213e49ffdb866f7f9", folder="scifact"),
    ]
    return {s.name: s for s in specs}


# Named suites: (task, subsets or None for all, splits or None for all)
SUITES: dict[str, tuple[tuple[str, tuple[str, ...] | None, tuple[str, ...] | None], ...]] = {
    "quick": (
        ("STSBenchmark", None, None),
        ("STS17", ("en-en", "es-es", "en-ar"), None),
        ("Tatoeba", ("deu-eng", "fra-eng", "cmn-eng"), None),
        ("PawsXPairClassification", ("de",), ("test",)),
        ("SIB200Classification", ("eng_Latn", "deu_Latn"), ("test",)),
        ("MasakhaNEWSClusteringS2S", ("eng", "fra"), None),
        ("XQuADRetrieval", ("de",), None),
    ),
    "reproduce": (
        ("STSBenchmark", None, None),
        ("STS17", None, None),
        ("STSBenchmarkMultilingualSTS", ("nl", "de", "fr"), ("test",)),
        ("Tatoeba", ("deu-eng", "fra-eng", "spa-eng", "cmn-eng", "jpn-eng"), None),
        ("SIB200Classification", ("nld_Latn", "jpn_Jpan", "deu_Latn"), None),
        ("MassiveIntentClassification", ("de", "sw", "en"), ("test",)),
        ("PawsXPairClassification", ("de",), ("test",)),
    ),
}


@dataclass(frozen=True)
class Selection:
    """One task with the subsets and splits to evaluate."""

    task: TaskSpec
    subsets: tuple[str, ...]
    splits: tuple[str, ...]


def _match_langs(task: TaskSpec, langs: Sequence[str]) -> tuple[str, ...]:
    wanted = {x.strip() for x in langs if x.strip()}
    return tuple(s for s in task.subsets if s in wanted or wanted & set(task.languages.get(s, ())))


def select_tasks(names: Sequence[str], root: Path, *, langs: Sequence[str] | None = None,
                 splits: Sequence[str] | None = None) -> list[Selection]:
    """Resolve task names (and optional language/split filters) into selections; unknown names raise ValueError."""
    registry = builtin_tasks(root)
    out = []
    for name in names:
        if name not in registry:
            raise unknown_name_error("task", name, list(registry))
        task = registry[name]
        subsets = task.subsets if not langs else _match_langs(task, langs)
        if not subsets:
            raise ValueError(f"task {name} has no subset for languages {', '.join(langs or [])}; "
                             f"its subsets are {', '.join(task.subsets[:30])}")
        use_splits = tuple(task.splits) if not splits else tuple(s for s in task.splits if s in splits)
        if not use_splits:
            raise ValueError(f"task {name} has no split {', '.join(splits or [])}; its splits are "
                             f"{', '.join(task.splits)}")
        out.append(Selection(task, subsets, use_splits))
    return out


def select_suite(suite: str, root: Path) -> list[Selection]:
    """The selections of a named suite (see SUITES)."""
    if suite not in SUITES:
        raise unknown_name_error("suite", suite, list(SUITES))
    registry = builtin_tasks(root)
    out = []
    for name, subsets, splits in SUITES[suite]:
        task = registry[name]
        out.append(Selection(task, subsets or task.subsets, splits or task.splits))
    return out
