"""Shared fixtures: tiny random checkpoints (session scope, offline) and the real-weights locations.

Run everything: ``pytest``; skip real-weight tests: ``pytest -m 'not real'``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import tiny  # noqa: E402
from realweights import missing, models_dir  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_gemma3_dir(tmp_path_factory) -> Path:
    return tiny.build_gemma3(tmp_path_factory.mktemp("tiny-gemma3"))


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory) -> Path:
    return tiny.build_qwen3(tmp_path_factory.mktemp("tiny-qwen3"))


@pytest.fixture(scope="session")
def tiny_embeddinggemma_dir(tmp_path_factory) -> Path:
    return tiny.build_gemma3(tmp_path_factory.mktemp("tiny-embeddinggemma"), embeddinggemma=True)


@pytest.fixture(scope="session")
def embeddinggemma_dir() -> Path:
    path = models_dir() / "embeddinggemma-300m"
    if not (path / "model.safetensors").is_file():
        missing(f"real EmbeddingGemma-300M not at {path}; run shared/models/fetch-embeddinggemma-300m.sh")
    return path


@pytest.fixture(scope="session")
def gemma3_gguf() -> Path:
    path = models_dir() / "gemma-3-270m" / "gemma-3-270m-q4_k_m.gguf"
    if not path.is_file():
        missing(f"real Gemma-3-270M GGUF not at {path}; run shared/models/fetch-gemma3-270m.sh")
    return path
