"""How each task type is scored: one frozen dataclass per task type, its fields mteb's protocol constants.

A ``TaskSpec`` holds one of these (its type's default when none is given); ``run.py`` reads the fields by name
and the results JSON records them, so a result file says how its scores were computed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class BitextProtocol:
    """Nearest neighbour by cosine over the whole target side (mteb BitextMiningEvaluator); no constants."""


@dataclass(frozen=True)
class STSProtocol:
    """Correlation of pair similarities with gold scores normalised from ``[min_score, max_score]``."""

    min_score: float = 0.0
    max_score: float = 5.0


@dataclass(frozen=True)
class PairClassificationProtocol:
    """Average precision / best-threshold accuracy and F1 of pair similarities; no constants."""


@dataclass(frozen=True)
class ClassificationProtocol:
    """Logistic regression on ``n_experiments`` undersamplings of ``samples_per_label`` training texts."""

    n_experiments: int = 10
    samples_per_label: int = 8


@dataclass(frozen=True)
class ClusteringProtocol:
    """mteb's v2 clustering: ``max_documents`` sampled rows, bootstrapped k-means V-measure over
    ``n_clusters`` draws of ``cluster_size`` documents, one ``random.Random`` shared across the task's subsets."""

    max_documents: int | None = None
    n_clusters: int = 10
    cluster_size: int = 16_384


@dataclass(frozen=True)
class LegacyClusteringProtocol:
    """mteb's AbsTaskClusteringLegacy: the subset split into ``sets`` consecutive parts, each clustered alone."""

    sets: int = 1


@dataclass(frozen=True)
class RetrievalProtocol:
    """Cosine ranking of the whole corpus (or each query's candidates, reranking), top 1000; no constants."""


TaskProtocol = (BitextProtocol | STSProtocol | PairClassificationProtocol | ClassificationProtocol
                | ClusteringProtocol | LegacyClusteringProtocol | RetrievalProtocol)

# task type -> the protocol classes it accepts (the first is its default)
PROTOCOLS: dict[str, tuple[type, ...]] = {
    "BitextMining": (BitextProtocol,),
    "STS": (STSProtocol,),
    "PairClassification": (PairClassificationProtocol,),
    "Classification": (ClassificationProtocol,),
    "Clustering": (ClusteringProtocol, LegacyClusteringProtocol),
    "Retrieval": (RetrievalProtocol,),
    "Reranking": (RetrievalProtocol,),
}


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
    return {"name": type(protocol).__name__, **dataclasses.asdict(protocol)}
