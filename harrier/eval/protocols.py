"""How each task type is scored: one frozen dataclass per task type, its fields mteb's protocol constants.

A ``TaskSpec`` holds one of these (its type's default when none is given, the task's own when it is an MTEB task,
see ``metadata.py``); ``run.py`` reads the fields by name and the results JSON records them, so a result file says
how its scores were computed. ``override`` applies ``KEY=VALUE`` strings (``harrier eval --protocol``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass


def _positive(protocol: object, *names: str) -> None:
    for name in names:
        value = getattr(protocol, name)
        if value is not None and value < 1:
            raise ValueError(f"{type(protocol).__name__}.{name} must be >= 1, got {value}")


@dataclass(frozen=True)
class BitextProtocol:
    """Nearest neighbour by cosine over the whole target side (mteb BitextMiningEvaluator); no constants."""


@dataclass(frozen=True)
class STSProtocol:
    """Correlation of pair similarities with gold scores normalised from ``[min_score, max_score]``."""

    min_score: float = 0.0
    max_score: float = 5.0

    def __post_init__(self) -> None:
        if self.max_score <= self.min_score:
            raise ValueError(f"STSProtocol needs max_score > min_score, got {self.min_score} and {self.max_score}")


@dataclass(frozen=True)
class PairClassificationProtocol:
    """Average precision / best-threshold accuracy and F1 of pair similarities; no constants."""


@dataclass(frozen=True)
class ClassificationProtocol:
    """Logistic regression on ``n_experiments`` undersamplings of ``samples_per_label`` texts per label of the
    ``train_split`` lines (mteb AbsTaskClassification)."""

    n_experiments: int = 10
    samples_per_label: int = 8
    train_split: str = "train"

    def __post_init__(self) -> None:
        _positive(self, "n_experiments", "samples_per_label")


@dataclass(frozen=True)
class MultilabelClassificationProtocol:
    """k-nearest-neighbours (``n_neighbors``) on ``n_experiments`` undersamplings of the ``train_split`` lines, each
    keeping a line while any of its labels has fewer than ``samples_per_label``; evaluation splits over
    ``max_eval_samples`` rows are cut by iterative stratification (mteb AbsTaskMultilabelClassification)."""

    n_experiments: int = 10
    samples_per_label: int = 8
    train_split: str = "train"
    max_eval_samples: int | None = 3000
    n_neighbors: int = 5

    def __post_init__(self) -> None:
        _positive(self, "n_experiments", "samples_per_label", "max_eval_samples", "n_neighbors")


@dataclass(frozen=True)
class ClusteringProtocol:
    """mteb's v2 clustering (AbsTaskClustering): ``max_documents`` (or ``max_fraction`` of the) rows sampled, then
    bootstrapped k-means V-measure over ``n_clusters`` draws of ``cluster_size`` documents, one ``random.Random``
    shared across the task's subsets; neither cap: every row, in order, and no draw for the sample. Labels may be
    hierarchical (a list per row, top level first): each level up to ``max_depth`` is scored."""

    max_documents: int | None = None
    max_fraction: float | None = None
    n_clusters: int = 10
    cluster_size: int = 16_384
    batch_size: int = 512
    max_depth: int | None = None  # hierarchical labels: levels scored (None: all)

    def __post_init__(self) -> None:
        if self.max_documents is not None and self.max_fraction is not None:
            raise ValueError("ClusteringProtocol takes max_documents or max_fraction, not both")
        if self.max_fraction is not None and not 0 < self.max_fraction <= 1:
            raise ValueError(f"ClusteringProtocol.max_fraction must be in (0, 1], got {self.max_fraction}")
        _positive(self, "max_documents", "n_clusters", "cluster_size", "batch_size", "max_depth")

    def documents(self, n: int) -> int | None:
        """How many of ``n`` rows get embedded (None: all of them, unsampled)."""
        if self.max_fraction is not None:
            return min(n, int(self.max_fraction * n))
        return None if self.max_documents is None else min(n, self.max_documents)


@dataclass(frozen=True)
class LegacyClusteringProtocol:
    """mteb's AbsTaskClusteringLegacy: the subset split into ``sets`` consecutive parts, each clustered alone
    (``sets`` describes the data: mteb's dataset stores one cluster set per row)."""

    sets: int = 1

    def __post_init__(self) -> None:
        _positive(self, "sets")


@dataclass(frozen=True)
class RetrievalProtocol:
    """Cosine ranking of the whole corpus (or each query's candidates, reranking), top ``max(k_values)``; metrics at
    each of ``k_values``; ``ignore_identical_ids`` drops a document whose id is the query's (mteb AbsTaskRetrieval)."""

    k_values: tuple[int, ...] = (1, 3, 5, 10, 20, 100, 1000)
    ignore_identical_ids: bool = False
    skip_first_result: bool = False

    def __post_init__(self) -> None:
        if not self.k_values or any(k < 1 for k in self.k_values):
            raise ValueError(f"RetrievalProtocol.k_values must be integers >= 1, got {self.k_values}")
        object.__setattr__(self, "k_values", tuple(int(k) for k in self.k_values))


TaskProtocol = (BitextProtocol | STSProtocol | PairClassificationProtocol | ClassificationProtocol
                | MultilabelClassificationProtocol | ClusteringProtocol | LegacyClusteringProtocol
                | RetrievalProtocol)

# task type -> the protocol classes it accepts (the first is its default)
PROTOCOLS: dict[str, tuple[type, ...]] = {
    "BitextMining": (BitextProtocol,),
    "STS": (STSProtocol,),
    "PairClassification": (PairClassificationProtocol,),
    "Classification": (ClassificationProtocol,),
    "MultilabelClassification": (MultilabelClassificationProtocol,),
    "Clustering": (ClusteringProtocol, LegacyClusteringProtocol),
    "Retrieval": (RetrievalProtocol,),
    "Reranking": (RetrievalProtocol,),
    "InstructionReranking": (RetrievalProtocol,),
}
PROTOCOL_CLASSES: dict[str, type] = {c.__name__: c for classes in PROTOCOLS.values() for c in classes}
# fields that describe how the data is laid out rather than a constant of mteb's protocol (not compared)
DATA_FIELDS = frozenset({"sets"})


def default_protocol(task_type: str) -> TaskProtocol:
    """The protocol a task of ``task_type`` gets when it names none (mteb's defaults)."""
    return PROTOCOLS[task_type][0]()


def check_protocol(task_type: str, protocol: object) -> None:
    """ValueError unless ``protocol`` is one of the classes ``task_type`` accepts."""
    accepted = PROTOCOLS[task_type]
    if not isinstance(protocol, accepted):
        raise ValueError(f"a {task_type} task needs a protocol of type {' or '.join(c.__name__ for c in accepted)}, "
                         f"got {type(protocol).__name__}")


def protocol_json(protocol: TaskProtocol | None) -> dict[str, object]:
    """The protocol as the results JSON records it: its class name and every field (``{}`` for none)."""
    if protocol is None:
        return {}
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(protocol).items()}
    return {"name": type(protocol).__name__, **fields}


