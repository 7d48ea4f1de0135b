"""The shipped metadata of the 131 MTEB(Multilingual, v2) tasks against the installed mteb, task by task.

Run: pytest tests/eval/test_task_metadata.py -q (regenerate with scripts/mteb_task_metadata.py)
"""

from __future__ import annotations

import json

import pytest

from harrier.eval.metadata import check_scorer, mteb_version, task_metadata, task_names
from harrier.eval.protocols import (
    BitextProtocol,
    ClassificationProtocol,
    ClusteringProtocol,
    LegacyClusteringProtocol,
    MultilabelClassificationProtocol,
    PairClassificationProtocol,
    RetrievalProtocol,
    STSProtocol,
)

mteb = pytest.importorskip("mteb")
BENCHMARK = mteb.get_benchmark("MTEB(Multilingual, v2)")
TASKS = {t.metadata.name: t for t in BENCHMARK.tasks}


def test_the_shipped_file_is_what_the_installed_mteb_gives():
    from importlib import resources

    from harrier.eval.mteb_metadata import generate

    shipped = json.loads(resources.files("harrier").joinpath("data/mteb_v2_task_metadata.json").read_text())
    assert shipped == json.loads(json.dumps(generate())), "stale: run python scripts/mteb_task_metadata.py"
    assert mteb_version() == mteb.__version__
    assert task_names() == list(TASKS) and len(TASKS) == 131


def _expected_protocol(task):
    """Read straight from mteb's task object and classes (not through harrier.eval.mteb_metadata)."""
    from mteb.abstasks import (
        AbsTaskBitextMining,
        AbsTaskClassification,
        AbsTaskClustering,
        AbsTaskClusteringLegacy,
        AbsTaskMultilabelClassification,
        AbsTaskPairClassification,
        AbsTaskRetrieval,
        AbsTaskSTS,
    )

    if isinstance(task, AbsTaskMultilabelClassification):  # before its base class, AbsTaskClassification
        return MultilabelClassificationProtocol(task.n_experiments, task.samples_per_label, task.train_split,
                                                task.max_eval_samples, task.evaluator_model.n_neighbors)
    if isinstance(task, AbsTaskClassification):
        return ClassificationProtocol(task.n_experiments, task.samples_per_label, task.train_split)
    if isinstance(task, AbsTaskClustering):
        return ClusteringProtocol(task.max_document_to_embed, task.max_fraction_of_documents_to_embed,
                                  task.n_clusters, task.max_documents_per_cluster, task.k_mean_batch_size,
                                  task.max_depth)
    if isinstance(task, AbsTaskClusteringLegacy):
        return LegacyClusteringProtocol()
    if isinstance(task, AbsTaskSTS):
        return STSProtocol(task.min_score, task.max_score)
    if isinstance(task, AbsTaskPairClassification):
        return PairClassificationProtocol()
    if isinstance(task, AbsTaskBitextMining):
        return BitextProtocol()
    assert isinstance(task, AbsTaskRetrieval)
    return RetrievalProtocol(tuple(task.k_values), task.ignore_identical_ids, task.skip_first_result)


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_matches_mteb(name):
    task, ours = TASKS[name], task_metadata(name)
    meta = task.metadata
    assert (ours.type, ours.main_score, list(ours.eval_splits)) == (meta.type, meta.main_score, meta.eval_splits)
    assert list(ours.subsets) == meta.hf_subsets
    assert {s: list(v) for s, v in ours.subsets.items()} == meta.hf_subsets_to_langscripts
    assert ours.revision == meta.dataset["revision"] and ours.prompt == meta.prompt
    assert ours.protocol == _expected_protocol(task)
    assert ours.scorer["seed"] == task.seed == 42
    check_scorer(ours)  # every constant harrier's scorer fixes is the task's own


def test_amazon_counterfactual_takes_32_samples_per_label():
    meta = task_metadata("AmazonCounterfactualClassification")
    assert meta.protocol == ClassificationProtocol(n_experiments=10, samples_per_label=32, train_split="train")
    assert mteb.get_task("AmazonCounterfactualClassification").samples_per_label == 32
    assert list(meta.subsets) == ["en-ext", "en", "de", "ja"] and meta.eval_splits == ("validation", "test")


def test_tasks_whose_constants_differ_from_their_types_defaults_are_kept():
    classification = [task_metadata(n) for n in TASKS if task_metadata(n).type == "Classification"]
    assert sorted({m.protocol.samples_per_label for m in classification}) == [8, 16, 20, 32]
    assert task_metadata("ArguAna").protocol.ignore_identical_ids is True
    assert task_metadata("SIB200ClusteringS2S").protocol == ClusteringProtocol(max_documents=1004)
    assert task_metadata("STS17").protocol == STSProtocol(0.0, 5.0)


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ValueError, match="unknown MTEB task 'AmazonCounterfactualClasification'.*"
                                         "AmazonCounterfactualClassification"):
        task_metadata("AmazonCounterfactualClasification")


def test_every_benchmark_task_has_a_scorer():
    """Every task builds as a harrier task from its metadata (type with a task-file layout and scorer, producible
    main score, accepted protocol), and the task classes score with the mteb code the parity tests compare with:
    FollowIR tasks add p-MRR by ``evaluate_p_mrr_change``, no other ranking task adds scores of its own, and no
    multilabel task overrides the base class's evaluation."""
    import inspect

    from mteb.abstasks import AbsTaskRetrieval
    from mteb.abstasks.multilabel_classification import AbsTaskMultilabelClassification

    from harrier.eval.tasks import TASK_TYPES, TaskSpec

    for name, task in TASKS.items():
        meta = task_metadata(name)
        assert meta.type in TASK_TYPES, name
        spec = TaskSpec(name, meta.type, meta.eval_splits, tuple(meta.subsets), lambda r, s, p: None,
                        main_score=meta.main_score, protocol=meta.protocol)
        assert spec.main_score == task.metadata.main_score, name
        if meta.type == "InstructionReranking":
            assert "evaluate_p_mrr_change(" in inspect.getsource(type(task).task_specific_scores), name
        elif isinstance(task, AbsTaskRetrieval):
            assert type(task).task_specific_scores is AbsTaskRetrieval.task_specific_scores, name
        if isinstance(task, AbsTaskMultilabelClassification):
            for method in ("_evaluate_subset", "_calculate_scores", "_undersample_data_indices", "evaluate"):
                assert getattr(type(task), method) is getattr(AbsTaskMultilabelClassification, method), (name, method)
    assert sorted(n for n in TASKS if task_metadata(n).type == "InstructionReranking") == [
        "Core17InstructionRetrieval", "News21InstructionRetrieval", "Robust04InstructionRetrieval"]
