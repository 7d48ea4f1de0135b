"""Our metrics and prompts against mteb's own evaluator classes on the same embeddings (mteb is a dev dependency).

Each test runs an mteb task's ``_evaluate_subset`` with ``MtebEncoder`` (our adapter) over a small in-memory
dataset, and ``harrier.eval.run.score_subset`` over the same texts with the same encoder; the scores must agree.
Run: pytest tests/eval/test_mteb_parity.py -q
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from harrier.eval import metrics
from harrier.eval.data import BitextData, ClassificationData, ClusteringData, PairData
from harrier.eval.encoders import InstructionPrompts, NamedPrompts, NoPrompts
from harrier.eval.mteb_adapter import MtebEncoder
from harrier.eval.protocols import ClusteringProtocol, LegacyClusteringProtocol
from harrier.eval.run import score_subset
from harrier.eval.tasks import TaskSpec

mteb = pytest.importorskip("mteb")
datasets = pytest.importorskip("datasets")
from mteb.timing import TimingStack  # noqa: E402
from mteb_splits import instruction_reranking_split  # noqa: E402

WORDS = "the cat dog sat on a mat ran fast slow big small red blue house tree river sun moon".split()


def _sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(3, 8))) + f" {i % 7}" for i in range(n)]


def _spec(name: str, type_: str, **kw) -> TaskSpec:
    return TaskSpec(name, type_, ("test",), ("default",), lambda r, s, p: None, **kw)


def _mteb_run(task_name: str, data, bow, policy):
    task = mteb.get_task(task_name)
    model = MtebEncoder(bow, name="test/bow", prompts=policy)
    return task._evaluate_subset(model, data, encode_kwargs={}, hf_split="test", hf_subset="default",
                                 timer=TimingStack()), task


def test_sts_matches_mteb(bow):
    s1, s2 = _sentences(80, 1), _sentences(80, 2)
    gold = [float(x) for x in np.random.default_rng(0).uniform(0, 5, 80)]
    ref, _ = _mteb_run("STSBenchmark", datasets.Dataset.from_dict({"sentence1": s1, "sentence2": s2, "score": gold}),
                       bow, NoPrompts())
    ours = score_subset(bow, _spec("STSBenchmark", "STS"), PairData(s1, s2, scores=gold), NoPrompts())
    for k in ("cosine_spearman", "cosine_pearson", "manhattan_spearman", "euclidean_spearman"):
        assert ours[k] == pytest.approx(ref[k], abs=1e-9), k


def test_pair_classification_matches_mteb(bow):
    s1, s2 = _sentences(120, 3), _sentences(120, 4)
    labels = [int(x) for x in np.random.default_rng(1).integers(0, 2, 120)]
    ds = datasets.Dataset.from_dict({"sentence1": s1, "sentence2": s2, "labels": labels})
    ref, _ = _mteb_run("PawsXPairClassification", ds, bow, NoPrompts())
    ours = score_subset(bow, _spec("PawsXPairClassification", "PairClassification"),
                        PairData(s1, s2, labels=labels), NoPrompts())
    for k in ("max_ap", "cosine_ap", "manhattan_ap", "dot_ap", "cosine_accuracy", "cosine_f1", "max_f1"):
        assert ours[k] == pytest.approx(ref[k], abs=1e-9), k


def test_bitext_matches_mteb(bow):
    s1 = _sentences(150, 5)
    s2 = [s + " x" if i % 3 else s for i, s in enumerate(_sentences(150, 5))]
    s2 = s2[1:] + s2[:1]  # misalign so the score is not trivially 1
    ref, _ = _mteb_run("Tatoeba", datasets.Dataset.from_dict({"sentence1": s1, "sentence2": s2}), bow, NoPrompts())
    ours = score_subset(bow, _spec("Tatoeba", "BitextMining"), BitextData(s1, s2), NoPrompts())
    for k in ("f1", "precision", "recall", "accuracy"):
        assert ours[k] == pytest.approx(ref[k], abs=1e-12), k


def test_classification_matches_mteb(bow):
    rng = np.random.default_rng(2)
    topics = ["sun moon", "cat dog", "river tree", "red blue"]
    y_train = [int(x) for x in rng.integers(0, 4, 200)]
    y_test = [int(x) for x in rng.integers(0, 4, 60)]
    tr = [f"{topics[y]} {s}" for y, s in zip(y_train, _sentences(200, 6), strict=True)]
    te = [f"{topics[y]} {s}" for y, s in zip(y_test, _sentences(60, 7), strict=True)]
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": tr, "label": y_train}),
                               "test": datasets.Dataset.from_dict({"text": te, "label": y_test})})
    ref, task = _mteb_run("SIB200Classification", dd, bow, NoPrompts())
    ours = score_subset(bow, _spec("SIB200Classification", "Classification"),
                        ClassificationData(tr, y_train, te, y_test), NoPrompts())
    assert ours["accuracy"] == pytest.approx(ref["accuracy"], abs=1e-12)
    assert ours["f1"] == pytest.approx(ref["f1"], abs=1e-12)
    sim, idxs = [], None
    for i in range(task.n_experiments):
        _, idxs, chosen = task._undersample_data(dd["train"], i, idxs)
        sim.append(chosen)
    assert sim == metrics.undersample_experiments(y_train)


def test_clustering_v2_matches_mteb_including_shared_rng(bow):
    topics = ["sun moon", "cat dog", "river tree"]
    subsets = {}
    for name, seed in (("aaa", 8), ("bbb", 9)):
        y = [i % 3 for i in range(90)]
        subsets[name] = ([f"{topics[k]} {s}" for k, s in zip(y, _sentences(90, seed), strict=True)], y)
    task = mteb.get_task("SIB200ClusteringS2S")
    task.dataset = {n: {"test": datasets.Dataset.from_dict({"sentences": t, "labels": y})}
                    for n, (t, y) in subsets.items()}
    task.data_loaded = True
    task.hf_subsets = list(subsets)
    task.n_clusters, task.max_documents_per_cluster = 3, 400  # mteb: 10 x 16,384 (slow for a unit test)
    ref = task.evaluate(MtebEncoder(bow, name="test/bow", prompts=NoPrompts()), "test", encode_kwargs={})
    spec = TaskSpec("SIB200ClusteringS2S", "Clustering", ("test",), tuple(subsets),
                    lambda r, s, p: ClusteringData(*subsets[s]),
                    protocol=ClusteringProtocol(max_documents=1004, n_clusters=3, cluster_size=400))
    from harrier.eval.run import _clustering_rng

    for name in subsets:
        ours = score_subset(bow, spec, spec.load(None, name, "test"), NoPrompts(), _clustering_rng(spec, None, name))
        assert ours["v_measure"] == pytest.approx(ref[name]["v_measure"], abs=1e-12), name


def test_clustering_legacy_matches_mteb(bow):
    """MasakhaNEWS: mteb's dataset has 5 rows per language (``np.array_split`` of the test file, in order), each
    clustered on its own; a single-topic row scores 1.0. Ours splits the same way."""
    topics = ["sun moon", "cat dog", "river tree", "red blue"]
    y = [0] * 24 + [i % 4 for i in range(96)]  # the first set holds one topic only
    texts = [f"{topics[k]} {s}" for k, s in zip(y, _sentences(120, 10), strict=True)]
    rows = [[int(i) for i in part] for part in np.array_split(np.arange(120), 5)]
    ds = datasets.Dataset.from_dict({"sentences": [[texts[i] for i in r] for r in rows],
                                     "labels": [[y[i] for i in r] for r in rows]})
    ref, _ = _mteb_run("MasakhaNEWSClusteringS2S", ds, bow, NoPrompts())
    ours = score_subset(bow, _spec("MasakhaNEWSClusteringS2S", "Clustering", protocol=LegacyClusteringProtocol(sets=5)),
                        ClusteringData(texts, y), NoPrompts())
    assert len(ref["v_measures"]) == 5 and ref["v_measures"][0] == 1.0
    assert ours["v_measures"] == pytest.approx(ref["v_measures"], abs=1e-12)
    assert ours["v_measure"] == pytest.approx(ref["v_measure"], abs=1e-12)


def test_retrieval_metrics_match_pytrec_eval():
    """mteb rounds the pytrec_eval means to 5 decimals and leaves its own MRR unrounded: so do we, so every metric
    (MRR@10 is a benchmark main score, WebLINXCandidatesReranking) equals mteb's to float rounding."""
    from mteb._evaluators.retrieval_metrics import calculate_retrieval_scores

    rng = np.random.default_rng(3)
    run = {f"q{i}": {f"d{j}": float(rng.random()) for j in range(40)} for i in range(25)}
    qrels = {f"q{i}": {f"d{j}": int(rng.integers(1, 3)) for j in rng.choice(40, 3, replace=False)} for i in range(25)}
    qrels["q0"] = {"d1": 0, "d2": 0}  # judged, nothing relevant: counts as 0 in every mean
    run["q1"]["d7"] = run["q1"]["d8"] = max(run["q1"].values()) + 0.1  # a tie at the top: broken by id
    ref = calculate_retrieval_scores(run, qrels, [1, 5, 10, 100])
    ours = metrics.retrieval_scores(run, qrels, (1, 5, 10, 100))
    for k in (1, 5, 10, 100):
        assert ours[f"ndcg_at_{k}"] == pytest.approx(ref.ndcg[f"NDCG@{k}"], abs=1e-12)
        assert ours[f"map_at_{k}"] == pytest.approx(ref.map[f"MAP@{k}"], abs=1e-12)
        assert ours[f"recall_at_{k}"] == pytest.approx(ref.recall[f"Recall@{k}"], abs=1e-12)
        assert ours[f"precision_at_{k}"] == pytest.approx(ref.precision[f"P@{k}"], abs=1e-12)
        assert ours[f"mrr_at_{k}"] == pytest.approx(ref.mrr[f"MRR@{k}"], abs=1e-12)
    assert 0 < ours["mrr_at_10"] < 1 and ours["mrr_at_10"] != round(ours["mrr_at_10"], 5)  # not rounded


