"""``harrier.vectors.l2_normalize`` is bit-identical to each formula it replaced (embedder.similarity,
eval.encoders.unit_rows, eval.mteb_adapter._cosine, eval.metrics.cosine_matrix)."""

from __future__ import annotations

import numpy as np
import pytest

from harrier.vectors import l2_normalize


def _old_out_of_place(x):  # embedder.similarity, mteb_adapter._cosine (axis=-1), metrics.cosine_matrix
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _old_unit_rows(x):  # eval.encoders.unit_rows: in place on a float32 copy
    x = np.array(x, dtype=np.float32)
    if len(x):
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_l2_normalize_matches_the_replaced_formulas_bit_for_bit(dtype):
    x = np.random.default_rng(0).normal(size=(37, 24)).astype(dtype) * 3
    x[5] = 0  # a zero row stays zero
    got = l2_normalize(x)
    assert got.dtype == np.float32
    assert np.array_equal(got, _old_out_of_place(x))
    assert np.array_equal(got, _old_unit_rows(x))
    assert not got[5].any()
    assert np.abs(np.linalg.norm(np.delete(got, 5, 0), axis=1) - 1).max() < 1e-6


def test_l2_normalize_keeps_its_input_and_handles_empty_and_1d():
    x = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    before = x.copy()
    l2_normalize(x)
    assert np.array_equal(x, before)
    assert l2_normalize(np.zeros((0, 8), dtype=np.float32)).shape == (0, 8)
    assert np.array_equal(l2_normalize(x[0]), _old_out_of_place(x[:1])[0])
