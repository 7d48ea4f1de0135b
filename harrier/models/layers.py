"""Shared decoder pieces over packed (varlen) token streams: RMSNorm, rotary embeddings, attention, MLP.

Shape legend: T = tokens of all sequences concatenated (no padding), D = hidden size, H = query heads,
K = key/value heads, E = head dim, F = intermediate size, B = sequences.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from harrier.models.config import DecoderConfig, RopeConfig
from harrier.packing import LayerPrefix, SeqGroups
from harrier.quantize import with_rows


class RMSNorm(nn.Module):
    """RMSNorm computed in fp32. ``offset=1`` gives Gemma's ``x * (1 + w)``, cast after the product; ``offset=0``
    gives Qwen3's ``w * x.to(dtype)``, cast before it. The order matters for bit parity in bf16."""

    def __init__(self, dim: int, eps: float, offset: float) -> None:
        super().__init__()
        self.eps = eps
        self.offset = offset
        self.weight = nn.Parameter(torch.zeros(dim) if offset else torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.offset:
            return (normed * (self.offset + self.weight.float())).type_as(x)
        return self.weight * normed.to(x.dtype)


def rope_cos_sin(rope: RopeConfig, head_dim: int, positions_T: torch.Tensor, dtype: torch.dtype):
    """cos/sin tables [T, 1, E] for the given positions, computed in fp32 and cast to ``dtype``."""
    inv_freq = 1.0 / (rope.theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=positions_T.device)
                                     .float() / head_dim))
    inv_freq = inv_freq / rope.factor
    freqs = positions_T[:, None].float() * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype)[:, None, :], emb.sin().to(dtype)[:, None, :]


def apply_rope(x_THE: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x_THE.shape[-1] // 2
    rotated = torch.cat((-x_THE[..., half:], x_THE[..., :half]), dim=-1)
    return x_THE * cos + rotated * sin


WINDOW_BLOCK = 2048  # query block size for bidirectional sliding-window attention on long sequences (memory)
# causal: small blocks, because SDPA computes every score a mask lets through and the masked ones too (no causal
# skipping with a mask), and a block's keys end at its last query, so small blocks waste little above the diagonal.
# Measured (the 270m shape's sliding layer on a packed batch of lengths up to 894, window 512, 2 threads, bf16 and
# fp32 alike): blocks of 2048 63 ms, 512 55 ms, 256 48 ms, 128 46 ms; bidirectional gains nothing (70-73 ms)
CAUSAL_WINDOW_BLOCK = 128


def _window_mask(q_idx: torch.Tensor, k_idx: torch.Tensor, window: int, causal: bool) -> torch.Tensor:
    """Boolean [Lq, Lk] mask (True = attend) for a sliding window of ``window`` tokens, as transformers builds it:
    causal keeps ``0 <= q - k < window``; bidirectional keeps ``|q - k| < window``."""
    dist = q_idx[:, None] - k_idx[None, :]
    if causal:
        return (dist >= 0) & (dist < window)
    return dist.abs() < window


def _windowed_sdpa(q, k, v, *, causal: bool, window: int, scale: float, gqa: bool) -> torch.Tensor:
    """Sliding-window attention over [N, H, L, E] in query blocks, so memory grows with L * window, not L^2 (and,
    causal, little work is wasted: ``CAUSAL_WINDOW_BLOCK``)."""
    length = q.shape[2]
    idx = torch.arange(length, device=q.device)
    out = []
    block = CAUSAL_WINDOW_BLOCK if causal else WINDOW_BLOCK
    for qs in range(0, length, block):
        qe = min(length, qs + block)
        ks, ke = max(0, qs - window + 1), qe if causal else min(length, qe + window - 1)
        mask = _window_mask(idx[qs:qe], idx[ks:ke], window, causal)
        out.append(F.scaled_dot_product_attention(q[:, :, qs:qe], k[:, :, ks:ke], v[:, :, ks:ke], attn_mask=mask,
                                                  scale=scale, enable_gqa=gqa))
    return out[0] if len(out) == 1 else torch.cat(out, dim=2)


def _with_prefix(q, k, v, prefix: LayerPrefix, run: int):
    """A run's [N, H, L, E] q and [N, K, L, E] k, v continued from its cached prefix of P tokens: the prefix keys and
    values in front, and P zero query rows in front of q, so the run is an ordinary [N, *, P + L, E] attention whose
    causal (and sliding-window) mask is the usual square one at absolute positions; the zero rows' outputs are
    dropped. Exact: a query row's result does not depend on the other rows. Returns (q, k, v, P)."""
    start, p = prefix.spans[run]
    if not p:
        return q, k, v, 0
    n = q.shape[0]
    pk, pv = (x[start:start + p].transpose(0, 1).unsqueeze(0).expand(n, -1, -1, -1)
              for x in (prefix.k_PKE, prefix.v_PKE))
    return (torch.cat((q.new_zeros(n, q.shape[1], p, q.shape[3]), q), dim=2), torch.cat((pk, k), dim=2),
            torch.cat((pv, v), dim=2), p)


def varlen_attention(q_THE, k_TKE, v_TKE, groups: SeqGroups, *, causal: bool, window: int | None, scale: float,
                     prefix: LayerPrefix | None = None):
    """Attention within each packed sequence only, no pad tokens computed. Returns [T, H, E].

    ``prefix`` (causal models only): each run also attends to its cached prefix keys and values (see
    ``_with_prefix``); the sequences' own tokens sit at positions after it.
    """
    out = torch.empty_like(q_THE)
    heads, kv_heads = q_THE.shape[1], k_TKE.shape[1]
    gqa = heads != kv_heads
    for r, (start, n, length) in enumerate(groups.runs):
        end = start + n * length
        q, k, v = (x[start:end].view(n, length, x.shape[1], x.shape[2]).transpose(1, 2)
                   for x in (q_THE, k_TKE, v_TKE))
        p = 0
        if prefix is not None:
            q, k, v, p = _with_prefix(q, k, v, prefix, r)
        total = p + length
        if window is not None and total > window:
            o = _windowed_sdpa(q, k, v, causal=causal, window=window, scale=scale, gqa=gqa)
        else:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=causal and total > 1, scale=scale, enable_gqa=gqa)
        if p:
            o = o[:, :, p:]
        out[start:end] = o.transpose(1, 2).reshape(n * length, heads, -1)
    return out


