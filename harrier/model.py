"""The embedding model: our decoder backbone plus the Sentence-Transformers head (pooling, Dense, Normalize)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from harrier.heads import Head
from harrier.models.config import DecoderConfig
from harrier.models.decoder import Decoder
from harrier.packing import PackedBatch


class EmbeddingModel(nn.Module):
    """``forward(batch) -> emb_BD``; differentiable, so training reuses it as is."""

    def __init__(self, cfg: DecoderConfig, head: Head) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = Decoder(cfg)
        self.head = head

    @property
    def dim(self) -> int:
        if len(self.head.dense):
            return self.head.dense[-1].cfg.out_features
        return self.cfg.hidden_size

    def forward(self, batch: PackedBatch) -> torch.Tensor:
        hidden_TD = self.backbone(batch.input_ids_T, batch.position_ids_T, batch.groups, batch.prefix)
        return self.head(hidden_TD, batch.cu_seqlens, batch.prompt_len_B)

    def prefix_kv(self, ids: Sequence[int],
                  device: torch.device | str) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """Per-layer keys and values of a token prefix (see ``Decoder.prefix_kv``), for ``prefix_cache``."""
        return self.backbone.prefix_kv(torch.tensor(list(ids), dtype=torch.int64, device=device))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
