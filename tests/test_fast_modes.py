"""The opt-in fast modes on tiny random checkpoints: compiled layers equal eager ones (mixed-length packed
batches, one-run and many-run batches), int8 within its tolerance, and the fallbacks warn once."""

from __future__ import annotations

import functools
import re
import warnings

import numpy as np
import pytest
import tiny
import torch

from harrier import Embedder, fastpath, loading, quantize
from harrier.fastpath import Candidate, choose, measure_candidates
from harrier.models import compiled
from harrier.models.decoder import ExactRows
from harrier.packing import SeqGroups
from harrier.quantize import Int8Backend, Int8Linear, quantize_tokens, quantize_weight

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


_CROSS_PROCESS = """
import sys, json, numpy as np, torch
from torch._dynamo.utils import counters
from harrier import Embedder
texts = json.loads(sys.argv[2])
eager = Embedder.from_pretrained(sys.argv[1], device="cpu", dtype="float32").encode(texts, progress=False)
fast = Embedder.from_pretrained(sys.argv[1], device="cpu", dtype="float32", compile=True)
out = fast.encode(texts, progress=False)
cos = (out * eager).sum(1)
print(json.dumps({"finite": bool(np.isfinite(out).all()), "min_cos": float(np.nan_to_num(cos, nan=-1).min()),
                  "hits": counters["inductor"]["fxgraph_cache_hit"]}))
"""


@pytest.mark.slow
def test_a_compile_cache_from_another_cpu_code_path_is_not_reused(tiny_embeddinggemma_dir, tmp_path):
    """Inductor's FX graph cache key does not name the vector ISA its kernels were made for: a process on another
    code path (``ATEN_CPU_CAPABILITY`` lower than the machine's, or a cache directory shared by several CPU kinds)
    loaded them and returned NaN rows (40 of 40 measured). ``compiled.isa_tag`` puts the code path in our key; a
    second process on the same path still hits the cache."""
    import json
    import os
    import subprocess
    import sys

    native = torch.backends.cpu.get_cpu_capability()
    other = "avx2" if native.startswith("AVX512") else "default"
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"), "OMP_NUM_THREADS": "2"}
    env.pop("ATEN_CPU_CAPABILITY", None)

    def run(capability: str | None) -> dict:
        e = env if capability is None else {**env, "ATEN_CPU_CAPABILITY": capability}
        done = subprocess.run([sys.executable, "-c", _CROSS_PROCESS, str(tiny_embeddinggemma_dir),
                               json.dumps(TEXTS * 3)], env=e, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    first = run(None)  # fills the cache for this machine's code path
    assert first["finite"] and first["min_cos"] >= 0.99999, first
    for attempt in ("miss", "hit"):  # the other path compiles its own kernels, then finds them
        got = run(other)
        assert got["finite"] and got["min_cos"] >= 0.99999, (other, attempt, got)
        assert (got["hits"] > 0) == (attempt == "hit"), (other, attempt, got)


def test_a_compiled_layer_that_disagrees_with_eager_falls_back_with_one_warning(tiny_gemma3_dir):
    """Each graph's first output is checked against eager: a wrong kernel (NaN here, as a cache made for another
    CPU gave) is caught at once, warned about once, and the model runs eagerly from then on, exactly."""
    eager = _encode_all(Embedder.from_pretrained(tiny_gemma3_dir, device="cpu"))
    m = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", compile=True)
    c = m.model.backbone.compiled
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a healthy compile passes the check silently
        healthy = _encode_all(m)
    assert c.active and _cos(healthy, eager).min() >= 0.99999
    c.fn = lambda layer, x_TD, *rest: torch.full_like(x_TD, float("nan"))
    c._seen.clear()
    with pytest.warns(RuntimeWarning, match="a compiled layer disagreed with eager \\(relative error nan") as rec:
        out = _encode_all(m)
    assert len([w for w in rec if "disagreed" in str(w.message)]) == 1 and not c.active
    np.testing.assert_array_equal(out, eager)


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


def _reference(lin: torch.nn.Linear, x: torch.Tensor, backend: Int8Backend, smooth=None) -> torch.Tensor:
    """The int8 math written out: per-token symmetric int8 of x / s times per-channel int8 of W * s, rescaled."""
    w = lin.weight.detach() * (1 if smooth is None else smooth)
    x = x / (1 if smooth is None else smooth)
    q_KN, w_scale = quantize_weight(w, backend.weight_qmax)
    if backend.engine is None:
        q_x, x_scale = quantize_tokens(x)
        return (q_x.float() * x_scale) @ (q_KN.float() * w_scale) + lin.bias
    # qlinear: rows scaled to [-1, 1], then quint8 over the tensor's range (asymmetric, as linear_dynamic does)
    amax = x.abs().amax(1, keepdim=True)
    xs = x / amax
    lo, hi = min(float(xs.min()), 0.0), max(float(xs.max()), 0.0)
    scale = (hi - lo) / 255
    zp = round(-lo / scale)
    xq = (torch.round(xs / scale) + zp).clamp(0, 255)
    return ((xq - zp) * scale) @ (q_KN.float() * w_scale) * amax + lin.bias


@functools.cache
def _candidates_here() -> dict[str, Candidate]:
    return {c.name: c for c in measure_candidates()[0]}


def _runs(backend: Int8Backend) -> bool:
    """Whether ``backend`` is correct here: the probe found its name correct at these weight levels or finer."""
    found = _candidates_here()[backend.name].weight_qmax
    return found is not None and backend.weight_qmax <= found


BACKENDS = [Int8Backend(name, qmax) for name in quantize.BACKENDS for qmax in (127, 63)]


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: f"{b.name}-{b.weight_qmax}")
@pytest.mark.parametrize("smoothed", [False, True])
@torch.no_grad()
def test_int8_linear_matches_reference_math(backend, smoothed):
    """Each backend is the int8 math written out (to rounding; qlinear's own rounding of the activations differs by
    at most a level), and close to the float product, small and large tokens alike."""
    if not _runs(backend):
        pytest.skip(f"{backend.name} does not run correctly at {backend.weight_qmax} levels on this CPU (the probe "
                    "leaves it out; test_probe_finds_saturation covers that)")
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48)
    x = torch.randn(10, 64) * torch.logspace(-2, 2, 10)[:, None]  # tokens of very different magnitude
    x[:, 5] *= 30  # an outlier channel
    smooth = quantize.smoothing_scales(x.abs().amax(0), lin.weight) if smoothed else None
    out = Int8Linear(lin, smooth_K=smooth, backend=backend)(x)
    ref = _reference(lin, x, backend, smooth)
    tol = 1e-5 if backend.engine is None else 2e-2
    rel_ref = (out - ref).norm(dim=1) / ref.norm(dim=1)
    assert rel_ref.max() < tol
    rel = (out - lin(x)).norm(dim=1) / lin(x).norm(dim=1)
    assert rel.max() < (0.03 if backend.weight_qmax == 127 else 0.06)


