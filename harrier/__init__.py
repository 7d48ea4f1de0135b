"""harrier: run, evaluate and train Harrier-style decoder text-embedding models."""

from __future__ import annotations

from harrier.embedder import Embedder, ModelInfo

__all__ = ["Embedder", "ModelInfo"]
__version__ = "0.1.0"
