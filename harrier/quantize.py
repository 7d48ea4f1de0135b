"""int8 inference: the decoder's linear layers with int8 weights (one scale per output channel) and int8
activations quantised per token at run time, multiplied into int32 on the CPU's int8 units, with each layer's
input channels smoothed (SmoothQuant-style) by scales calibrated once at load.

Why per token: a packed batch mixes tokens whose activations differ by orders of magnitude (Gemma's first
tokens carry "massive activations"), so one scale per tensor, as PyTorch's ``quantize_dynamic`` and ONNX Runtime's
dynamic int8 use, rounds ordinary tokens to a few levels: min cosine 0.89 against fp32 on EmbeddingGemma in our
measurement. One scale per token keeps each token's own range.

Why smoothing: within a token a few input channels are far larger than the rest, so a per-token scale still
rounds the ordinary channels coarsely (harrier-270m shape: min cosine 0.985 against fp32 on 120 probe texts).
Each linear divides its input channel k by ``s_k = amax_x[k]^a / amax_w[k]^(1-a)`` and multiplies the weight's
column k by it, which leaves the product unchanged in exact arithmetic and moves the outliers into the weights
(per output channel scales absorb them). ``amax_x`` is measured at load on the fixed texts in
``data/int8_calibration.json`` (written for harrier; positions before ``CALIBRATION_SKIP`` are left out: their
massive activations have their own per-token scales and would only inflate ``s``). Measured (docs/cpu-modes.md):
min cosine 0.985 -> 0.997 on the harrier-270m shape.

q/k/v and gate/up, which share their input, are fused into one int8 projection each (``Attention.qkv_proj``,
``MLP.gate_up_proj``): one smoothing, one quantisation and one product per shared input.

Backends (``Int8Backend``), picked per process by a timed probe in ``fastpath.py``:
- ``int_mm``: ``torch._int_mm`` (oneDNN: AVX512-VNNI / AMX-INT8 s8s8 products);
- ``qlinear-onednn`` / ``qlinear-fbgemm``: ``quantized::linear_dynamic`` with per-channel prepacked weights under
  that engine. It quantises activations per tensor; per token is recovered exactly by scaling each row to
  ``[-1, 1]`` first and back afterwards (row scaling commutes with the product). fbgemm has AVX2 u8s8 kernels.
On CPUs without VNNI, u8 x s8 products go through ``vpmaddubsw``, whose int16 pair sums saturate (measured: an
error of 152,514 in an int32 result under AVX2): there the probe finds the saturation and the weights use 7 bits
(``|q| <= 63``: 2 x 255 x 63 < 32,767), which cannot saturate.

What stays in floating point: the embedding table, every norm, attention (softmax included), the MLP's ``down_proj``
(its input, the GELU-gated product, has the largest outliers; int8 on request where the whole model agrees with
float32 on the calibration texts with it in int8 too: ``CHECKED_LINEARS``), where exact rows are on (``fastpath``;
by default in last-token models) each sequence's rows at positions below ``EXACT_FIRST`` and its pooled row in the
first and last ``EXACT_EDGE_LAYERS`` int8 layers (``Int8Linear.exact``, a float copy of the weights), the first
``keep_first`` and last ``keep_last`` decoder layers and the Sentence-Transformers Dense heads. Where the bf16 probe
finds bf16 products faster than float32 (AVX512-BF16 / AMX), the decoder's float linear layers multiply in bf16
(``Bf16Linear``); elsewhere (AVX2) in float32. The element-wise quantise / dequantise steps are cheap only when
fused, so run this under ``compile=True``; eager works and gives the same numbers (to rounding), slower.

Shape legend: T = tokens, K = input features, N = output features.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Collection, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources

import torch
from torch import nn

QMAX = 127  # symmetric int8, -127..127 (no -128, so negation stays in range)
QMAX_NO_SATURATION = 63  # 7-bit weights: a u8 x s8 pair sum (2 x 255 x 63) stays inside int16
DEFAULT_KEEP_LAST = 0  # decoder layers next to the pooling that stay in floating point
# decoder layers at the input that stay in floating point: on the harrier-270m shape (cpu_modes' 200 texts, int8
# rounding written out in float) min cosine 0.9950 with none, 0.9963 with one, 0.9984 with two. At most a quarter
# of the layers (a 2-layer test model keeps none)
DEFAULT_KEEP_FIRST = 2


def edge_layers(first: int, end: int, edge: int | None) -> range | list[int]:
    """Layer indices ``first..end-1``, or their first and last ``edge`` (all where ``2 * edge`` covers them)."""
    if edge is None or 2 * edge >= end - first:
        return range(first, end)
    return list(range(first, first + edge)) + list(range(end - edge, end))


def keep_first_for(num_layers: int, keep_first: int | None = None) -> int:
    """The float layers at the input: ``keep_first`` as given, else ``DEFAULT_KEEP_FIRST`` capped at a quarter."""
    return min(DEFAULT_KEEP_FIRST, num_layers // 4) if keep_first is None else keep_first
FLOAT_LINEARS = ("down_proj",)  # linear layers that stay in floating point in every layer (quantize_decoder's default)
# linear layers that become int8 on request (HARRIER_INT8_DOWN_PROJ=1) and only where the whole model, so quantised,
# agrees with float32 on the calibration texts to CHECKED_MIN_COS (``fastpath.apply_fast_modes``) with 8-bit weights.
# down_proj's input, the GELU-gated product, is heavy-tailed; measured (docs/cpu-modes.md), cpu_modes' 200 texts:
# EmbeddingGemma min cosine 0.9991 -> 0.9968 with down_proj int8 (compiled 12% faster), the harrier-270m shape
# 0.9983 -> 0.9617 (the pooled EOS token of a long Arabic paragraph carries a massive activation in layer 4's
# down_proj input, 1,423x the calibrated range; a last-token model therefore keeps each sequence's pooled row of
# down_proj float, ``Int8Linear.exact``: 0.9956, yet MasakhaNEWS headlines' worst 0.9936 -> 0.9860). Off by
# default: the 44 calibration texts do not see the tail
# (EmbeddingGemma: the worst of 948 MasakhaNEWS headlines fell from 0.9964 to 0.9922, the calibration texts' min only
# from 0.9969 to 0.9959; the 270m shape's calibration min 0.9884 without the pooled rows, 0.9954 with them). With
# 7-bit weights (AVX2 emulated) EmbeddingGemma's calibration texts passed at 0.9951 and the 200 texts measured
# 0.9927: never tried there.
CHECKED_LINEARS = ("down_proj",)
CHECKED_MIN_COS = 0.995  # the calibration texts' worst cosine against float32 that keeps them int8 (the goal)
SMOOTH_ALPHA = 0.5  # migration strength of the smoothing (0: none, 1: all of the activation range to the weights)
CALIBRATION_SKIP = 3  # positions 0..2 (BOS and the first tokens, Gemma's massive activations) are not calibrated on
BACKENDS = ("int_mm", "qlinear-onednn", "qlinear-fbgemm")
# the rows int8 layers compute with a float copy of their weights where exact rows are on (``Int8Linear.exact``,
# ``Decoder.exact_rows``, ``fastpath.apply_fast_modes``): each sequence's positions below EXACT_FIRST (the tokens
# calibration leaves out: Gemma's massive activations) and, in a last-token model, its pooled row
EXACT_FIRST = CALIBRATION_SKIP
# the int8 layers that keep the copies: the first and last EXACT_EDGE_LAYERS of them (all where that covers them;
# None: all). The 270m shape, compiled, one run (docs/cpu-modes.md): in all 16 int8 layers 1.81x float32, worst
# headline 0.9966; in the first and last 4 1.97x, 0.9973 (eager: layers 2-9 0.9964, 10-17 0.9935); none 2.15x, 0.9936
EXACT_EDGE_LAYERS: int | None = 4
# every linear layer name an int8 decoder layer has (fused or not): which keep a float copy for those rows
EXACT_LINEARS = ("qkv_proj", "q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "gate_proj", "up_proj",
                 "down_proj")


@dataclass(frozen=True)
class Int8Backend:
    """How an ``Int8Linear`` multiplies: ``name`` (one of ``BACKENDS``) and the weights' largest level."""

    name: str = "int_mm"
    weight_qmax: int = QMAX

    def __post_init__(self) -> None:
        if self.name not in BACKENDS:
            raise ValueError(f"int8 backend {self.name!r} is not known; known: {', '.join(BACKENDS)}")

    @property
    def engine(self) -> str | None:
        """The ``torch.backends.quantized`` engine of a qlinear backend."""
        return self.name.split("-", 1)[1] if self.name.startswith("qlinear-") else None