@torch.no_grad()
def test_bf16_linear_is_the_bf16_product_plus_a_float32_bias():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48)
    x = torch.randn(10, 64)
    want = torch.nn.functional.linear(x.bfloat16(), lin.weight.bfloat16()).float() + lin.bias
    got = quantize.Bf16Linear(lin)(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert (got - lin(x)).abs().max() < 0.05


def test_first_layers_stay_float():
    """The first layers keep their float linears (the 270m shape's accuracy); capped at a quarter of the layers."""
    assert [quantize.keep_first_for(n) for n in (2, 3, 4, 7, 8, 18, 24, 28)] == [0, 0, 1, 1, 2, 2, 2, 2]
    assert quantize.keep_first_for(18, 5) == 5
    from harrier.models.config import decoder_config
    from harrier.models.decoder import Decoder

    base = Decoder(decoder_config(_four_layer_config()))
    n = quantize.quantize_decoder(base, keep_first=None, fuse=False)
    kinds = [[type(m).__name__ for m in (layer.self_attn.q_proj, layer.mlp.up_proj, layer.mlp.down_proj)]
             for layer in base.layers]
    assert kinds == [["Linear", "Linear", "Linear"]] + [["Int8Linear", "Int8Linear", "Linear"]] * 3
    assert n == 3 * 6


@torch.no_grad()
def test_fused_projections_equal_the_separate_ones():
    """q/k/v and gate/up fused into one int8 projection each: without smoothing the same int8 math as three / two
    separate ones (one per-token scale of the shared input, per-channel weight scales), so equal to rounding;
    with smoothing (one scale per input channel over the group, SmoothQuant's rule) still close to float."""
    from harrier.models.config import decoder_config
    from harrier.models.decoder import Decoder
    from harrier.packing import pack

    torch.manual_seed(0)
    float_model = Decoder(decoder_config(_four_layer_config())).eval()
    for p in float_model.parameters():
        p.normal_(0, 0.2)
    batch = pack([[1, 5, 9, 13, 17], [2, 4, 6], [3, 30, 60, 90]], device="cpu")
    args = (batch.input_ids_T, batch.position_ids_T, batch.groups)
    calib = [args]
    want = float_model(*args)
    out = {}
    for fuse in (False, True):
        for smooth in (False, True):
            m = Decoder(decoder_config(_four_layer_config())).eval()
            m.load_state_dict(float_model.state_dict())
            quantize.quantize_decoder(m, keep_first=0, fuse=fuse, calibration=calib if smooth else ())
            out[fuse, smooth] = m(*args)
            layer = m.layers[1]
            assert (layer.self_attn.qkv_proj is not None) == fuse and (layer.mlp.gate_up_proj is not None) == fuse
            assert hasattr(layer.self_attn, "q_proj") != fuse and hasattr(layer.mlp, "gate_proj") != fuse
    torch.testing.assert_close(out[True, False], out[False, False], rtol=1e-5, atol=1e-5)
    for key, got in out.items():
        assert torch.nn.functional.cosine_similarity(got, want, dim=-1).min() > 0.99, key


def _four_layer_config() -> dict:
    return {"model_type": "gemma3_text", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 4,
            "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 100,
            "max_position_embeddings": 128, "rms_norm_eps": 1e-6, "sliding_window": 16, "rope_theta": 10000.0,
            "rope_local_base_freq": 10000.0, "query_pre_attn_scalar": 16, "hidden_activation": "gelu_pytorch_tanh",
            "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"]}


@torch.no_grad()
def test_calibration_of_a_batch_on_the_chunked_long_path_equals_the_plain_path(tiny_gemma3_dir, monkeypatch):
    """A calibration batch past ``long.LONG_TOKENS`` reaches each linear in chunks of rows: the positions left out
    follow the chunks, so the amax equals the plain path's (it raised IndexError before)."""
    from harrier.models import long
    from harrier.packing import pack

    m = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="float32")
    batch = pack(m.tokenize(TEXTS), device="cpu")
    batches = [(batch.input_ids_T, batch.position_ids_T, batch.groups)]
    names, _ = quantize._linear_names(m.model.backbone, 0, 0, ())
    plain = quantize.calibrate(m.model.backbone, batches, names)
    monkeypatch.setattr(long, "LONG_TOKENS", 20)
    monkeypatch.setattr(long, "TOKEN_CHUNK", 7)
    chunked = quantize.calibrate(m.model.backbone, batches, names)
    assert plain.keys() == chunked.keys() == set(names)
    for name in names:
        torch.testing.assert_close(chunked[name], plain[name], rtol=1e-5, atol=1e-6)


