"""Our lean decoder forward pass for ``gemma3_text`` and ``qwen3``, over packed sequences.

Parameter names match transformers' ``Gemma3TextModel`` / ``Qwen3Model`` state dicts (without a ``model.``
prefix), so checkpoints load without renaming and exports load back into transformers.

Shape legend: T = packed tokens, D = hidden size, B = sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from harrier.cancel import raise_if_cancelled
from harrier.models import long
from harrier.models.compiled import CompiledLayers, runs_tensor
from harrier.models.config import DecoderConfig
from harrier.models.layers import MLP, Attention, RMSNorm, rope_cos_sin
from harrier.packing import BatchPrefix, LayerPrefix, SeqGroups


@dataclass(frozen=True)
class ExactRows:
    """Which rows of a packed batch an int8 model's layers that keep a float copy (``Int8Linear.exact``) compute
    with it: each sequence's tokens at positions below ``first`` (BOS and the first tokens, which carry Gemma's
    massive activations: the rows per-token int8 rounds worst) and, with ``last``, its last row (the row last-token
    pooling reads). Inference only."""

    first: int = 0
    last: bool = False

    def words(self) -> str:
        """These rows in words, for ``info()``."""
        first = [f"positions 0-{self.first - 1}" if self.first > 1 else "position 0"] if self.first else []
        return " and ".join(first + (["the pooled rows"] if self.last else [])) or "no rows"

    def rows(self, groups: SeqGroups, spans: tuple[tuple[int, int], ...] | None = None,
             device: torch.device | str = "cpu", last: bool | None = None) -> torch.Tensor | None:
        """The rows, int64, sorted; None where there are none. ``spans``: each run's cached prefix (start, length),
        whose tokens come first (positions count from the prefix's start); ``last`` overrides ``self.last``. A
        single row is named twice, because dynamo specialises sizes 0 and 1 and a compiled layer would compile
        again for it."""
        last = self.last if last is None else last
        rows: list[int] = []
        for r, (start, n, length) in enumerate(groups.runs):
            head = min(length, max(0, self.first - (spans[r][1] if spans is not None else 0)))
            own = list(range(head)) + ([length - 1] if last and length > head else [])
            rows += [start + j * length + p for j in range(n) for p in own]
        if not rows:
            return None
        return torch.tensor(rows * 2 if len(rows) == 1 else rows, dtype=torch.int64, device=device)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: DecoderConfig, layer_type: str) -> None:
        super().__init__()
        self.layer_type = layer_type
        eps, off = cfg.rms_norm_eps, cfg.norm_offset
        self.self_attn = Attention(cfg, layer_type)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, eps, off)
        # Qwen3 names its pre-MLP norm ``post_attention_layernorm``; Gemma-3 has four norms ("sandwich").
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, eps, off)
        self.sandwich = cfg.sandwich_norms
        if self.sandwich:
            self.pre_feedforward_layernorm = RMSNorm(cfg.hidden_size, eps, off)
            self.post_feedforward_layernorm = RMSNorm(cfg.hidden_size, eps, off)

    def forward(self, x_TD: torch.Tensor, cos_sin, groups: SeqGroups, prefix: LayerPrefix | None = None,
                sink: list | None = None, rows_R: torch.Tensor | None = None) -> torch.Tensor:
        """``prefix``/``sink``: see ``Attention.forward`` (cached prefix keys/values in, this layer's k/v out);
        ``rows_R``: see ``layers.project``."""
        if long.use_long_path(x_TD.shape[0]):
            return long.layer_forward_chunked(self, x_TD, cos_sin, groups, prefix, sink, rows_R)
        attn_TD = self.self_attn(self.input_layernorm(x_TD), cos_sin, groups, prefix, sink, rows_R)
        return self.finish(x_TD, attn_TD, rows_R)

    def finish(self, x_TD: torch.Tensor, attn_TD: torch.Tensor, rows_R: torch.Tensor | None = None) -> torch.Tensor:
        """Everything after the attention output projection: residual adds, norms and the MLP (per-token work)."""
        if self.sandwich:
            x_TD = x_TD + self.post_attention_layernorm(attn_TD)
            return x_TD + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x_TD), rows_R))
        x_TD = x_TD + attn_TD
        return x_TD + self.mlp(self.post_attention_layernorm(x_TD), rows_R)


class Decoder(nn.Module):
    """Token ids in, final-normed hidden states out, for a packed batch of sequences."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.layers = nn.ModuleList(DecoderLayer(cfg, t) for t in cfg.layer_types)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg.norm_offset)
        self.gradient_checkpointing = False
        self.compiled: CompiledLayers | None = None  # set by ``compile_layers``; used for inference only
        self.int8_check: str | None = None  # an int8 model's load-time agreement check, in words (fastpath.py)
        # inference only: the rows the int8 layers that keep a float copy compute with it (set by ``fastpath``)
        self.exact_rows: ExactRows | None = None

    def compile_layers(self) -> CompiledLayers:
        """Run inference layers through ``torch.compile`` from now on (see ``compiled.py``); returns the wrapper
        (``.active`` is False where it fell back to eager, with a warning)."""
        self.compiled = CompiledLayers()
        return self.compiled

    def _embed(self, input_ids_T: torch.Tensor, position_ids_T: torch.Tensor):
        """Scaled token embeddings [T, D] and the rope tables of each layer kind."""
        x_TD = self.embed_tokens(input_ids_T)
        if self.cfg.embed_scale is not None:
            # transformers keeps the scale as a tensor cast to the weight dtype (bf16-rounded in bf16).
            x_TD = x_TD * torch.tensor(self.cfg.embed_scale, dtype=x_TD.dtype, device=x_TD.device)
        tables = {
            t: rope_cos_sin(self.cfg.rope[t], self.cfg.head_dim, position_ids_T, x_TD.dtype)
            for t in set(self.cfg.layer_types)
        }
        return x_TD, tables

    def forward(self, input_ids_T: torch.Tensor, position_ids_T: torch.Tensor, groups: SeqGroups,
                prefix: BatchPrefix | None = None) -> torch.Tensor:
        """``prefix``: cached keys/values of prefixes the sequences continue (inference only; ``position_ids_T``
        then start after each sequence's prefix)."""
        if prefix is not None and torch.is_grad_enabled():
            raise ValueError("a cached prefix is for inference only: gradients must flow through the prompt")
        x_TD, tables = self._embed(input_ids_T, position_ids_T)
        compiled = self.compiled if self.compiled is not None and self.compiled.active else None
        if compiled is not None and (torch.is_grad_enabled() or long.use_long_path(x_TD.shape[0])):
            compiled = None  # the op has no backward; very long batches take the chunked path
        runs = None if compiled is None else runs_tensor(groups, None if prefix is None else prefix.spans)
        rows_R = None
        if self.exact_rows is not None and not torch.is_grad_enabled():
            rows_R = self.exact_rows.rows(groups, None if prefix is None else prefix.spans, x_TD.device)
        for i, layer in enumerate(self.layers):
            raise_if_cancelled()  # the server stops a forward whose clients all left (harrier.cancel)
            cos_sin = tables[layer.layer_type]
            layer_prefix = None if prefix is None else prefix.layer(i)
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x_TD = checkpoint(layer, x_TD, cos_sin, groups, use_reentrant=False)
            elif compiled is not None:
                x_TD = compiled(layer, x_TD, *cos_sin, runs, layer_prefix, rows_R)
            else:
                x_TD = layer(x_TD, cos_sin, groups, layer_prefix, rows_R=rows_R)
        if long.use_long_path(x_TD.shape[0]):
            return long.norm_chunked(self.norm, x_TD)
        return self.norm(x_TD)

    def prefix_kv(self, input_ids_T: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """Keys and values ([L, K, E] each, after k-norm and rope) of one sequence's L tokens at positions 0..L-1,
        in every layer: what a text that starts with these tokens sees of them (causal attention). Eager, run once
        per distinct prefix."""
        length = input_ids_T.shape[0]
        x_TD, tables = self._embed(input_ids_T, torch.arange(length, device=input_ids_T.device))
        groups = SeqGroups(((0, 1, length),))
        # the prefix's first rows as the batch's own would be (its last row is not a sequence's last)
        rows_R = None if self.exact_rows is None else self.exact_rows.rows(groups, None, x_TD.device, last=False)
        out = []
        for layer in self.layers:
            sink: list = []
            x_TD = layer(x_TD, tables[layer.layer_type], groups, None, sink, rows_R)
            out.append(sink[0])
        return tuple(out)
