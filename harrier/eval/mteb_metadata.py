"""Read every MTEB(Multilingual, v2) task's metadata and protocol constants out of an installed mteb.

The one place that knows where mteb 2.x keeps each constant (``TaskMetadata`` fields and the ``AbsTask*`` class
attributes a task sets or inherits). ``scripts/mteb_task_metadata.py`` writes ``generate()`` to
``harrier/data/mteb_v2_task_metadata.json``, which ``harrier.eval.metadata`` reads without mteb; the test
``tests/eval/test_task_metadata.py`` checks the shipped file against the installed mteb. mteb is imported lazily (a
dev dependency).
"""

from __future__ import annotations

import inspect
from typing import Any

BENCHMARK = "MTEB(Multilingual, v2)"
# the AbsTask methods that change a task's data after it is downloaded: a task file must hold the transformed rows
DATA_HOOKS = ("dataset_transform", "load_data")


def _abstask(task: Any) -> str:
    """The mteb base class that scores the task (AbsTaskClassification, AbsTaskRetrieval, ...)."""
    import mteb.abstasks as abstasks

    bases = {getattr(abstasks, n) for n in dir(abstasks) if n.startswith("AbsTask") and n != "AbsTask"}
    return next(c.__name__ for c in type(task).__mro__ if c in bases)


def _protocol(task: Any, abstask: str) -> dict[str, object]:
    """The task's constants under the field names of its ``harrier.eval.protocols`` dataclass."""
    if abstask == "AbsTaskClassification":
        return {"name": "ClassificationProtocol", "n_experiments": task.n_experiments,
                "samples_per_label": task.samples_per_label, "train_split": task.train_split}
    if abstask == "AbsTaskMultilabelClassification":
        return {"name": "MultilabelClassificationProtocol", "n_experiments": task.n_experiments,
                "samples_per_label": task.samples_per_label, "train_split": task.train_split,
                "max_eval_samples": task.max_eval_samples, "n_neighbors": task.evaluator_model.n_neighbors}
    if abstask == "AbsTaskClustering":
        return {"name": "ClusteringProtocol", "max_documents": task.max_document_to_embed,
                "max_fraction": task.max_fraction_of_documents_to_embed, "n_clusters": task.n_clusters,
                "cluster_size": task.max_documents_per_cluster, "batch_size": task.k_mean_batch_size,
                "max_depth": task.max_depth}
    if abstask == "AbsTaskClusteringLegacy":
        return {"name": "LegacyClusteringProtocol", "sets": 1}  # the sets are rows of mteb's data, not a constant
    if abstask == "AbsTaskSTS":
        return {"name": "STSProtocol", "min_score": float(task.min_score), "max_score": float(task.max_score)}
    if abstask == "AbsTaskPairClassification":
        return {"name": "PairClassificationProtocol"}
    if abstask == "AbsTaskBitextMining":
        return {"name": "BitextProtocol"}
    if abstask == "AbsTaskRetrieval":
        return {"name": "RetrievalProtocol", "k_values": list(task.k_values),
                "ignore_identical_ids": task.ignore_identical_ids, "skip_first_result": task.skip_first_result}
    raise ValueError(f"{task.metadata.name}: no harrier protocol for mteb's {abstask}")


def _scorer(task: Any, abstask: str) -> dict[str, object]:
    """Constants harrier's scorers fix at mteb's value rather than take from a protocol; a task that sets one to
    anything else cannot be scored offline (``metadata.SCORER`` holds harrier's values)."""
    out: dict[str, object] = {"seed": task.seed}
    if abstask in ("AbsTaskClassification", "AbsTaskMultilabelClassification"):
        out["evaluator_model"] = repr(task.evaluator_model)
        out["is_cross_validation"] = task.is_cross_validation
    if abstask == "AbsTaskClusteringLegacy":
        from mteb._evaluators.clustering_evaluator import ClusteringEvaluator

        out["clustering_batch_size"] = inspect.signature(ClusteringEvaluator).parameters[
            "clustering_batch_size"].default
    if abstask in ("AbsTaskSTS", "AbsTaskPairClassification"):
        out["input1_prompt_type"] = getattr(task.input1_prompt_type, "value", task.input1_prompt_type)
        out["input2_prompt_type"] = getattr(task.input2_prompt_type, "value", task.input2_prompt_type)
    return out


def task_entry(task: Any) -> dict[str, object]:
    """One task's entry of the shipped metadata file."""
    meta = task.metadata
    abstask = _abstask(task)
    entry: dict[str, object] = {
        "type": meta.type,
        "main_score": meta.main_score,
        "eval_splits": list(meta.eval_splits),
        "subsets": {s: list(langs) for s, langs in meta.hf_subsets_to_langscripts.items()},
        "dataset": {"path": meta.dataset["path"], "revision": meta.dataset.get("revision")},
        "prompt": meta.prompt,
        "mteb_class": abstask,
        "protocol": _protocol(task, abstask),
        "scorer": _scorer(task, abstask),
        "transforms_data": [h for h in DATA_HOOKS if h in type(task).__dict__],
    }
    if abstask == "AbsTaskBitextMining":
        entry["parallel_subsets"] = task.parallel_subsets  # one split, a column per language: pairs as subsets
    return entry


def generate(benchmark: str = BENCHMARK) -> dict[str, object]:
    """The whole metadata file for ``benchmark`` from the installed mteb."""
    import mteb

    tasks = mteb.get_benchmark(benchmark).tasks
    return {"mteb_version": mteb.__version__, "benchmark": benchmark,
            "tasks": {t.metadata.name: task_entry(t) for t in tasks}}