def test_smoothing_is_exact_in_float():
    """x / s times W * s is the same product: smoothing moves range, never changes the float result."""
    torch.manual_seed(0)
    w, x = torch.randn(8, 16), torch.randn(5, 16) * torch.logspace(-1, 2, 16)
    s = quantize.smoothing_scales(x.abs().amax(0), w)
    torch.testing.assert_close((x / s) @ (w * s).t(), x @ w.t(), rtol=1e-5, atol=1e-4)


@torch.no_grad()
def test_smoothing_lowers_the_error_of_an_outlier_channel():
    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 64, bias=False)
    x = torch.randn(32, 256)
    x[:, :4] *= 100  # Gemma-like: a few channels far above the rest in every token
    plain = Int8Linear(lin)(x)
    smooth = Int8Linear(lin, smooth_K=quantize.smoothing_scales(x.abs().amax(0), lin.weight))(x)
    err = [float(((y - lin(x)).norm(dim=1) / lin(x).norm(dim=1)).max()) for y in (plain, smooth)]
    assert err[1] < err[0] / 2, err


def _candidates(**seconds):
    return [Candidate(name, 127 if name in seconds else None, seconds.get(name, float("inf")),
                      "" if name in seconds else "unavailable: simulated") for name in quantize.BACKENDS]


def test_probe_picks_the_fastest_correct_backend():
    probe = choose(_candidates(**{"int_mm": 0.004, "qlinear-onednn": 0.002}), fp32_seconds=0.01)
    assert probe.backend == Int8Backend("qlinear-onednn", 127) and probe.speedup == pytest.approx(5.0)
    assert "qlinear-onednn 5.00x" in probe.summary() and "qlinear-fbgemm out (unavailable: simulated)" in \
        probe.summary() and "chosen: qlinear-onednn (fastest; int_mm unless 1.25x slower)" in probe.summary()
    near = choose(_candidates(**{"int_mm": 0.0024, "qlinear-onednn": 0.002}), fp32_seconds=0.01)
    assert near.backend.name == "int_mm"  # within the margin: the more accurate int_mm
    slow = choose(_candidates(int_mm=0.03), fp32_seconds=0.01)  # AVX2-like: int8 slower than float32
    assert slow.backend.name == "int_mm" and slow.speedup == pytest.approx(1 / 3)
    assert choose(_candidates(), fp32_seconds=0.01).backend is None
    compiled = choose(_candidates(**{"int_mm": 0.004, "qlinear-onednn": 0.002}), 0.01, compiled=True)
    assert compiled.backend.name == "int_mm" and "chosen: int_mm (compiled: int_mm, whose quantise steps fuse)" \
        in compiled.summary()  # its steps fuse under compile, qlinear's do not
    assert choose(_candidates(**{"qlinear-onednn": 0.002}), 0.01, compiled=True).backend.name == "qlinear-onednn"
    # compiled, int_mm far behind the others (real Zen 2: 0.03x float32) or behind float32: the fastest instead
    far = choose(_candidates(**{"int_mm": 0.3, "qlinear-fbgemm": 0.006}), 0.01, compiled=True)
    assert far.backend.name == "qlinear-fbgemm" and "int_mm unless 2.0x slower or slower than float32" in far.summary()
    behind = choose(_candidates(**{"int_mm": 0.011, "qlinear-fbgemm": 0.009}), 0.01, compiled=True)
    assert behind.backend.name == "qlinear-fbgemm"
    assert choose(_candidates(**{"int_mm": 0.011}), 0.01, compiled=True).backend.name == "int_mm"  # the only one
    forced = choose(_candidates(**{"int_mm": 0.004, "qlinear-onednn": 0.002}), 0.01, forced="int_mm")
    assert forced.backend.name == "int_mm" and "(HARRIER_INT8_BACKEND)" in forced.summary()
    with pytest.raises(ValueError, match="HARRIER_INT8_BACKEND='qlinear-fbgemm' cannot run on this CPU "
                                         r"\(unavailable: simulated\)"):
        choose(_candidates(int_mm=0.004), 0.01, forced="qlinear-fbgemm")
    with pytest.raises(ValueError, match="is not a backend; backends: int_mm, qlinear-onednn, qlinear-fbgemm"):
        choose(_candidates(int_mm=0.004), 0.01, forced="vnni")


def test_auto_never_picks_int8(tiny_gemma3_dir):
    m = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu")
    assert not quantize.is_int8(m.model) and m.info().int8_probe.startswith("not run")


def test_explicit_slow_int8_warns_once(tiny_gemma3_dir, monkeypatch, caplog):
    slow = choose(_candidates(int_mm=0.03), fp32_seconds=0.01)
    monkeypatch.setattr(fastpath, "int8_probe", lambda compiled=False: slow)
    monkeypatch.setattr(fastpath, "_warned", set())
    monkeypatch.setattr(loading, "cpu_bf16_is_faster", lambda: False)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(2):
            Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="int8")
    assert [str(w.message) for w in record if w.category is RuntimeWarning] == [
        "int8 products are slower than float32 on this CPU (measured 0.33x with the chosen backend, int_mm); "
        "float32 is the faster choice here"]


def test_int8_without_a_working_backend_is_one_error(tiny_gemma3_dir, monkeypatch):
    monkeypatch.setattr(fastpath, "int8_probe", lambda compiled=False: choose(_candidates(), fp32_seconds=0.01))
    with pytest.raises(ValueError, match="dtype 'int8' cannot run on this CPU: int8 probe"):
        Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="int8")