def calibration_texts() -> list[str]:
    """The fixed texts smoothing is calibrated on (package data)."""
    text = resources.files("harrier").joinpath("data/int8_calibration.json").read_text(encoding="utf-8")
    return json.loads(text)["texts"]


def quantize_weight(weight_NK: torch.Tensor, qmax: int = QMAX) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: (int8 [K, N] laid out for ``_int_mm``, fp32 scale [N])."""
    w = weight_NK.detach().float()
    scale_N = (w.abs().amax(dim=1) / qmax).clamp(min=1e-12)
    q_NK = torch.round(w / scale_N[:, None]).clamp(-qmax, qmax).to(torch.int8)
    return q_NK.t().contiguous(), scale_N


def quantize_tokens(x_TK: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-token int8 of activations: (int8 [T, K], fp32 scale [T, 1])."""
    x = x_TK.float()
    scale_T1 = (x.abs().amax(dim=-1, keepdim=True) / QMAX).clamp(min=1e-12)
    return torch.round(x / scale_T1).clamp(-QMAX, QMAX).to(torch.int8), scale_T1


def smoothing_scales(act_amax_K: torch.Tensor, weight_NK: torch.Tensor, alpha: float = SMOOTH_ALPHA) -> torch.Tensor:
    """SmoothQuant's per-input-channel ``s = amax_x^alpha / amax_w^(1 - alpha)``: x / s times W * s is x W^T."""
    amax_w_K = weight_NK.detach().float().abs().amax(dim=0).clamp(min=1e-5)
    return (act_amax_K.float().clamp(min=1e-5) ** alpha / amax_w_K ** (1 - alpha)).clamp(min=1e-5)


