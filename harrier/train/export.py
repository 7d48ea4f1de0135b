"""Export the trained student in the harrier Sentence-Transformers layout, with the resolved training config."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from torch import nn

from harrier.heads import Head
from harrier.loading import LoadedModel
from harrier.model import EmbeddingModel
from harrier.saving import save_pretrained
from harrier.train.config import TrainConfig, to_dict
from harrier.train.distributed import DistInfo, barrier, is_distributed

log = logging.getLogger(__name__)
CONFIG_FILE = "harrier_training.json"


def declared_max_length(student: LoadedModel, cfg: TrainConfig) -> int:
    """The student's inference limit: ``model.export_max_length``, else the init model's own limit (a decoder
    LM's context, an embedder's max_seq_length), not ``model.max_length`` (where training texts are cut)."""
    return cfg.model.export_max_length or student.card.max_length


@contextlib.contextmanager
def inference_length(student: LoadedModel, cfg: TrainConfig) -> Iterator[None]:
    """Tokenize at the declared limit inside the block (export, periodic evaluation), then restore."""
    train_limit = student.tokenizer.max_length
    student.tokenizer.set_max_length(declared_max_length(student, cfg))
    try:
        yield
    finally:
        student.tokenizer.set_max_length(train_limit)


def export(student: LoadedModel, model: nn.Module, path: Path, cfg: TrainConfig, info: DistInfo) -> Path:
    """Write ``path`` (rank 0); under FSDP the shards are gathered first (collective: every rank calls)."""
    full = None
    if is_distributed():
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if info.is_main:
        plain = student.model
        if full is not None:  # the sharded module cannot be saved as is: a plain fp32 copy on the CPU holds the state
            card = student.card
            plain = EmbeddingModel(card.decoder, Head(card.pooling, list(card.dense), card.normalize))
            plain.load_state_dict(full)
        plain.eval()
        save_pretrained(path, model=plain, card=student.card, max_length=declared_max_length(student, cfg),
                        dtype=student.dtype, extra_files={CONFIG_FILE: to_dict(cfg)})
        log.info("exported %s (max_seq_length %d)", path, declared_max_length(student, cfg))
    barrier()
    return path
