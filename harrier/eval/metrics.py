"""Scores of each task type, computed from embeddings exactly as mteb 2.x computes them.

Every function is pure: embeddings (float arrays, one row per text) and gold labels in, a flat dict of scores out.
Protocol constants (seeds, sample counts, k-means settings) are arguments whose defaults are mteb's; the source
of each protocol is named in its docstring so a reader can check it against mteb's code.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from harrier.vectors import l2_normalize

SEED = 42  # mteb's default task seed


def require_dependencies() -> None:
    """The eval extra's scoring libraries, checked before any work: an ImportError naming the extra to install."""
    from harrier.extras import require

    require("sklearn", "eval", "harrier eval (scoring)")
    require("scipy", "eval", "harrier eval (scoring)")


def _as_f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _corr(gold: Sequence[float], pred: Sequence[float]) -> tuple[float, float]:
    from scipy.stats import pearsonr, spearmanr

    return float(pearsonr(gold, pred)[0]), float(spearmanr(gold, pred)[0])


def sts_scores(emb1: np.ndarray, emb2: np.ndarray, gold: Sequence[float], *, min_score: float = 0.0,
               max_score: float = 5.0) -> dict[str, float]:
    """STS: correlations of pair similarities with gold scores (mteb AbsTaskSTS; main score cosine_spearman).

    Gold scores are min-max normalised first (no effect on the correlations, kept for parity).
    """
    from sklearn.metrics.pairwise import paired_cosine_distances, paired_euclidean_distances, paired_manhattan_distances

    e1, e2 = _as_f32(emb1), _as_f32(emb2)
    norm = [(float(x) - min_score) / (max_score - min_score) for x in gold]
    cos = 1 - paired_cosine_distances(e1, e2)
    out: dict[str, float] = {}
    out["cosine_pearson"], out["cosine_spearman"] = _corr(norm, cos.tolist())
    out["manhattan_pearson"], out["manhattan_spearman"] = _corr(norm, (-paired_manhattan_distances(e1, e2)).tolist())
    out["euclidean_pearson"], out["euclidean_spearman"] = _corr(norm, (-paired_euclidean_distances(e1, e2)).tolist())
    out["pearson"], out["spearman"] = out["cosine_pearson"], out["cosine_spearman"]
    out["main_score"] = out["cosine_spearman"]
    return out


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of ``a`` with every row of ``b`` (float32, like torch's cos_sim)."""
    return l2_normalize(a) @ l2_normalize(b).T


def nearest_neighbours(query: np.ndarray, corpus: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Index of the most cosine-similar corpus row for each query row (first index on ties)."""
    out = np.empty(len(query), dtype=np.int64)
    for start in range(0, len(query), chunk):
        out[start:start + chunk] = cosine_matrix(query[start:start + chunk], corpus).argmax(axis=1)
    return out


def bitext_scores(emb1: np.ndarray, emb2: np.ndarray) -> dict[str, float]:
    """Bitext mining: sentence1[i] should retrieve sentence2[i] as its cosine nearest neighbour.

    mteb AbsTaskBitextMining: weighted precision/recall/F1 over gold indices (main score f1), plus accuracy.
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    pred = nearest_neighbours(emb1, emb2).tolist()
    gold = list(range(len(emb1)))
    out = {
        "precision": float(precision_score(gold, pred, zero_division=0, average="weighted")),
        "recall": float(recall_score(gold, pred, zero_division=0, average="weighted")),
        "f1": float(f1_score(gold, pred, zero_division=0, average="weighted")),
        "accuracy": float(accuracy_score(gold, pred)),
    }
    out["main_score"] = out["f1"]
    return out


def _best_accuracy(scores: np.ndarray, labels: np.ndarray, high_more_similar: bool) -> float:
    rows = sorted(zip(scores.tolist(), labels.tolist(), strict=True), key=lambda x: x[0], reverse=high_more_similar)
    best, positives, remaining_neg = 0.0, 0, int((labels == 0).sum())
    for i in range(len(rows) - 1):
        if rows[i][1] == 1:
            positives += 1
        else:
            remaining_neg -= 1
        if rows[i][0] == rows[i + 1][0]:  # a threshold cannot split tied scores
            continue
        best = max(best, (positives + remaining_neg) / len(labels))
    return best


def _best_f1(scores: np.ndarray, labels: np.ndarray, high_more_similar: bool) -> tuple[float, float, float]:
    rows = sorted(zip(scores.tolist(), labels.tolist(), strict=True), key=lambda x: x[0], reverse=high_more_similar)
    best = (0.0, 0.0, 0.0)
    correct, total_pos = 0, int(labels.sum())
    for i in range(len(rows) - 1):
        if rows[i][1] == 1:
            correct += 1
        if rows[i][0] == rows[i + 1][0] or correct == 0:
            continue
        precision, recall = correct / (i + 1), correct / total_pos
        f1 = 2 * precision * recall / (precision + recall)
        if f1 > best[0]:
            best = (f1, precision, recall)
    return best


def pair_classification_scores(emb1: np.ndarray, emb2: np.ndarray, labels: Sequence[int]) -> dict[str, float]:
    """Pair classification (mteb AbsTaskPairClassification): AP, best-threshold accuracy/F1 per similarity.

    Similarities: model (= cosine here), cosine, manhattan, euclidean, dot; main score max_ap over them.
    """
    from sklearn.metrics import average_precision_score
    from sklearn.metrics.pairwise import paired_cosine_distances, paired_euclidean_distances, paired_manhattan_distances

    e1, e2 = _as_f32(emb1), _as_f32(emb2)
    y = np.asarray(labels, dtype=np.int64)
    cos = 1 - paired_cosine_distances(e1, e2)
    by_name = {
        "similarity": (cos, True),
        "cosine": (cos, True),
        "manhattan": (paired_manhattan_distances(e1, e2), False),
        "euclidean": (paired_euclidean_distances(e1, e2), False),
        "dot": (np.asarray([np.dot(e1[i], e2[i]) for i in range(len(e1))]), True),
    }
    out: dict[str, float] = {}
    best: dict[str, list[float]] = defaultdict(list)
    for name, (s, high) in by_name.items():
        s = np.asarray(s)
        f1, precision, recall = _best_f1(s, y, high)
        values = {
            "accuracy": _best_accuracy(s, y, high), "f1": f1, "precision": precision, "recall": recall,
            "ap": float(average_precision_score(y, s * (1 if high else -1))),
        }
        for metric, v in values.items():
            out[f"{name}_{metric}"] = float(v)
            best[metric].append(float(v))
    for metric, vals in best.items():
        out[f"max_{metric}"] = max(vals)
    out["main_score"] = out["max_ap"]
    return out


def undersample_experiments(labels: Sequence[object], *, n_experiments: int = 10, samples_per_label: int = 8,
                            seed: int = SEED) -> list[list[int]]:
    """Training indices of each classification experiment (mteb AbsTaskClassification._undersample_data).

    Each experiment re-shuffles the previous experiment's index order with a fresh ``RandomState(seed)`` and keeps
    the first ``samples_per_label`` indices of every label. Depends on the row order of the training split.
    """
    idxs = list(range(len(labels)))
    experiments = []
    for _ in range(n_experiments):
        np.random.RandomState(seed).shuffle(idxs)
        counts: dict[object, int] = defaultdict(int)
        chosen = []
        for i in idxs:
            if counts[labels[i]] < samples_per_label:
                chosen.append(i)
                counts[labels[i]] += 1
        experiments.append(chosen)
    return experiments


def _classification_metrics(y_true: Sequence[object], y_pred: Sequence[object]) -> dict[str, float | None]:
    from sklearn.metrics import accuracy_score, average_precision_score, f1_score, precision_score, recall_score

    out: dict[str, float | None] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1": float(f1_score(y_true, y_pred, average="macro")),
        "f1_weighted": float(f1_score(y_true, y_pred, average="weighted")),
        "precision": float(precision_score(y_true, y_pred, average="macro")),
        "precision_weighted": float(precision_score(y_true, y_pred, average="weighted")),
        "recall": float(recall_score(y_true, y_pred, average="macro")),
        "recall_weighted": float(recall_score(y_true, y_pred, average="weighted")),
        "ap": None,
        "ap_weighted": None,
    }
    # mteb: AP when the scored split has two classes, with sklearn's default pos_label=1 (labels are class ids, see
    # local._label_ids). Two classes without id 1 (only when training has more) make mteb's call raise: no AP here.
    present = np.unique(y_true).tolist()
    if len(present) == 2 and 1 in present:
        out["ap"] = float(average_precision_score(y_true, y_pred, average="macro"))
        out["ap_weighted"] = float(average_precision_score(y_true, y_pred, average="weighted"))
    return out


def classification_scores(train_emb: np.ndarray, train_labels: Sequence[object], experiments: list[list[int]],
                          test_emb: np.ndarray, test_labels: Sequence[object], *, seed: int = SEED,
                          max_iter: int = 100) -> dict[str, object]:
    """Logistic-regression accuracy averaged over undersampled experiments (mteb AbsTaskClassification).

    ``train_emb`` rows align with ``train_labels`` (rows never selected by any experiment may be zeros: they are
    not read). Main score accuracy.
    """
    from sklearn.linear_model import LogisticRegression

    per_exp = []
    for chosen in experiments:
        clf = LogisticRegression(max_iter=max_iter, random_state=seed)
        clf.fit(_as_f32(train_emb)[chosen], [train_labels[i] for i in chosen])
        per_exp.append(_classification_metrics(list(test_labels), clf.predict(_as_f32(test_emb)).tolist()))
    out: dict[str, object] = {}
    for key in per_exp[0]:
        vals = [s[key] for s in per_exp if s[key] is not None]
        out[key] = float(np.mean(vals)) if vals else math.nan
    out["scores_per_experiment"] = per_exp
    out["main_score"] = out["accuracy"]
    return out


def multilabel_undersample(labels: Sequence[Sequence[object]], rng: np.random.Generator, *, n_experiments: int = 10,
                           samples_per_label: int = 8) -> list[list[int]]:
    """Training indices of each multilabel experiment (mteb AbsTaskMultilabelClassification
    ``_undersample_data_indices``): a fresh ``list(range(n))`` shuffled by ``rng``, keeping a row while any of its
    labels has fewer than ``samples_per_label`` kept rows (each kept row counts for all its labels).

    ``rng`` is mteb's task-wide ``np.random.default_rng(42)``, shared by the task's splits and subsets in order:
    callers fast-forward it to reproduce one of them (see ``run.py``).
    """
    experiments = []
    for _ in range(n_experiments):
        idxs = list(range(len(labels)))
        rng.shuffle(idxs)
        counts: dict[object, int] = defaultdict(int)
        chosen = []
        for i in idxs:
            if any(counts[y] < samples_per_label for y in labels[i]):
                chosen.append(i)
                for y in labels[i]:
                    counts[y] += 1
        experiments.append(chosen)
    return experiments


def _hamming(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """mteb's ``hamming_score``: mean over rows of |true & predicted| / |true | predicted| (1 for two empty rows)."""
    t, p = y_true.astype(bool), y_pred.astype(bool)
    union = (t | p).sum(axis=1)
    return float(np.where(union == 0, 1.0, (t & p).sum(axis=1) / np.maximum(union, 1)).mean())


def multilabel_scores(train_emb: np.ndarray, train_labels: Sequence[Sequence[object]], experiments: list[list[int]],
                      test_emb: np.ndarray, test_labels: Sequence[Sequence[object]], *, n_neighbors: int = 5
                      ) -> dict[str, object]:
    """k-NN multilabel classification averaged over undersampled experiments (mteb
    AbsTaskMultilabelClassification): labels binarised over the scored split's labels (training labels outside it
    are dropped, as mteb's binarizer drops them), subset accuracy (main), LRAP and macro F1 of the predictions,
    Hamming score. ``train_emb`` rows align with ``train_labels``; rows no experiment selects are not read.
    """
    from sklearn.metrics import accuracy_score, f1_score, label_ranking_average_precision_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import MultiLabelBinarizer

    binarizer = MultiLabelBinarizer()
    y_test = binarizer.fit_transform(test_labels)
    x_train, x_test = _as_f32(train_emb), _as_f32(test_emb)
    per_exp = []
    for chosen in experiments:
        clf = KNeighborsClassifier(n_neighbors=n_neighbors)
        clf.fit(x_train[chosen], binarizer.transform([train_labels[i] for i in chosen]))
        y_pred = clf.predict(x_test)
        per_exp.append({"accuracy": float(accuracy_score(y_test, y_pred)),
                        "lrap": float(label_ranking_average_precision_score(y_test, y_pred)),
                        "f1": float(f1_score(y_test, y_pred, average="macro", zero_division=0)),
                        "hamming": _hamming(y_test, y_pred)})
    out: dict[str, object] = {k: float(np.mean([e[k] for e in per_exp])) for k in per_exp[0]}
    out["scores_per_experiment"] = per_exp
    out["main_score"] = out["accuracy"]
    return out


def clustering_sample(rng: random.Random, n: int, k: int | None) -> list[int]:
    """Documents embedded for a v2 clustering subset (mteb AbsTaskClustering: ``rng.sample`` of ``k`` rows; None:
    every row in order, without a draw, as mteb does when the task caps neither count nor fraction)."""
    return list(range(n)) if k is None else rng.sample(range(n), k=min(n, k))


def clustering_levels(labels: Sequence[object], max_depth: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(row indices, gold labels) of each level of single-level or hierarchical labels (a list per row, top level
    first), as mteb's ``_evaluate_clustering_bootstrapped`` builds them: levels up to ``max_depth``; a row without
    the level gets -1, and rows whose level label is -1 are dropped. mteb compares after ``np.array`` has made every
    label a string when any is one, so a missing level of string labels stays in as "-1"; kept for parity."""
    rows = [list(y) if isinstance(y, list | tuple) else [y] for y in labels]
    deepest = max(map(len, rows))
    depth = deepest if max_depth is None else min(max_depth, deepest)
    out = []
    for level in range(depth):
        y = np.array([r[level] if len(r) > level else -1 for r in rows])
        valid = np.array([v != -1 for v in y])
        out.append((np.flatnonzero(valid), y[valid]))
    return out


def clustering_scores(emb: np.ndarray, labels: Sequence[object], rng: random.Random, *, n_clusters: int = 10,
                      cluster_size: int = 16_384, batch_size: int = 512, max_depth: int | None = None,
                      seed: int = SEED) -> dict[str, object]:
    """Bootstrapped MiniBatchKMeans V-measure and AMI, mteb's v2 clustering protocol, per label level (see
    ``clustering_levels``); the main score is the mean over every draw of every level.

    ``rng`` is the task's ``random.Random(seed)`` after the document sampling: mteb shares one generator across the
    subsets of a task, so callers fast-forward it to reproduce a subset (see ``run.py``).
    """
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics.cluster import adjusted_mutual_info_score, v_measure_score

    x = _as_f32(emb)
    v: dict[str, list[float]] = {}
    ami: dict[str, list[float]] = {}
    for level, (rows, y) in enumerate(clustering_levels(labels, max_depth)):
        model = MiniBatchKMeans(n_clusters=np.unique(y).size, batch_size=batch_size, init="k-means++", n_init=1,
                                random_state=seed)
        x_level = x[rows]
        v_level, ami_level = v.setdefault(f"Level {level}", []), ami.setdefault(f"Level {level}", [])
        for _ in range(n_clusters):
            idx = rng.choices(range(len(x_level)), k=cluster_size)
            assignment = model.fit_predict(x_level[idx])
            v_level.append(float(v_measure_score(y[idx], assignment)))
            ami_level.append(float(adjusted_mutual_info_score(y[idx], assignment)))
    v_all = [s for level in v.values() for s in level]
    ami_all = [s for level in ami.values() for s in level]
    return {
        "v_measures": v, "v_measure": float(np.mean(v_all)), "v_measure_std": float(np.std(v_all)),
        "ami_scores": ami, "ami": float(np.mean(ami_all)), "ami_std": float(np.std(ami_all)),
        "main_score": float(np.mean(v_all)),
    }


def skip_clustering_draws(rng: random.Random, labels: Sequence[object], k: int | None, *, n_clusters: int = 10,
                          cluster_size: int = 16_384, max_depth: int | None = None) -> None:
    """Advance ``rng`` exactly as one v2 clustering subset with these labels (``k`` rows sampled) would, embedding
    nothing."""
    picked = clustering_sample(rng, len(labels), k)
    for rows, _ in clustering_levels([labels[i] for i in picked], max_depth):
        for _ in range(n_clusters):
            rng.choices(range(len(rows)), k=cluster_size)


def clustering_legacy_scores(emb: np.ndarray, labels: Sequence[object], *, n_sets: int = 1, batch_size: int = 500,
                             seed: int = SEED) -> dict[str, object]:
    """Mean V-measure over cluster sets (mteb AbsTaskClusteringLegacy / ClusteringEvaluator).

    mteb's legacy datasets store one cluster set per row; the rows are ``np.array_split(texts, n_sets)`` in file
    order (MasakhaNEWSClusteringS2S: 5 sets per language, mteb 1.34.7 ``dataset_transform``, kept as the 5 rows of
    ``mteb/MasakhaNEWSClusteringS2S``). Each set gets one MiniBatchKMeans fit with k = its number of labels; a set
    with a single label scores 1.0 without a fit, as in mteb.
    """
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics.cluster import v_measure_score

    x, y = _as_f32(emb), list(labels)
    v = []
    for idx in np.array_split(np.arange(len(y)), n_sets):
        set_labels = [y[i] for i in idx]
        if len(set(set_labels)) <= 1:
            v.append(1.0)
            continue
        model = MiniBatchKMeans(n_clusters=len(set(set_labels)), batch_size=batch_size, n_init="auto",
                                compute_labels=True, random_state=seed)
        model.fit(x[idx])
        v.append(float(v_measure_score(set_labels, model.labels_.tolist())))
    return {"v_measure": float(np.mean(v)), "v_measure_std": float(np.std(v)), "v_measures": v,
            "main_score": float(np.mean(v))}


def rank_documents(query_emb: np.ndarray, doc_emb: np.ndarray, doc_ids: Sequence[str], top_k: int = 1000,
                   candidates: Sequence[Sequence[int]] | None = None) -> list[dict[str, float]]:
    """Top-k documents by cosine for each query, as {doc_id: score}; ``candidates`` restricts each query's pool."""
    out = []
    for start in range(0, len(query_emb), 256):
        sims = cosine_matrix(query_emb[start:start + 256], doc_emb)
        for row, s in enumerate(sims):
            pool = np.arange(len(doc_ids)) if candidates is None else np.asarray(candidates[start + row], dtype=int)
            s_pool = s[pool]
            order = np.argsort(-s_pool, kind="stable")[:top_k]
            out.append({doc_ids[pool[j]]: float(s_pool[j]) for j in order})
    return out


def _trec_order(run: Mapping[str, float]) -> list[str]:
    # trec_eval ranks by score descending, ties by document id descending
    return [d for d, _ in sorted(run.items(), key=lambda x: (x[1], x[0]), reverse=True)]


def retrieval_scores(run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]],
                     k_values: Sequence[int] = (1, 3, 5, 10, 20, 100, 1000)) -> dict[str, float]:
    """nDCG@k, MAP@k, recall@k, precision@k, MRR@k averaged over the queries in ``run`` (trec_eval definitions, as
    mteb computes them with pytrec_eval; mteb rounds the means but MRR's to 5 decimals, so do we).
    """
    sums: dict[str, float] = defaultdict(float)
    n = 0
    for qid, docs in run.items():
        rels = {d: r for d, r in qrels.get(qid, {}).items()}
        if not rels:
            continue
        n += 1
        ranked = _trec_order(docs)
        ideal = sorted((r for r in rels.values() if r > 0), reverse=True)
        n_rel = len(ideal)
        for k in k_values:
            top = ranked[:k]
            gains = [max(rels.get(d, 0), 0) for d in top]
            dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
            idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal[:k]))
            hits = [1 if rels.get(d, 0) > 0 else 0 for d in top]
            ap = sum(sum(hits[: i + 1]) / (i + 1) for i, h in enumerate(hits) if h) / n_rel if n_rel else 0.0
            first = next((i for i, h in enumerate(hits) if h), None)
            sums[f"ndcg_at_{k}"] += dcg / idcg if idcg > 0 else 0.0
            sums[f"map_at_{k}"] += ap
            sums[f"recall_at_{k}"] += sum(hits) / n_rel if n_rel else 0.0
            sums[f"precision_at_{k}"] += sum(hits) / k
            sums[f"mrr_at_{k}"] += 0.0 if first is None else 1.0 / (first + 1)
    if n == 0:
        raise ValueError("no query in the run has relevant documents in the qrels")
    # mteb rounds the pytrec_eval means, not its own MRR
    return {key: v / n if key.startswith("mrr_") else round(v / n, 5) for key, v in sums.items()}


