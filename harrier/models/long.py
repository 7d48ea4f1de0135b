"""Bounded-memory forward for very long packed batches (up to 32k tokens and beyond), used only above a threshold.

What a plain layer materialises over all T tokens, measured with torch 2.13 on CPU: attention itself is not the
problem (``scaled_dot_product_attention`` with ``is_causal`` or no mask runs the blockwise flash kernel, memory
linear in T; windowed layers already run in query blocks), but every per-token op does: the MLP's gate, up and
product ([T, F] each, 3x the hidden size), the fp32 copies of RMSNorm and the q/k norms, the rope temporaries and
the projections. This path runs those per-token ops in chunks of ``TOKEN_CHUNK`` tokens and keeps only q, k, v,
the attention output and the residual stream over all T, so peak memory grows linearly with a small slope.

Below ``LONG_TOKENS`` packed tokens the plain path runs unchanged (embeddings stay bit-identical), and the long
path is inference-only: training keeps the plain, differentiable path.

Shape legend: T = packed tokens, D = hidden size, H = query heads, K = key/value heads, E = head dim.
"""

from __future__ import annotations

import torch
from torch import nn

from harrier.models.layers import RMSNorm
from harrier.packing import LayerPrefix, SeqGroups

# packed batches with more tokens than this take the chunked path (inference only); above both default batch
# budgets (engine.DEFAULT_BATCH_TOKENS: CPU 4,096, CUDA 16,384), so ordinary batches keep the plain path
LONG_TOKENS = 16_384
TOKEN_CHUNK = 2_048  # tokens per chunk of per-token work on that path


def use_long_path(num_tokens: int) -> bool:
    """True when a batch is long enough for the chunked path and no gradients are needed."""
    return num_tokens > LONG_TOKENS and not torch.is_grad_enabled()


def _chunks(t: int):
    for s in range(0, t, TOKEN_CHUNK):
        yield slice(s, min(t, s + TOKEN_CHUNK))


def layer_forward_chunked(layer: nn.Module, x_TD: torch.Tensor, cos_sin, groups: SeqGroups,
                          prefix: LayerPrefix | None = None, sink: list | None = None,
                          rows_R: torch.Tensor | None = None) -> torch.Tensor:
    """``layer(x_TD)`` of a ``DecoderLayer`` (not imported: decoder.py imports this module) with per-token work in
    chunks; updates the residual stream ``x_TD`` in place and returns it.

    The same ops in the same order as ``DecoderLayer.forward``, per chunk of rows; only the row blocking of the
    matrix products differs, so results equal the plain path to float rounding (checked in tests). ``prefix`` and
    ``sink`` as in ``Attention.forward``, ``rows_R`` as in ``layers.project`` (each chunk gets its own rows).
    """
    attn, t = layer.self_attn, x_TD.shape[0]
    cfg = attn.cfg
    cos, sin = cos_sin
    dtype = attn.attn_dtype or x_TD.dtype
    q = x_TD.new_empty(t, cfg.num_heads, cfg.head_dim, dtype=dtype)
    k = x_TD.new_empty(t, cfg.num_kv_heads, cfg.head_dim, dtype=dtype)
    v = x_TD.new_empty(t, cfg.num_kv_heads, cfg.head_dim, dtype=dtype)
    for c in _chunks(t):
        q[c], k[c], v[c] = attn.qkv(layer.input_layernorm(x_TD[c]), (cos[c], sin[c]), _rows_in(rows_R, c))
    if sink is not None:
        sink.append((k, v))
    o = attn.attend(q, k, v, groups, prefix)
    del q, k, v
    for c in _chunks(t):
        rows = _rows_in(rows_R, c)
        x_TD[c] = layer.finish(x_TD[c], attn.out(o[c], x_TD.dtype, rows), rows)
    return x_TD


def _rows_in(rows_R: torch.Tensor | None, c: slice) -> torch.Tensor | None:
    """The rows of ``rows_R`` inside chunk ``c``, counted from its start (None where there are none)."""
    if rows_R is None:
        return None
    rows = rows_R[(rows_R >= c.start) & (rows_R < c.stop)] - c.start
    return rows if rows.numel() else None


def norm_chunked(norm: RMSNorm, x_TD: torch.Tensor) -> torch.Tensor:
    """The final RMSNorm in chunks, in place (its fp32 temporaries would otherwise span all T tokens)."""
    for c in _chunks(x_TD.shape[0]):
        x_TD[c] = norm(x_TD[c])
    return x_TD
