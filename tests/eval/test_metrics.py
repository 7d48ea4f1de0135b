"""Metrics against hand-computed cases. Run: pytest tests/eval/test_metrics.py -q"""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from harrier.eval import metrics


def _unit(angles_deg):
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


def test_sts_perfect_rank_correlation():
    e1 = _unit([0, 0, 0, 0])
    e2 = _unit([80, 60, 30, 10])  # cosine grows along the list
    s = metrics.sts_scores(e1, e2, [1.0, 2.0, 3.0, 4.0])
    assert s["cosine_spearman"] == pytest.approx(1.0)
    assert s["main_score"] == s["cosine_spearman"]


def test_sts_reversed_order_is_minus_one():
    s = metrics.sts_scores(_unit([0, 0, 0]), _unit([10, 40, 70]), [3.0, 2.0, 1.0])
    assert s["cosine_spearman"] == pytest.approx(1.0)
    s = metrics.sts_scores(_unit([0, 0, 0]), _unit([10, 40, 70]), [1.0, 2.0, 3.0])
    assert s["cosine_spearman"] == pytest.approx(-1.0)


def test_bitext_weighted_f1_by_hand():
    # query 2 finds corpus row 1: predictions [0, 1, 1] for gold [0, 1, 2]
    q = _unit([0, 90, 80])
    c = _unit([0, 85, 200])
    s = metrics.bitext_scores(q, c)
    # per label F1: 1, 2/3 (precision 1/2, recall 1), 0; equal supports
    assert s["f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert s["accuracy"] == pytest.approx(2 / 3)
    assert s["main_score"] == s["f1"]


def test_pair_classification_average_precision_by_hand():
    e1 = _unit([0, 0, 0, 0])
    e2 = _unit([10, 20, 60, 80])  # cosine order: pair 0 > 1 > 2 > 3
    s = metrics.pair_classification_scores(e1, e2, [1, 0, 1, 0])
    assert s["cosine_ap"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    # best threshold: between pair 0 and 1 (acc 3/4) or 2 and 3 (acc 3/4)
    assert s["cosine_accuracy"] == pytest.approx(0.75)
    assert s["max_ap"] == pytest.approx(_reference_aps(e1, e2, [1, 0, 1, 0])["max"])
    assert s["main_score"] == s["max_ap"]


def _reference_aps(e1, e2, labels):
    """Average precision of each similarity, straight from sklearn on similarities computed here in float64."""
    from sklearn.metrics import average_precision_score

    a, b = np.asarray(e1, dtype=np.float64), np.asarray(e2, dtype=np.float64)
    sims = {"cosine": (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1),
            "dot": (a * b).sum(1), "euclidean": -np.linalg.norm(a - b, axis=1), "manhattan": -np.abs(a - b).sum(1)}
    aps = {k: float(average_precision_score(labels, v)) for k, v in sims.items()}
    return {**aps, "max": max(aps.values())}


def test_pair_classification_max_ap_is_the_best_similarity():
    # lengths differ, so dot products order the pairs 2 > 0 > 3 > 1 (both positives first: AP 1) while cosine
    # keeps the angle order 0 > 1 > 2 > 3 (AP 5/6) and the distances give 0 < 1 < 3 < 2 (AP 3/4)
    e1 = _unit([0, 0, 0, 0])
    e2 = _unit([10, 20, 60, 80]) * np.array([[1.0], [0.1], [10.0], [1.0]], dtype=np.float32)
    s = metrics.pair_classification_scores(e1, e2, [1, 0, 1, 0])
    ref = _reference_aps(e1, e2, [1, 0, 1, 0])
    assert (ref["dot"], ref["cosine"], ref["euclidean"]) == pytest.approx((1.0, 5 / 6, 3 / 4))
    for name in ("cosine", "dot", "euclidean", "manhattan"):
        assert s[f"{name}_ap"] == pytest.approx(ref[name]), name
    assert s["max_ap"] == pytest.approx(ref["max"]) and s["max_ap"] == pytest.approx(1.0)
    assert s["main_score"] == s["max_ap"]


def test_undersample_keeps_at_most_n_per_label_and_is_deterministic():
    labels = ["a"] * 20 + ["b"] * 5 + ["c"] * 30
    exps = metrics.undersample_experiments(labels, n_experiments=3, samples_per_label=4)
    assert exps == metrics.undersample_experiments(labels, n_experiments=3, samples_per_label=4)
    for chosen in exps:
        counts = {x: sum(labels[i] == x for i in chosen) for x in "abc"}
        assert counts == {"a": 4, "b": 4, "c": 4}
    assert exps[0] != exps[1]  # each experiment re-shuffles


def test_classification_separable_is_perfect():
    rng = np.random.default_rng(0)
    centers = np.eye(3, 8, dtype=np.float32) * 10
    y = [i % 3 for i in range(60)]
    x = centers[y] + rng.normal(scale=0.1, size=(60, 8)).astype(np.float32)
    exps = metrics.undersample_experiments(y, n_experiments=2, samples_per_label=5)
    s = metrics.classification_scores(x, y, exps, x, y)
    assert s["accuracy"] == pytest.approx(1.0)
    assert len(s["scores_per_experiment"]) == 2


def test_clustering_separable_is_perfect():
    y = [i % 4 for i in range(200)]
    x = np.eye(4, 6, dtype=np.float32)[y] * 5
    assert metrics.clustering_legacy_scores(x, y)["v_measure"] == pytest.approx(1.0)
    s = metrics.clustering_scores(x, y, random.Random(42), n_clusters=2, cluster_size=300)
    assert s["v_measure"] == pytest.approx(1.0)


def test_clustering_legacy_scores_each_consecutive_set():
    # MasakhaNEWS fra as mteb stores it: labels sorted by topic, np.array_split into 5 rows; the first row holds
    # only one topic (mteb scores it 1.0 without clustering), the others mix two topics each
    y = [0] * 100 + [1] * 100 + [2] * 100 + [3] * 100 + [4] * 22
    rng = np.random.default_rng(0)
    x = (np.eye(5, 8, dtype=np.float32)[y] + rng.normal(scale=0.8, size=(len(y), 8))).astype(np.float32)
    s = metrics.clustering_legacy_scores(x, y, n_sets=5)
    assert len(s["v_measures"]) == 5 and s["v_measures"][0] == 1.0
    bounds = [0, 85, 170, 254, 338, 422]  # np.array_split(422 rows, 5)
    by_set = [metrics.clustering_legacy_scores(x[a:b], y[a:b])["v_measure"] for a, b in itertools.pairwise(bounds)]
    assert s["v_measures"] == pytest.approx(by_set, abs=1e-12)
    assert s["main_score"] == pytest.approx(np.mean(by_set), abs=1e-12)
    assert s["v_measure_std"] == pytest.approx(np.std(by_set), abs=1e-12)
    assert s["main_score"] != pytest.approx(metrics.clustering_legacy_scores(x, y)["main_score"], abs=1e-3)


@pytest.mark.parametrize(("labels", "k"), [([i % 3 for i in range(50)], None), ([i % 3 for i in range(50)], 20),
                                           ([["a", "b"] if i % 4 else ["c"] for i in range(50)], 30),
                                           ([[1, 2] if i % 4 else [3] for i in range(50)], None)],
                         ids=["all-rows", "sampled", "hierarchical-strings", "hierarchical-ints"])
def test_skip_clustering_draws_matches_real_draws(labels, k):
    a, b = random.Random(42), random.Random(42)
    metrics.skip_clustering_draws(a, labels, k, n_clusters=3, cluster_size=7)
    picked = metrics.clustering_sample(b, len(labels), k)
    emb = np.random.default_rng(0).normal(size=(len(picked), 4)).astype(np.float32)
    metrics.clustering_scores(emb, [labels[i] for i in picked], b, n_clusters=3, cluster_size=7)
    assert a.random() == b.random()


def test_retrieval_by_hand():
    run = {"q": {"d1": 0.9, "d2": 0.8, "d3": 0.1}}
    qrels = {"q": {"d2": 1}}
    s = metrics.retrieval_scores(run, qrels, k_values=(1, 10))
    assert s["ndcg_at_10"] == pytest.approx(round(1 / math.log2(3), 5))
    assert s["map_at_10"] == pytest.approx(0.5)
    assert s["mrr_at_10"] == pytest.approx(0.5)
    assert s["recall_at_1"] == 0.0 and s["recall_at_10"] == 1.0
    assert s["precision_at_10"] == pytest.approx(0.1)


def test_retrieval_needs_judged_queries():
    with pytest.raises(ValueError, match="relevant"):
        metrics.retrieval_scores({"q": {"d": 1.0}}, {"other": {"d": 1}})


def test_rank_documents_respects_candidates():
    q = _unit([0])
    d = _unit([0, 10, 20])
    ranked = metrics.rank_documents(q, d, ["a", "b", "c"], candidates=[[1, 2]])
    assert list(ranked[0]) == ["b", "c"]
