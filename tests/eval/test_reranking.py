"""Reranking end to end: a local JSONL task through ``harrier eval`` (harrier.cli.main) on a tiny checkpoint.

Checks the result file's layout, MAP@1000 against a hand computation from harrier.Embedder's embeddings and against
mteb's own RetrievalEvaluator with ``top_ranked`` (mteb's reranking), that only a query's candidates are ranked, and
the error for a candidate id missing from the corpus. Run: pytest tests/eval/test_reranking.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harrier.cli import main

QUERY_PROMPT, DOC_PROMPT = "task: search result | query: ", "title: none | text: "  # the tiny EmbeddingGemma's
DOCS = {
    "d0": "the cat sat on the mat", "d1": "dogs run in the park", "d2": "a river flows to the sea",
    "d3": "the sun is a star", "d4": "stock markets fell today", "d5": "football match ends in a draw",
    "d6": "new phone released this week", "d7": "rain expected tomorrow morning",
}
QUERIES = [
    # q3's relevant d2 is not among its candidates: it is never retrieved but counts as relevant (trec_eval, mteb)
    {"id": "q1", "text": "where do cats sit", "relevant": {"d0": 1}, "candidates": ["d0", "d1", "d2", "d3"]},
    {"id": "q2", "text": "sports results", "relevant": {"d5": 2, "d1": 1},
     "candidates": ["d4", "d5", "d6", "d1", "d7"]},
    {"id": "q3", "text": "weather and water", "relevant": {"d7": 1, "d2": 1}, "candidates": ["d7", "d3", "d6"]},
    {"id": "q4", "text": "technology news", "relevant": {"d6": 1}, "candidates": ["d6", "d4", "d0", "d5", "d3", "d2"]},
]


def _write(path: Path, docs=DOCS, queries=QUERIES) -> Path:
    rows = [{"kind": "document", "id": k, "text": v} for k, v in docs.items()]
    rows += [{"kind": "query", **q} for q in queries]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _harrier_eval(model: Path, task_file: Path, out: Path) -> dict:
    code = main(["eval", "--model", str(model), "--task-file", str(task_file), "--task-type", "Reranking",
                 "--output", str(out), "--no-progress"])
    assert code == 0
    return json.loads((out / f"{task_file.stem}.json").read_text(encoding="utf-8"))


def _cosines(model: Path, queries, docs) -> dict[str, dict[str, float]]:
    """Cosine of every query with every document, from harrier.Embedder directly (not through harrier.eval)."""
    from harrier import Embedder

    emb = Embedder.from_pretrained(model, dtype="float32")
    q = np.asarray(emb.encode([x["text"] for x in queries], prompt=QUERY_PROMPT), dtype=np.float64)
    d = np.asarray(emb.encode(list(docs.values()), prompt=DOC_PROMPT), dtype=np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    sims = q @ d.T
    return {x["id"]: dict(zip(docs, sims[i].tolist(), strict=True)) for i, x in enumerate(queries)}


def _average_precision(ranked: list[str], relevant: dict[str, int]) -> float:
    rel = {d for d, g in relevant.items() if g > 0}
    hits, total = 0, 0.0
    for rank, doc in enumerate(ranked, start=1):
        if doc in rel:
            hits += 1
            total += hits / rank
    return total / len(rel)


def test_reranking_end_to_end_layout_and_map(tiny_embeddinggemma_dir, tmp_path):
    res = _harrier_eval(tiny_embeddinggemma_dir, _write(tmp_path / "rr.jsonl"), tmp_path / "out")

    assert res["task_name"] == "rr" and list(res["scores"]) == ["test"]
    [entry] = res["scores"]["test"]
    assert entry["hf_subset"] == "default" and entry["main_score"] == entry["map_at_1000"]
    for k in (1, 3, 5, 10, 20, 100, 1000):
        for m in ("ndcg", "map", "recall", "precision", "mrr"):
            assert f"{m}_at_{k}" in entry
    h = res["harrier"]
    assert (h["task_type"], h["main_score_name"], h["prompt_policy"]) == ("Reranking", "map_at_1000", "model")
    assert h["prompts"] == {"query": QUERY_PROMPT, "document": DOC_PROMPT}

    # MAP by hand: each query's candidates by cosine, AP over all its relevant documents (retrieved or not)
    sims = _cosines(tiny_embeddinggemma_dir, QUERIES, DOCS)
    aps = []
    for q in QUERIES:
        scores = sorted((sims[q["id"]][d] for d in q["candidates"]), reverse=True)
        assert min(a - b for a, b in zip(scores, scores[1:], strict=False)) > 1e-4  # no near-ties to flip
        ranked = sorted(q["candidates"], key=lambda d: -sims[q["id"]][d])
        aps.append(_average_precision(ranked, q["relevant"]))
    assert entry["map_at_1000"] == pytest.approx(np.mean(aps), abs=2e-5)
    assert 0.0 < entry["map_at_1000"] < 1.0  # q3 cannot reach 1 (its relevant d2 is not a candidate)


def test_reranking_matches_mteb_evaluator(tiny_embeddinggemma_dir, tmp_path):
    mteb = pytest.importorskip("mteb")
    datasets = pytest.importorskip("datasets")
    from mteb.timing import TimingStack

    from harrier.eval.encoders import load_encoder
    from harrier.eval.mteb_adapter import MtebEncoder

    res = _harrier_eval(tiny_embeddinggemma_dir, _write(tmp_path / "rr.jsonl"), tmp_path / "out")
    [ours] = res["scores"]["test"]
    split = {
        "corpus": datasets.Dataset.from_dict({"id": list(DOCS), "text": list(DOCS.values())}),
        "queries": datasets.Dataset.from_dict({"id": [q["id"] for q in QUERIES], "text": [q["text"] for q in QUERIES]}),
        "relevant_docs": {q["id"]: dict(q["relevant"]) for q in QUERIES},
        "top_ranked": {q["id"]: list(q["candidates"]) for q in QUERIES},
    }
    task = mteb.get_task("SciDocsRR")  # any mteb Reranking task: its metadata only (type, k values, main score)
    model = MtebEncoder(load_encoder(str(tiny_embeddinggemma_dir), backend="harrier"), name="test/tiny")
    ref = task._evaluate_subset(model, split, encode_kwargs={}, hf_split="test", hf_subset="default",
                                timer=TimingStack())
    assert task.metadata.main_score == "map_at_1000"
    for k in ("map_at_1000", "map_at_10", "ndcg_at_10", "ndcg_at_1000", "recall_at_3", "precision_at_1"):
        assert ours[k] == pytest.approx(ref[k], abs=2e-5), k
    assert model.used_prompts[("SciDocsRR", "query")] == QUERY_PROMPT
    assert model.used_prompts[("SciDocsRR", "document")] == DOC_PROMPT


def test_only_listed_candidates_are_ranked(tiny_embeddinggemma_dir, tmp_path, monkeypatch):
    from harrier.eval import metrics

    runs: list[dict[str, dict[str, float]]] = []
    original = metrics.retrieval_scores

    def spy(run, qrels, *args, **kwargs):
        runs.append({q: dict(docs) for q, docs in run.items()})
        return original(run, qrels, *args, **kwargs)

    monkeypatch.setattr(metrics, "retrieval_scores", spy)
    base = _harrier_eval(tiny_embeddinggemma_dir, _write(tmp_path / "a.jsonl"), tmp_path / "out_a")
    # a copy of q1's most similar document under a new id, listed by no query: nothing may change
    sims = _cosines(tiny_embeddinggemma_dir, QUERIES, DOCS)
    docs = {**DOCS, "dx": DOCS[max(sims["q1"], key=sims["q1"].get)]}
    same = _harrier_eval(tiny_embeddinggemma_dir, _write(tmp_path / "b.jsonl", docs), tmp_path / "out_b")
    # the same document as a candidate of q2 only: q1, q3 and q4 must keep their rankings and scores
    queries = [dict(q) for q in QUERIES]
    queries[1]["candidates"] = [*queries[1]["candidates"], "dx"]
    _harrier_eval(tiny_embeddinggemma_dir, _write(tmp_path / "c.jsonl", docs, queries), tmp_path / "out_c")

    run_a, run_b, run_c = runs
    for q in QUERIES:
        assert set(run_a[q["id"]]) == set(q["candidates"]), q["id"]
    # a different corpus changes the embedding batches, hence float noise in the cosines; rankings must be equal
    order = {run: {q: sorted(d, key=lambda x: -d[x]) for q, d in r.items()} for run, r in zip("abc", runs, strict=True)}
    assert order["b"] == order["a"] and all(run_b[q] == pytest.approx(run_a[q], abs=1e-5) for q in run_a)
    assert same["scores"]["test"][0] == base["scores"]["test"][0]
    for qid in ("q1", "q3", "q4"):
        assert order["c"][qid] == order["a"][qid] and run_c[qid] == pytest.approx(run_a[qid], abs=1e-5), qid
    assert set(run_c["q2"]) == {*QUERIES[1]["candidates"], "dx"}
    sims = _cosines(tiny_embeddinggemma_dir, QUERIES, docs)
    assert sims["q1"]["dx"] >= max(sims["q1"].values()) - 1e-5  # unrestricted, dx would rank first for q1


def test_candidate_missing_from_corpus_is_a_clear_error(tiny_embeddinggemma_dir, tmp_path, capsys):
    queries = [dict(q) for q in QUERIES]
    queries[2]["candidates"] = ["d7", "d99", "d3"]
    path = _write(tmp_path / "bad.jsonl", queries=queries)
    code = main(["eval", "--model", str(tiny_embeddinggemma_dir), "--task-file", str(path), "--task-type", "Reranking",
                 "--output", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("harrier: error:") and "bad.jsonl" in err and "d99" in err
    assert not (tmp_path / "out").exists()
    # a query without "candidates" is also refused for Reranking (named by file and line)
    queries = [dict(q) for q in QUERIES]
    del queries[0]["candidates"]
    path = _write(tmp_path / "nocand.jsonl", queries=queries)
    assert main(["eval", "--model", str(tiny_embeddinggemma_dir), "--task-file", str(path), "--task-type",
                 "Reranking", "--no-progress"]) == 2
    assert f"nocand.jsonl:{len(DOCS) + 1}: missing field(s) candidates" in capsys.readouterr().err
