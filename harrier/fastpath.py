"""Opt-in fast inference modes, applied to a built model: ``compile`` (the decoder layers through torch.compile,
``models/compiled.py``) and ``int8`` (int8 linear layers with per-token activations, ``quantize.py``), and the
int8 capability probe that picks its backend.

Neither mode is on by default, and ``auto`` never picks int8: both change numerics (to float rounding for
``compile``; within the stated tolerance for ``int8``), and the default fp32 / bf16 paths stay bit-identical.
``docs/cpu-modes.md`` has the measurements and when each pays off.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache

import torch

from harrier.model import EmbeddingModel
from harrier.models.decoder import ExactRows
from harrier.packing import pack
from harrier.quantize import (
    BACKENDS,
    CHECKED_LINEARS,
    CHECKED_MIN_COS,
    DEFAULT_KEEP_LAST,
    EXACT_EDGE_LAYERS,
    EXACT_FIRST,
    EXACT_LINEARS,
    FLOAT_LINEARS,
    QMAX,
    QMAX_NO_SATURATION,
    Int8Backend,
    Int8Linear,
    edge_layers,
    keep_first_for,
    quantize_decoder,
    restore_float,
)

log = logging.getLogger(__name__)
INT8 = "int8"  # the dtype name that selects int8 linear layers; everything else then computes in float32
PROBE_SHAPE = (256, 1024, 2048)  # T, K, N of the timed product: a decoder projection's size
PROBE_ROUNDS = 5  # each candidate timed once per round, interleaved; the best of the rounds counts
# int_mm is taken unless a qlinear backend is this much faster: on the harrier-270m shape int_mm measured min cosine
# 0.9946 against qlinear's 0.9887 on the same 200 texts (docs/cpu-modes.md); per layer on random data both equal
INT_MM_MARGIN = 1.25
# under compile=True int_mm is taken unless another backend is COMPILED_MARGIN times faster or int_mm is slower than
# float32: its quantise / rescale steps fuse into the compiled layer, qlinear's do not (qlinear-fbgemm measured
# slower compiled than eager: EmbeddingGemma 12.6 s vs 10.0 s, 270m shape 11.2 s vs 8.3 s on cpu_modes' 200 texts),
# so the probe's eager single-op timing misranks them there by up to 1.3x (Zen 4: int_mm 2.58x, qlinear 3.38x
# float32, and int_mm the faster model). An int_mm far slower than the rest (a real AVX2 Zen 2: 0.03x float32)
# is never worth that fusion.
COMPILED_MARGIN = 2.0
SATURATION_TOLERANCE = 0.02  # relative error above which a backend's products are broken (int16 saturation)
_warned: set[str] = set()


def split_dtype(dtype: str | torch.dtype) -> tuple[str | torch.dtype, bool]:
    """(compute dtype to load the model in, whether to quantise): ``"int8"`` loads float32, then quantises."""
    if isinstance(dtype, str) and dtype == INT8:
        return "float32", True
    return dtype, False


@dataclass(frozen=True)
class Candidate:
    """One backend as the probe found it: the weight levels that do not saturate (None: it cannot run or is wrong
    at every level), its seconds for the probe product, and why it is out when it is."""

    name: str
    weight_qmax: int | None
    seconds: float = float("inf")
    note: str = ""


@dataclass(frozen=True)
class Int8Probe:
    """The probe's finding: ``backend`` (the fastest correct one; None when none runs), its speed against float32
    (``speedup``: float32 seconds / int8 seconds for the probe product) and every candidate's figures."""

    backend: Int8Backend | None
    speedup: float
    fp32_seconds: float
    candidates: tuple[Candidate, ...] = field(default=())
    forced: bool = False
    compiled: bool = False  # decided for compile=True (int_mm wherever it runs)

    def summary(self) -> str:
        """One line for ``info()`` / ``harrier info``."""
        parts = []
        for c in self.candidates:
            if c.weight_qmax is None:
                parts.append(f"{c.name} out ({c.note})")
            else:
                bits = "" if c.weight_qmax == QMAX else f", 7-bit weights ({c.note})"
                parts.append(f"{c.name} {self.fp32_seconds / c.seconds:.2f}x{bits}")
        chosen = "none" if self.backend is None else self.backend.name
        how = ("HARRIER_INT8_BACKEND" if self.forced else
               "compiled: int_mm, whose quantise steps fuse" if self.compiled and self.backend.name == "int_mm" else
               f"fastest; int_mm unless {COMPILED_MARGIN}x slower or slower than float32" if self.compiled else
               f"fastest; int_mm unless {INT_MM_MARGIN}x slower")
        return (f"int8 probe ({PROBE_SHAPE[0]}x{PROBE_SHAPE[1]}->{PROBE_SHAPE[2]} products vs float32): "
                f"{'; '.join(parts)}; chosen: {chosen} ({how})")


