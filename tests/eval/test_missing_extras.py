"""Without the eval/train extras, the commands say which extra to install, before any work."""

from __future__ import annotations

import sys

import pytest

from harrier.cli import main


@pytest.mark.parametrize(("module", "argv", "extra"), [
    ("sklearn", ["eval", "--model", "m", "--task-file", "t.jsonl", "--task-type", "STS"], "eval"),
    ("scipy", ["eval", "--model", "m", "--task-file", "t.jsonl", "--task-type", "STS"], "eval"),
    ("yaml", ["train", "--config", "recipe.yaml"], "train"),
])
def test_missing_extra_is_named(module, argv, extra, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipe.yaml").write_text("model: {init: m}\n")
    monkeypatch.setitem(sys.modules, module, None)  # import fails as when the package is not installed
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("harrier: error: "), err
    assert f"pip install 'harrier-embed[{extra}]'" in err[0], err