def project(linear: nn.Module, x: torch.Tensor, rows_R: torch.Tensor | None) -> torch.Tensor:
    """``linear(x)``; an int8 layer that keeps a float copy (``Int8Linear.exact``) computes the rows ``rows_R`` names
    (int64 indices of ``x``'s rows, see ``Decoder.exact_rows``) with it."""
    if rows_R is not None and getattr(linear, "exact", None) is not None:
        return linear(x, rows_R)
    return linear(x)


def project_apart(linear: nn.Module, x: torch.Tensor, rows_R: torch.Tensor | None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(linear(x), the rows rows_R names computed with linear's float copy)``, the second None where there are no
    rows or no copy: for a caller that applies its row-wise steps to both and puts the rows in afterwards
    (``with_rows``), where the tensor is written out anyway (the MLP's gated product, attention's q/k/v), so the
    product itself fuses with those steps under ``torch.compile``."""
    if rows_R is None or getattr(linear, "exact", None) is None:
        return linear(x), None
    return linear(x), linear.exact_rows(x, rows_R)


class Attention(nn.Module):
    def __init__(self, cfg: DecoderConfig, layer_type: str) -> None:
        super().__init__()
        self.cfg = cfg
        self.layer_type = layer_type
        self.window = cfg.sliding_window if layer_type == "sliding_attention" else None
        d, e, b = cfg.hidden_size, cfg.head_dim, cfg.attention_bias
        self.q_proj = nn.Linear(d, cfg.num_heads * e, bias=b)
        self.k_proj = nn.Linear(d, cfg.num_kv_heads * e, bias=b)
        self.v_proj = nn.Linear(d, cfg.num_kv_heads * e, bias=b)
        self.o_proj = nn.Linear(cfg.num_heads * e, d, bias=b)
        self.q_norm = RMSNorm(e, cfg.rms_norm_eps, cfg.norm_offset)
        self.k_norm = RMSNorm(e, cfg.rms_norm_eps, cfg.norm_offset)
        # one projection for q, k and v together ([H*E + 2*K*E] outputs), set by int8 quantisation (quantize.py)
        # so the shared input is quantised once; float models keep the three (transformers' layout, bit parity)
        self.register_module("qkv_proj", None)
        # the dtype q/k/v are cast to for attention itself (scores, softmax, weighted values); None: the model's.
        # Set by int8 quantisation where bf16 products are the faster (quantize.py); its output is cast back
        self.attn_dtype: torch.dtype | None = None

    def qkv(self, x_TD: torch.Tensor, cos_sin, rows_R: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-token part before attention: projections, q/k norms, rope. Returns q [T, H, E], k and v [T, K, E].
        ``rows_R``: see ``project``."""
        cfg = self.cfg
        if self.qkv_proj is not None:
            qkv_TN, rows_RN = project_apart(self.qkv_proj, x_TD, rows_R)
            nq, nkv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
            q_TN, k_TN, v_TN = qkv_TN.split((nq, nkv, nkv), dim=-1)
        else:
            rows_RN = None
            q_TN, k_TN, v_TN = (project(p, x_TD, rows_R) for p in (self.q_proj, self.k_proj, self.v_proj))
        q, k, v = self._heads(q_TN, k_TN, v_TN, cos_sin)
        if rows_RN is None:
            return q, k, v
        cos, sin = cos_sin
        named = self._heads(*rows_RN.split((nq, nkv, nkv), dim=-1), (cos[rows_R], sin[rows_R]))
        return tuple(with_rows(bulk, rows_R, part) for bulk, part in zip((q, k, v), named, strict=True))

    def _heads(self, q_TN: torch.Tensor, k_TN: torch.Tensor, v_TN: torch.Tensor, cos_sin
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The row-wise steps after the projections: heads, q/k norms, rope, attention's dtype."""
        cfg, t = self.cfg, q_TN.shape[0]
        q = self.q_norm(q_TN.reshape(t, cfg.num_heads, cfg.head_dim))
        k = self.k_norm(k_TN.reshape(t, cfg.num_kv_heads, cfg.head_dim))
        v = v_TN.reshape(t, cfg.num_kv_heads, cfg.head_dim)
        cos, sin = cos_sin
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.attn_dtype is not None:
            return q.to(self.attn_dtype), k.to(self.attn_dtype), v.to(self.attn_dtype)
        return q, k, v

    def out(self, o_THE: torch.Tensor, dtype: torch.dtype, rows_R: torch.Tensor | None = None) -> torch.Tensor:
        """The output projection of attention's [T, H, E] result, back in the layer's ``dtype``: [T, D]."""
        return project(self.o_proj, o_THE.reshape(o_THE.shape[0], -1).to(dtype), rows_R)

    def attend(self, q_THE, k_TKE, v_TKE, groups: SeqGroups, prefix: LayerPrefix | None = None) -> torch.Tensor:
        cfg = self.cfg
        return varlen_attention(q_THE, k_TKE, v_TKE, groups, causal=cfg.causal, window=self.window,
                                scale=cfg.attn_scale, prefix=prefix)

    def forward(self, x_TD: torch.Tensor, cos_sin, groups: SeqGroups, prefix: LayerPrefix | None = None,
                sink: list | None = None, rows_R: torch.Tensor | None = None) -> torch.Tensor:
        """``prefix``: cached keys/values the sequences continue; ``sink``: a list that receives this layer's
        (k [T, K, E], v [T, K, E]), which is how a prefix's keys and values are captured; ``rows_R``: see
        ``project``."""
        q, k, v = self.qkv(x_TD, cos_sin, rows_R)
        if sink is not None:  # own copies: with fused q/k/v, v is a view that would keep the whole [T, q+k+v] output
            sink.append((k.contiguous(), v.contiguous()))
        o = self.attend(q, k, v, groups, prefix)
        return self.out(o, x_TD.dtype, rows_R)


class MLP(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)
        self.tanh = cfg.activation == "gelu_tanh"
        self.register_module("gate_up_proj", None)  # gate and up in one projection (int8 only, as qkv_proj)

    def forward(self, x_TD: torch.Tensor, rows_R: torch.Tensor | None = None) -> torch.Tensor:
        """``rows_R``: see ``project``."""
        if self.gate_up_proj is not None:
            gate_up_TN, rows_RN = project_apart(self.gate_up_proj, x_TD, rows_R)
            gate, up = gate_up_TN.chunk(2, dim=-1)
            if rows_RN is not None:  # gate and up apart: each blended tensor has one reader, so neither is written out
                gate_RF, up_RF = rows_RN.chunk(2, dim=-1)
                gate, up = with_rows(gate, rows_R, gate_RF), with_rows(up, rows_R, up_RF)
            h_TF = self._gated(gate, up)
        else:
            h_TF = self._gated(project(self.gate_proj, x_TD, rows_R), project(self.up_proj, x_TD, rows_R))
        return project(self.down_proj, h_TF, rows_R)

    def _gated(self, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        if not self.tanh:
            return F.silu(gate) * up
        if torch.compiler.is_compiling():
            # the same function: 0.5 x (1 + tanh(u)) = x sigmoid(2u), and inductor's exp costs less than its tanh
            # (measured: the int8 dequantise + GELU + product kernel of the 270m shape 13.9 -> 10.0 ms); eager
            # keeps ATen's GELU (bit parity with transformers)
            return gate * torch.sigmoid(GELU_TANH_2C * (gate + 0.044715 * gate * gate * gate)) * up
        return F.gelu(gate, approximate="tanh") * up


GELU_TANH_2C = 2 * math.sqrt(2 / math.pi)  # tanh GELU's u = sqrt(2/pi) (x + 0.044715 x^3), doubled for the sigmoid