@contextmanager
def quantized_engine(engine: str):
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


class Bf16Linear(nn.Module):
    """A float linear layer of an int8 model, multiplied in bfloat16 (weights stored in bf16, the input cast to
    bf16, products accumulated in fp32, the output and bias in float32): where the bf16 probe finds bf16 products
    faster than float32 (AVX512-BF16, AMX), the layers that stay out of int8 need not be the slow part."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", linear.weight.detach().to(torch.bfloat16))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.linear(x.to(torch.bfloat16), self.weight).to(x.dtype)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bf16 products"


class Int8Linear(nn.Module):
    """Drop-in for ``nn.Linear`` at inference: ``x W^T + b`` with W int8 per channel, x int8 per token, both after
    the optional input-channel smoothing ``smooth_K`` (``x / s``, ``W * s``).

    ``exact``: a float module of the same product (the original ``nn.Linear``, or its ``Bf16Linear``) that computes
    the rows a forward names in ``rows_R`` instead, e.g. the pooled token's row of each sequence in a last-token
    model (see ``Decoder.exact_rows``): the row the embedding is read from keeps float accuracy, every other row
    the int8 speed."""

    def __init__(self, linear: nn.Linear, *, smooth_K: torch.Tensor | None = None,
                 backend: Int8Backend = Int8Backend(), exact: nn.Module | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.backend = backend
        self.exact = exact
        weight = linear.weight.detach().float()
        if smooth_K is not None:
            weight = weight * smooth_K
        self.register_buffer("inv_smooth_K", None if smooth_K is None else (1.0 / smooth_K).float())
        q_KN, scale_N = quantize_weight(weight, backend.weight_qmax)
        self.register_buffer("scale_N", scale_N)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())
        self.packed = None
        if backend.engine is None:
            self.register_buffer("weight_KN", q_KN)
        else:  # prepacked for the engine (the packed object keeps its kernel; the engine is not read at run time)
            self.register_buffer("weight_KN", None)
            with quantized_engine(backend.engine), warnings.catch_warnings():
                warnings.filterwarnings("ignore", "torch.quantize_per_tensor", UserWarning)  # deprecated, still here
                qw = torch.quantize_per_channel(q_KN.t().float() * scale_N[:, None], scale_N.double(),
                                                torch.zeros_like(scale_N, dtype=torch.long), 0, torch.qint8)
                self.packed = torch.ops.quantized.linear_prepack(qw, None)

    def forward(self, x: torch.Tensor, rows_R: torch.Tensor | None = None) -> torch.Tensor:
        """``rows_R``: int64 row indices of ``x`` (as [-1, K]) that ``exact`` computes (repeats allowed); only
        with ``exact``."""
        x_TK = x.reshape(-1, self.in_features).float()
        exact_RN = None if rows_R is None or self.exact is None else self.exact(x_TK[rows_R])  # float32 (x_TK is)
        if self.inv_smooth_K is not None:
            x_TK = x_TK * self.inv_smooth_K
        if self.packed is None:
            q_TK, scale_T1 = quantize_tokens(x_TK)
            y = torch._int_mm(q_TK, self.weight_KN).float() * scale_T1 * self.scale_N
        else:
            amax_T1 = x_TK.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12)
            y = torch.ops.quantized.linear_dynamic(x_TK / amax_T1, self.packed, False) * amax_T1
        if self.bias is not None:
            y = y + self.bias
        if exact_RN is not None:
            y = with_rows(y, rows_R, exact_RN)
        return y.to(x.dtype).view(*x.shape[:-1], self.out_features)

    def exact_rows(self, x: torch.Tensor, rows_R: torch.Tensor) -> torch.Tensor:
        """The rows ``rows_R`` of ``x`` (as [-1, K]) through the float copy ``exact`` alone: [R, N] in ``x``'s dtype,
        the values ``forward(x, rows_R)`` puts in those rows."""
        return self.exact(x.reshape(-1, self.in_features).float()[rows_R]).to(x.dtype)

    def extra_repr(self) -> str:
        smooth = ", smoothed" if self.inv_smooth_K is not None else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel x per-token"
                f"{smooth}, backend {self.backend.name} (weights |q| <= {self.backend.weight_qmax})"
                f"{'; named rows exact' if self.exact is not None else ''}")


def with_rows(y_TN: torch.Tensor, rows_R: torch.Tensor, rows_RN: torch.Tensor) -> torch.Tensor:
    """``y_TN`` ([T, ...]) with its rows ``rows_R`` (repeats allowed, with equal values) replaced by ``rows_RN``:
    the values of ``y_TN.index_put((rows_R,), rows_RN)``, written as a gather and a select per element so that
    under ``torch.compile`` it fuses into the kernels that make and read ``y``. An ``index_put`` needs ``y`` whole
    in memory first: on the 270m shape the int8 gate/up product ([T, 4096] float32) was written out and read back
    once more, and the exact rows cost 10% of int8's time instead of 2% (cpu_modes' 200 texts, compiled). Where
    ``y`` has several readers (the halves of a fused product), inductor writes the select out anyway; blend each
    reader's part apart (``MLP.forward``)."""
    t, r = y_TN.shape[0], rows_R.shape[0]
    pick_T = torch.zeros(t, dtype=torch.int64, device=y_TN.device).index_put((rows_R,), torch.arange(
        r, device=y_TN.device))
    named_T = torch.zeros(t, dtype=torch.bool, device=y_TN.device).index_put((rows_R,), torch.ones(
        r, dtype=torch.bool, device=y_TN.device))
    return torch.where(named_T.view(t, *[1] * (y_TN.dim() - 1)), rows_RN[pick_T], y_TN)


