"""Opt-in fast inference modes, applied to a built model: ``compile`` (the decoder layers through torch.compile,
``models/compiled.py``) and ``int8`` (int8 linear layers with per-token activations, ``quantize.py``).

Neither is on by default: both change numerics (to float rounding for ``compile``; within the stated tolerance
for ``int8``), and the default fp32 / bf16 paths stay bit-identical. ``docs/cpu-modes.md`` has the measurements
and when compiling pays off.
"""

from __future__ import annotations

import logging

import torch

from harrier.model import EmbeddingModel
from harrier.quantize import DEFAULT_KEEP_LAST, quantize_decoder

log = logging.getLogger(__name__)
INT8 = "int8"  # the dtype name that selects int8 linear layers; everything else then computes in float32


def split_dtype(dtype: str | torch.dtype) -> tuple[str | torch.dtype, bool]:
    """(compute dtype to load the model in, whether to quantise): ``"int8"`` loads float32, then quantises."""
    if isinstance(dtype, str) and dtype == INT8:
        return "float32", True
    return dtype, False


def apply_fast_modes(model: EmbeddingModel, device: torch.device, *, int8: bool = False,
                     compile: bool = False, keep_last: int = DEFAULT_KEEP_LAST) -> None:
    """Quantise (``int8``) and/or compile (``compile``) a built inference model in place."""
    if int8:
        if device.type != "cpu":
            raise ValueError(f"dtype 'int8' runs on CPU only (int8 dot-product units); got device {device}. "
                             "Use bfloat16 on CUDA")
        n = quantize_decoder(model.backbone, keep_last=keep_last)
        log.info("int8: %d linear layers quantised (down_proj, the last %d decoder layers, embedding and heads kept "
                 "in float32)", n, keep_last)
    if compile:
        model.backbone.compile_layers()