def choose(candidates: Sequence[Candidate], fp32_seconds: float, forced: str | None = None,
           compiled: bool = False) -> Int8Probe:
    """The decision, from measured (or, in tests, simulated) figures: the fastest candidate that runs correctly,
    with ``int_mm`` kept unless another is ``INT_MM_MARGIN`` times faster (it was the more accurate in the model),
    ``COMPILED_MARGIN`` times when ``compiled`` as long as int_mm beats float32 (see its note); or ``forced``
    (``HARRIER_INT8_BACKEND``) when that one runs."""
    usable = [c for c in candidates if c.weight_qmax is not None]
    if forced is not None:
        if forced not in BACKENDS:
            raise ValueError(f"HARRIER_INT8_BACKEND={forced!r} is not a backend; backends: {', '.join(BACKENDS)}")
        usable = [c for c in usable if c.name == forced]
        if not usable:
            note = next((c.note for c in candidates if c.name == forced), "not probed")
            raise ValueError(f"HARRIER_INT8_BACKEND={forced!r} cannot run on this CPU ({note})")
    if not usable:
        return Int8Probe(None, 0.0, fp32_seconds, tuple(candidates), forced is not None, compiled)
    best = min(usable, key=lambda c: c.seconds)
    int_mm = next((c for c in usable if c.name == "int_mm"), None)
    margin = COMPILED_MARGIN if compiled else INT_MM_MARGIN
    if int_mm is not None and int_mm.seconds <= best.seconds * margin and \
            (not compiled or int_mm.seconds <= fp32_seconds):
        best = int_mm
    return Int8Probe(Int8Backend(best.name, best.weight_qmax), fp32_seconds / best.seconds, fp32_seconds,
                     tuple(candidates), forced is not None, compiled)


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _broken(layer: Int8Linear, linear: torch.nn.Linear, inputs: Sequence[torch.Tensor]) -> float:
    """The largest relative error of ``layer`` against ``linear`` over ``inputs`` (small unless it saturates)."""
    worst = 0.0
    for x in inputs:
        ref = linear(x)
        worst = max(worst, float(((layer(x) - ref).norm(dim=1) / ref.norm(dim=1).clamp(min=1e-12)).max()))
    return worst


@torch.no_grad()
def measure_candidates() -> tuple[list[Candidate], float]:
    """Each backend's correctness (at 8-bit, else 7-bit weights) and speed on the probe product, and float32's."""
    t, k, n = PROBE_SHAPE
    gen = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(k, n, bias=False)
    linear.weight.copy_(torch.randn(n, k, generator=gen) * 0.02)
    x = torch.randn(t, k, generator=gen)
    # all-positive inputs on all-positive weights: every u8 x s8 pair at its largest, where int16 saturates
    extreme = torch.nn.Linear(k, 64, bias=False)
    extreme.weight.fill_(0.01)
    checks = [torch.ones(4, k), torch.rand(4, k, generator=gen), x[:16]]
    found: list[tuple[str, int | None, Int8Linear | None, str]] = []
    for name in BACKENDS:
        chosen, note = None, ""
        for qmax in (QMAX, QMAX_NO_SATURATION):
            try:
                backend = Int8Backend(name, qmax)
                err = _broken(Int8Linear(extreme, backend=backend), extreme, checks[:2])
                err = max(err, _broken(Int8Linear(linear, backend=backend), linear, checks[2:]))
            except (RuntimeError, NotImplementedError) as exc:  # no kernel for this engine / CPU
                note = f"unavailable: {str(exc).splitlines()[0][:80]}"
                break
            if err <= SATURATION_TOLERANCE:
                chosen = qmax
                break
            note = f"8-bit weights saturate: relative error {err:.2f}"
        found.append((name, chosen, Int8Linear(linear, backend=Int8Backend(name, chosen)) if chosen else None,
                      note if chosen is None or chosen != QMAX else ""))
    best = {name: float("inf") for name, *_ in found}
    fp32 = float("inf")
    for layer in [f[2] for f in found if f[2] is not None] + [linear]:
        layer(x)  # warm-up (first-call packing, thread pool)
    for _ in range(PROBE_ROUNDS):
        fp32 = min(fp32, _seconds(lambda: linear(x)))
        for name, _, layer, _ in found:
            if layer is not None:
                best[name] = min(best[name], _seconds(lambda layer=layer: layer(x)))
    return [Candidate(name, qmax, best[name], note) for name, qmax, _, note in found], fp32


