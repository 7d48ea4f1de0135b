"""Search: streamed exact top-k equals a brute-force numpy reference; the HNSW index's recall is measured."""

from __future__ import annotations

import json

import numpy as np
import pytest
from corpus_helpers import make_texts, write_jsonl

from harrier import Embedder
from harrier.cli import main
from harrier.corpus import search
from harrier.corpus.manifest import Manifest, ShardEntry
from harrier.corpus.search import ann_search, build_ann, exact_search, recall_at_k
from harrier.corpus.shards import ShardWriter


def write_index(folder, emb: np.ndarray, shard_rows: int) -> list[str]:
    """A corpus directory written with the shard writer directly (vectors of our choosing, no model)."""
    folder.mkdir()
    ids = [f"v{i}" for i in range(len(emb))]
    manifest = Manifest(settings={"dim": emb.shape[1], "model_fingerprint": "x", "store_dtype": "float32"},
                        complete=True)
    for k, start in enumerate(range(0, len(emb), shard_rows)):
        name = f"shard-{k:05d}.parquet"
        w = ShardWriter(folder / name, emb.shape[1], "float32", {"model_fingerprint": "x", "shard": k})
        part = slice(start, start + shard_rows)
        w.write(ids[part], emb[part], [1] * len(ids[part]), [False] * len(ids[part]))
        w.commit()
        manifest.shards.append(ShardEntry(name, len(ids[part]), ids[part][0], ids[part][-1],
                                          (folder / name).stat().st_size))
        manifest.rows += len(ids[part])
    manifest.save(folder)
    return ids


def brute_force(emb: np.ndarray, q: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    s = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ e.T
    return [[(int(j), float(s[i, j])) for j in np.argsort(-s[i], kind="stable")[:k]] for i in range(len(q))]


def test_exact_search_equals_brute_force(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((230, 16)).astype(np.float32)
    emb[100] = emb[3]  # exact ties: the lower row wins, as in a stable argsort
    emb[200] = emb[3] * 2
    write_index(tmp_path / "idx", emb, shard_rows=37)
    q = np.concatenate([rng.standard_normal((6, 16)), emb[3:4]]).astype(np.float32)
    monkeypatch.setattr(search, "SCORE_ELEMENTS", 7 * 20)  # 20-row batches: the running top-k merges many times
    for k in (1, 10, 300):
        hits = exact_search(tmp_path / "idx", q, k)
        ref = brute_force(emb, q, k)
        assert [[h.row for h in row] for row in hits] == [[j for j, _ in row] for row in ref]
        assert [[h.id for h in row] for row in hits] == [[f"v{j}" for j, _ in row] for row in ref]
        np.testing.assert_allclose([[h.score for h in row] for row in hits], [[s for _, s in row] for row in ref],
                                   atol=1e-6)
    assert [h.row for h in exact_search(tmp_path / "idx", q[-1:], 3)[0]] == [3, 100, 200]


def test_ann_recall_against_exact(tmp_path):
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((500, 16)).astype(np.float32)
    write_index(tmp_path / "idx", emb, shard_rows=128)
    build_ann(tmp_path / "idx", m=16, ef_construction=100)
    q = rng.standard_normal((20, 16)).astype(np.float32)
    exact = exact_search(tmp_path / "idx", q, 10)
    approx = ann_search(tmp_path / "idx", q, 10, ef_search=200)
    assert recall_at_k(approx, exact) >= 0.95
    assert recall_at_k(exact, exact) == 1.0
    assert recall_at_k([row[:5] for row in exact], exact) == 0.5
    for a, e in zip(approx, exact, strict=True):  # ANN scores are true cosines of the rows it returns
        emb_n = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        qi = q[exact.index(e)] / np.linalg.norm(q[exact.index(e)])
        np.testing.assert_allclose([h.score for h in a], emb_n[[h.row for h in a]] @ qi, atol=1e-5)


def test_cli_search_end_to_end(tiny_gemma3_dir, tmp_path, capsys):
    texts = make_texts(30, seed=11)
    src = write_jsonl(tmp_path / "d.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(texts)])
    out = tmp_path / "vec"
    assert main(["corpus", "encode", "--model", str(tiny_gemma3_dir), "--input", str(src), "--output", str(out),
                 "--shard-rows", "7", "--no-progress"]) == 0
    queries = ["quick brown fox", "how much protein"]
    capsys.readouterr()
    assert main(["search", "--model", str(tiny_gemma3_dir), "--index", str(out), "--prompt-name",
                 "web_search_query", "--query", queries[0], "--query", queries[1], "--top-k", "5", "--json"]) == 0
    got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    m = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu")
    ref = brute_force(m.encode(texts), m.encode(queries, prompt_name="web_search_query"), 5)
    assert [[h["id"] for h in g["hits"]] for g in got] == [[f"d{j}" for j, _ in row] for row in ref]
    assert main(["corpus", "index", "--index", str(out), "--recall-queries", "10", "--top-k", "5"]) == 0
    assert "recall@5 vs exact" in capsys.readouterr().err
    assert main(["search", "--model", str(tiny_gemma3_dir), "--index", str(out), "--query", queries[0], "--ann",
                 "--check-recall", "--top-k", "5"]) == 0
    assert "recall@5 vs exact:" in capsys.readouterr().err


def test_search_refuses_another_model(tiny_gemma3_dir, tiny_qwen3_dir, tmp_path, capsys):
    src = write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "text": "one"}])
    assert main(["corpus", "encode", "--model", str(tiny_gemma3_dir), "--input", str(src), "--output",
                 str(tmp_path / "v"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["search", "--model", str(tiny_qwen3_dir), "--index", str(tmp_path / "v"), "--query", "x"]) == 2
    assert "is not the model that encoded" in capsys.readouterr().err
    with pytest.raises(ValueError, match="top_k must be positive"):
        exact_search(tmp_path / "v", np.ones((1, 4), np.float32), 0)