def _rank(run: Mapping[str, float], doc: str) -> int:
    """1-based rank of ``doc`` in a query's run (trec order), one past the end when it is not in the run (mteb's
    ``get_rank_from_dict``)."""
    order = _trec_order(run)
    return order.index(doc) + 1 if doc in run else len(order) + 1


def p_mrr(run: Mapping[str, Mapping[str, float]], changed: Mapping[str, Sequence[str]]) -> float:
    """FollowIR's p-MRR (mteb ``calculate_pmrr``): for every document whose relevance the changed instruction of
    ``{q}-changed`` alters, its rank under ``{q}-og`` against under ``{q}-changed`` scores ``new/og - 1`` when it
    moved up, ``1 - og/new`` otherwise; the mean per base query, then over base queries. Pairs with a query missing
    from ``run`` are skipped, as in mteb."""
    per_query: dict[str, list[float]] = {}
    for qid, docs in changed.items():
        og, new = run.get(f"{qid}-og"), run.get(f"{qid}-changed")
        if og is None or new is None:
            continue
        for doc in docs:
            og_rank, new_rank = _rank(og, doc), _rank(new, doc)
            per_query.setdefault(qid, []).append(((1 / og_rank) / (1 / new_rank)) - 1 if og_rank >= new_rank
                                                 else 1 - ((1 / new_rank) / (1 / og_rank)))
    if not per_query:
        raise ValueError("no -og / -changed query pair with changed documents is in the run")
    return float(np.mean([np.mean(per_query[q]) for q in sorted(per_query)]))


def instruction_scores(run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]],
                       changed: Mapping[str, Sequence[str]], k_values: Sequence[int]) -> dict[str, object]:
    """Instruction reranking (mteb ``evaluate_p_mrr_change``): p-MRR (main), and the retrieval scores of the
    original-instruction queries (``-og``) and of the others, apart."""
    og = {q: d for q, d in run.items() if q.endswith("-og")}
    new = {q: d for q, d in run.items() if not q.endswith("-og")}
    return {"p-MRR": p_mrr(run, changed), "og": retrieval_scores(og, qrels, k_values),
            "changed": retrieval_scores(new, qrels, k_values)}
