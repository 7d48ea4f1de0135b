"""Student initialisation, the CLI commands (distill, mine-negatives, score-teacher, merge) on tiny models."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest
import torch
from train_helpers import TEXTS

from harrier import Embedder
from harrier.train import cli
from harrier.train.merge import merge_states, slerp
from harrier.train.mine import mine_hard_negatives
from harrier.train.student import append_eos, detect_kind, load_student


@pytest.fixture
def decoder_lm_dir(tiny_gemma3_dir, tmp_path):
    """A bare decoder LM (no Sentence-Transformers files): BOS-only tokenizer, stock Gemma-3 sliding layers."""
    from tokenizers import Tokenizer, processors

    d = tmp_path / "lm"
    d.mkdir()
    shutil.copy(tiny_gemma3_dir / "model.safetensors", d)
    cfg = json.loads((tiny_gemma3_dir / "config.json").read_text())
    cfg["layer_types"] = ["sliding_attention", "sliding_attention", "full_attention"]
    (d / "config.json").write_text(json.dumps(cfg))
    tok = Tokenizer.from_file(str(tiny_gemma3_dir / "tokenizer.json"))
    tok.post_processor = processors.TemplateProcessing(single="<bos>:0 $A:0", special_tokens=[("<bos>", 2)])
    tok.save(str(d / "tokenizer.json"))
    return d


def _parse(argv):
    parser = argparse.ArgumentParser()
    cli.add_parsers(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_student_from_decoder_lm_is_harrier_shaped(decoder_lm_dir, tiny_gemma3_dir):
    assert detect_kind(decoder_lm_dir) == "decoder-lm" and detect_kind(tiny_gemma3_dir) == "embedder"
    student = Embedder(load_student(decoder_lm_dir, device="cpu", max_length=64), truncation="silent")
    ids = student.tokenize(["hello"])[0]
    assert ids[0] == 2 and ids[-1] == 1  # BOS kept, EOS appended
    assert set(student.model.cfg.layer_types) == {"full_attention"} and student.model.cfg.causal
    assert student.model.head.pooling.mode == "lasttoken" and student.model.head.normalize
    assert "bitext_query" in student.prompts
    # same weights and same tokens as the harrier-shaped tiny model: identical embeddings
    ref = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="float32")
    np.testing.assert_allclose(student.encode(TEXTS[:4]), ref.encode(TEXTS[:4]), atol=1e-5)


def test_append_eos_is_idempotent(tiny_gemma3_dir):
    text = (tiny_gemma3_dir / "tokenizer.json").read_text()
    assert append_eos(text, 1) == text


def test_distill_cli_text_only(tiny_embeddinggemma_dir, decoder_lm_dir, tmp_path):
    data = tmp_path / "texts"
    data.mkdir()
    (data / "a.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "student"
    args = _parse(["distill", "--teacher", str(tiny_embeddinggemma_dir), "--student", str(decoder_lm_dir),
                   "--data", str(data), "--output", str(out), "--steps", "3", "--batch-size", "6",
                   "--max-length", "64", "--set", "run.progress=false", "--set", "optim.lr=1e-3"])
    assert cli.run(args) == 0
    rows = [json.loads(x) for x in (tmp_path / "student-run" / "train_log.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and {"kl", "align"} <= set(rows[0]) and "contrastive" not in rows[0]
    cfg = json.loads((out / "harrier_training.json").read_text())
    assert cfg["teacher"]["query_prompt"] == "task: search result | query: "
    exported = Embedder.from_pretrained(out, device="cpu")
    assert exported.encode(["x"]).shape == (1, 64)
    # trained on texts cut at 64 tokens; the export keeps the LM's own context as its limit
    context = json.loads((decoder_lm_dir / "config.json").read_text())["max_position_embeddings"]
    assert exported.max_length == min(context, 32_768) != 64


def test_mine_hard_negatives_margin_and_range():
    q = np.eye(4, dtype=np.float32)[:1]  # query = e0
    corpus = np.array([[1, 0, 0, 0], [0.99, 0.14, 0, 0], [0.9, 0.43, 0, 0], [0.5, 0.86, 0, 0], [0, 1, 0, 0]],
                      dtype=np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    got = mine_hard_negatives(q, corpus[:1], corpus, [{0}], k=2, margin=0.05)
    assert got == [[2, 3]]  # 0 is the positive; 1 scores 0.99 > 1 - 0.05: a likely false negative
    assert mine_hard_negatives(q, corpus[:1], corpus, [{0}], k=2, margin=0.0, range_min=1) == [[2, 3]]


def test_mine_and_score_cli(tiny_gemma3_dir, tiny_embeddinggemma_dir, tmp_path):
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps({"query": TEXTS[i], "positive": TEXTS[i + 6], "task": "STS17"}) + "\n"
                               for i in range(4)), encoding="utf-8")
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    hard = tmp_path / "hard.jsonl"
    assert cli.run(_parse(["mine-negatives", "--model", str(tiny_gemma3_dir), "--queries", str(queries),
                           "--corpus", str(corpus), "--output", str(hard), "--k", "2", "--margin", "-1"])) == 0
    rows = [json.loads(x) for x in hard.read_text().splitlines()]
    assert all(len(r["negatives"]) == 2 and r["positive"] not in r["negatives"] for r in rows)
    scored = tmp_path / "scored.jsonl"
    assert cli.run(_parse(["score-teacher", "--teacher", str(tiny_embeddinggemma_dir), "--data", str(hard),
                           "--output", str(scored)])) == 0
    s = [json.loads(x) for x in scored.read_text().splitlines()]
    assert all(len(r["teacher_scores"]) == 3 and all(-1 <= v <= 1 for v in r["teacher_scores"]) for r in s)


def test_slerp_and_merge(tiny_gemma3_dir, tmp_path):
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(slerp(a, b, 0.5), torch.tensor([2**-0.5, 2**-0.5]))
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    sa, sb = {"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([3.0, 2.0])}
    torch.testing.assert_close(merge_states([sa, sb], method="average")["w"], torch.tensor([2.0, 1.0]))
    with pytest.raises(ValueError):
        merge_states([sa, {"v": torch.zeros(2)}])
    out = tmp_path / "merged"
    assert cli.run(_parse(["merge", "--models", str(tiny_gemma3_dir), str(tiny_gemma3_dir), "--output",
                           str(out)])) == 0
    e1 = Embedder.from_pretrained(out, device="cpu", dtype="float32").encode(TEXTS[:3])
    e0 = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="float32").encode(TEXTS[:3])
    np.testing.assert_allclose(e1, e0, atol=1e-5)  # merging a model with itself is the identity


def test_python_m_entry_requires_config(capsys):
    assert cli.main(["--config", "/nonexistent.yaml"]) == 2
    assert "does not exist" in capsys.readouterr().err