def test_probe_on_this_cpu_is_consistent():
    """The real probe: every backend is either out with a reason or correct at the levels it reports, and the
    chosen one is what the decision rule makes of them."""
    probe = fastpath.int8_probe()
    usable = [c for c in probe.candidates if c.weight_qmax is not None]
    assert usable, probe.summary()
    assert probe.backend == choose(probe.candidates, probe.fp32_seconds).backend
    assert all(c.note for c in probe.candidates if c.weight_qmax is None)


def test_probe_finds_saturation_under_avx2():
    """On AVX2 without VNNI, u8 x s8 products saturate at int16; with the kernels capped at AVX2 (what an AVX2-only
    CPU runs) the probe must either find a backend exact at 8 bits or fall back to 7-bit weights, and the int8
    layer it builds must match the float product."""
    import subprocess
    import sys

    env = {**__import__("os").environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
           "ATEN_CPU_CAPABILITY": "avx2"}
    code = ("import torch, warnings; warnings.simplefilter('ignore')\n"
            "from harrier.fastpath import int8_probe\nfrom harrier.quantize import Int8Linear\n"
            "p = int8_probe(); torch.manual_seed(0)\n"
            "lin = torch.nn.Linear(512, 256); lin.weight.data.abs_(); x = torch.rand(64, 512)\n"
            "for c in p.candidates:\n"
            "    if c.weight_qmax is None: continue\n"
            "    from harrier.quantize import Int8Backend\n"
            "    y = Int8Linear(lin, backend=Int8Backend(c.name, c.weight_qmax))(x)\n"
            "    err = float(((y - lin(x)).norm(dim=1) / lin(x).norm(dim=1)).max())\n"
            "    print(c.name, c.weight_qmax, round(err, 4))\n"
            "print('SUMMARY', p.summary())\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines() if not line.startswith("SUMMARY")]
    assert rows, proc.stdout
    for name, qmax, err in rows:
        assert float(err) < 0.03, (name, qmax, err, proc.stdout)


@pytest.mark.parametrize("fixture", MODELS)
@pytest.mark.parametrize("bf16", [False, True], ids=["float-fp32", "float-bf16"])
def test_int8_within_tolerance(fixture, bf16, request, monkeypatch):
    """int8 close to fp32; the linear layers left out of int8 multiply in bf16 exactly where the bf16 probe says
    bf16 is faster (simulated both ways here)."""
    monkeypatch.setattr(loading, "cpu_bf16_is_faster", lambda: bf16)
    path = request.getfixturevalue(fixture)
    ref = Embedder.from_pretrained(path, device="cpu", dtype="float32").encode(TEXTS, progress=False)
    m = Embedder.from_pretrained(path, device="cpu", dtype="int8")
    int8 = [x for x in m.model.backbone.modules() if isinstance(x, Int8Linear)]
    assert int8 and all(x.inv_smooth_K is not None for x in int8)  # calibrated at load
    assert not any(isinstance(x, Int8Linear) for x in m.model.head.modules())
    down = m.model.backbone.layers[-1].mlp.down_proj  # float by default (HARRIER_INT8_DOWN_PROJ unset)
    assert type(down) is (quantize.Bf16Linear if bf16 else torch.nn.Linear)
    assert m.model.backbone.int8_check is None
    info = m.info()
    assert info.dtype.startswith(f"int8 ({len(int8)} of ")
    assert ("down_proj bf16 products" if bf16 else "down_proj float32") in info.dtype, info.dtype
    # attention itself in bf16 too where bf16 is the faster; its output back in float32 for o_proj and the residual
    assert {x.self_attn.attn_dtype for x in m.model.backbone.layers} == {torch.bfloat16 if bf16 else None}
    assert ("attention in bf16" in info.dtype) == bf16, info.dtype
    layer, seen = m.model.backbone.layers[-1], {}
    layer.self_attn.o_proj.register_forward_pre_hook(lambda mod, args: seen.update(o_in=args[0].dtype))
    layer.register_forward_hook(lambda mod, args, out: seen.update(out=out.dtype))
    assert info.int8_probe.startswith("int8 probe (") and "chosen: " in info.int8_probe
    assert _cos(m.encode(TEXTS, progress=False), ref).min() >= 0.99
    assert seen == {"o_in": torch.float32, "out": torch.float32}, seen


@pytest.mark.parametrize("bf16", [False, True], ids=["float-fp32", "float-bf16"])
def test_down_proj_is_int8_on_request_only_where_the_calibration_texts_agree(tiny_gemma3_dir, bf16, monkeypatch):
    """With HARRIER_INT8_DOWN_PROJ=1 down_proj becomes int8 where the int8 model agrees with float32 on the
    calibration texts to CHECKED_MIN_COS, and info() says what was measured; where not, it goes back to float with
    one warning and the model equals, bit for bit, the default one (the other layers' smoothing does not depend on
    the try). Without the variable nothing is tried."""
    monkeypatch.setattr(loading, "cpu_bf16_is_faster", lambda: bf16)
    monkeypatch.setattr(fastpath, "_warned", set())
    float_type = quantize.Bf16Linear if bf16 else torch.nn.Linear
    monkeypatch.delenv("HARRIER_INT8_DOWN_PROJ", raising=False)
    never = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="int8")
    monkeypatch.setenv("HARRIER_INT8_DOWN_PROJ", "1")
    assert never.model.backbone.int8_check is None
    assert all(type(x.mlp.down_proj) is float_type for x in never.model.backbone.layers)
    assert "int8 the calibration" not in never.info().dtype
    first = quantize.keep_first_for(len(never.model.backbone.layers))
    ref = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="float32").encode(TEXTS, progress=False)
    for bar, int8 in ((-1.0, True), (1.01, False)):
        monkeypatch.setattr(fastpath, "CHECKED_MIN_COS", bar)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            m = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="int8")
        said = [str(w.message) for w in seen if "HARRIER_INT8_DOWN_PROJ=1 not applied" in str(w.message)]
        assert len(said) == (0 if int8 else 1), said
        layers = m.model.backbone.layers
        assert [type(x.mlp.down_proj) for x in layers] == \
            [float_type] * first + [Int8Linear if int8 else float_type] * (len(layers) - first)
        info = m.info().dtype
        cos = float(re.search(r"min cosine against float32 (?:was )?([\d.]+)", info).group(1))
        assert 0.9 < cos <= 1.0, info
        rows = "positions 0-2 and the pooled rows"  # a last-token model: these rows use float weights
        assert m.model.backbone.exact_rows == ExactRows(quantize.EXACT_FIRST, True)
        pooled = f"down_proj int8 ({rows} in float)"
        floats = "bf16 products" if bf16 else "float32"
        if int8:
            assert f"{pooled}: the calibration texts' min cosine against float32 {cos:.4f} >= -1.0" in info
            assert f"qkv_proj/o_proj/gate_up_proj/down_proj int8 ({rows} in {floats})" in info, info
            assert all(type(x.mlp.down_proj.exact) is float_type for x in layers[first:])
            assert _cos(m.encode(TEXTS, progress=False), ref).min() >= 0.99
        else:
            assert f"down_proj kept float: with {pooled} the calibration texts' min cosine against float32 " \
                   f"was {cos:.4f} < 1.01" in info, info
            assert f"qkv_proj/o_proj/gate_up_proj int8 ({rows} in {floats}), down_proj {floats}" in info, info
            np.testing.assert_array_equal(m.encode(TEXTS, progress=False), never.encode(TEXTS, progress=False))