def _linear_names(decoder: nn.Module, keep_first: int, keep_last: int,
                  float_linears: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Qualified names (in ``decoder``) of the decoder layers' linear layers: (those ``quantize_decoder`` makes
    int8, those that stay float)."""
    if keep_last < 0 or keep_first < 0:
        raise ValueError(f"keep_first and keep_last must be >= 0, got {keep_first} and {keep_last}")
    layers = list(decoder.layers)
    quantized, kept = [], []
    for i, layer in enumerate(layers):
        for part in ("self_attn", "mlp"):
            for name, child in getattr(layer, part).named_children():
                if isinstance(child, nn.Linear):
                    int8 = keep_first <= i < len(layers) - keep_last and name not in float_linears
                    (quantized if int8 else kept).append(f"layers.{i}.{part}.{name}")
    return quantized, kept


@torch.no_grad()
def calibrate(decoder: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor, object]],
              names: Sequence[str], skip: int = CALIBRATION_SKIP) -> dict[str, torch.Tensor]:
    """Per-input-channel amax of each named linear's input over ``batches`` of ``(input_ids_T, position_ids_T,
    groups)`` (the decoder's forward arguments), leaving out positions below ``skip``. A batch long enough for the
    chunked path (``long.LONG_TOKENS``) reaches each linear in consecutive chunks of rows; ``done`` follows them."""
    amax: dict[str, torch.Tensor] = {}
    keep: dict[str, torch.Tensor] = {}
    done: dict[str, int] = {}  # rows of the current batch each linear has seen

    def start(_m, args) -> None:
        keep["rows"] = args[1] >= skip
        done.clear()
    hooks = [decoder.register_forward_pre_hook(start)]
    for name in names:
        def record(_m, args, name=name):
            x_TK = args[0].reshape(-1, args[0].shape[-1])
            first = done.get(name, 0)
            done[name] = first + x_TK.shape[0]
            x_TK = x_TK[keep["rows"][first:first + x_TK.shape[0]]].abs().float()
            if x_TK.numel():
                a = x_TK.amax(dim=0)
                amax[name] = a if name not in amax else torch.maximum(amax[name], a)
        hooks.append(decoder.get_submodule(name).register_forward_pre_hook(record))
    try:
        for input_ids_T, position_ids_T, groups in batches:
            decoder(input_ids_T, position_ids_T, groups)
    finally:
        for h in hooks:
            h.remove()
    return amax


def quantize_decoder(decoder: nn.Module, *, keep_first: int | None = None,
                     keep_last: int = DEFAULT_KEEP_LAST, float_linears: tuple[str, ...] = FLOAT_LINEARS,
                     backend: Int8Backend = Int8Backend(),
                     calibration: Sequence[tuple[torch.Tensor, torch.Tensor, object]] = (),
                     alpha: float = SMOOTH_ALPHA, bf16_floats: bool = False, fuse: bool = True,
                     exact_linears: tuple[str, ...] = (), exact_layers: Collection[int] | None = None) -> int:
    """Replace the linear layers of the decoder layers but the first ``keep_first`` (default: see
    ``keep_first_for``) and the last ``keep_last``,
    except those named in ``float_linears``, with ``Int8Linear``, in place; with ``calibration`` batches (see
    ``calibrate``) each is smoothed first. ``bf16_floats``: the linear layers that stay float multiply in bf16
    (``Bf16Linear``; for CPUs where bf16 products are the faster). ``fuse``: q/k/v and gate/up, which share their
    input, become one int8 projection each (``qkv_proj``, ``gate_up_proj``: the input is smoothed with one scale per
    channel over the group's weights, SmoothQuant's rule, and quantised once). Returns how many of the model's
    linear layers became int8. ``exact_linears``: the int8 layers of these names keep their float layer as
    ``Int8Linear.exact`` (in bf16 with ``bf16_floats``), for the rows a forward names; ``exact_layers``: only in
    these decoder layers (None: all). Inference only."""
    names, kept = _linear_names(decoder, keep_first_for(len(decoder.layers), keep_first), keep_last, float_linears)
    amax = calibrate(decoder, calibration, names) if calibration else {}

    def float_copy(parent_name: str, attr: str, linear: nn.Linear) -> nn.Module | None:
        """The float copy an int8 layer keeps for its exact rows (``exact_linears``, ``exact_layers``), or None."""
        if attr not in exact_linears or (exact_layers is not None and _layer_of(parent_name) not in exact_layers):
            return None
        return Bf16Linear(linear) if bf16_floats else linear

    done: set[str] = set()
    if fuse:
        for parent_name, (fused_attr, parts) in _fusable(decoder, names):
            parent = decoder.get_submodule(parent_name)
            linears = [getattr(parent, p) for p in parts]
            fused = nn.Linear(linears[0].in_features, sum(x.out_features for x in linears),
                              bias=linears[0].bias is not None)
            with torch.no_grad():
                fused.weight.copy_(torch.cat([x.weight.float() for x in linears]))
                if fused.bias is not None:
                    fused.bias.copy_(torch.cat([x.bias.float() for x in linears]))
            first = f"{parent_name}.{parts[0]}"  # the parts share their input, so their calibrated amax too
            smooth = smoothing_scales(amax[first], fused.weight, alpha) if first in amax else None
            setattr(parent, fused_attr, Int8Linear(fused, smooth_K=smooth, backend=backend,
                                                   exact=float_copy(parent_name, fused_attr, fused)))
            for p in parts:
                delattr(parent, p)
                done.add(f"{parent_name}.{p}")
    if bf16_floats:  # attention itself too (q/k/v cast after rope; its output back to float32 before o_proj)
        for layer in decoder.layers:
            layer.self_attn.attn_dtype = torch.bfloat16
    for name in [n for n in names if n not in done] + (kept if bf16_floats else []):
        parent_name, _, attr = name.rpartition(".")
        parent = decoder.get_submodule(parent_name)
        linear = getattr(parent, attr)
        if name in kept:
            setattr(parent, attr, Bf16Linear(linear))
            continue
        smooth = smoothing_scales(amax[name], linear.weight, alpha) if name in amax else None
        setattr(parent, attr, Int8Linear(linear, smooth_K=smooth, backend=backend,
                                         exact=float_copy(parent_name, attr, linear)))
    return len(names)


def _layer_of(name: str) -> int:
    """The decoder layer index of a qualified name ``layers.{i}.…``."""
    return int(name.split(".")[1])


FUSED = {"self_attn": ("qkv_proj", ("q_proj", "k_proj", "v_proj")), "mlp": ("gate_up_proj", ("gate_proj", "up_proj"))}


def _fusable(decoder: nn.Module, names: Sequence[str]):
    """(parent name, (fused attribute, part names)) for every projection group whose parts all become int8."""
    wanted = set(names)
    for i in range(len(decoder.layers)):
        for part, (fused_attr, parts) in FUSED.items():
            parent_name = f"layers.{i}.{part}"
            if all(f"{parent_name}.{p}" in wanted for p in parts) and \
                    hasattr(decoder.get_submodule(parent_name), fused_attr):
                yield parent_name, (fused_attr, parts)


def restore_float(decoder: nn.Module, originals: dict[str, nn.Linear], bf16_floats: bool = False) -> int:
    """Put the float linear layers ``originals`` (qualified names in ``decoder``, as ``quantize_decoder`` found them)
    back in place of their int8 replacements, as ``quantize_decoder`` leaves float layers (``Bf16Linear`` with
    ``bf16_floats``). Returns how many were int8."""
    n = 0
    for name, linear in originals.items():
        parent_name, _, attr = name.rpartition(".")
        parent = decoder.get_submodule(parent_name)
        n += isinstance(getattr(parent, attr), Int8Linear)
        setattr(parent, attr, Bf16Linear(linear) if bf16_floats else linear)
    return n


def is_int8(model: nn.Module) -> bool:
    return any(isinstance(m, Int8Linear) for m in model.modules())


ORDER = {name: i for i, name in enumerate(EXACT_LINEARS)}  # info()'s order of a layer's linear layers


def describe_dtype(model: nn.Module, dtype: str) -> str:
    """What ``info()`` says the model computes in: ``dtype``, or for an int8 model which layers are int8, layer by
    layer (runs of layers alike are merged)."""
    layers = list(getattr(getattr(model, "backbone", model), "layers", []))
    int8 = [m for m in model.modules() if isinstance(m, Int8Linear)]
    if not int8:
        return dtype
    exact = {id(m.exact) for m in int8 if m.exact is not None}  # an int8 layer's float copy for its exact rows
    other = sum(isinstance(m, nn.Linear | Bf16Linear) and id(m) not in exact for m in model.modules())
    policy = getattr(getattr(model, "backbone", model), "exact_rows", None)
    rows = "named rows" if policy is None else policy.words()
    runs: list[tuple[int, int, str]] = []
    for i, layer in enumerate(layers):
        mods = sorted(((n.rsplit(".", 1)[-1], m) for n, m in layer.named_modules() if id(m) not in exact),
                      key=lambda nm: ORDER.get(nm[0], len(ORDER)))  # stable: unnamed kinds keep their order
        q = [n for n, m in mods if isinstance(m, Int8Linear) and m.exact is None]
        qx: dict[str, list[str]] = {}  # int8 layers with a float copy, by the copy's products
        for n, m in mods:
            if isinstance(m, Int8Linear) and m.exact is not None:
                qx.setdefault("bf16 products" if isinstance(m.exact, Bf16Linear) else dtype, []).append(n)
        f = [n for n, m in mods if isinstance(m, nn.Linear)]
        h = [n for n, m in mods if isinstance(m, Bf16Linear)]
        parts = [f"{'/'.join(q)} int8"] if q else []
        parts += [f"{'/'.join(ns)} int8 ({rows} in {d})" for d, ns in qx.items()]
        parts += [f"{'/'.join(f)} {dtype}"] if f else []
        parts += [f"{'/'.join(h)} bf16 products"] if h else []
        desc = ", ".join(parts) if q or qx or h else f"all {dtype}"
        if runs and runs[-1][2] == desc:
            runs[-1] = (runs[-1][0], i, desc)
        else:
            runs.append((i, i, desc))
    per_layer = "; ".join(f"layer{'s' if a != b else ''} {a}{f'-{b}' if a != b else ''}: {d}" for a, b, d in runs)
    b = int8[0].backend
    smoothed = "smoothed, " if int8[0].inv_smooth_K is not None else ""
    attn = {getattr(layer.self_attn, "attn_dtype", None) for layer in layers if hasattr(layer, "self_attn")}
    attention = "attention in bf16 (softmax in fp32); " if attn == {torch.bfloat16} else "attention, "
    check = getattr(getattr(model, "backbone", model), "int8_check", None)
    return (f"int8 ({len(int8)} of {len(int8) + other} linear layers: int8 weights per channel x int8 activations "
            f"per token, {smoothed}backend {b.name}, weights |q| <= {b.weight_qmax}; {per_layer}; {attention}norms, "
            f"embeddings and heads in {dtype}{f'; {check}' if check else ''})")
