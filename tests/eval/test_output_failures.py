"""`harrier eval --output`: checked before the model loads; a write that fails after the work loses nothing."""

from __future__ import annotations

import json

import pytest

from harrier.cli import main


def _task(tmp_path):
    rows = [{"sentence1": f"a cat {i}", "sentence2": f"a cat {i}" + " dog" * (i % 3), "score": 3 - i % 3}
            for i in range(12)]
    task = tmp_path / "t.jsonl"
    task.write_text("\n".join(json.dumps(r) for r in rows))
    return task


def _argv(task, output, *extra):
    return ["eval", "--model", str(task.parent), "--task-file", str(task), "--task-type", "STS",
            "--output", str(output), "--no-progress", *extra]


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: (d / "file").write_text("x") and d / "file", "exists and is not a directory"),
    (lambda d: (d / "file").write_text("x") and d / "file" / "sub", "a part of the path is a file"),
    (lambda d: "/proc/harrier-results", "cannot create it"),
])
def test_bad_output_fails_before_the_model_loads(make, message, tmp_path, monkeypatch, capsys):
    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr("harrier.eval.encoders.load_encoder", no_load)
    task = _task(tmp_path)
    assert main(_argv(task, make(tmp_path))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("harrier: error: --output ") and message in err[0], err


def test_output_that_breaks_during_the_run_keeps_the_scores(tmp_path, monkeypatch, capsys, bow_factory):
    task = _task(tmp_path)
    monkeypatch.setattr("harrier.eval.encoders.load_encoder", lambda *a, **k: bow_factory())
    good = tmp_path / "good"
    assert main(_argv(task, good)) == 0
    expected = json.loads((good / "t.json").read_text())
    printed = capsys.readouterr().out
    assert printed.endswith(f"results written to {good}\n")
    table = printed.removesuffix(f"results written to {good}\n")

    out = tmp_path / "out"

    class Breaks(bow_factory):
        def encode(self, *a, **k):
            if out.is_dir():  # the output folder turns into a file once the work has started
                out.rmdir()
                out.write_text("in the way")
            return super().encode(*a, **k)

    monkeypatch.setattr("harrier.eval.encoders.load_encoder", lambda *a, **k: Breaks())
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert main(_argv(task, out)) == 2
    captured = capsys.readouterr()
    err = [x for x in captured.err.strip().splitlines() if not x.startswith("harrier eval: ")]  # progress lines
    assert captured.out == table  # the score table is printed all the same
    assert len(err) == 1 and err[0].startswith("harrier: error: result ") and \
        f"saved to {cwd / 't.rescued.json'} instead" in err[0], err
    rescued = json.loads((cwd / "t.rescued.json").read_text())
    rescued.pop("evaluation_time"), expected.pop("evaluation_time")
    assert rescued == expected
    assert out.read_text() == "in the way"  # nothing half-written where the folder was
