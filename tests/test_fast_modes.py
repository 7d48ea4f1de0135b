"""The opt-in fast modes on tiny random checkpoints: compiled layers equal eager ones (mixed-length packed
batches, one-run and many-run batches), int8 within its tolerance, and the fallbacks warn once."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tiny
import torch

from harrier import Embedder
from harrier.models import compiled
from harrier.quantize import Int8Linear, quantize_tokens, quantize_weight

TEXTS = tiny.mixed_texts()[:2] + tiny.mixed_texts()[3:]  # the empty text is refused by encode
MODELS = ["tiny_gemma3_dir", "tiny_qwen3_dir", "tiny_embeddinggemma_dir"]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _encode_all(m: Embedder) -> np.ndarray:
    """Small budgets give many batches of one run and of several runs; the default gives one big batch."""
    return np.concatenate([m.encode(TEXTS, progress=False, batch_tokens=b) for b in (48, 4096)])


@pytest.mark.slow
@pytest.mark.parametrize("fixture", MODELS)
@pytest.mark.parametrize(("dtype", "min_cos"), [("float32", 0.99999), ("bfloat16", 0.999)])
def test_compiled_equals_eager(fixture, dtype, min_cos, request):
    path = request.getfixturevalue(fixture)
    eager = _encode_all(Embedder.from_pretrained(path, device="cpu", dtype=dtype))
    fast = Embedder.from_pretrained(path, device="cpu", dtype=dtype, compile=True)
    assert fast.model.backbone.compiled.active
    out = _encode_all(fast)
    assert _cos(out, eager).min() >= min_cos


def test_no_compiler_falls_back_with_one_warning(tiny_gemma3_dir, monkeypatch):
    monkeypatch.setattr(compiled, "cxx_compiler", lambda: None)
    eager = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu").encode(TEXTS, progress=False)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler") as record:
        m = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", compile=True)
        out = m.encode(TEXTS, progress=False)
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    assert not m.model.backbone.compiled.active
    np.testing.assert_array_equal(out, eager)


def test_failing_compile_falls_back_with_one_warning(tiny_gemma3_dir, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated inductor failure")

    monkeypatch.setattr(compiled.torch, "compile", lambda fn, **kw: broken)
    eager = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu").encode(TEXTS, progress=False, batch_tokens=48)
    m = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", compile=True)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = m.encode(TEXTS, progress=False, batch_tokens=48)
    assert [str(w.message) for w in record if w.category is RuntimeWarning] == [
        "compile: torch.compile failed (RuntimeError: simulated inductor failure); running the model uncompiled "
        "(eager)"]
    np.testing.assert_array_equal(out, eager)


def test_int8_linear_matches_reference_math():
    """Int8Linear is exactly dequant(int8 x) @ dequant(int8 W)^T, and close to the float product."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48)
    x = torch.randn(10, 64) * torch.logspace(-2, 2, 10)[:, None]  # tokens of very different magnitude
    q_KN, w_scale = quantize_weight(lin.weight)
    q_x, x_scale = quantize_tokens(x)
    reference = (q_x.float() * x_scale) @ (q_KN.float() * w_scale) + lin.bias
    out = Int8Linear(lin)(x)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
    rel = (out - lin(x)).norm(dim=1) / lin(x).norm(dim=1)
    assert rel.max() < 0.02  # per-token scales: small and large tokens alike


@pytest.mark.parametrize("fixture", MODELS)
def test_int8_within_tolerance(fixture, request):
    path = request.getfixturevalue(fixture)
    ref = Embedder.from_pretrained(path, device="cpu", dtype="float32").encode(TEXTS, progress=False)
    m = Embedder.from_pretrained(path, device="cpu", dtype="int8")
    assert any(isinstance(x, Int8Linear) for x in m.model.backbone.modules())
    assert not any(isinstance(x, Int8Linear) for x in m.model.head.modules())
    assert not any(isinstance(x, Int8Linear) for x in m.model.backbone.layers[-1].modules())
    assert not isinstance(m.model.backbone.layers[0].mlp.down_proj, Int8Linear)
    assert _cos(m.encode(TEXTS, progress=False), ref).min() >= 0.99


def test_int8_refused_off_cpu(tiny_gemma3_dir):
    from harrier.fastpath import apply_fast_modes

    m = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu")
    with pytest.raises(ValueError, match="CPU only"):
        apply_fast_modes(m.model, torch.device("cuda"), int8=True)
