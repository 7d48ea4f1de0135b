"""The local JSONL task format: parsing per task type, errors with file and line, end-to-end evaluation.
Run: pytest tests/eval/test_local.py -q"""

from __future__ import annotations

import json

import pytest

from harrier.eval.data import BitextData, ClassificationData, ClusteringData, PairData, RetrievalData
from harrier.eval.local import load_task_file, parse_task_file
from harrier.eval.run import evaluate


def _write(tmp_path, rows, name="task.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_sts_with_langs_and_splits(tmp_path):
    rows = [{"sentence1": "a cat", "sentence2": "a dog", "score": 2, "lang": "en"},
            {"sentence1": "eine Katze", "sentence2": "ein Hund", "score": 1.5, "lang": "de", "split": "dev"}]
    data = parse_task_file(_write(tmp_path, rows), "STS")
    assert set(data) == {("en", "test"), ("de", "dev")}
    assert data[("en", "test")] == PairData(["a cat"], ["a dog"], scores=[2.0])


def test_each_simple_type(tmp_path):
    pc = parse_task_file(_write(tmp_path, [{"sentence1": "a", "sentence2": "b", "label": 1}]), "PairClassification")
    assert pc[("default", "test")].labels == [1]
    bt = parse_task_file(_write(tmp_path, [{"sentence1": "a", "sentence2": "b"}]), "BitextMining")
    assert isinstance(bt[("default", "test")], BitextData)
    cl = parse_task_file(_write(tmp_path, [{"text": "a", "label": "x"}]), "Clustering")
    assert isinstance(cl[("default", "test")], ClusteringData)


def test_classification_needs_train_rows(tmp_path):
    rows = [{"text": "a", "label": "x", "split": "train"}, {"text": "b", "label": "y", "split": "train"},
            {"text": "c", "label": "x"}]
    data = parse_task_file(_write(tmp_path, rows), "Classification")
    assert data[("default", "test")] == ClassificationData(["a", "b"], [0, 1], ["c"], [0])
    with pytest.raises(ValueError, match="split.*train"):
        parse_task_file(_write(tmp_path, [{"text": "c", "label": "x"}]), "Classification")


def test_classification_labels_are_encoded_per_language_over_all_splits(tmp_path):
    # mteb class-encodes the label column with one label set for all splits, names sorted as strings
    rows = [{"text": "a", "label": 2, "split": "train"}, {"text": "b", "label": 10, "split": "train"},
            {"text": "c", "label": 2}, {"text": "d", "label": 7, "split": "dev"},
            {"text": "e", "label": "y", "split": "train", "lang": "x"},
            {"text": "f", "label": "x", "split": "train", "lang": "x"}, {"text": "g", "label": "y", "lang": "x"}]
    data = parse_task_file(_write(tmp_path, rows), "Classification")
    assert data[("default", "test")] == ClassificationData(["a", "b"], [1, 0], ["c"], [1])  # "10" < "2" < "7"
    assert data[("default", "dev")].labels == [2]
    assert data[("x", "test")] == ClassificationData(["e", "f"], [1, 0], ["g"], [1])


def test_classification_with_one_training_label_fails_at_load(tmp_path):
    rows = [{"text": "a", "label": 1, "split": "train"}, {"text": "b", "label": 1, "split": "train"},
            {"text": "c", "label": 0}]
    with pytest.raises(ValueError, match=r"task.jsonl: Classification needs at least two labels .*only 1"):
        parse_task_file(_write(tmp_path, rows), "Classification")


def test_retrieval_and_reranking(tmp_path):
    rows = [{"kind": "document", "id": "d1", "text": "cats purr"}, {"kind": "document", "id": "d2", "text": "dogs"},
            {"kind": "query", "id": "q1", "text": "what purrs", "relevant": {"d1": 1}, "candidates": ["d1", "d2"]}]
    r = parse_task_file(_write(tmp_path, rows), "Retrieval")[("default", "test")]
    assert isinstance(r, RetrievalData) and r.candidates is None and r.qrels == {"q1": {"d1": 1}}
    rr = parse_task_file(_write(tmp_path, rows), "Reranking")[("default", "test")]
    assert rr.candidates == {"q1": ["d1", "d2"]}


@pytest.mark.parametrize(("rows", "task_type", "message"), [
    ([{"sentence1": "a", "score": 1}], "STS", r"task.jsonl:1: missing field\(s\) sentence2"),
    ([{"sentence1": "a", "sentence2": "b", "label": 2}], "PairClassification", "task.jsonl:1: .*0 or 1"),
    ([{"sentence1": "a", "sentence2": "b", "score": 1}, {"sentence1": "a", "sentence2": "b", "score": "high"}],
     "STS", "task.jsonl:2: field 'score' must be a number, got 'high'"),
    ([{"sentence1": "a", "sentence2": "b", "score": None}], "STS", "task.jsonl:1: field 'score' must be a number"),
    ([{"sentence1": "a", "sentence2": "b", "score": True}], "STS", "task.jsonl:1: field 'score' must be a number"),
    ([{"sentence1": "a", "sentence2": "b", "label": 0.5}], "PairClassification",
     "task.jsonl:1: field 'label' must be an integer"),
    ([{"sentence1": None, "sentence2": "b"}], "BitextMining", "task.jsonl:1: field 'sentence1' must be a string"),
    ([{"text": 3, "label": "x"}], "Clustering", "task.jsonl:1: field 'text' must be a string"),
    ([{"kind": "query", "id": "q", "text": "t", "relevant": ["d"]}, {"kind": "document", "id": "d", "text": "x"}],
     "Retrieval", "task.jsonl:1: field 'relevant' must map document ids to numeric grades"),
    ([{"kind": "query", "id": "q", "text": "t", "relevant": {"nope": 1}}, {"kind": "document", "id": "d", "text": "x"}],
     "Retrieval", "unknown document ids nope"),
    ([{"kind": "passage", "id": "d", "text": "x"}], "Retrieval", "kind must be"),
    ([{"text": "a", "label": "x"}], "Regression", "unknown task type"),
])
def test_errors_name_the_problem(tmp_path, rows, task_type, message):
    with pytest.raises(ValueError, match=message):
        parse_task_file(_write(tmp_path, rows), task_type)


def test_bad_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{oops\n', encoding="utf-8")
    with pytest.raises(ValueError, match="bad.jsonl:2: not valid JSON"):
        parse_task_file(bad, "Clustering")
    with pytest.raises(ValueError, match="does not exist"):
        parse_task_file(tmp_path / "none.jsonl", "STS")


def test_local_task_end_to_end(tmp_path, bow):
    rows = [{"sentence1": f"the cat sat {i}", "sentence2": f"the cat sat {i}" + " mat" * (i % 3), "score": 5 - i % 3}
            for i in range(30)]
    sel = load_task_file(_write(tmp_path, rows, "my_sts.jsonl"), "STS", instruction="Find similar sentences")
    [res] = evaluate(bow, [sel], output_dir=tmp_path / "out", prompts="instructions")
    assert res.task.name == "my_sts"
    entry = res.scores["test"][0]
    assert entry["hf_subset"] == "default" and -1 <= entry["main_score"] <= 1
    assert res.prompts == {"all": "Instruct: Find similar sentences\nQuery:"}
    assert bow.calls[0][1] == "Instruct: Find similar sentences\nQuery:"
    assert (tmp_path / "out" / "my_sts.json").is_file()
