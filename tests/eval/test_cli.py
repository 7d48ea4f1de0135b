"""``harrier eval`` option parsing and error paths (harrier/eval/cli.py). Run: pytest tests/eval/test_cli.py -q"""

from __future__ import annotations

import argparse
import json
import re

import pytest

from harrier.eval import cli


def _parse(argv):
    parser = argparse.ArgumentParser(prog="harrier")
    sub = parser.add_subparsers(dest="command")
    cli.add_parser(sub)
    return parser.parse_args(argv)


def test_parses_issue_examples():
    a = _parse(["eval", "--model", "m", "--tasks", "STSBenchmark,Tatoeba", "--langs", "deu,fra", "--output", "r/"])
    assert a.tasks == ["STSBenchmark", "Tatoeba"] and a.langs == ["deu", "fra"] and a.eval_command is None
    assert _parse(["eval", "--model", "m", "--suite", "quick"]).suite == "quick"
    a = _parse(["eval", "--model", "m", "--task-file", "x.jsonl", "--task-type", "STS"])
    assert a.task_file == "x.jsonl" and a.task_type == "STS"
    a = _parse(["eval", "compare", "results/", "--published", "google/embeddinggemma-300m"])
    assert a.eval_command == "compare" and a.results == "results/"


@pytest.mark.parametrize(("argv", "message"), [
    (["eval", "--tasks", "STSBenchmark"], "--model is required"),
    (["eval", "--model", "m"], "exactly one of --tasks, --suite or --task-file"),
    (["eval", "--model", "m", "--tasks", "STS17", "--suite", "quick"], "exactly one"),
    (["eval", "--model", "m", "--task-file", "x.jsonl"], "needs --task-type"),
    (["eval", "--model", "m", "--tasks", "STS17", "--data-root", "/nonexistent/data"], "data root /nonexistent"),
])
def test_error_paths(argv, message):
    with pytest.raises(ValueError, match=message):
        cli.run(_parse(argv))


def test_unknown_task_and_language(data_root):
    with pytest.raises(ValueError, match="unknown task 'STS18'"):
        cli.selections_from_args(_parse(["eval", "--model", "m", "--tasks", "STS18", "--data-root", str(data_root)]))
    with pytest.raises(ValueError, match="no subset for languages klingon"):
        cli.selections_from_args(_parse(["eval", "--model", "m", "--tasks", "STS17", "--langs", "klingon",
                                         "--data-root", str(data_root)]))


def test_missing_default_data_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARRIER_DATA", raising=False)
    with pytest.raises(ValueError, match="pass --data-root"):
        cli.selections_from_args(_parse(["eval", "--model", "m", "--suite", "quick"]))


def test_data_root_from_harrier_data(tmp_path, monkeypatch):
    from harrier.eval.run import resolve_data_root

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARRIER_DATA", str(tmp_path))
    assert resolve_data_root(None) == tmp_path
    (tmp_path / "other").mkdir()
    assert resolve_data_root(tmp_path / "other") == tmp_path / "other"  # --data-root wins
    monkeypatch.setenv("HARRIER_DATA", str(tmp_path / "gone"))
    with pytest.raises(ValueError, match=r"HARRIER_DATA=.*gone does not exist .*pass --data-root DIR or set HARRIER"):
        cli.selections_from_args(_parse(["eval", "--model", "m", "--suite", "quick"]))
    monkeypatch.delenv("HARRIER_DATA")
    with pytest.raises(ValueError, match="no data root: pass --data-root DIR .* or set HARRIER_DATA=DIR"):
        resolve_data_root(None)
    with pytest.raises(ValueError, match="pass --published-file FILE"):
        cli._published_file(_parse(["eval", "compare", str(tmp_path), "--published", "org/m"]))


def test_missing_model_directory(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"sentence1": "a", "sentence2": "b", "score": 1}\n')
    with pytest.raises(ValueError, match="model directory .* does not exist"):
        cli.run(_parse(["eval", "--model", str(tmp_path / "nope"), "--task-file", str(tmp_path / "t.jsonl"),
                        "--task-type", "STS"]))