def protocol_from_json(doc: dict[str, object]) -> TaskProtocol:
    """The inverse of ``protocol_json`` (the shipped metadata stores protocols this way)."""
    fields = dict(doc)
    cls = PROTOCOL_CLASSES[str(fields.pop("name"))]
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


_NONE = ("none", "null")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _parse(protocol: object, key: str, text: str, annotation: str) -> object:
    optional = annotation.endswith("| None")
    base = annotation.removesuffix("| None").strip()
    if optional and text.lower() in _NONE:
        return None
    try:
        if base == "int":
            return int(text)
        if base == "float":
            return float(text)
        if base == "tuple[int, ...]":
            return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        pass
    else:
        if base == "str":
            return text
        if base == "bool" and text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
    expected = {"int": "an integer", "float": "a number", "tuple[int, ...]": "comma-separated integers",
                "bool": "true or false", "str": "a string"}[base]
    raise ValueError(f"protocol {key}={text!r}: {type(protocol).__name__}.{key} must be {expected}"
                     + (" or none" if optional else ""))


def override(protocol: TaskProtocol, assignments: Sequence[str]) -> tuple[TaskProtocol, dict[str, object]]:
    """``protocol`` with ``KEY=VALUE`` assignments applied (values parsed by the field's type), and the applied
    values by key (what the results JSON records); a ValueError names the valid keys or the expected value."""
    fields = {f.name: str(f.type) for f in dataclasses.fields(protocol)}
    changes: dict[str, object] = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"protocol {item!r}: expected KEY=VALUE")
        if key not in fields:
            valid = ", ".join(fields) if fields else "none: it has no constants"
            raise ValueError(f"unknown protocol key {key!r} for {type(protocol).__name__}; valid keys: {valid}")
        changes[key] = _parse(protocol, key, text.strip(), fields[key])
    return dataclasses.replace(protocol, **changes), changes
