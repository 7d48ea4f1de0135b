"""Corpus encoding: vectors equal ``Embedder.encode``; Parquet schema and metadata; bf16 storage; prompts."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus_helpers import make_texts, write_jsonl

from harrier import Embedder
from harrier.corpus.encode import CorpusConfig, encode_corpus
from harrier.corpus.readers import ReaderConfig
from harrier.corpus.search import exact_search
from harrier.corpus.shards import from_bf16_bits, read_vectors, to_bf16_bits
from harrier.corpus.window import LocalEngine
from harrier.prompts import Prompt
from harrier.tokenize import TruncationError


@pytest.fixture(scope="module")
def model(tiny_gemma3_dir):
    return Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="float32")


def run(model, inputs, out, **kw):
    cfg = CorpusConfig(inputs=tuple(str(i) for i in inputs), output=out, **{"progress": False, **kw})
    return encode_corpus(cfg, model, LocalEngine(model, cfg.batch_tokens))


def read_all(out):
    manifest = json.loads((out / "manifest.json").read_text())
    ids, emb = [], []
    for shard in manifest["shards"]:
        for batch in read_vectors(out / shard["file"]):
            ids += batch["id"]
            emb.append(batch["embedding"])
    return manifest, ids, np.concatenate(emb)


def test_vectors_equal_embedder_encode(model, clean_corpus, tmp_path):
    folder, ids, texts = clean_corpus
    ref = model.encode(texts)
    # one window holding every text: the same batches as encode, so the same bits
    run(model, [folder / "*.jsonl"], tmp_path / "one", shard_rows=100, window_rows=100)
    manifest, got_ids, emb = read_all(tmp_path / "one")
    assert got_ids == ids and manifest["rows"] == 24 and manifest["complete"]
    np.testing.assert_array_equal(emb, ref)
    # small windows and shards: other packings, same vectors to float rounding
    run(model, [folder / "*.jsonl"], tmp_path / "many", shard_rows=10, window_rows=4)
    manifest, got_ids, emb = read_all(tmp_path / "many")
    assert got_ids == ids and [s["rows"] for s in manifest["shards"]] == [10, 10, 4]
    np.testing.assert_allclose(emb, ref, atol=2e-6, rtol=0)


def test_parquet_schema_and_metadata(model, clean_corpus, tmp_path):
    folder, ids, texts = clean_corpus
    run(model, [folder / "*.jsonl"], tmp_path / "o", shard_rows=100)
    table = pq.read_table(tmp_path / "o" / "shard-00000.parquet")
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), model.dim)
    assert table.column_names == ["id", "embedding", "n_tokens", "truncated"]
    meta = json.loads(table.schema.metadata[b"harrier"])
    assert meta["embedding_dtype"] == "float32" and meta["dtype"] == "float32" and meta["dim"] == model.dim
    assert meta["prompt"] is None and meta["prefix"] == "" and len(meta["model_fingerprint"]) == 32
    assert meta["harrier_version"]
    assert table.column("n_tokens").to_pylist() == [len(x) for x in model.tokenize(texts)]
    assert not any(table.column("truncated").to_pylist())


def test_bfloat16_storage_and_truncation_flag(tiny_gemma3_dir, tmp_path, capsys):
    small = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="float32", max_length=12,
                                     truncation="silent")
    texts = make_texts(12, seed=3)
    src = write_jsonl(tmp_path / "a.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(texts)])
    run(small, [src], tmp_path / "o", store_dtype="bfloat16", progress=True)
    table = pq.read_table(tmp_path / "o" / "shard-00000.parquet")
    assert table.schema.field("embedding").type == pa.list_(pa.uint16(), small.dim)
    assert json.loads(table.schema.metadata[b"harrier"])["embedding_dtype"] == "bfloat16"
    bar = capsys.readouterr().err
    assert "12/12" in bar and "texts/s" in bar and "tokens/s" in bar  # the progress bar ran to the end
    ref = small.encode(texts)
    _, _, emb = read_all(tmp_path / "o")
    np.testing.assert_array_equal(emb, from_bf16_bits(to_bf16_bits(ref)))
    lengths = [len(x) for x in Embedder.from_pretrained(tiny_gemma3_dir, device="cpu").tokenize(texts)]
    assert table.column("truncated").to_pylist() == [n > 12 for n in lengths]
    assert table.column("n_tokens").to_pylist() == [min(n, 12) for n in lengths]


def test_truncation_error_names_the_record(tiny_gemma3_dir, tmp_path):
    strict = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", max_length=12, truncation="error")
    src = write_jsonl(tmp_path / "a.jsonl", [{"id": "short", "text": "fox"}, {"id": "long", "text": "fox " * 40}])
    with pytest.raises(TruncationError, match="record 'long' is longer than max_length 12"):
        run(strict, [src], tmp_path / "o")


def test_prompts_job_wide_and_per_row(model, tmp_path):
    texts = make_texts(10, seed=5)
    kinds = ["web_search_query", None] * 5
    src = write_jsonl(tmp_path / "a.jsonl", [{"id": str(i), "text": t, "kind": k}
                                             for i, (t, k) in enumerate(zip(texts, kinds, strict=True))])
    run(model, [src], tmp_path / "job", prompt=Prompt(instruction="Find the fox"))
    _, _, emb = read_all(tmp_path / "job")
    np.testing.assert_array_equal(emb, model.encode(texts, instruction="Find the fox"))
    run(model, [src], tmp_path / "rows", reader=ReaderConfig(prompt_field="kind"))
    _, _, emb = read_all(tmp_path / "rows")
    np.testing.assert_array_equal(emb, model.encode_items(list(zip(texts, kinds, strict=True))))
    write_jsonl(tmp_path / "b.jsonl", [{"id": "x", "text": "a", "kind": "no_such_prompt"}])
    result = run(model, [tmp_path / "b.jsonl"], tmp_path / "bad", reader=ReaderConfig(prompt_field="kind"))
    assert result.manifest.bad_rows == 1 and "unknown prompt name 'no_such_prompt'" in \
        result.manifest.bad_row_examples[0]


def test_refuses_existing_output_and_bad_settings(model, clean_corpus, tmp_path):
    folder, _, _ = clean_corpus
    run(model, [folder / "*.jsonl"], tmp_path / "o")
    with pytest.raises(ValueError, match="already holds a corpus job"):
        run(model, [folder / "*.jsonl"], tmp_path / "o")
    with pytest.raises(ValueError, match="shard_rows must be positive"):
        run(model, [folder / "*.jsonl"], tmp_path / "p", shard_rows=0)
    with pytest.raises(ValueError, match="prompt"):
        run(model, [folder / "*.jsonl"], tmp_path / "q", prompt=Prompt(prompt_name="nope"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        run(model, [folder / "*.jsonl"], tmp_path / "file")


def test_empty_input_is_a_complete_job_with_no_shards(model, tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    result = run(model, [tmp_path / "empty.jsonl"], tmp_path / "o")
    assert result.manifest.complete and result.manifest.rows == 0 and not result.manifest.shards
    with pytest.raises(ValueError, match="no finished shards"):
        exact_search(tmp_path / "o", np.ones((1, model.dim), np.float32), 3)