def test_run_task_file_and_compare(tmp_path, monkeypatch, capsys, bow):
    rows = [{"sentence1": f"a cat {i}", "sentence2": f"a cat {i}" + " dog" * (i % 3), "score": 3 - i % 3}
            for i in range(12)]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    monkeypatch.setattr("harrier.eval.encoders.load_encoder", lambda *a, **k: bow)
    code = cli.run(_parse(["eval", "--model", str(tmp_path), "--task-file", str(tmp_path / "t.jsonl"),
                           "--task-type", "STS", "--output", str(tmp_path / "out"), "--no-progress"]))
    assert code == 0 and "t " in capsys.readouterr().out
    pub = tmp_path / "pub.json"
    pub.write_text(json.dumps({"models": {"org/m": {"t": {"splits": {"test": {"default": 50.0}}}}}}))
    assert cli.run(_parse(["eval", "compare", str(tmp_path / "out"), "--published", "org/m",
                           "--published-file", str(pub)])) == 0
    assert "published" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown published model"):
        cli.run(_parse(["eval", "compare", str(tmp_path / "out"), "--published", "x/y", "--published-file", str(pub)]))


def test_prompt_alias_remaps_the_models_prompts(tmp_path, tiny_embeddinggemma_dir, capsys):
    # EmbeddingGemma's published Tatoeba/PAWS-X scores use other prompts than its checkpoint maps to those types
    rows = [{"sentence1": f"a cat {i}", "sentence2": f"a cat {i}" + " dog" * (i % 3), "score": 3 - i % 3}
            for i in range(6)]
    task = tmp_path / "t.jsonl"
    task.write_text("\n".join(json.dumps(r) for r in rows))
    base = ["eval", "--model", str(tiny_embeddinggemma_dir), "--task-file", str(task), "--task-type", "STS",
            "--no-progress"]
    out = tmp_path / "out"
    assert cli.run(_parse([*base, "--prompt-alias", "STS=query", "--output", str(out)])) == 0
    [result] = [json.loads(p.read_text()) for p in out.rglob("*.json")]
    prompts = json.loads((tiny_embeddinggemma_dir / "config_sentence_transformers.json").read_text())["prompts"]
    assert prompts["STS"] != prompts["query"]
    assert json.dumps(prompts["query"]) in json.dumps(result)  # the query prompt embedded both sides
    assert json.dumps(prompts["STS"]) not in json.dumps(result)
    with pytest.raises(ValueError, match="prompt alias 'STS=nope': expected KEY=OTHER"):
        cli.run(_parse([*base, "--prompt-alias", "STS=nope"]))


def _classification_file(path, labels_by_lang):
    rows = [{"text": f"{lang} text {i} " + "word " * (i % 4), "label": labels[i % len(labels)], "lang": lang,
             "split": "train" if i < 12 else "test"} for lang, labels in labels_by_lang.items() for i in range(18)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_one_label_task_file_is_one_error_line_before_the_model_loads(tmp_path, monkeypatch, capsys):
    from harrier import cli as harrier_cli
    from harrier.eval import encoders

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not be loaded for a bad task file")

    monkeypatch.setattr(encoders, "load_encoder", no_model)
    task = _classification_file(tmp_path / "one.jsonl", {"en": ["hateful"]})
    code = harrier_cli.main(["eval", "--model", str(tmp_path / "no-model"), "--task-file", str(task),
                             "--task-type", "Classification", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"harrier: error: {task}: Classification needs at least two")


@pytest.mark.parametrize("flags", [["--no-progress"], []], ids=["no-progress", "no-terminal"])
def test_progress_lines_without_progress_bars(tmp_path, tiny_gemma3_dir, capsys, flags):
    # two-class labels (numbers and strings) also run end to end: they used to fail in scikit-learn's AP
    task = _classification_file(tmp_path / "hate.jsonl", {"de": [0, 1], "en": ["hateful", "non-hateful"]})
    assert cli.run(_parse(["eval", "--model", str(tiny_gemma3_dir), "--task-file", str(task),
                           "--task-type", "Classification", *flags])) == 0
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("harrier eval: ")]
    assert lines[0] == "harrier eval: [1/1] hate started (2 subsets)"
    for line, subset in zip(lines[1:3], ("de", "en"), strict=True):
        assert re.fullmatch(rf"harrier eval: \[1/1\] hate \({subset}\) done in \d+\.\d s, main score \d+\.\d\d", line)
    assert re.fullmatch(r"harrier eval: \[1/1\] hate done in \d+\.\d s", lines[3]) and len(lines) == 4
