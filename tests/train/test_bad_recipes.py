"""Bad recipes and outputs of the training commands: one `harrier: error:` line (file and line), exit 2,
before any model is loaded."""

from __future__ import annotations

import pytest

from harrier.cli import main as harrier_main
from harrier.train.cli import main as train_main

RECIPES = {
    "unclosed bracket": ("model:\n  init: x\ndata:\n  datasets: [a, b\nrun:\n  steps: 1\n", ":5: invalid YAML"),
    "bad indentation": ("model:\n  init: x\n run: 1\n", ":3: invalid YAML"),
    "tab indentation": ("model:\n\tinit: x\n", ":2: invalid YAML"),
    "a list, not sections": ("- a\n- b\n", "must hold a mapping of sections, got list"),
    "not UTF-8": (b"model:\n  init: \xff\xfe\n", "not UTF-8 text"),
}


@pytest.mark.parametrize("case", list(RECIPES))
@pytest.mark.parametrize("entry", ["harrier train", "python -m harrier.train"])
def test_malformed_recipe_is_one_line(case, entry, tmp_path, capsys):
    text, message = RECIPES[case]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_bytes(text if isinstance(text, bytes) else text.encode())
    code = harrier_main(["train", "--config", str(recipe)]) if entry == "harrier train" else \
        train_main(["--config", str(recipe)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("harrier: error: config file ") and message in err[0], err
    assert str(recipe) in err[0]


def test_bad_override_value_is_one_line(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model:\n  init: x\n")
    assert harrier_main(["train", "--config", str(recipe), "--set", "optim.lr=[1e-5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["harrier: error: --set optim.lr: '[1e-5' is not a YAML value"]


def test_unwritable_run_output_fails_before_the_model_loads(tiny_gemma3_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model:\n  init: {tmp_path / 'no-such-model'}\ndata:\n  datasets: [{{path: {recipe}}}]\n"
                      f"run:\n  output: {blocker / 'run'}\n")
    assert harrier_main(["train", "--config", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # the output is checked first: the missing model would have been the error otherwise
    assert len(err) == 1 and "run.output" in err[0] and "is a file, not a directory" in err[0], err


@pytest.mark.parametrize("command", ["mine-negatives", "score-teacher"])
def test_unwritable_tool_output_fails_before_the_model_loads(command, tmp_path, capsys):
    data = tmp_path / "q.jsonl"
    data.write_text('{"query": "a", "positive": "b"}\n')
    args = {"mine-negatives": ["--model", str(tmp_path / "none"), "--queries", str(data), "--corpus", str(data)],
            "score-teacher": ["--teacher", str(tmp_path / "none"), "--data", str(data)]}[command]
    assert harrier_main([command, *args, "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a directory" in err[0], err
