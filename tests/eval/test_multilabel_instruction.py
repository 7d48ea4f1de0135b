"""MultilabelClassification and InstructionReranking task files end to end: ``harrier eval --task-file F
--task-name NAME`` on a tiny checkpoint gives the main score mteb's own evaluator gives with the same model and
prompts, and bad input is one error line before the model loads. (Fixed-vector parity: test_mteb_parity.py.)
Run: pytest tests/eval/test_multilabel_instruction.py -q
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from mteb_splits import instruction_reranking_split

from harrier.cli import main

WORDS = "joy anger fear river market football phone rain cat dog sun court law tax farm ship".split()


def _multilabel_rows(n_train: int = 60, n_test: int = 30, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            labels = sorted(int(y) for y in rng.choice(4, size=int(rng.integers(1, 3)), replace=False))
            words = [WORDS[4 * y + int(rng.integers(0, 4))] for y in labels] + list(rng.choice(WORDS, 3))
            rows.append({"text": " ".join(words) + f" {i}", "label": labels, "split": split})
    return rows


def _instruction_rows() -> list[dict]:
    docs = [f"{a} {b} report" for a in WORDS[:6] for b in WORDS[6:10]]
    rows: list[dict] = [{"kind": "document", "id": f"d{i}", "text": t} for i, t in enumerate(docs)]
    for q in range(4):
        candidates = [f"d{(q * 5 + j) % len(docs)}" for j in range(10)]
        for kind, instruction, relevant in (("og", f"about {WORDS[q]}", candidates[:4]),
                                            ("changed", f"about {WORDS[q]} but not {WORDS[q + 6]}", candidates[2:4])):
            row = {"kind": "query", "id": f"q{q}-{kind}", "text": f"news on {WORDS[q]} {WORDS[q + 8]}",
                   "instruction": instruction, "relevant": dict.fromkeys(relevant, 1), "candidates": candidates}
            if kind == "changed":
                row["changed"] = candidates[:2]
            rows.append(row)
    return rows


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _run(model: Path, task_file: Path, task_name: str, out: Path) -> dict:
    assert main(["eval", "--model", str(model), "--task-file", str(task_file), "--task-name", task_name,
                 "--output", str(out), "--no-progress"]) == 0
    return json.loads((out / f"{task_name}.json").read_text(encoding="utf-8"))


def _mteb_model(model: Path):
    from harrier.eval.encoders import load_encoder
    from harrier.eval.mteb_adapter import MtebEncoder

    return MtebEncoder(load_encoder(str(model), backend="harrier"), name="test/tiny")


def test_multilabel_task_file_through_harrier_eval_equals_mteb(tiny_embeddinggemma_dir, tmp_path):
    mteb = pytest.importorskip("mteb")
    datasets = pytest.importorskip("datasets")
    rows = _multilabel_rows()
    res = _run(tiny_embeddinggemma_dir, _write(tmp_path / "mine.jsonl", rows), "CEDRClassification", tmp_path / "out")
    [entry] = res["scores"]["test"]
    h = res["harrier"]
    assert (h["task_type"], h["main_score_name"]) == ("MultilabelClassification", "accuracy")
    assert h["protocol"] == {"name": "MultilabelClassificationProtocol", "n_experiments": 10, "samples_per_label": 8,
                             "train_split": "train", "max_eval_samples": 3000, "n_neighbors": 5}
    assert h["metadata"]["task"] == "CEDRClassification" and h["prompt_policy"] == "model"

    task = mteb.get_task("CEDRClassification")
    task.dataset = {"default": datasets.DatasetDict({s: datasets.Dataset.from_dict(
        {k: [r[k] for r in rows if r["split"] == s] for k in ("text", "label")}) for s in ("train", "test")})}
    task.data_loaded = True
    model = _mteb_model(tiny_embeddinggemma_dir)
    ref = task.evaluate(model, "test", encode_kwargs={})["default"]
    assert model.used_prompts[("CEDRClassification", None)] == h["prompts"]["all"]
    assert entry["main_score"] == pytest.approx(ref["main_score"], abs=1e-12)
    for k in ("accuracy", "lrap", "f1", "hamming"):
        assert entry[k] == pytest.approx(ref[k], abs=1e-12), k


def test_instruction_reranking_task_file_through_harrier_eval_equals_mteb(tiny_embeddinggemma_dir, tmp_path):
    mteb = pytest.importorskip("mteb")
    pytest.importorskip("datasets")
    from mteb._evaluators.retrieval_metrics import evaluate_p_mrr_change
    from mteb.timing import TimingStack

    rows = _instruction_rows()
    res = _run(tiny_embeddinggemma_dir, _write(tmp_path / "followir.jsonl", rows), "News21InstructionRetrieval",
               tmp_path / "out")
    [entry] = res["scores"]["test"]
    h = res["harrier"]
    assert (h["task_type"], h["main_score_name"]) == ("InstructionReranking", "p-MRR")
    assert entry["main_score"] == entry["p-MRR"] and set(entry["og"]) >= {"ndcg_at_5", "map_at_1000"}
    assert h["prompts"]["query"] is not None and h["prompts"]["document"] is not None  # the model's own prompts

    split = instruction_reranking_split(rows)
    changed = {q["id"].removesuffix("-changed"): q["changed"] for q in rows if q["kind"] == "query" and "changed" in q}
    task = mteb.get_task("News21InstructionRetrieval")
    task.task_specific_scores = lambda scores, qrels, results, hf_split, hf_subset: evaluate_p_mrr_change(
        qrels, results, changed, task.k_values)  # the task's own, minus its qrel_diff download
    model = _mteb_model(tiny_embeddinggemma_dir)
    ref = task._evaluate_subset(model, split, encode_kwargs={}, hf_split="test", hf_subset="default",
                                timer=TimingStack())
    assert model.used_prompts[("News21InstructionRetrieval", "query")] == h["prompts"]["query"]
    assert ref["p-MRR"] != 0.0
    # cosines of mteb's one-query batches and ours differ in the last float bits: ranks (all p-MRR reads) do not
    assert entry["main_score"] == pytest.approx(ref["p-MRR"], abs=1e-12)
    assert entry["og"]["ndcg_at_10"] == pytest.approx(ref["og"]["ndcg_at_10"], abs=2e-5)


def _ml_file(path: Path, rows: list[dict] | None = None) -> Path:
    return _write(path, rows if rows is not None else _multilabel_rows(20, 12))


def _ir_file(path: Path, edit=None) -> Path:
    rows = _instruction_rows()
    if edit:
        edit(rows)
    return _write(path, rows)


def _drop_changed(rows):
    for r in rows:
        r.pop("changed", None)


def _changed_on_og(rows):
    rows[-2]["changed"] = ["d0"]


def _drop_og(rows):
    rows[:] = [r for r in rows if r.get("id") != "q1-og"]


def _unknown_changed(rows):
    rows[-1]["changed"] = ["d999"]


def _nothing_relevant_changed(rows):
    for r in rows:
        if str(r.get("id")).endswith("-changed"):
            r["relevant"] = {}


@pytest.mark.parametrize(("make", "argv", "message"), [
    (lambda p: _ml_file(p, [r for r in _multilabel_rows(20, 12) if r["split"] != "train"]),
     ["--task-name", "BrazilianToxicTweetsClassification"],
     'MultilabelClassification needs lines with "split": "train"'),
    (lambda p: _ml_file(p, _multilabel_rows(4, 12)), ["--task-name", "KorHateSpeechMLClassification"],
     'needs at least n_neighbors=5 "train" lines with a label'),
    (lambda p: _ml_file(p, [*_multilabel_rows(20, 12), {"text": "x", "label": ["joy"], "split": "test"}]),
     ["--task-name", "CEDRClassification"], "labels must be all strings or all numbers"),
    (lambda p: _ml_file(p, [*_multilabel_rows(20, 12), {"text": "x", "label": [[1]], "split": "test"}]),
     ["--task-name", "CEDRClassification"], r"bad.jsonl:33: a MultilabelClassification 'label' must be a list of "
                                            r"labels \(strings or numbers\), got \[\[1\]\]"),
    (_ml_file, ["--task-name", "CEDRClassification", "--protocol", "n_neighbors=0"],
     r"MultilabelClassificationProtocol.n_neighbors must be >= 1, got 0"),
    (_ml_file, ["--task-name", "MultiEURLEXMultilabelClassification"], "lang default is not a subset of MultiEURLEX"),
    (lambda p: _ir_file(p, _drop_changed), ["--task-name", "Core17InstructionRetrieval"],
     'needs "<id>-og" / "<id>-changed" query pairs'),
    (lambda p: _ir_file(p, _changed_on_og), ["--task-name", "Core17InstructionRetrieval"],
     r'bad.jsonl:\d+: only a "<id>-changed" query lists "changed" documents'),
    (lambda p: _ir_file(p, _drop_og), ["--task-name", "Robust04InstructionRetrieval"],
     "query 'q1-changed' has no original query 'q1-og'"),
    (lambda p: _ir_file(p, _unknown_changed), ["--task-name", "Core17InstructionRetrieval"],
     "unknown document ids d999"),
    (lambda p: _ir_file(p, _nothing_relevant_changed), ["--task-name", "Core17InstructionRetrieval"],
     "p-MRR needs a query pair with relevant documents on both queries"),
    (_ir_file, ["--task-name", "Core17InstructionRetrieval", "--task-type", "Reranking"],
     "is a InstructionReranking task in mteb's metadata, not Reranking"),
    (_ir_file, ["--task-type", "InstructionReranking", "--protocol", "k_values=0"],
     "RetrievalProtocol.k_values must be integers >= 1"),
])
def test_bad_input_is_one_error_line_before_the_model_loads(tmp_path, monkeypatch, capsys, make, argv, message):
    from harrier.eval import encoders

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(encoders, "load_encoder", no_model)
    path = make(tmp_path / "bad.jsonl")
    code = main(["eval", "--model", str(tmp_path / "no-model"), "--task-file", str(path), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert re.search(message, err), err
