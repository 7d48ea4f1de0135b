"""Fixtures for training tests: a tiny harrier-270m-shaped Embedder (random weights, fp32, CPU)."""

from __future__ import annotations

import pytest

from harrier import Embedder


@pytest.fixture
def tiny_embedder(tiny_gemma3_dir) -> Embedder:
    return Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="float32")