GEMMA_PROMPTS = {
    "query": "task: search result | query: ", "document": "title: none | text: ",
    "BitextMining": "task: search result | query: ", "Clustering": "task: clustering | query: ",
    "Classification": "task: classification | query: ", "PairClassification": "task: sentence similarity | query: ",
    "Retrieval-query": "task: search result | query: ", "Retrieval-document": "title: none | text: ",
    "STS": "task: sentence similarity | query: ",
}
TASKS = ["STSBenchmark", "STS17", "Tatoeba", "SIB200Classification", "MassiveIntentClassification",
         "PawsXPairClassification", "SIB200ClusteringS2S", "MasakhaNEWSClusteringS2S", "XQuADRetrieval", "SciFact",
         "CEDRClassification", "MultiEURLEXMultilabelClassification", "Core17InstructionRetrieval", "AlloprofReranking"]


@pytest.mark.parametrize("task_name", TASKS)
@pytest.mark.parametrize("prompt_type", [None, "query", "document"])
def test_named_prompts_follow_mteb_priority(task_name, prompt_type):
    from mteb.models.abs_encoder import get_prompt
    from mteb.types import PromptType

    meta = mteb.get_task(task_name).metadata
    ours = MtebEncoder.__new__(MtebEncoder)
    ours.policy, ours.used_prompts = NamedPrompts(GEMMA_PROMPTS), {}
    expected = get_prompt(GEMMA_PROMPTS, meta, PromptType(prompt_type) if prompt_type else None)
    assert ours.prompt_for(meta, prompt_type) == expected


