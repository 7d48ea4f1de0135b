"""Each loss against a naive per-row reference written with Python loops."""

from __future__ import annotations

import math

import pytest
import torch

from harrier.train.losses import (
    TIE,
    LossConfig,
    embed_align,
    false_negative_mask,
    info_nce,
    kl_distill,
    make_projection,
)


def _cos(a, b):
    return float(a @ b / (a.norm() * b.norm()))


def _ref_direction(anchors, cands, targets, temperature, fn_margin=None):
    total = 0.0
    for i, a in enumerate(anchors):
        sims = [_cos(a, c) for c in cands]
        pos = sims[targets[i]]
        keep = [j for j, s in enumerate(sims)
                if j == targets[i] or fn_margin is None or not s > pos - fn_margin - TIE]
        denom = sum(math.exp(sims[j] / temperature) for j in keep)
        total += -(pos / temperature - math.log(denom))
    return total / len(anchors)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(4, 8, generator=g, dtype=torch.float64)
    d = torch.randn(10, 8, generator=g, dtype=torch.float64)  # 4 positives + 6 hard negatives
    pos = torch.tensor([0, 1, 2, 3])
    return q, d, pos


@pytest.mark.parametrize("temperature", [0.05, 1.0])
def test_info_nce_matches_reference(batch, temperature):
    q, d, pos = batch
    got = float(info_nce(q, d, pos, temperature=temperature))
    assert got == pytest.approx(_ref_direction(q, d, pos.tolist(), temperature), rel=1e-5)


def test_info_nce_symmetric_averages_both_directions(batch):
    q, d, pos = batch
    got = float(info_nce(q, d, pos, temperature=0.1, symmetric=True))
    forward = _ref_direction(q, d, pos.tolist(), 0.1)
    backward = _ref_direction(d[pos], q, list(range(4)), 0.1)
    assert got == pytest.approx(0.5 * (forward + backward), rel=1e-5)


@pytest.mark.parametrize("margin", [0.0, 0.1, -0.1])
def test_false_negative_masking_matches_reference(batch, margin):
    q, d, pos = batch
    d = d.clone()
    d[5] = q[0] * 3  # a planted false negative for query 0: cosine 1 > its positive
    got = float(info_nce(q, d, pos, temperature=0.05, fn_margin=margin))
    assert got == pytest.approx(_ref_direction(q, d, pos.tolist(), 0.05, margin), rel=1e-5)
    unmasked = float(info_nce(q, d, pos, temperature=0.05))
    assert got < unmasked


def test_false_negative_mask_never_masks_target():
    sim = torch.tensor([[0.2, 0.9, 0.5], [0.1, 0.0, 0.3]])
    mask = false_negative_mask(sim, torch.tensor([0, 1]), margin=0.0)
    assert mask.tolist() == [[False, True, True], [True, False, True]]


@pytest.mark.parametrize("rounding", [-1e-6, 0.0, 1e-6])
def test_duplicate_of_the_positive_is_masked_whatever_the_rounding(rounding):
    """The positive's text again among the candidates (another query's positive or negative, maybe on another rank)
    scores the positive's cosine up to float rounding; margin 0 masks it either way, so 1 and N processes agree."""
    sim = torch.tensor([[0.6, 0.2, 0.6 + rounding]], dtype=torch.float64)
    assert false_negative_mask(sim, torch.tensor([0]), margin=0.0).tolist() == [[False, False, True]]
    assert not false_negative_mask(sim, torch.tensor([0]), margin=-0.1).any()


def test_kl_distill_matches_reference():
    g = torch.Generator().manual_seed(1)
    s = torch.rand(3, 5, generator=g, dtype=torch.float64)
    t = torch.rand(3, 5, generator=g, dtype=torch.float64)
    got = float(kl_distill(s, t, student_temperature=0.05, teacher_temperature=0.1))
    ref = 0.0
    for i in range(3):
        zs = sum(math.exp(x / 0.05) for x in s[i].tolist())
        zt = sum(math.exp(x / 0.1) for x in t[i].tolist())
        for j in range(5):
            p = math.exp(t[i, j] / 0.1) / zt
            ps = math.exp(s[i, j] / 0.05) / zs
            ref += p * math.log(p / ps)
    assert got == pytest.approx(ref / 3, rel=1e-5)
    assert float(kl_distill(t, t)) == pytest.approx(0.0, abs=1e-6)


def test_kl_distill_mask_equals_dropping_columns():
    g = torch.Generator().manual_seed(2)
    s, t = torch.rand(2, 4, generator=g), torch.rand(2, 4, generator=g)
    valid = torch.tensor([[True, True, False, True], [True, True, False, True]])
    masked = kl_distill(s, t, valid_AC=valid)
    dropped = kl_distill(s[:, [0, 1, 3]], t[:, [0, 1, 3]])
    assert float(masked) == pytest.approx(float(dropped), rel=1e-6)
    with pytest.raises(ValueError):
        kl_distill(s, t, valid_AC=torch.zeros(2, 4, dtype=torch.bool))


def test_embed_align_reference_and_projection_learns():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(6, 4, generator=g), torch.randn(6, 7, generator=g)
    proj = make_projection(4, 7)
    ref = sum(1 - _cos(proj(s)[i].detach(), t[i]) for i in range(6)) / 6
    assert float(embed_align(s, t, proj).detach()) == pytest.approx(ref, rel=1e-5)
    with pytest.raises(ValueError):
        embed_align(s, t)
    eye = make_projection(4, 4)
    assert torch.equal(eye(s), s)
    opt = torch.optim.SGD(proj.parameters(), lr=0.5)
    before = float(embed_align(s, t, proj).detach())
    for _ in range(50):
        opt.zero_grad()
        embed_align(s, t, proj).backward()
        opt.step()
    assert float(embed_align(s, t, proj).detach()) < before - 0.1


def test_loss_config_rejects_bad_values():
    with pytest.raises(ValueError):
        LossConfig(temperature=0)
    with pytest.raises(ValueError):
        LossConfig(contrastive_weight=0)
    with pytest.raises(ValueError):
        info_nce(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 1]), temperature=-1)
