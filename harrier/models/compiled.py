"""The decoder's per-token work through ``torch.compile`` (inductor), attention kept as one opaque op.

Why: in eager mode on CPU most of a layer's time outside the matrix products goes to element-wise chains
(RMSNorm in fp32 with its casts, rope, the GELU gate, residual adds), each a separate pass over [T, D] memory.
Inductor fuses each chain into one C++ loop. Attention over a packed batch loops in Python over runs of
equal-length sequences (``SeqGroups``), which dynamo would unroll and specialise on every batch; so it is
registered as the custom op ``harrier::varlen_attention`` taking the runs as a tensor, and the compiled graph is
one layer with a symbolic token count T. All layers of a model share that graph (modules are inlined, their
weights are graph inputs), so compile cost is one layer per layer kind, not per layer, and packed batches of
any length reuse it (``dynamic=True``).

Compiled graphs are cached on disk by inductor's FX graph cache (``TORCHINDUCTOR_CACHE_DIR``, default
``/tmp/torchinductor_<user>``), so a second process pays a fraction of the first compile. That cache's key does
not name the vector instructions the kernels were generated for (torch 2.13): a process whose CPU code path
differs (``ATEN_CPU_CAPABILITY=avx2`` on an AVX-512 machine, or one cache directory shared by machines of several
CPU kinds) loaded the other kind's kernels and returned NaN or unrelated vectors (measured: 40 of 40 rows NaN).
``isa_tag`` adds the code path to the key of our graphs.

Where inductor cannot run (no C++ compiler, or a compile that fails), or a graph's first output disagrees with the
eager layer's (``AGREEMENT``), the model runs eagerly after one warning.
Numerics: fused kernels round differently from eager ones, so compiled output equals eager to float rounding
(fp32 cosine >= 0.99999, bf16 >= 0.999; tests check both), not bit for bit; the default (eager) path is
unchanged.

Shape legend: T = packed tokens, D = hidden size, H = query heads, K = key/value heads, E = head dim,
R = runs of equal-length sequences.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import warnings

import torch
from torch import nn

from harrier.models.layers import varlen_attention
from harrier.packing import LayerPrefix, SeqGroups

log = logging.getLogger(__name__)


@torch.library.custom_op("harrier::varlen_attention", mutates_args=())
def varlen_attention_op(q_THE: torch.Tensor, k_TKE: torch.Tensor, v_TKE: torch.Tensor, runs_3R: torch.Tensor,
                        causal: bool, window: int, scale: float) -> torch.Tensor:
    """``layers.varlen_attention`` with the runs flattened into an int64 [3R] tensor and ``window=0`` for none."""
    flat = runs_3R.tolist()
    groups = SeqGroups(tuple(tuple(flat[i:i + 3]) for i in range(0, len(flat), 3)))
    return varlen_attention(q_THE, k_TKE, v_TKE, groups, causal=causal, window=window or None, scale=scale)


@varlen_attention_op.register_fake
def _(q_THE, k_TKE, v_TKE, runs_3R, causal, window, scale):
    return torch.empty_like(q_THE)


@torch.library.custom_op("harrier::varlen_attention_prefixed", mutates_args=())
def varlen_attention_prefixed_op(q_THE: torch.Tensor, k_TKE: torch.Tensor, v_TKE: torch.Tensor,
                                 runs_5R: torch.Tensor, k_PKE: torch.Tensor, v_PKE: torch.Tensor, causal: bool,
                                 window: int, scale: float) -> torch.Tensor:
    """``layers.varlen_attention`` with a cached prefix: runs as (start, n, length, prefix start, prefix length)."""
    flat = runs_5R.tolist()
    rows = [flat[i:i + 5] for i in range(0, len(flat), 5)]
    groups = SeqGroups(tuple(tuple(r[:3]) for r in rows))
    prefix = LayerPrefix(k_PKE, v_PKE, tuple((r[3], r[4]) for r in rows))
    return varlen_attention(q_THE, k_TKE, v_TKE, groups, causal=causal, window=window or None, scale=scale,
                            prefix=prefix)


@varlen_attention_prefixed_op.register_fake
def _(q_THE, k_TKE, v_TKE, runs_5R, k_PKE, v_PKE, causal, window, scale):
    return torch.empty_like(q_THE)


def runs_tensor(groups: SeqGroups, spans: tuple[tuple[int, int], ...] | None = None) -> torch.Tensor:
    """The runs of a packed batch as the op's flat [3R] int64 tensor ([5R] with each run's prefix span), on CPU (the
    op reads it back as Python ints). Flat, so its size is never 1: dynamo specialises sizes 0 and 1, which would
    compile again for one-run batches."""
    if spans is None:
        return torch.tensor([x for run in groups.runs for x in run], dtype=torch.int64)
    return torch.tensor([x for run, span in zip(groups.runs, spans, strict=True) for x in (*run, *span)],
                        dtype=torch.int64)


def layer_step(layer: nn.Module, x_TD: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
               runs_3R: torch.Tensor, rows_R: torch.Tensor | None = None) -> torch.Tensor:
    """One ``DecoderLayer`` forward (the same modules and order) with tensors only, so it compiles as one graph.
    ``rows_R``: see ``layers.project`` (a graph input, so any number of sequences reuses the graph)."""
    attn = layer.self_attn
    q, k, v = attn.qkv(layer.input_layernorm(x_TD), (cos, sin), rows_R)
    o = torch.ops.harrier.varlen_attention(q, k, v, runs_3R, attn.cfg.causal, attn.window or 0, attn.cfg.attn_scale)
    return layer.finish(x_TD, attn.out(o, x_TD.dtype, rows_R), rows_R)


def layer_step_prefixed(layer: nn.Module, x_TD: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                        runs_5R: torch.Tensor, k_PKE: torch.Tensor, v_PKE: torch.Tensor,
                        rows_R: torch.Tensor | None = None) -> torch.Tensor:
    """``layer_step`` for sequences that continue cached prefixes (``runs_5R``: see ``runs_tensor``)."""
    attn = layer.self_attn
    q, k, v = attn.qkv(layer.input_layernorm(x_TD), (cos, sin), rows_R)
    o = torch.ops.harrier.varlen_attention_prefixed(q, k, v, runs_5R, k_PKE, v_PKE, attn.cfg.causal, attn.window or 0,
                                                    attn.cfg.attn_scale)
    return layer.finish(x_TD, attn.out(o, x_TD.dtype, rows_R), rows_R)


# a compiled layer's first output must be this close to eager's (relative L2 error over the batch): float rounding
# of fused kernels is ~1e-6 in fp32 and ~1e-3 in bf16; a broken kernel (NaN, another ISA's code) is far off
AGREEMENT = 2e-2


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would use (``CXX`` or the first of g++, c++, clang++ on PATH), or None."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def isa_tag():
    """A post-grad pass that changes nothing and whose ``uuid`` (part of inductor's FX graph cache key) names the
    CPU code this process generates: inductor's vector ISA and ATen's CPU capability. A ``CustomGraphPass`` the
    user configured (``torch._inductor.config.post_grad_custom_post_pass``) still runs inside it, its uuid in the
    key; a plain function there is not run for our graphs (inductor would not cache a graph with it anyway).
    Built on first compile: importing inductor's pass module loads about 800 modules, which loading a model for
    eager use should not pay."""
    from torch._inductor.custom_graph_pass import CustomGraphPass
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    class IsaTag(CustomGraphPass):
        def __init__(self, inner: CustomGraphPass | None) -> None:
            self.inner = inner
            self.tag = f"harrier-cpu-code:{pick_vec_isa()}:{torch.backends.cpu.get_cpu_capability()}"

        def __call__(self, graph) -> None:
            if self.inner is not None:
                self.inner(graph)

        def uuid(self) -> str:
            return self.tag if self.inner is None else f"{self.tag}+{self.inner.uuid()}"

    user = torch._inductor.config.post_grad_custom_post_pass
    return IsaTag(user if isinstance(user, CustomGraphPass) else None)


class CompiledLayers:
    """``layer_step`` compiled once for every layer of a model; runs it eagerly, after one warning, where inductor
    is unavailable or a compile fails. ``compile_seconds`` adds up the first calls of each graph (compile + run)."""

    def __init__(self) -> None:
        self.fn = None
        self.compile_seconds = 0.0
        self._seen: set[tuple] = set()
        self.fn_prefixed = None
        if cxx_compiler() is None:
            self._fall_back("no C++ compiler (g++, c++ or clang++; or CXX) was found")
        else:
            # Every model in the process shares layer_step's one dynamo cache (a graph per model shape, dtype,
            # layer kind and int8 or not); dynamo's default of 8 entries runs the 9th eagerly, e.g. in a benchmark
            # or an evaluation that loads several models.
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
            options = {"post_grad_custom_post_pass": isa_tag()}
            self.fn = torch.compile(layer_step, dynamic=True, backend="inductor", options=options)
            self.fn_prefixed = torch.compile(layer_step_prefixed, dynamic=True, backend="inductor", options=options)

    def _fall_back(self, reason: str) -> None:
        message = f"compile: {reason}; running the model uncompiled (eager)"
        log.warning("%s", message)  # harrier's RuntimeWarnings are logged too (the CLI prints the log line only)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        self.fn = self.fn_prefixed = None

    @property
    def active(self) -> bool:
        return self.fn is not None

    def __call__(self, layer: nn.Module, x_TD: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                 runs: torch.Tensor, prefix: LayerPrefix | None = None,
                 rows_R: torch.Tensor | None = None) -> torch.Tensor:
        """``runs``: ``runs_tensor(groups)``, or ``runs_tensor(groups, prefix.spans)`` with a ``prefix``;
        ``rows_R``: see ``layers.project``."""
        args = (layer, x_TD, cos, sin, runs) + (() if prefix is None else (prefix.k_PKE, prefix.v_PKE)) + (rows_R,)
        eager = layer_step if prefix is None else layer_step_prefixed
        if self.fn is None:
            return eager(*args)
        key = (layer.self_attn.window, x_TD.dtype, torch.is_grad_enabled(), prefix is not None,
               type(layer.self_attn.o_proj).__name__, type(layer.mlp.down_proj).__name__, rows_R is not None)
        first = key not in self._seen
        t0 = time.perf_counter()
        try:
            out = (self.fn if prefix is None else self.fn_prefixed)(*args)
        except Exception as err:  # noqa: BLE001 -- inductor and dynamo raise many types; the eager rerun re-raises
            # a genuine error (bad input), so catching broadly only turns compile failures into the fallback.
            self._fall_back(f"torch.compile failed ({type(err).__name__}: {str(err).strip()[:200]})")
            return eager(*args)
        if first:
            self._seen.add(key)
            self.compile_seconds += time.perf_counter() - t0
            log.info("compiled a decoder layer graph (%s) in %.1f s", key, time.perf_counter() - t0)
            ref = eager(*args)  # each graph's first output against eager: a wrong kernel must not go unseen
            err = float((out.float() - ref.float()).norm() / ref.float().norm().clamp(min=1e-30))
            if not (err <= AGREEMENT):  # NaN fails too
                self._fall_back(f"a compiled layer disagreed with eager (relative error {err:.3g}; allowed "
                                f"{AGREEMENT}), e.g. kernels from a compile cache made for another CPU")
                return ref
        return out
