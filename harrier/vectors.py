"""Vector arithmetic on numpy embeddings shared by the library, evaluation and the CLI."""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows (the last axis) scaled to unit L2 norm, in float32; zero rows stay zero (norms floored at 1e-12).

    A new array: the input is not modified. Cosine similarity is ``l2_normalize(a) @ l2_normalize(b).T``.
    """
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