@cache
def _measured() -> tuple[list[Candidate], float]:
    return measure_candidates()


@cache
def int8_probe(compiled: bool = False) -> Int8Probe:
    """Which int8 backend is fastest here (for a model run eagerly, or under ``compiled``) and how it compares
    with float32: measured once per process (about 0.2 s). Flags alone mislead (AVX2 has int8 instructions, yet
    measured int8 products there slower than float32). ``HARRIER_INT8_BACKEND=<name>`` takes that backend (still
    checked for saturation)."""
    candidates, fp32 = _measured()
    probe = choose(candidates, fp32, os.environ.get("HARRIER_INT8_BACKEND") or None, compiled)
    log.info("%s", probe.summary())
    return probe


def _embed(model: EmbeddingModel, batch) -> torch.Tensor:
    with torch.inference_mode():
        return model(batch).float()


def warn_once(key: str, message: str) -> None:
    """A ``RuntimeWarning`` (and log line) the first time ``key`` is seen in this process."""
    if key in _warned:
        return
    _warned.add(key)
    log.warning("%s", message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def apply_fast_modes(model: EmbeddingModel, device: torch.device, *, int8: bool = False,
                     compile: bool = False, keep_first: int | None = None,
                     keep_last: int = DEFAULT_KEEP_LAST, calibration_ids: Sequence[Sequence[int]] = (),
                     faster_mode: Callable[[], str] = lambda: "float32",
                     bf16_faster: Callable[[], bool] = lambda: False,
                     try_down_proj: bool = False, exact_rows: bool | None = None) -> Int8Probe | None:
    """Quantise (``int8``, smoothing calibrated on ``calibration_ids``) and/or compile (``compile``) a built
    inference model in place. Returns the int8 probe's finding when quantising. ``faster_mode`` names the mode a
    slow int8's warning recommends and ``bf16_faster`` says whether the float linear layers left in an int8 model
    multiply in bf16 (``loading`` passes its bf16 probe: bf16 where it found bf16 faster). ``try_down_proj``
    (``loading``: ``HARRIER_INT8_DOWN_PROJ=1``): ``quantize.CHECKED_LINEARS`` (down_proj) become int8 too where the
    weights are 8-bit and the int8 model agrees with float32 on the calibration texts to ``CHECKED_MIN_COS`` (one
    float and one int8 pass over them; below it they go back to float with one warning); ``info()`` says which.
    ``exact_rows`` (``loading``: ``HARRIER_INT8_EXACT_ROWS``): the int8 layers ``quantize.edge_layers`` picks
    (``EXACT_EDGE_LAYERS``) keep a float copy (bf16 with ``bf16_faster``) for each sequence's rows at positions
    below ``quantize.EXACT_FIRST`` and, in a last-token model, its pooled row (``Decoder.exact_rows``); None: on
    for last-token models only."""
    probe = None
    if int8:
        if device.type != "cpu":
            raise ValueError(f"dtype 'int8' runs on CPU only (int8 dot-product units); got device {device}. "
                             "Use bfloat16 on CUDA")
        probe = int8_probe(compile)
        if probe.backend is None:
            raise ValueError(f"dtype 'int8' cannot run on this CPU: {probe.summary()}")
        if probe.speedup < 1.0:
            warn_once("int8-slow", f"int8 products are slower than float32 on this CPU (measured {probe.speedup:.2f}x"
                                   f" with the chosen backend, {probe.backend.name}); {faster_mode()} is the faster "
                                   "choice here")
        batch = pack(calibration_ids, device=device) if calibration_ids else None
        batches = [(batch.input_ids_T, batch.position_ids_T, batch.groups)] if batch is not None else []
        bf16 = bf16_faster()
        # 7-bit weights (where 8-bit products saturate) double the weights' rounding: no margin is left for down_proj
        # (AVX2 emulated, EmbeddingGemma: calibration texts 0.9951, cpu_modes' 200 texts 0.9927)
        seven_bit = probe.backend.weight_qmax < QMAX
        decoder = model.backbone
        first = keep_first_for(len(decoder.layers), keep_first)
        tried = try_down_proj and batch is not None and not seven_bit
        originals = {f"layers.{i}.mlp.{name}": getattr(decoder.layers[i].mlp, name)
                     for i in range(first, len(decoder.layers) - keep_last) for name in CHECKED_LINEARS
                     if tried and isinstance(getattr(decoder.layers[i].mlp, name, None), torch.nn.Linear)}
        ref = _embed(model, batch) if originals else None
        float_names = tuple(x for x in FLOAT_LINEARS if x not in CHECKED_LINEARS) if originals else FLOAT_LINEARS
        # the rows per-token int8 rounds worst (positions 0..EXACT_FIRST-1, Gemma's massive activations) and, in a
        # last-token model, the pooled row (its down_proj input carries the largest outliers) use float weights;
        # by default in last-token models only, where the tail needs them (docs/cpu-modes.md)
        last_token = model.head.pooling.mode == "lasttoken"
        exact = last_token if exact_rows is None else exact_rows
        rows = ExactRows(EXACT_FIRST, last_token)
        n = quantize_decoder(decoder, keep_first=keep_first, keep_last=keep_last, backend=probe.backend,
                             calibration=batches, bf16_floats=bf16, float_linears=float_names,
                             exact_linears=EXACT_LINEARS if exact else (),
                             exact_layers=edge_layers(first, len(decoder.layers) - keep_last, EXACT_EDGE_LAYERS))
        decoder.exact_rows = rows if exact else None
        names = "/".join(CHECKED_LINEARS)
        decoder.int8_check = None
        if try_down_proj and seven_bit:
            bits = probe.backend.weight_qmax.bit_length() + 1
            decoder.int8_check = (f"{names} kept float: the weights are {bits}-bit here (8-bit products saturate), "
                                  "which leaves no accuracy margin for it")
        if originals:
            t0 = time.perf_counter()
            agreement = float(torch.nn.functional.cosine_similarity(_embed(model, batch), ref).min())
            pooled = f" ({rows.words()} in float)" if exact else ""
            if agreement >= CHECKED_MIN_COS:
                decoder.int8_check = (f"{names} int8{pooled}: the calibration texts' min cosine against float32 "
                                      f"{agreement:.4f} >= {CHECKED_MIN_COS}")
            else:
                n -= restore_float(decoder, originals, bf16)
                float_names = FLOAT_LINEARS
                decoder.int8_check = (f"{names} kept float: with {names} int8{pooled} the calibration texts' min "
                                      f"cosine against float32 was {agreement:.4f} < {CHECKED_MIN_COS}")
                warn_once("int8-down-proj", f"HARRIER_INT8_DOWN_PROJ=1 not applied: {decoder.int8_check}")
            log.info("int8: %s (checked in %.1f s)", decoder.int8_check, time.perf_counter() - t0)
        kept = "/".join(float_names)
        log.info("int8: %d linear layers quantised (backend %s, weights |q| <= %d, smoothing calibrated on %d "
                 "texts; %sthe first %d / last %d decoder layers' linear layers in %s; embedding, "
                 "norms, attention and heads in float32)", n, probe.backend.name, probe.backend.weight_qmax,
                 len(calibration_ids), f"{kept} and " if kept else "", first, keep_last, "bf16" if bf16 else "float32")
    if compile:
        model.backbone.compile_layers()
    return probe