@torch.no_grad()
def test_int8_linear_computes_the_named_rows_with_its_float_copy():
    """``rows_R`` rows are the float layer's product bit for bit (repeats allowed), every other row the int8
    product bit for bit; without a float copy the rows change nothing."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48)
    x = torch.randn(2, 5, 64)
    x[..., 7] *= 40  # an outlier channel int8 rounds coarsely around
    rows = torch.tensor([4, 9, 9])
    plain = Int8Linear(lin)(x)
    with_copy = Int8Linear(lin, exact=lin)
    out = with_copy(x, rows)
    assert out.shape == (2, 5, 48)
    flat, want = out.reshape(10, 48), plain.reshape(10, 48)
    torch.testing.assert_close(flat[[4, 9]], lin(x.reshape(10, 64)[[4, 9]]), rtol=0, atol=0)
    others = [i for i in range(10) if i not in (4, 9)]
    torch.testing.assert_close(flat[others], want[others], rtol=0, atol=0)
    assert (flat[[4, 9]] - want[[4, 9]]).abs().max() > 1e-4  # the named rows did change: int8 differs from float
    torch.testing.assert_close(Int8Linear(lin)(x, rows), plain, rtol=0, atol=0)
    assert "named rows exact" in repr(with_copy)


def test_with_rows_is_index_put():
    """The blend the exact rows go in by: index_put's values bit for bit, repeats allowed, any trailing shape."""
    torch.manual_seed(0)
    y = torch.randn(7, 3, 4)
    rows = torch.tensor([0, 5, 5])
    named = torch.randn(3, 3, 4)
    named[2] = named[1]  # a row named twice carries one value
    torch.testing.assert_close(quantize.with_rows(y, rows, named), y.index_put((rows,), named), rtol=0, atol=0)


def test_compiled_tanh_gelu_is_the_same_function(tiny_gemma3_dir):
    """Under compile the MLP's tanh GELU is written as x sigmoid(2u) (cheaper in inductor): equal to ATen's tanh
    GELU to float32 rounding, on the tails too."""
    mlp = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu").model.backbone.layers[0].mlp
    assert mlp.tanh
    gate = torch.cat([torch.linspace(-12, 12, 4001), torch.randn(4000) * 3])
    up = torch.randn(8001)
    want = torch.nn.functional.gelu(gate, approximate="tanh") * up
    assert torch.equal(mlp._gated(gate, up), want)  # eager: ATen's own
    got = torch.compile(mlp._gated, backend="inductor")(gate, up)
    torch.testing.assert_close(got, want, rtol=2e-6, atol=1e-6)


def test_layers_blend_the_exact_rows_after_their_row_wise_steps(tiny_gemma3_dir, monkeypatch):
    """Attention's q/k/v and the MLP's gate/up take the float copy's rows apart and blend them in after the
    projection's row-wise steps (so the product fuses with them under compile): the same result as the rows put
    into the product itself, eager, to float rounding."""
    from harrier.models.layers import apply_rope, rope_cos_sin

    m = _int_mm_int8(tiny_gemma3_dir, monkeypatch, down_proj=False)
    layer = m.model.backbone.layers[-1]
    attn, mlp = layer.self_attn, layer.mlp
    assert attn.qkv_proj.exact is not None and mlp.gate_up_proj.exact is not None
    torch.manual_seed(0)
    x = torch.randn(9, attn.cfg.hidden_size)
    rows = torch.tensor([0, 4, 8])
    cos, sin = rope_cos_sin(attn.cfg.rope[attn.layer_type], attn.cfg.head_dim, torch.arange(9), x.dtype)
    cfg = attn.cfg
    nq, nkv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    q_TN, k_TN, v_TN = attn.qkv_proj(x, rows).split((nq, nkv, nkv), dim=-1)  # the rows in the product itself
    want_q = apply_rope(attn.q_norm(q_TN.reshape(9, cfg.num_heads, -1)), cos, sin)
    want_k = apply_rope(attn.k_norm(k_TN.reshape(9, cfg.num_kv_heads, -1)), cos, sin)
    want_v = v_TN.reshape(9, cfg.num_kv_heads, -1)
    for got, want in zip(attn.qkv(x, (cos, sin), rows), (want_q, want_k, want_v), strict=True):
        torch.testing.assert_close(got.float(), want.to(got.dtype).float(), rtol=1e-6, atol=1e-6)
    gate, up = mlp.gate_up_proj(x, rows).chunk(2, dim=-1)
    want = mlp.down_proj(torch.nn.functional.gelu(gate, approximate="tanh") * up)
    torch.testing.assert_close(mlp(x, rows), want, rtol=1e-6, atol=1e-6)
    assert (mlp(x, rows) - mlp(x)).abs().max() > 1e-5  # the rows did change the result


