"""Task files named after an MTEB task take its metadata (protocol, main score, subsets); ``--protocol`` overrides
are recorded; bad input is one error line before any model loads. Run: pytest tests/eval/test_named_task_files.py"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from harrier.eval import cli
from harrier.eval.local import load_task_file
from harrier.eval.protocols import ClassificationProtocol
from harrier.eval.run import score_subset


def _parse(argv):
    parser = argparse.ArgumentParser(prog="harrier")
    cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def _two_class_file(path, langs=("de", "en"), n_train=120, n_test=60, seed=3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2, 16))
    rows, table = [], {}
    for lang in langs:
        for split, n in (("train", n_train), ("test", n_test)):
            for i, y in enumerate(rng.integers(0, 2, n)):
                text = f"{lang} {split} {i}"
                table[text] = centres[y] + 1.5 * rng.normal(size=16)
                rows.append({"text": text, "label": int(y), "split": split, "lang": lang})
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return rows, table


class TableEncoder:
    name = "table-test"
    prompts: dict[str, str] = {}

    def __init__(self, table):
        self.table = table

    def encode(self, texts, *, prompt=None):
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


def test_a_file_named_after_amazon_counterfactual_uses_32_samples_per_label_as_mteb(tmp_path):
    mteb = pytest.importorskip("mteb")
    datasets = pytest.importorskip("datasets")
    from mteb.timing import TimingStack

    from harrier.eval.encoders import NoPrompts
    from harrier.eval.mteb_adapter import MtebEncoder

    path = tmp_path / "AmazonCounterfactualClassification.jsonl"
    rows, table = _two_class_file(path)
    sel = load_task_file(path)  # no --task-type: the file's name is an MTEB task
    assert sel.task.protocol == ClassificationProtocol(10, 32, "train") and sel.task.type == "Classification"
    assert sel.subsets == ("en", "de") and sel.task.languages["de"] == ("deu-Latn",)  # mteb's order and codes
    assert load_task_file(path, "Classification", protocol=["samples_per_label=8"]).task.protocol.samples_per_label == 8
    enc = TableEncoder(table)
    task = mteb.get_task("AmazonCounterfactualClassification")
    for lang in ("de", "en"):
        ours = score_subset(enc, sel.task, sel.task.load(tmp_path, lang, "test"), NoPrompts())
        cols = {s: {k: [r[k] for r in rows if r["split"] == s and r["lang"] == lang] for k in ("text", "label")}
                for s in ("train", "test")}
        dd = datasets.DatasetDict({s: datasets.Dataset.from_dict(c) for s, c in cols.items()})
        ref = task._evaluate_subset(MtebEncoder(enc, name="t/t", prompts=NoPrompts()), dd, encode_kwargs={},
                                    hf_split="test", hf_subset=lang, timer=TimingStack())
        assert 0.5 < ref["accuracy"] < 1.0
        generic = score_subset(enc, load_task_file(path, protocol=["samples_per_label=8"]).task,
                               sel.task.load(tmp_path, lang, "test"), NoPrompts())
        assert ours["accuracy"] == pytest.approx(ref["accuracy"], abs=1e-12)
        assert ours["ap"] == pytest.approx(ref["ap"], abs=1e-12)
        assert generic["accuracy"] != pytest.approx(ref["accuracy"], abs=1e-6)  # 8 per label is another protocol


@pytest.mark.parametrize(("argv", "message"), [
    (["--protocol", "samples_per_lable=32"], "unknown protocol key 'samples_per_lable' for ClassificationProtocol; "
                                             "valid keys: n_experiments, samples_per_label, train_split"),
    (["--protocol", "samples_per_label=many"], "protocol samples_per_label='many': ClassificationProtocol."
                                               "samples_per_label must be an integer"),
    (["--task-name", "AmazonCounterfactualClassification", "--task-type", "STS"], "is a Classification task in "
                                                                                  "mteb's metadata, not STS"),
    (["--task-name", "AmazonCounterfactualClassification", "--protocol", "train_split=validation"],
     'needs lines with "split": "validation"'),
    (["--task-name", "STS17", "--task-type", "Classification"], "STS17 is a STS task"),
    (["--task-name", "DBpediaClassification"],
     "lang de, en is not a subset of DBpediaClassification; its subsets are default"),
    (["--task-name", "CEDRClassification"], r"mine.jsonl:1: a MultilabelClassification 'label' must be a list of "
                                            r"labels \(strings or numbers\), got 1"),
    (["--task-name", "MassiveIntentClasification"], "unknown MTEB task .*did you mean 'MassiveIntentClassification'"),
])
def test_bad_metadata_input_is_one_error_line_before_the_model_loads(tmp_path, monkeypatch, capsys, argv, message):
    from harrier import cli as harrier_cli
    from harrier.eval import encoders

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(encoders, "load_encoder", no_model)
    path = tmp_path / "mine.jsonl"
    _two_class_file(path, n_train=20, n_test=10)
    code = harrier_cli.main(["eval", "--model", str(tmp_path / "no-model"), "--task-file", str(path),
                             "--no-progress", *argv] + ([] if "--task-type" in argv or "--task-name" in argv
                                                        else ["--task-type", "Classification"]))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    import re

    assert re.search(message, err), err


def test_main_score_the_type_cannot_produce_is_refused():
    from harrier.eval.tasks import TaskSpec

    with pytest.raises(ValueError, match="a STS task cannot produce main score 'ndcg_at_10'"):
        TaskSpec("T", "STS", ("test",), ("default",), lambda r, s, p: None, main_score="ndcg_at_10")
    assert TaskSpec("T", "Reranking", ("test",), ("default",), lambda r, s, p: None, main_score="mrr_at_10")


def test_protocol_override_is_recorded_and_compare_warns(tmp_path, monkeypatch, capsys, bow):
    path = tmp_path / "AmazonCounterfactualClassification.jsonl"
    _two_class_file(path, langs=("en",), n_train=40, n_test=20)
    monkeypatch.setattr("harrier.eval.encoders.load_encoder", lambda *a, **k: bow)
    out = tmp_path / "out"
    assert cli.run(_parse(["eval", "--model", str(tmp_path), "--task-file", str(path), "--output", str(out),
                           "--protocol", "samples_per_label=8", "--no-progress"])) == 0
    doc = json.loads((out / "AmazonCounterfactualClassification.json").read_text())
    assert doc["harrier"]["protocol"]["samples_per_label"] == 8
    assert doc["harrier"]["metadata"] == {"task": "AmazonCounterfactualClassification", "mteb_version":
                                          doc["harrier"]["metadata"]["mteb_version"],
                                          "file": "data/mteb_v2_task_metadata.json",
                                          "overrides": {"samples_per_label": 8}}
    pub = tmp_path / "pub.json"
    pub.write_text(json.dumps({"models": {"org/m": {"AmazonCounterfactualClassification": {
        "splits": {"test": {"en": 90.0}}}}}}))
    capsys.readouterr()
    assert cli.run(_parse(["eval", "compare", str(out), "--published", "org/m", "--published-file", str(pub)])) == 0
    text = capsys.readouterr().out
    assert "warning: AmazonCounterfactualClassification was scored with samples_per_label 8 (mteb: 32)" in text
    # with mteb's own protocol: no warning
    assert cli.run(_parse(["eval", "--model", str(tmp_path), "--task-file", str(path), "--output", str(out),
                           "--no-progress"])) == 0
    capsys.readouterr()
    cli.run(_parse(["eval", "compare", str(out), "--published", "org/m", "--published-file", str(pub)]))
    assert "warning" not in capsys.readouterr().out


def test_no_prefix_cache_reaches_the_embedder(tmp_path, tiny_gemma3_dir, monkeypatch):
    from harrier.eval import encoders

    seen = {}
    real = encoders.HarrierEncoder.load

    def spy(path, **kwargs):
        enc = real(path, **kwargs)
        seen["state"] = enc.embedder.prefix_cache_state()
        return enc

    monkeypatch.setattr(encoders.HarrierEncoder, "load", spy)
    rows = [{"sentence1": f"a cat {i}", "sentence2": f"a cat {i} dog", "score": i % 3} for i in range(6)]
    task = tmp_path / "t.jsonl"
    task.write_text("\n".join(json.dumps(r) for r in rows))
    base = ["eval", "--model", str(tiny_gemma3_dir), "--task-file", str(task), "--task-type", "STS", "--no-progress"]
    assert cli.run(_parse([*base, "--no-prefix-cache"])) == 0
    assert seen["state"] == "off (prefix_cache=False)"
    assert cli.run(_parse(base)) == 0
    assert seen["state"].startswith("on")


def test_arguana_ignores_documents_with_the_querys_id(tmp_path, bow):
    from harrier.eval.encoders import NoPrompts

    rows = [{"kind": "document", "id": "q1", "text": "the cat sat on the mat"},
            {"kind": "document", "id": "d2", "text": "the cat sat on a mat"},
            {"kind": "document", "id": "d3", "text": "river tree sun"},
            {"kind": "query", "id": "q1", "text": "the cat sat on the mat", "relevant": {"d2": 1}}]
    path = tmp_path / "ArguAna.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    named = load_task_file(path)
    generic = load_task_file(path, "Retrieval", name="mine", protocol=["ignore_identical_ids=false"])
    assert named.task.protocol.ignore_identical_ids and not generic.task.protocol.ignore_identical_ids
    data = named.task.load(tmp_path, "default", "test")
    assert score_subset(bow, named.task, data, NoPrompts())["ndcg_at_1"] == 1.0  # q1 itself is not ranked
    assert score_subset(bow, generic.task, data, NoPrompts())["ndcg_at_1"] == 0.0


def test_protocol_overrides_apply_to_builtin_tasks(tmp_path):
    sel = cli.selections_from_args(_parse(["eval", "--model", "m", "--tasks", "STS17", "--data-root", str(tmp_path),
                                           "--protocol", "max_score=4"]))[0]
    assert sel.task.protocol.max_score == 4.0 and dict(sel.task.metadata.overrides) == {"max_score": 4.0}
    with pytest.raises(ValueError, match="unknown protocol key 'k' for STSProtocol; valid keys: min_score, max_score"):
        cli.selections_from_args(_parse(["eval", "--model", "m", "--tasks", "STS17", "--data-root", str(tmp_path),
                                         "--protocol", "k=1"]))
