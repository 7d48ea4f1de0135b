"""Containers for one evaluated (subset, split) of each task type. Texts are exactly what gets embedded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PairData:
    """STS (``scores``) or pair classification (``labels`` 0/1): text1[i] is compared with text2[i]."""

    text1: Sequence[str]
    text2: Sequence[str]
    scores: Sequence[float] = ()
    labels: Sequence[int] = ()


@dataclass(frozen=True)
class BitextData:
    """Parallel sentences: text1[i] must find text2[i] among all of text2."""

    text1: Sequence[str]
    text2: Sequence[str]


@dataclass(frozen=True)
class ClassificationData:
    """A training pool (undersampled per experiment) and the evaluated split; multilabel classification: each
    label is a list of labels."""

    train_texts: Sequence[str]
    train_labels: Sequence[object]
    texts: Sequence[str]
    labels: Sequence[object]


@dataclass(frozen=True)
class ClusteringData:
    texts: Sequence[str]
    labels: Sequence[object]


@dataclass(frozen=True)
class RetrievalData:
    """Queries, corpus, graded qrels; ``candidates`` (reranking) restricts each query to listed documents;
    ``changed`` (instruction reranking): base query id -> the documents whose relevance the changed instruction of
    ``{id}-changed`` alters against ``{id}-og`` (p-MRR)."""

    queries: Mapping[str, str]
    corpus: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]]
    candidates: Mapping[str, Sequence[str]] | None = None
    changed: Mapping[str, Sequence[str]] | None = None


TaskData = PairData | BitextData | ClassificationData | ClusteringData | RetrievalData
