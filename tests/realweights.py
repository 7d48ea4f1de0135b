"""Where the real weights live (shared/models/fetch-*.sh caches them) and how a test reacts when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def missing(reason: str) -> None:
    """Skip a real-weight test, or fail it where CI requires real weights (HARRIER_REQUIRE_REAL=1)."""
    if os.environ.get("HARRIER_REQUIRE_REAL") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def models_dir() -> Path:
    """Where shared/models/fetch-*.sh cache real weights (same default as the scripts)."""
    return Path(os.environ.get("HARRIER_MODELS", Path.home() / ".cache" / "harrier-models"))