def _int_mm_int8(path, monkeypatch, down_proj: bool = True, **kw) -> Embedder:
    """An int8 model (with down_proj int8 too: on request, the check's bar at -1 so it always applies), ``int_mm``
    forced: the probe's timed pick may be a qlinear backend, whose per-tensor rounding depends on which rows share
    a product (the chunked path's chunks), so the paths' agreement would depend on timing."""
    cands = list(_candidates_here().values())
    monkeypatch.setattr(fastpath, "int8_probe",
                        lambda compiled=False: choose(cands, 1.0, forced="int_mm", compiled=compiled))
    monkeypatch.setenv("HARRIER_INT8_DOWN_PROJ", "1" if down_proj else "0")
    monkeypatch.setattr(fastpath, "CHECKED_MIN_COS", -1.0)
    return Embedder.from_pretrained(path, device="cpu", dtype="int8", **kw)


def _exact_rows_expected(m: Embedder, texts, prefix: str = "", first: int = quantize.EXACT_FIRST) -> int:
    """How many rows the float copies compute for ``texts`` after ``prefix`` (uncached): per sequence its
    positions below ``first`` and its last row."""
    return sum(len(set(range(min(len(ids), first))) | {len(ids) - 1}) for ids in m.tokenize(texts, prefix))


def test_exact_rows_by_position_prefix_and_pooling():
    """Rows at positions below ``first`` and each sequence's last, in packed-row numbers; a cached prefix moves the
    positions on; a single row is named twice (no size-1 recompile); none at all is None."""
    groups = SeqGroups(((0, 2, 5), (10, 1, 2), (12, 1, 1)))  # two of 5 tokens, one of 2, one of 1
    assert ExactRows(3, True).rows(groups).tolist() == [0, 1, 2, 4, 5, 6, 7, 9, 10, 11, 12]
    assert ExactRows(1, False).rows(groups).tolist() == [0, 5, 10, 12]
    assert ExactRows(0, True).rows(groups).tolist() == [4, 9, 11, 12]
    spans = ((0, 2), (0, 0), (0, 5))  # prefixes of 2, none and 5 tokens
    assert ExactRows(3, True).rows(groups, spans).tolist() == [0, 4, 5, 9, 10, 11, 12]
    assert ExactRows(3, False).rows(groups, spans).tolist() == [0, 5, 10, 11]
    one = SeqGroups(((0, 1, 4),))
    assert ExactRows(3, False).rows(one, ((0, 2),)).tolist() == [0, 0]
    assert ExactRows(3, False).rows(one, ((0, 3),)) is None
    assert ExactRows(0, True).rows(one, last=False) is None
    assert ExactRows(3, True).words() == "positions 0-2 and the pooled rows"
    assert ExactRows(1, False).words() == "position 0"


def test_exact_rows_use_the_float_copies_on_every_path(tiny_gemma3_dir, monkeypatch):
    """Every int8 layer computes each sequence's rows at positions 0-2 and its pooled (last) row with its float copy;
    eager, compiled, prefix-cached and long (chunked) paths agree with each other, and turning the rows off
    changes the vectors."""
    from harrier.models import long

    m = _int_mm_int8(tiny_gemma3_dir, monkeypatch)
    backbone = m.model.backbone
    assert backbone.exact_rows == ExactRows(quantize.EXACT_FIRST, True)
    layer = backbone.layers[-1]
    seen: dict[str, list[int]] = {}
    for name, mod in (("qkv", layer.self_attn.qkv_proj), ("o", layer.self_attn.o_proj),
                      ("gate_up", layer.mlp.gate_up_proj), ("down", layer.mlp.down_proj)):
        assert isinstance(mod, Int8Linear) and mod.exact is not None, name
        mod.exact.register_forward_pre_hook(lambda mod, args, name=name: seen.setdefault(name, []).append(
            args[0].shape[0]))

    def counts() -> set[int]:
        out = {sum(v) for v in seen.values()} if len(seen) == 4 else {-1}
        seen.clear()
        return out

    eager = m.encode(TEXTS, progress=False)
    assert counts() == {_exact_rows_expected(m, TEXTS)}
    for batch_tokens in (48, 4096):  # batches of one sequence, of one run and of several
        np.testing.assert_allclose(m.encode(TEXTS, progress=False, batch_tokens=batch_tokens), eager, atol=1e-6)
    rows = backbone.exact_rows
    backbone.exact_rows = None
    assert _cos(m.encode(TEXTS, progress=False), eager).min() < 1 - 1e-6
    backbone.exact_rows = rows
    comp = _int_mm_int8(tiny_gemma3_dir, monkeypatch, compile=True)
    assert _cos(_encode_all(comp), np.concatenate([eager, eager])).min() >= 0.999
    assert any(key[-1] for key in comp.model.backbone.compiled._seen)  # the compiled graph took the rows
    seen.clear()
    prompt = m.prompts["web_search_query"]
    assert len(m.tokenize([""], prompt)[0]) > quantize.EXACT_FIRST  # the cached prefix holds positions 0-2
    cached = m.encode(TEXTS, prompt_name="web_search_query", progress=False)
    stats = m.prefix_cache.stats()
    assert stats["hits"] and stats["misses"], stats
    # each distinct prefix's first rows once (when it is computed), then one pooled row per sequence
    assert counts() == {quantize.EXACT_FIRST * stats["misses"] + len(TEXTS)}
    m.prefix_cache = None
    uncached = m.encode(TEXTS, prompt_name="web_search_query", progress=False)
    assert counts() == {_exact_rows_expected(m, TEXTS, prompt)}
    assert _cos(cached, uncached).min() >= 0.9999  # int8 rounds the prefix's tokens apart (test_prefix_cache's bar)
    monkeypatch.setattr(long, "LONG_TOKENS", 20)
    monkeypatch.setattr(long, "TOKEN_CHUNK", 7)  # chunks that split sequences and hold none, one or several rows
    assert _cos(m.encode(TEXTS, progress=False), eager).min() >= 0.9999
    assert counts() == {_exact_rows_expected(m, TEXTS)}  # per chunk, each row in the chunk that holds it


