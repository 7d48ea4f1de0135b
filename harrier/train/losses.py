"""Training losses as pure tensor functions.

Shapes: ``q_BD`` queries (anchors), ``d_ND`` candidate documents (every positive and hard negative in the batch,
possibly gathered from all ranks), ``pos_B`` the index in ``d_ND`` of each query's positive. Similarities are
cosines (inputs are L2-normalised here, which is a no-op for already-normalised embeddings).

Cross-device negatives live in :mod:`harrier.train.distributed`; these functions see whatever rows they are given.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def cosine_matrix(a_AD: Tensor, b_CD: Tensor) -> Tensor:
    """Cosine similarity of every row of ``a`` with every row of ``b`` (computed in fp32)."""
    return F.normalize(a_AD.float(), dim=-1) @ F.normalize(b_CD.float(), dim=-1).T


# Cosines closer than this count as equal: the same text embedded in another row, micro-batch or rank differs from
# its twin by float rounding (~1e-6), and without a tolerance whether it is masked would depend on that rounding,
# so one process and several would train differently.
TIE = 1e-4


def false_negative_mask(sim_AC: Tensor, target_A: Tensor, margin: float) -> Tensor:
    """True where a non-target candidate scores above ``sim(anchor, target) - margin``: a likely false negative.

    ``margin = 0`` masks negatives that tie with or beat the positive (a duplicate of the positive text is always
    masked; ties are judged within :data:`TIE`); ``margin = -0.1`` is Qwen3-Embedding's rule (mask above
    positive + 0.1). The target itself is never masked. Computed without gradient.
    """
    with torch.no_grad():
        pos_A1 = sim_AC.gather(1, target_A[:, None])
        mask = sim_AC > pos_A1 - margin - TIE
        mask[torch.arange(len(target_A), device=sim_AC.device), target_A] = False
    return mask


def contrastive_ce(
    anchor_AD: Tensor,
    cand_CD: Tensor,
    target_A: Tensor,
    *,
    temperature: float,
    fn_margin: float | None = None,
    exclude_AC: Tensor | None = None,
) -> Tensor:
    """Mean cross-entropy of each anchor picking its target among all candidates (one InfoNCE direction).

    Args:
        anchor_AD: anchors.
        cand_CD: candidates; ``target_A[i]`` indexes anchor ``i``'s positive.
        temperature: logits are ``cosine / temperature``.
        fn_margin: if set, mask likely false negatives (see :func:`false_negative_mask`).
        exclude_AC: extra boolean mask of candidates to drop (e.g. an anchor's own copy).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    sim_AC = cosine_matrix(anchor_AD, cand_CD)
    mask = torch.zeros_like(sim_AC, dtype=torch.bool) if exclude_AC is None else exclude_AC.clone()
    if fn_margin is not None:
        mask |= false_negative_mask(sim_AC, target_A, fn_margin)
    logits_AC = (sim_AC / temperature).masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits_AC, target_A)


def info_nce(
    q_BD: Tensor,
    d_ND: Tensor,
    pos_B: Tensor,
    *,
    temperature: float = 0.05,
    symmetric: bool = False,
    fn_margin: float | None = None,
    q_all_MD: Tensor | None = None,
    q_offset: int = 0,
) -> Tensor:
    """InfoNCE with in-batch and hard negatives; optional symmetric (positive -> query) term.

    Each query scores every row of ``d_ND`` (its positive, the other queries' positives, every hard negative).
    The symmetric term has each query's positive pick its query among ``q_all_MD`` (all queries, default
    ``q_BD``); ``q_offset`` is the index of ``q_BD[0]`` in ``q_all_MD``. With ``symmetric`` the two directions are
    averaged.
    """
    loss = contrastive_ce(q_BD, d_ND, pos_B, temperature=temperature, fn_margin=fn_margin)
    if not symmetric:
        return loss
    q_all_MD = q_BD if q_all_MD is None else q_all_MD
    target_B = torch.arange(len(q_BD), device=q_BD.device) + q_offset
    back = contrastive_ce(d_ND[pos_B], q_all_MD, target_B, temperature=temperature, fn_margin=fn_margin)
    return 0.5 * (loss + back)


def kl_distill(
    student_AC: Tensor,
    teacher_AC: Tensor,
    *,
    student_temperature: float = 0.05,
    teacher_temperature: float = 0.05,
    valid_AC: Tensor | None = None,
) -> Tensor:
    """KL(teacher || student) between similarity distributions over candidates, mean over anchors.

    Both inputs are similarity scores (cosines or precomputed teacher scores), divided by their temperatures
    before the softmax. ``valid_AC`` marks which candidates take part (e.g. only those the teacher scored);
    anchors need at least one valid candidate.
    """
    s_AC = student_AC.float() / student_temperature
    t_AC = teacher_AC.float() / teacher_temperature
    if valid_AC is not None:
        if not bool(valid_AC.any(dim=1).all()):
            raise ValueError("every anchor needs at least one valid candidate")
        s_AC = s_AC.masked_fill(~valid_AC, float("-inf"))
        t_AC = t_AC.masked_fill(~valid_AC, float("-inf"))
    log_p_s = F.log_softmax(s_AC, dim=-1)
    log_p_t = F.log_softmax(t_AC, dim=-1)
    p_t = log_p_t.exp()
    # Masked entries have p_t = 0: define 0 * (-inf - -inf) as 0.
    terms = torch.where(p_t > 0, p_t * (log_p_t - log_p_s), torch.zeros_like(p_t))
    return terms.sum(dim=-1).mean()


def embed_align(student_BD: Tensor, teacher_BE: Tensor, projection: nn.Module | None = None) -> Tensor:
    """Mean ``1 - cosine(projection(student), teacher)``; the projection is learned when dimensions differ."""
    x_BE = student_BD if projection is None else projection(student_BD)
    if x_BE.shape[-1] != teacher_BE.shape[-1]:
        raise ValueError(f"student dim {x_BE.shape[-1]} != teacher dim {teacher_BE.shape[-1]}: give a projection")
    return (1.0 - F.cosine_similarity(x_BE.float(), teacher_BE.float(), dim=-1)).mean()


def make_projection(student_dim: int, teacher_dim: int) -> nn.Module:
    """The learned student -> teacher map for :func:`embed_align` (identity-initialised when dims agree)."""
    proj = nn.Linear(student_dim, teacher_dim, bias=False)
    with torch.no_grad():
        if student_dim == teacher_dim:
            proj.weight.copy_(torch.eye(student_dim))
        else:
            nn.init.orthogonal_(proj.weight)
    return proj


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    """Weights and knobs of the combined objective (each weight 0 switches its term off)."""

    temperature: float = 0.05
    symmetric: bool = False
    fn_margin: float | None = None
    contrastive_weight: float = 1.0
    kl_weight: float = 0.0
    align_weight: float = 0.0
    student_temperature: float = 0.05
    teacher_temperature: float = 0.05

    def __post_init__(self) -> None:
        if self.temperature <= 0 or self.student_temperature <= 0 or self.teacher_temperature <= 0:
            raise ValueError("temperatures must be > 0")
        if min(self.contrastive_weight, self.kl_weight, self.align_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        if self.contrastive_weight == self.kl_weight == self.align_weight == 0:
            raise ValueError("all loss weights are 0")