@pytest.mark.parametrize("task_name", TASKS)
@pytest.mark.parametrize("prompt_type", [None, "query", "document"])
def test_instruction_prompts_match_mteb_harrier_wrapper(task_name, prompt_type):
    from mteb.models.instruct_wrapper import InstructSentenceTransformerModel
    from mteb.models.model_implementations.harrier_models import harrier_task_prompts, instruction_template
    from mteb.types import PromptType

    meta = mteb.get_task(task_name).metadata
    if prompt_type is None and meta.type == "Retrieval":
        pytest.skip("retrieval inputs are always queries or documents")
    ref = InstructSentenceTransformerModel.__new__(InstructSentenceTransformerModel)
    ref.prompts_dict, ref.instruction_template = harrier_task_prompts, instruction_template
    pt = PromptType(prompt_type) if prompt_type else None
    expected = ref.get_task_instruction(meta, pt) if prompt_type != "document" else None
    ours = MtebEncoder.__new__(MtebEncoder)
    ours.policy, ours.used_prompts = InstructionPrompts(harrier_task_prompts), {}
    assert (ours.prompt_for(meta, prompt_type) or None) == (expected or None)


def test_instruction_table_equals_mteb_harrier_table():
    from mteb.models.model_implementations.harrier_models import harrier_task_prompts

    assert InstructionPrompts().table == harrier_task_prompts


