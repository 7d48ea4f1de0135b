"""The combined training objective on one step's embeddings: contrastive + KL distillation + alignment.

Inputs are this rank's rows; documents (and for the symmetric term, queries) are gathered from every rank with
:func:`harrier.train.distributed.gather_rows`, so negatives are shared across devices with correct gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from harrier.train.distributed import gather_rows
from harrier.train.losses import LossConfig, contrastive_ce, cosine_matrix, embed_align, info_nce, kl_distill


@dataclass
class StepEmbeddings:
    """One rank's embeddings for a step.

    ``d_ND`` holds every positive and hard negative of the local records; ``pos_B`` indexes each query's positive.
    Text-only distillation (plain texts, no pairs) passes an empty ``d_ND``: the texts are then each other's
    candidates. ``group_BG``/``scores_BG`` carry precomputed teacher scores over each query's own documents
    (``group_BG`` indexes ``d_ND``, ``-1`` pads).
    """

    q_BD: Tensor
    d_ND: Tensor
    pos_B: Tensor
    teacher_q_BE: Tensor | None = None
    teacher_d_NE: Tensor | None = None
    group_BG: Tensor | None = None
    scores_BG: Tensor | None = None

    @property
    def text_only(self) -> bool:
        return self.d_ND.shape[0] == 0


def _contrastive(e: StepEmbeddings, cfg: LossConfig) -> Tensor:
    d_all, d_off = gather_rows(e.d_ND)
    q_all, q_off = gather_rows(e.q_BD) if cfg.symmetric else (None, 0)
    return info_nce(e.q_BD, d_all, e.pos_B + d_off, temperature=cfg.temperature, symmetric=cfg.symmetric,
                    fn_margin=cfg.fn_margin, q_all_MD=q_all, q_offset=q_off)


def _kl_online(e: StepEmbeddings, cfg: LossConfig) -> Tensor:
    """KL over the whole (gathered) candidate set, teacher similarities computed from teacher embeddings."""
    assert e.teacher_q_BE is not None
    if e.text_only:
        cand, off = gather_rows(e.q_BD)
        t_cand, _ = gather_rows(e.teacher_q_BE)
        rows = torch.arange(len(e.q_BD), device=e.q_BD.device)
        valid = torch.ones(len(e.q_BD), len(cand), dtype=torch.bool, device=e.q_BD.device)
        valid[rows, rows + off] = False
        if valid.shape[1] < 2:
            raise ValueError("text-only distillation needs at least 2 texts per global batch")
    else:
        if e.teacher_d_NE is None:
            raise ValueError("online KL distillation needs teacher document embeddings")
        cand, _ = gather_rows(e.d_ND)
        t_cand, _ = gather_rows(e.teacher_d_NE)
        valid = None
    return kl_distill(cosine_matrix(e.q_BD, cand), cosine_matrix(e.teacher_q_BE, t_cand),
                      student_temperature=cfg.student_temperature, teacher_temperature=cfg.teacher_temperature,
                      valid_AC=valid)


def _kl_precomputed(e: StepEmbeddings, cfg: LossConfig) -> Tensor:
    """KL over each query's own scored documents (teacher scores stored in the records)."""
    assert e.group_BG is not None and e.scores_BG is not None
    valid = e.group_BG >= 0
    docs_BGD = e.d_ND[e.group_BG.clamp(min=0)]
    student = torch.nn.functional.cosine_similarity(e.q_BD[:, None, :].float(), docs_BGD.float(), dim=-1)
    return kl_distill(student, e.scores_BG, student_temperature=cfg.student_temperature,
                      teacher_temperature=cfg.teacher_temperature, valid_AC=valid)


def compute_loss(
    e: StepEmbeddings, cfg: LossConfig, projection: nn.Module | None = None
) -> tuple[Tensor, dict[str, float]]:
    """Weighted sum of the enabled terms, and each term's value (for logging)."""
    terms: dict[str, Tensor] = {}
    if cfg.contrastive_weight > 0 and not e.text_only:
        terms["contrastive"] = cfg.contrastive_weight * _contrastive(e, cfg)
    if cfg.kl_weight > 0:
        if e.teacher_q_BE is not None:
            terms["kl"] = cfg.kl_weight * _kl_online(e, cfg)
        elif e.scores_BG is not None:
            terms["kl"] = cfg.kl_weight * _kl_precomputed(e, cfg)
        else:
            raise ValueError("kl_weight > 0 needs a teacher model or teacher_scores in the records")
    if cfg.align_weight > 0:
        if e.teacher_q_BE is None:
            raise ValueError("align_weight > 0 needs a teacher model")
        student = e.q_BD if e.text_only else torch.cat([e.q_BD, e.d_ND])
        teacher = e.teacher_q_BE if e.text_only else torch.cat([e.teacher_q_BE, e.teacher_d_NE])
        terms["align"] = cfg.align_weight * embed_align(student, teacher, projection)
    if not terms:
        raise ValueError("no loss term applies to this batch (text-only data needs kl_weight or align_weight)")
    total = sum(terms.values())
    assert isinstance(total, Tensor)
    return total, {k: float(v.detach()) for k, v in terms.items()}


__all__ = ["StepEmbeddings", "compute_loss", "contrastive_ce"]
