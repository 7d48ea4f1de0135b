"""A damaged model directory is one `harrier: error:` line naming the file (exit 2), found before any work."""

from __future__ import annotations

import json
import shutil

import pytest

from harrier.cli import main


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _drop_key(key):
    def damage(path):
        cfg = json.loads(path.read_text())
        del cfg[key]
        path.write_text(json.dumps(cfg))
    return damage


CASES = {
    "truncated backbone weights": ("model.safetensors", _truncate, "model.safetensors: damaged"),
    "garbage backbone weights": ("model.safetensors", lambda p: p.write_bytes(b"not weights"),
                                 "model.safetensors: damaged"),
    "truncated dense weights": ("2_Dense/model.safetensors", _truncate, "2_Dense/model.safetensors: damaged"),
    "config without hidden_size": ("config.json", _drop_key("hidden_size"),
                                   "config.json: missing required key 'hidden_size'"),
    "config not JSON": ("config.json", lambda p: p.write_text("{oops"), "config.json is not valid JSON"),
    "tokenizer not a tokenizer": ("tokenizer.json", lambda p: p.write_text('{"a": 1}'),
                                  "tokenizer.json cannot be read"),
    "modules.json not JSON": ("modules.json", lambda p: p.write_text("["), "modules.json is not valid JSON"),
    "no weights": ("model.safetensors", lambda p: p.unlink(), "has no model.safetensors"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_model_directory_is_one_error_line(case, tiny_embeddinggemma_dir, tmp_path, capsys):
    rel, damage, message = CASES[case]
    model = tmp_path / "model"
    shutil.copytree(tiny_embeddinggemma_dir, model)
    damage(model / rel)
    assert main(["info", "--model", str(model)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("harrier: error: "), err
    assert message in err[0] and "Traceback" not in err[0]


def test_intact_copy_loads(tiny_embeddinggemma_dir, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_embeddinggemma_dir, model)
    assert main(["info", "--model", str(model)]) == 0  # the cases above fail because of their damage only
