"""Chunked encoding: one chunk equals ``encode``, chunks cover the text and are each encoded the harrier way,
aggregate math, the user's length cap, and one-line errors in the library and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tiny

from harrier import Embedder
from harrier.chunking import ChunkConfig, aggregate, plan_chunks
from harrier.cli import main
from harrier.prompts import Prompt

LONG = " ".join(tiny.TRAIN_TEXT[:10]) + " 🙂 " + " ".join(tiny.TRAIN_TEXT[10:]) * 2


@pytest.fixture(scope="module")
def gemma(tiny_gemma3_dir):
    return Embedder.from_pretrained(tiny_gemma3_dir, dtype="float32")


@pytest.fixture(scope="module")
def qwen(tiny_qwen3_dir):
    return Embedder.from_pretrained(tiny_qwen3_dir, dtype="float32")


@pytest.mark.parametrize("model", ["gemma", "qwen"])
@pytest.mark.parametrize("prompt_name", [None, "web_search_query"])
def test_text_that_fits_one_chunk_equals_encode(model, prompt_name, request):
    m = request.getfixturevalue(model)
    texts = tiny.mixed_texts()[2:] + [LONG[:900]]
    ref = m.encode(texts, prompt_name=prompt_name)
    for agg in ("mean", "weighted", "none"):
        got = m.encode_chunked(texts, chunk=m.max_length, overlap=8, aggregate=agg, prompt_name=prompt_name)
        assert got.source.tolist() == list(range(len(texts)))
        assert got.char_start.tolist() == [0] * len(texts) and got.char_end.tolist() == [len(t) for t in texts]
        np.testing.assert_allclose(got.embeddings, ref, atol=2e-6)


@pytest.mark.parametrize("model", ["gemma", "qwen"])
@pytest.mark.parametrize(("prompt_name", "overlap"), [(None, 0), (None, 9), ("sts_query", 4)])
def test_chunks_cover_the_text_and_are_each_encoded_the_harrier_way(model, prompt_name, overlap, request):
    m = request.getfixturevalue(model)
    texts = [LONG, "short", LONG[300:700]]
    got = m.encode_chunked(texts, chunk=40, overlap=overlap, aggregate="none", prompt_name=prompt_name)
    spans, items, _ = plan_chunks(m, texts, prompt_name, ChunkConfig(chunk=40, overlap=overlap))
    assert got.source.tolist() == [i for i, _, _ in spans] and len(spans) > 10
    bos_eos = m.tokenizer.with_specials([])
    for i, text in enumerate(texts):
        rows = np.flatnonzero(got.source == i)
        assert got.chunk_index[rows].tolist() == list(range(len(rows)))
        starts, ends = got.char_start[rows], got.char_end[rows]
        assert starts[0] == 0 and ends[-1] == len(text)
        assert (starts[1:] <= ends[:-1]).all() and (starts[1:] > starts[:-1]).all()  # covered, in order
    # every chunk: its own BOS/EOS, the prompt in front (queries), at most `chunk` tokens
    prompt_ids = m.tokenize([""], m.prefix(prompt_name=prompt_name))[0][:-2]  # less EOS and the merging last token
    for ids in items.ids:
        assert len(ids) <= 40 and ids[-1] == bos_eos[-1] and ids[:len(prompt_ids)] == prompt_ids
        assert ids[:len(bos_eos) - 1] == bos_eos[:-1]
    # every chunk vector is what encode gives for that chunk's text with the same prompt
    chunk_texts = [texts[i][s:e] for i, s, e in zip(got.source, got.char_start, got.char_end, strict=True)]
    np.testing.assert_allclose(got.embeddings, m.encode(chunk_texts, prompt_name=prompt_name), atol=2e-6)


def test_aggregate_math():
    vectors = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, -3.0]], dtype=np.float32)
    source = np.array([0, 0, 1])
    np.testing.assert_allclose(aggregate(vectors, source, 2, None), [[0.70710677, 0.70710677], [0, -1]], atol=1e-7)
    w = aggregate(vectors, source, 2, np.array([3, 1, 5]))
    np.testing.assert_allclose(w, [[3 / np.sqrt(10), 1 / np.sqrt(10)], [0, -1]], atol=1e-7)


def test_aggregates_from_chunk_vectors(gemma):
    texts = [LONG, LONG[:500]]
    per_chunk = gemma.encode_chunked(texts, chunk=48, overlap=6, aggregate="none")
    for agg, weights in (("mean", None), ("weighted", per_chunk.tokens)):
        got = gemma.encode_chunked(texts, chunk=48, overlap=6, aggregate=agg)
        assert got.embeddings.shape == (2, gemma.dim)
        for i in range(2):
            rows = per_chunk.source == i
            w = np.ones(rows.sum()) if weights is None else weights[rows]
            ref = (per_chunk.embeddings[rows] * w[:, None]).sum(0)
            np.testing.assert_allclose(got.embeddings[i], ref / np.linalg.norm(ref), atol=2e-6)


def test_bad_settings_are_value_errors(gemma, tiny_gemma3_dir):
    prompt_tokens = len(gemma.tokenizer.tokenizer.encode(gemma.prefix(prompt_name="web_search_query"),
                                                         add_special_tokens=False).ids)
    cases = [
        (dict(chunk=40, overlap=38), "overlap 38 must be at least 0 and below the 38 text tokens"),
        (dict(chunk=40, overlap=-1), "overlap -1"),
        (dict(chunk=2, overlap=0), "chunk 2 leaves no room for text"),
        (dict(chunk=prompt_tokens + 2, overlap=0, prompt_name="web_search_query"),
         f"use a chunk of at least {prompt_tokens + 3}"),
        (dict(chunk=gemma.max_length + 1), f"exceeds the model's max length {gemma.max_length}"),
        (dict(chunk=40, aggregate="max"), "aggregate must be one of mean, weighted, none"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            gemma.encode_chunked([LONG], **kwargs)
    with pytest.raises(ValueError, match="list of texts"):
        gemma.encode_chunked(LONG)
    capped = Embedder.from_pretrained(tiny_gemma3_dir, dtype="float32", max_length=64)
    with pytest.raises(ValueError, match="max length 64"):
        capped.encode_chunked([LONG], chunk=128)
    assert capped.encode_chunked([LONG], chunk=64, overlap=8, aggregate="none").tokens.max() <= 62


def test_prompt_object_and_name_agree(gemma):
    a = gemma.encode_chunked([LONG], chunk=50, overlap=5, prompt_name="sts_query").embeddings
    spans, items, _ = plan_chunks(gemma, [LONG], Prompt(prompt_name="sts_query"), ChunkConfig(chunk=50, overlap=5))
    b = gemma.embed_ids(items.ids, items.prompt_lens)
    unit = b / np.linalg.norm(b, axis=1, keepdims=True)
    np.testing.assert_allclose(a[0], unit.sum(0) / np.linalg.norm(unit.sum(0)), atol=2e-6)


def run(*argv):
    return main([str(a) for a in argv])


def test_cli_chunks_to_jsonl_and_mean_to_npy(tiny_gemma3_dir, tmp_path, gemma):
    inp = tmp_path / "docs.jsonl"
    inp.write_text(json.dumps({"id": "a", "text": LONG}) + "\n" + json.dumps({"id": "b", "text": "dog"}) + "\n",
                   encoding="utf-8")
    out = tmp_path / "chunks.jsonl"
    assert run("encode", "--model", tiny_gemma3_dir, "--dtype", "float32", "--input", inp, "--output", out,
               "--chunk", 48, "--overlap", 6, "--aggregate", "none") == 0
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    ref = gemma.encode_chunked([LONG, "dog"], chunk=48, overlap=6, aggregate="none")
    assert [(r["source"], r["id"], r["chunk"], r["char_start"], r["char_end"]) for r in rows] == [
        (int(i), "ab"[i], int(c), int(s), int(e))
        for i, c, s, e in zip(ref.source, ref.chunk_index, ref.char_start, ref.char_end, strict=True)]
    assert rows[1]["text"] == LONG[rows[1]["char_start"]:rows[1]["char_end"]]
    np.testing.assert_allclose(np.array([r["embedding"] for r in rows]), ref.embeddings, atol=1e-6)
    npy = tmp_path / "d.npy"
    assert run("encode", "--model", tiny_gemma3_dir, "--dtype", "float32", "--input", inp, "--output", npy,
               "--chunk", 48, "--overlap", 6) == 0
    np.testing.assert_allclose(np.load(npy), gemma.encode_chunked([LONG, "dog"], chunk=48, overlap=6).embeddings,
                               atol=1e-6)


@pytest.mark.parametrize(("flags", "message"), [
    (["--chunk", 48, "--aggregate", "none", "--output", "X.npy"], "use a .jsonl output or -"),
    (["--overlap", 8, "--output", "X.npy"], "--overlap and --aggregate need --chunk"),
    (["--chunk", 48, "--overlap", 48, "--output", "X.npy"], "--overlap 48 must be below --chunk 48"),
    (["--chunk", 2, "--output", "X.npy"], "--overlap 64 (the default) must be below --chunk 2"),
    (["--chunk", 2, "--overlap", 0, "--output", "X.npy"], "chunk 2 leaves no room for text"),
    (["--chunk", 100, "--max-length", 64, "--output", "X.npy"], "chunk 100 exceeds the model's max length 64"),
])
def test_cli_errors_are_one_line(flags, message, tiny_gemma3_dir, tmp_path, capsys):
    inp = tmp_path / "t.txt"
    inp.write_text(LONG + "\n", encoding="utf-8")
    flags = [str(tmp_path / f.replace("X", "out")) if str(f).startswith("X") else f for f in flags]
    assert run("encode", "--model", tiny_gemma3_dir, "--input", inp, *flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("harrier: error: ") and message in err[0], err