class TableEncoder:
    """Fixed vectors: each text's row is looked up (two-class and multi-class parity on exactly the same inputs)."""

    name = "table-test"
    prompts: dict[str, str] = {}

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    def encode(self, texts, *, prompt=None):
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


@pytest.mark.parametrize("names", [("non-hateful", "hateful"), (0, 1), (10, 2), ("sport", "health", "politics")],
                         ids=["two-strings", "two-numbers", "two-numbers-string-order", "multi-class"])
def test_classification_task_file_matches_mteb(tmp_path, names):
    """A task file scores what mteb's classification evaluator gives once the labels are class-encoded (mteb's
    ``stratified_subsampling`` encodes the label column over all splits, names sorted as strings)."""
    from harrier.eval.local import load_task_file
    from harrier.eval.protocols import ClassificationProtocol

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(len(names), 16))
    rows, table = [], {}
    for split, n in (("train", 90), ("test", 70)):
        for i, y in enumerate(rng.integers(0, len(names), n)):
            text = f"{split} {i}"
            table[text] = centres[y] + 1.5 * rng.normal(size=16)  # overlapping classes: scores below 1
            rows.append({"text": text, "label": names[y], "split": split})
    path = tmp_path / "task.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    enc = TableEncoder(table)

    sel = load_task_file(path, "Classification")
    ours = score_subset(enc, sel.task, sel.task.load(tmp_path, "default", "test"), NoPrompts())

    cols = {s: {k: [r[k] for r in rows if r["split"] == s] for k in ("text", "label")} for s in ("train", "test")}
    dd = datasets.DatasetDict({s: datasets.Dataset.from_dict(c) for s, c in cols.items()})
    dd = mteb.AbsTask.stratified_subsampling(dd, seed=42, splits=["test"], n_samples=len(cols["test"]["text"]))
    ref, task = _mteb_run("SIB200Classification", dd, enc, NoPrompts())
    protocol = ClassificationProtocol()
    assert (task.n_experiments, task.samples_per_label) == (protocol.n_experiments, protocol.samples_per_label)
    assert 0.5 < ref["accuracy"] < 1.0
    keys = ["accuracy", "f1", "f1_weighted", "precision", "precision_weighted", "recall", "recall_weighted"]
    if len(names) == 2:
        keys += ["ap", "ap_weighted"]
    else:
        assert np.isnan(ref["ap"]) and np.isnan(ours["ap"])
    for k in keys:
        assert ours[k] == pytest.approx(ref[k], abs=1e-12), k


@pytest.mark.parametrize("label_kind", [str, int])
def test_hierarchical_clustering_matches_mteb(bow, label_kind):
    """Two label levels (some rows lack the second), mteb's fraction cap and shared generator: per-level V-measures
    and the main score equal mteb's AbsTaskClustering on the same embeddings."""
    topics = ["sun moon", "cat dog", "river tree", "red blue"]
    subsets = {}
    for name, seed in (("aaa", 11), ("bbb", 12)):
        top = [i % 2 for i in range(200)]
        sub = [2 + i % 4 for i in range(200)]
        y = [[label_kind(t), label_kind(s)] if i % 5 else [label_kind(t)]
             for i, (t, s) in enumerate(zip(top, sub, strict=True))]
        texts = [f"{topics[s - 2]} {x}" for s, x in zip(sub, _sentences(200, seed), strict=True)]
        subsets[name] = (texts, y)
    task = mteb.get_task("ArXivHierarchicalClusteringP2P")
    task.dataset = {n: {"test": datasets.Dataset.from_dict({"sentences": t, "labels": y})}
                    for n, (t, y) in subsets.items()}
    task.data_loaded = True
    task.hf_subsets = list(subsets)
    task.n_clusters, task.max_documents_per_cluster = 3, 150
    task.max_document_to_embed, task.max_fraction_of_documents_to_embed = None, 0.5
    ref = task.evaluate(MtebEncoder(bow, name="test/bow", prompts=NoPrompts()), "test", encode_kwargs={})
    spec = TaskSpec("ArXivHierarchicalClusteringP2P", "Clustering", ("test",), tuple(subsets),
                    lambda r, s, p: ClusteringData(*subsets[s]),
                    protocol=ClusteringProtocol(max_fraction=0.5, n_clusters=3, cluster_size=150))
    from harrier.eval.run import _clustering_rng

    for name in subsets:
        ours = score_subset(bow, spec, spec.load(None, name, "test"), NoPrompts(), _clustering_rng(spec, None, name))
        assert list(ours["v_measures"]) == ["Level 0", "Level 1"]
        for level in ("Level 0", "Level 1"):
            assert ours["v_measures"][level] == pytest.approx(ref[name]["v_measures"][level], abs=1e-12), name
        assert ours["v_measure"] == pytest.approx(ref[name]["v_measure"], abs=1e-12), name


