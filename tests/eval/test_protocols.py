"""Typed task protocols (one frozen dataclass per task type), the results JSON that records them, and
``load_encoder``'s backend choice (auto never hides an error harrier raises for a model it runs)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from harrier.eval.data import ClusteringData, PairData
from harrier.eval.encoders import NoPrompts, auto_backend, load_encoder
from harrier.eval.protocols import (
    PROTOCOLS,
    BitextProtocol,
    ClassificationProtocol,
    ClusteringProtocol,
    LegacyClusteringProtocol,
    RetrievalProtocol,
    STSProtocol,
)
from harrier.eval.run import evaluate, score_subset
from harrier.eval.tasks import TASK_TYPES, Selection, TaskSpec, builtin_tasks


def _spec(type_: str, **kw) -> TaskSpec:
    return TaskSpec("T", type_, ("test",), ("default",), lambda r, s, p: None, **kw)


def test_every_task_type_gets_its_default_protocol_and_refuses_another():
    assert set(PROTOCOLS) == set(TASK_TYPES)
    assert _spec("STS").protocol == STSProtocol(0.0, 5.0)
    assert _spec("BitextMining").protocol == BitextProtocol()
    assert _spec("Reranking").protocol == RetrievalProtocol()
    assert _spec("Clustering").protocol == ClusteringProtocol()
    assert _spec("Clustering", protocol=LegacyClusteringProtocol(sets=5)).protocol.sets == 5
    with pytest.raises(ValueError, match="a STS task needs a protocol of type STSProtocol, got ClusteringProtocol"):
        _spec("STS", protocol=ClusteringProtocol())
    with pytest.raises(dataclasses.FrozenInstanceError):
        ClassificationProtocol().n_experiments = 3  # type: ignore[misc]


def test_builtin_protocols_are_mtebs(tmp_path):
    tasks = builtin_tasks(tmp_path)
    assert tasks["SIB200Classification"].protocol == ClassificationProtocol(n_experiments=10, samples_per_label=8)
    assert tasks["SIB200ClusteringS2S"].protocol == ClusteringProtocol(max_documents=1004, n_clusters=10,
                                                                       cluster_size=16_384)
    assert tasks["MasakhaNEWSClusteringS2S"].protocol == LegacyClusteringProtocol(sets=5)
    assert tasks["STS17"].protocol == STSProtocol()


def test_sts_scale_reaches_the_metric(bow):
    s1 = [f"a cat number {i}" for i in range(12)]
    s2 = [f"a cat number {i}" + " big" * (i % 4) for i in range(12)]
    gold = [5.0 - (i % 4) for i in range(12)]
    data = PairData(s1, s2, scores=gold)
    base = score_subset(bow, _spec("STS"), data, NoPrompts())
    rescaled = score_subset(bow, _spec("STS", protocol=STSProtocol(min_score=-3.0, max_score=9.0)), data,
                            NoPrompts())
    assert rescaled["cosine_spearman"] == pytest.approx(base["cosine_spearman"])  # a min-max scale: same ranks


def test_legacy_and_v2_clustering_dispatch_on_the_protocol(bow):
    texts = [f"{w} thing {i}" for i, w in enumerate(["sun", "cat", "tree"] * 10)]
    data = ClusteringData(texts, [i % 3 for i in range(30)])
    legacy = score_subset(bow, _spec("Clustering", protocol=LegacyClusteringProtocol(sets=3)), data, NoPrompts())
    assert len(legacy["v_measures"]) == 3
    v2 = score_subset(bow, _spec("Clustering", protocol=ClusteringProtocol(n_clusters=2, cluster_size=20)), data,
                      NoPrompts())
    assert len(v2["v_measures"]["Level 0"]) == 2


def test_results_json_records_the_protocol_and_source(tmp_path, bow):
    s1 = [f"a cat number {i}" for i in range(8)]
    data = PairData(s1, s1[::-1], scores=list(range(8)))
    spec = TaskSpec("Mine", "STS", ("test",), ("default",), lambda r, s, p: data,
                    protocol=STSProtocol(max_score=7.0), source="mine.jsonl")
    evaluate(bow, [Selection(spec, ("default",), ("test",))], output_dir=tmp_path, data_root=tmp_path)
    doc = json.loads((tmp_path / "Mine.json").read_text())
    assert doc["harrier"]["protocol"] == {"name": "STSProtocol", "min_score": 0.0, "max_score": 7.0}
    assert doc["harrier"]["source"] == "mine.jsonl"


def test_auto_backend_follows_the_declared_architecture(tmp_path, tiny_gemma3_dir, tiny_embeddinggemma_dir):
    assert auto_backend(tiny_gemma3_dir) == "harrier"
    assert auto_backend(tiny_embeddinggemma_dir) == "harrier"
    bert = tmp_path / "bert"
    (bert / "0_Transformer").mkdir(parents=True)
    (bert / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "0_Transformer",
                                                    "type": "sentence_transformers.models.Transformer"}]))
    (bert / "0_Transformer" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert auto_backend(bert) == "sentence-transformers"
    (bert / "0_Transformer" / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
    assert auto_backend(bert) == "harrier"


def test_auto_mode_surfaces_harriers_error_for_a_model_it_runs(tiny_gemma3_dir):
    # before: any ValueError fell back to sentence-transformers, which answered "unknown dtype 'float16'"
    with pytest.raises(ValueError, match="float16 overflows Gemma-3"):
        load_encoder(str(tiny_gemma3_dir), dtype="float16")
    with pytest.raises(ValueError, match="dtype 'float64' is not supported"):
        load_encoder(str(tiny_gemma3_dir), dtype="float64")


def test_dtype_names_are_harriers_and_auto_is_recorded_resolved(tiny_gemma3_dir):
    enc = load_encoder(str(tiny_gemma3_dir), backend="harrier", dtype="auto")
    resolved = str(enc.embedder.dtype).removeprefix("torch.")
    assert enc.name.endswith(f"[harrier,{resolved}]") and resolved in ("float32", "bfloat16")
    pytest.importorskip("sentence_transformers")
    with pytest.raises(ValueError, match="unknown dtype 'float64'; expected one of auto, float32, bfloat16, float16"):
        load_encoder(str(tiny_gemma3_dir), backend="sentence-transformers", dtype="float64")


def test_an_int8_run_is_named_int8_and_is_never_answered_by_float32_vectors(tiny_gemma3_dir, tmp_path):
    """An int8 model computes in float32 around its int8 layers; it was named ``[harrier,float32]``, so its results
    read as float32 and, with ``--cache-dir``, a float32 run's cached vectors answered it."""
    import numpy as np

    from harrier.eval.cache import CachedEncoder

    texts = ["a first sentence", "a second, longer sentence about something else", "drei"]
    f32 = load_encoder(str(tiny_gemma3_dir), backend="harrier", dtype="float32")
    i8 = load_encoder(str(tiny_gemma3_dir), backend="harrier", dtype="int8")
    assert f32.name.endswith("[harrier,float32]") and i8.name.endswith("[harrier,int8]")
    first = CachedEncoder(f32, tmp_path)
    want32 = first.encode(texts)
    first.close()
    second = CachedEncoder(i8, tmp_path)
    got = second.encode(texts)
    second.close()
    assert second.misses == len(texts) and second.hits == 0
    np.testing.assert_array_equal(got, i8.encode(texts))
    assert not np.array_equal(got, want32)
    again = CachedEncoder(load_encoder(str(tiny_gemma3_dir), backend="harrier", dtype="int8"), tmp_path)
    np.testing.assert_array_equal(again.encode(texts), got)  # the same recipe in another load: a cache hit
    assert again.hits == len(texts)
    again.close()
    pytest.importorskip("sentence_transformers")
    with pytest.raises(ValueError, match="dtype 'int8' is harrier's"):
        load_encoder(str(tiny_gemma3_dir), backend="sentence-transformers", dtype="int8")
