"""Every shipped recipe parses into a valid config and names only known adapters."""

from __future__ import annotations

from pathlib import Path

import pytest

from harrier.train import config
from harrier.train.adapters import ADAPTERS

RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_parses(path):
    cfg = config.load(path)
    assert all(d.adapter is None or d.adapter in ADAPTERS for d in cfg.data.datasets)
    assert "torchrun" in path.read_text() or "harrier train" in path.read_text()  # launch line in the header


def test_there_are_recipes():
    assert {p.name for p in RECIPES} >= {"finetune.yaml", "stage1.yaml", "distill-270m-cpu.yaml"}