def _multilabel_rows(rng: np.random.Generator, langs: tuple[str, ...], n_train: int, n_test: int
                     ) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Rows of 0-3 labels out of 5 (a few rows unlabelled) whose vectors are the sum of their labels' centres plus
    noise: k-NN scores well above chance and below 1."""
    centres = rng.normal(size=(5, 16))
    rows, table = [], {}
    for lang in langs:
        for split, n in (("train", n_train), ("test", n_test)):
            for i in range(n):
                labels = sorted(int(y) for y in rng.choice(5, size=int(rng.integers(0, 4)), replace=False))
                text = f"{lang} {split} {i}"
                table[text] = centres[labels].sum(axis=0) + 1.2 * rng.normal(size=16)
                rows.append({"text": text, "label": labels, "split": split, "lang": lang})
    return rows, table


@pytest.mark.parametrize(("task_name", "langs"), [("BrazilianToxicTweetsClassification", ("default",)),
                                                  ("MultiEURLEXMultilabelClassification", ("en", "de", "fr"))])
def test_multilabel_task_file_matches_mteb(tmp_path, task_name, langs):
    """A task file named after an mteb multilabel task, fixed vectors: every subset's scores equal mteb's
    ``AbsTaskMultilabelClassification.evaluate`` over the same subsets in a row, whose undersampling generator is
    shared by the subsets (harrier replays the earlier subsets' draws)."""
    from harrier.eval.local import load_task_file
    from harrier.eval.run import task_rng

    rows, table = _multilabel_rows(np.random.default_rng(4), langs, 160, 70)
    path = tmp_path / f"{task_name}.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    enc = TableEncoder(table)
    sel = load_task_file(path)
    assert sel.task.type == "MultilabelClassification" and sel.task.main_score == "accuracy"
    assert sel.subsets == langs  # mteb's order (en, de, fr), not the file's sorted one

    task = mteb.get_task(task_name)
    task.dataset = {lang: datasets.DatasetDict({s: datasets.Dataset.from_dict(
        {k: [r[k] for r in rows if r["split"] == s and r["lang"] == lang] for k in ("text", "label")})
        for s in ("train", "test")}) for lang in langs}
    task.data_loaded, task.hf_subsets = True, list(langs)
    ref = task.evaluate(MtebEncoder(enc, name="t/t", prompts=NoPrompts()), "test", encode_kwargs={})
    for lang in langs:
        ours = score_subset(enc, sel.task, sel.task.load(tmp_path, lang, "test"), NoPrompts(),
                            task_rng(sel.task, tmp_path, lang, "test"))
        assert 0.05 < ref[lang]["accuracy"] < 0.95, lang
        assert ours["main_score"] == pytest.approx(ref[lang]["main_score"], abs=1e-12), lang
        for k in ("accuracy", "lrap", "f1", "hamming"):
            assert ours[k] == pytest.approx(ref[lang][k], abs=1e-12), (lang, k)
    if len(langs) > 1:  # without the replay, a later subset draws other training rows: another score
        fresh = score_subset(enc, sel.task, sel.task.load(tmp_path, langs[-1], "test"), NoPrompts())
        assert fresh["scores_per_experiment"] != ours["scores_per_experiment"]


def _instruction_rows(rng: np.random.Generator) -> tuple[list[dict], dict[str, np.ndarray], dict[str, list[str]]]:
    """FollowIR-like pairs: each base query q has q-og and q-changed (same text, another instruction), candidates
    from a shared corpus; the changed instruction makes some of q-og's relevant documents non-relevant."""
    docs = {f"d{i}": rng.normal(size=16) for i in range(40)}
    rows = [{"kind": "document", "id": d, "text": f"document {d}"} for d in docs]
    table = {f"document {d}": v for d, v in docs.items()}
    changed = {}
    for q in range(8):
        candidates = [str(d) for d in rng.choice(list(docs), size=18, replace=False)]
        relevant = candidates[:5]
        changed[f"q{q}"] = relevant[:2] if q != 5 else relevant  # q5-changed has no relevant document left
        for kind, instruction, rel in (("og", f"focus on topic {q}", relevant),
                                       ("changed", f"focus on topic {q}, but exclude part {q}", relevant[2:])):
            query = {"kind": "query", "id": f"q{q}-{kind}", "text": f"question {q}", "instruction": instruction,
                     "relevant": {d: 1 for d in rel} if not (q == 5 and kind == "changed") else {},
                     "candidates": candidates}
            if kind == "changed":
                query["changed"] = changed[f"q{q}"]
            # the embedded query is text + " " + instruction (mteb's join): only that string has a vector
            base = np.mean([docs[d] for d in relevant], axis=0)
            table[f"question {q} {instruction}"] = base + 1.5 * rng.normal(size=16)
            rows.append(query)
    return rows, table, changed


def test_instruction_reranking_task_file_matches_mteb(tmp_path):
    """Core17InstructionRetrieval as a task file, fixed vectors: p-MRR (main) and the og / changed retrieval scores
    equal mteb's AbsTaskRetrieval with the task's own ``evaluate_p_mrr_change`` (its qrel_diff download replaced by
    the file's "changed" lists); mteb's instruction join, reranking among candidates and the dropping of a query
    without relevant documents (q5-changed, whose pair p-MRR then skips) all take part."""
    from mteb._evaluators.retrieval_metrics import evaluate_p_mrr_change

    from harrier.eval.local import load_task_file

    rows, table, changed = _instruction_rows(np.random.default_rng(5))
    path = tmp_path / "Core17InstructionRetrieval.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    enc = TableEncoder(table)
    sel = load_task_file(path)
    assert (sel.task.type, sel.task.main_score) == ("InstructionReranking", "p-MRR")
    ours = score_subset(enc, sel.task, sel.task.load(tmp_path, "default", "test"), NoPrompts())

    split = instruction_reranking_split(rows)
    task = mteb.get_task("Core17InstructionRetrieval")
    task.task_specific_scores = lambda scores, qrels, results, hf_split, hf_subset: evaluate_p_mrr_change(
        qrels, results, changed, task.k_values)
    ref = task._evaluate_subset(MtebEncoder(enc, name="t/t", prompts=NoPrompts()), split, encode_kwargs={},
                                hf_split="test", hf_subset="default", timer=TimingStack())
    assert task.metadata.main_score == "p-MRR" and ref["p-MRR"] != 0.0
    assert ours["main_score"] == pytest.approx(ref["p-MRR"], abs=1e-12)
    for group in ("og", "changed"):
        for k in ("ndcg_at_5", "map_at_1000", "recall_at_10", "precision_at_1", "mrr_at_10"):
            assert ours[group][k] == pytest.approx(ref[group][k], abs=1e-12), (group, k)
    for k in ("ndcg_at_10", "map_at_1000", "mrr_at_1000"):
        assert ours[k] == pytest.approx(ref[k], abs=1e-12), k


def _pairs_case(rng, n, *, scores=None, labels=None):
    rows, table = [], {}
    for i in range(n):
        v = rng.normal(size=16)
        # noise: STS by score, pair classification by label (overlapping), bitext enough to miss some pairs
        closeness = 4.0 - scores[i] if scores is not None else 2.0 if labels is None else 1.4 - 0.4 * labels[i]
        rows.append({"sentence1": f"first {i}", "sentence2": f"second {i}"})
        table[f"first {i}"], table[f"second {i}"] = v, v + closeness * rng.normal(size=16)
        if scores is not None:
            rows[-1]["score"] = scores[i]
        if labels is not None:
            rows[-1]["label"] = labels[i]
    return rows, table


def _ranking_case(rng, rerank: bool):
    docs = {f"d{i}": rng.normal(size=16) for i in range(60)}
    rows = [{"kind": "document", "id": d, "text": f"doc {d}"} for d in docs]
    table = {f"doc {d}": v for d, v in docs.items()}
    for q in range(15):
        pool = [str(d) for d in rng.choice(list(docs), size=20, replace=False)]
        relevant = {d: int(rng.integers(1, 3)) for d in pool[:3]}
        row = {"kind": "query", "id": f"q{q}", "text": f"query {q}", "relevant": relevant}
        if rerank:
            row["candidates"] = pool
        table[f"query {q}"] = np.mean([docs[d] for d in relevant], axis=0) + 1.2 * rng.normal(size=16)
        rows.append(row)
    return rows, table


def _cluster_case(rng, n=120, k=4):
    centres = rng.normal(size=(k, 16))
    ys = [int(y) for y in rng.integers(0, k, n)]
    rows = [{"text": f"text {i}", "label": y} for i, y in enumerate(ys)]
    return rows, {f"text {i}": centres[y] + 1.3 * rng.normal(size=16) for i, y in enumerate(ys)}


def _mteb_ranking_split(rows, rerank):
    queries = [r for r in rows if r["kind"] == "query"]
    docs = [r for r in rows if r["kind"] == "document"]
    return {"corpus": datasets.Dataset.from_dict({"id": [d["id"] for d in docs], "text": [d["text"] for d in docs]}),
            "queries": datasets.Dataset.from_dict({"id": [q["id"] for q in queries],
                                                   "text": [q["text"] for q in queries]}),
            "relevant_docs": {q["id"]: dict(q["relevant"]) for q in queries},
            "top_ranked": {q["id"]: list(q["candidates"]) for q in queries} if rerank else None}


def _columns(rows, **names):
    return datasets.Dataset.from_dict({theirs: [r[ours] for r in rows] for theirs, ours in names.items()})


# one benchmark task per task type (Classification: test_named_task_files.py's AmazonCounterfactualClassification;
# MultilabelClassification and InstructionReranking above), its task file fed fixed vectors
NAMED_CASES = {
    "BornholmBitextMining": lambda rng: (*_pairs_case(rng, 60),
                                         lambda rows: _columns(rows, sentence1="sentence1", sentence2="sentence2")),
    "FinParaSTS": lambda rng: (*_pairs_case(rng, 60, scores=[float(x) for x in rng.uniform(2, 4, 60)]),
                               lambda rows: _columns(rows, sentence1="sentence1", sentence2="sentence2",
                                                     score="score")),
    "ArmenianParaphrasePC": lambda rng: (*_pairs_case(rng, 80, labels=[int(x) for x in rng.integers(0, 2, 80)]),
                                         lambda rows: _columns(rows, sentence1="sentence1", sentence2="sentence2",
                                                               labels="label")),
    "RomaniBibleClustering": lambda rng: (*_cluster_case(rng), lambda rows: datasets.Dataset.from_dict(
        {"sentences": [[r["text"] for r in rows]], "labels": [[r["label"] for r in rows]]})),
    "SCIDOCS": lambda rng: (*_ranking_case(rng, False), lambda rows: _mteb_ranking_split(rows, False)),
    "AlloprofReranking": lambda rng: (*_ranking_case(rng, True), lambda rows: _mteb_ranking_split(rows, True)),
}


@pytest.mark.parametrize("task_name", list(NAMED_CASES))
def test_named_task_file_of_each_type_matches_mteb(tmp_path, task_name):
    """A task file named after a benchmark task of each type, fixed vectors: the task's metadata (type, main score,
    protocol) is taken from the file name, and the main score equals mteb's evaluator for that task."""
    from harrier.eval.local import load_task_file
    from harrier.eval.metadata import task_metadata

    rows, table, to_mteb = NAMED_CASES[task_name](np.random.default_rng(6))
    path = tmp_path / f"{task_name}.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    enc = TableEncoder(table)
    sel = load_task_file(path)
    meta = task_metadata(task_name)
    assert (sel.task.type, sel.task.main_score, sel.task.protocol) == (meta.type, meta.main_score, meta.protocol)
    ours = score_subset(enc, sel.task, sel.task.load(tmp_path, "default", "test"), NoPrompts())
    ref, task = _mteb_run(task_name, to_mteb(rows), enc, NoPrompts())  # _evaluate_subset: no "main_score" key
    assert ours["main_score"] == pytest.approx(ref[task.metadata.main_score], abs=1e-12)
    assert ours["main_score"] == ours[task.metadata.main_score] and 0.05 < ours["main_score"] < 0.99


def test_named_v2_clustering_task_file_matches_mteb(tmp_path):
    """HALClusteringS2S.v2 (v2 clustering, max_documents 2048 from its metadata; fewer draws for speed)."""
    from harrier.eval.local import load_task_file
    from harrier.eval.run import task_rng

    rows, table = _cluster_case(np.random.default_rng(7), n=150)
    path = tmp_path / "HALClusteringS2S.v2.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    enc = TableEncoder(table)
    sel = load_task_file(path, protocol=["n_clusters=3", "cluster_size=300"])
    assert sel.task.protocol.max_documents == 2048 and sel.task.main_score == "v_measure"
    ours = score_subset(enc, sel.task, sel.task.load(tmp_path, "default", "test"), NoPrompts(),
                        task_rng(sel.task, tmp_path, "default", "test"))
    task = mteb.get_task("HALClusteringS2S.v2")
    task.dataset = {"default": {"test": _columns(rows, sentences="text", labels="label")}}
    task.data_loaded, task.hf_subsets = True, ["default"]
    task.n_clusters, task.max_documents_per_cluster = 3, 300
    ref = task.evaluate(MtebEncoder(enc, name="t/t", prompts=NoPrompts()), "test", encode_kwargs={})["default"]
    assert ours["main_score"] == pytest.approx(ref["main_score"], abs=1e-12) and 0.05 < ref["main_score"] < 0.99


@pytest.mark.parametrize("kind", [int, str])
def test_stratified_cut_matches_mteb(kind):
    """The rows mteb keeps of a multilabel split over max_eval_samples (``_multilabel_subsampling``): the same for
    integer and string labels (their sorted order differs: "10" < "2"), unlabelled rows included."""
    from mteb.abstasks.abstask import _multilabel_subsampling

    from harrier.eval.stratify import stratified_sample

    rng = np.random.default_rng(8)
    names = [kind(x) for x in (2, 10, 3, 7, 11, 5)]
    labels = [[names[int(i)] for i in rng.choice(6, size=int(rng.integers(0, 4)), replace=False)]
              for _ in range(300)]
    for n in (40, 137):
        dd = datasets.DatasetDict({"test": datasets.Dataset.from_dict({"label": labels, "i": list(range(300))})})
        ref = _multilabel_subsampling(dd, seed=42, splits=["test"], label="label", n_samples=n)["test"]["i"]
        ours = stratified_sample(labels, n, 42)
        assert ours == ref and len(ours) == n
        other = [[str(y) if kind is int else int(y) for y in row] for row in labels]
        assert stratified_sample(other, n, 42) != ours  # the values' sorted order matters


def test_multilabel_split_over_max_eval_samples_is_cut_as_mteb_cuts_it(tmp_path):
    from harrier.eval.local import load_task_file

    rows, table = _multilabel_rows(np.random.default_rng(9), ("default",), 160, 90)
    path = tmp_path / "KorHateSpeechMLClassification.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    enc = TableEncoder(table)
    sel = load_task_file(path, protocol=["max_eval_samples=50"])
    data = sel.task.load(tmp_path, "default", "test")
    assert len(data.texts) == 50
    ours = score_subset(enc, sel.task, data, NoPrompts())
    task = mteb.get_task("KorHateSpeechMLClassification")
    task.max_eval_samples = 50
    task.dataset = {"default": datasets.DatasetDict({s: datasets.Dataset.from_dict(
        {k: [r[k] for r in rows if r["split"] == s] for k in ("text", "label")}) for s in ("train", "test")})}
    task.data_loaded = True
    ref = task.evaluate(MtebEncoder(enc, name="t/t", prompts=NoPrompts()), "test", encode_kwargs={})["default"]
    assert ours["main_score"] == pytest.approx(ref["main_score"], abs=1e-12) and 0.05 < ref["main_score"] < 0.95
    for k in ("lrap", "f1", "hamming"):
        assert ours[k] == pytest.approx(ref[k], abs=1e-12), k