def test_mean_pooled_models_keep_the_first_rows_only(tiny_embeddinggemma_dir, monkeypatch):
    """Mean pooling reads every row: with exact rows on (not by default there) no pooled row, the first positions
    use the float copies."""
    monkeypatch.setenv("HARRIER_INT8_EXACT_ROWS", "1")
    m = _int_mm_int8(tiny_embeddinggemma_dir, monkeypatch)
    assert m.model.backbone.exact_rows == ExactRows(quantize.EXACT_FIRST, False)
    downs = [x.mlp.down_proj for x in m.model.backbone.layers if isinstance(x.mlp.down_proj, Int8Linear)]
    assert downs and all(x.exact is not None for x in downs)
    assert "pooled rows" not in m.info().dtype and "(positions 0-2 in " in m.info().dtype


@pytest.mark.parametrize("fixture", ["tiny_gemma3_dir", "tiny_embeddinggemma_dir"])
def test_exact_rows_setting(fixture, request, monkeypatch):
    """HARRIER_INT8_EXACT_ROWS: unset or auto, on for last-token models only; 0 off (no float copies, no rows, other
    vectors); 1 on for any model; anything else one clear error."""
    path = request.getfixturevalue(fixture)
    last_token = fixture == "tiny_gemma3_dir"
    models = {}
    for value in (None, "auto", "0", "1"):
        if value is None:
            monkeypatch.delenv("HARRIER_INT8_EXACT_ROWS", raising=False)
        else:
            monkeypatch.setenv("HARRIER_INT8_EXACT_ROWS", value)
        m = models[value] = _int_mm_int8(path, monkeypatch, down_proj=False)
        on = value == "1" or (value != "0" and last_token)
        int8 = [x for x in m.model.modules() if isinstance(x, Int8Linear)]
        assert int8 and all((x.exact is not None) == on for x in int8), value
        assert m.model.backbone.exact_rows == (ExactRows(quantize.EXACT_FIRST, last_token) if on else None)
        assert ("(positions 0-2" in m.info().dtype) == on, m.info().dtype
    on, off = models["1"].encode(TEXTS, progress=False), models["0"].encode(TEXTS, progress=False)
    assert _cos(on, off).min() < 1 - 1e-6
    np.testing.assert_array_equal(models[None].encode(TEXTS, progress=False), on if last_token else off)
    monkeypatch.setenv("HARRIER_INT8_EXACT_ROWS", "yes")
    with pytest.raises(ValueError, match="HARRIER_INT8_EXACT_ROWS must be 0, 1 or auto, got 'yes'"):
        Embedder.from_pretrained(path, device="cpu", dtype="int8")


def test_down_proj_stays_float_with_seven_bit_weights(tiny_gemma3_dir, monkeypatch):
    """Where 8-bit products saturate (AVX2 without VNNI) the weights are 7-bit and down_proj is not tried in int8,
    even on request with the bar at -1; info() says why. A bad value of the variable is one clear error."""
    monkeypatch.setattr(fastpath, "CHECKED_MIN_COS", -1.0)
    monkeypatch.setenv("HARRIER_INT8_DOWN_PROJ", "yes")
    with pytest.raises(ValueError, match="HARRIER_INT8_DOWN_PROJ must be 0 or 1, got 'yes'"):
        Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="int8")
    monkeypatch.setenv("HARRIER_INT8_DOWN_PROJ", "1")
    seven = [Candidate(name, 63, 0.002, "") for name in quantize.BACKENDS]
    monkeypatch.setattr(fastpath, "int8_probe", lambda compiled=False: choose(seven, 0.01, compiled=compiled))
    m = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="int8")
    assert {x.backend.weight_qmax for x in m.model.modules() if isinstance(x, Int8Linear)} == {63}
    assert not any(isinstance(x.mlp.down_proj, Int8Linear) for x in m.model.backbone.layers)
    assert "down_proj kept float: the weights are 7-bit here (8-bit products saturate)" in m.info().dtype


@pytest.mark.parametrize("name", quantize.BACKENDS)
def test_each_backend_runs_the_model(name, tiny_gemma3_dir, monkeypatch):
    """Every backend the probe finds correct, forced, gives the same model within tolerance."""
    cands = _candidates_here()
    if cands[name].weight_qmax is None:
        pytest.skip(f"{name} is out on this CPU: {cands[name].note}")
    monkeypatch.setattr(fastpath, "int8_probe",
                        lambda compiled=False: choose(list(cands.values()), 1.0, forced=name))
    ref = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="float32").encode(TEXTS, progress=False)
    m = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="int8")
    assert {x.backend.name for x in m.model.modules() if isinstance(x, Int8Linear)} == {name}
    assert _cos(m.encode(TEXTS, progress=False), ref).min() >= 0.99


@pytest.mark.slow
def test_compiled_int8_takes_the_compiled_choice(tiny_gemma3_dir, monkeypatch):
    """A compiled int8 model asks the probe for compile=True, and info() reports that decision."""
    asked = []

    def probe(compiled=False):
        asked.append(compiled)
        return choose(_candidates(**{"int_mm": 0.004, "qlinear-onednn": 0.002}), 0.01, compiled=compiled)

    monkeypatch.setattr(fastpath, "int8_probe", probe)
    import harrier.embedder as embedder_module

    monkeypatch.setattr(embedder_module, "int8_probe", probe)
    eager = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="int8")
    compiled = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="int8", compile=True)
    assert {x.backend.name for x in eager.model.modules() if isinstance(x, Int8Linear)} == {"qlinear-onednn"}
    assert {x.backend.name for x in compiled.model.modules() if isinstance(x, Int8Linear)} == {"int_mm"}
    assert "chosen: int_mm (compiled" in compiled.info().int8_probe
    assert "chosen: qlinear-onednn (fastest" in eager.info().int8_probe
    assert asked[:2] == [False, True]


def test_int8_compiled_equals_int8_eager(tiny_gemma3_dir):
    eager = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="int8")
    comp = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="int8", compile=True)
    assert _cos(_encode_all(comp), _encode_all(eager)).min() >= 0.999


def test_int8_model_is_not_saved(tiny_gemma3_dir, tmp_path):
    m = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="int8")
    with pytest.raises(ValueError, match="an int8 model is not saved"):
        m.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_int8_refused_off_cpu(tiny_gemma3_dir):
    from harrier.fastpath import apply_fast_modes

    m = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu")
    with pytest.raises(ValueError, match="CPU only"):
        apply_fast_modes(m.model, torch.device("cuda"), int8=True)


def test_harrier_info_prints_the_probe(tiny_gemma3_dir, capsys):
    from harrier.cli import main

    assert main(["info", "--model", str(tiny_gemma3_dir), "--dtype", "int8"]) == 0
    out = capsys.readouterr().out
    probe = fastpath.int8_probe()
    assert any(line.startswith("int8_probe") and line.endswith(probe.summary()) for line in out.splitlines())
    assert "dtype" in out and "int8 (" in out and "backend " + probe.backend.name in out


def test_the_cli_prints_harriers_warnings_once(tiny_gemma3_dir):
    """harrier's RuntimeWarnings are logged and warned; the CLI prints the log line only (no second copy with a
    source path)."""
    import os
    import subprocess
    import sys

    code = ("import sys; from harrier import fastpath; fastpath.CHECKED_MIN_COS = 1.01; from harrier.cli import main; "
            "sys.exit(main(['info', '--model', sys.argv[1], '--dtype', 'int8']))")
    proc = subprocess.run([sys.executable, "-c", code, str(tiny_gemma3_dir)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HARRIER_INT8_DOWN_PROJ": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    said = [line for line in proc.stderr.splitlines() if "not applied" in line]
    assert len(said) == 1 and said[0].startswith("harrier: WARNING: HARRIER_INT8_DOWN_PROJ=1 not applied: "), \
        proc.stderr
    assert "RuntimeWarning" not in proc.stderr, proc.stderr


def test_edge_layers():
    """The first and last ``edge`` layers of a range, or all of it where they would cover it."""
    assert list(quantize.edge_layers(2, 18, 4)) == [2, 3, 4, 5, 14, 15, 16, 17]
    assert list(quantize.edge_layers(2, 10, 4)) == list(range(2, 10))
    assert list(quantize.edge_layers(0, 3, 1)) == [0, 2]
    assert list(quantize.edge_layers(2, 18, None)) == list(range(2, 18))


def test_exact_rows_only_in_the_edge_layers(tiny_gemma3_dir, monkeypatch):
    """With EXACT_EDGE_LAYERS 1 of a 3-layer model's int8 layers the first and last keep the copies and compute the
    rows with them, the middle one none; info() says so per layer; the rows still change the vectors."""
    monkeypatch.setattr(fastpath, "EXACT_EDGE_LAYERS", 1)
    m = _int_mm_int8(tiny_gemma3_dir, monkeypatch, down_proj=False)
    layers = m.model.backbone.layers
    assert quantize.keep_first_for(len(layers)) == 0 and len(layers) == 3
    have = [[x.exact is not None for x in layer.modules() if isinstance(x, Int8Linear)] for layer in layers]
    assert have == [[True] * 3, [False] * 3, [True] * 3], have
    info = m.info().dtype
    assert "layer 0: qkv_proj/o_proj/gate_up_proj int8 (positions 0-2 and the pooled rows in " in info, info
    assert "layer 1: qkv_proj/o_proj/gate_up_proj int8, down_proj " in info, info
    assert "layer 2: qkv_proj/o_proj/gate_up_proj int8 (positions 0-2 and the pooled rows in " in info, info
    seen: list[int] = []
    layers[2].self_attn.o_proj.exact.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[0]))
    vectors = m.encode(TEXTS, progress=False)
    assert sum(seen) == _exact_rows_expected(m, TEXTS)
    m.model.backbone.exact_rows = None
    assert _cos(m.encode(TEXTS, progress=False), vectors).min() < 1 - 1e-6
