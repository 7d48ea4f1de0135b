"""Two gloo processes on CPU give the same loss and gradients as one process on the same global batch."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from harrier.train.losses import LossConfig, make_projection
from harrier.train.objective import StepEmbeddings, compute_loss

B, K, D, E = 8, 1, 6, 5  # global queries, hard negatives per query, student dim, teacher dim


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setup():
    torch.manual_seed(0)
    enc = torch.nn.Linear(4, D, dtype=torch.float64)
    proj = make_projection(D, E).double()
    x_q = torch.randn(B, 4, dtype=torch.float64)
    x_pos = torch.randn(B, 4, dtype=torch.float64)
    x_pos[3] = x_q[3] * 2 + 0.01  # near-duplicate: exercises false-negative masking across ranks
    x_neg = torch.randn(B * K, 4, dtype=torch.float64)
    x_neg[1] = x_q[6]  # rank 0's negative is a false negative for rank 1's query
    t_q = torch.randn(B, E, dtype=torch.float64)
    t_pos, t_neg = torch.randn(B, E, dtype=torch.float64), torch.randn(B * K, E, dtype=torch.float64)
    return enc, proj, (x_q, x_pos, x_neg, t_q, t_pos, t_neg)


CFGS = {
    "contrastive": LossConfig(temperature=0.05, symmetric=True, fn_margin=0.0),
    "all": LossConfig(temperature=0.05, symmetric=True, fn_margin=-0.1, kl_weight=0.7, align_weight=0.3),
    "text": LossConfig(contrastive_weight=0.0, kl_weight=1.0, align_weight=0.5),
}


def _loss(enc, proj, data, rows, cfg_name):
    x_q, x_pos, x_neg, t_q, t_pos, t_neg = data
    cfg = CFGS[cfg_name]
    q = enc(x_q[rows])
    if cfg_name == "text":
        e = StepEmbeddings(q, q[:0], torch.zeros(0, dtype=torch.long), teacher_q_BE=t_q[rows])
    else:
        neg_rows = torch.cat([torch.arange(r * K, (r + 1) * K) for r in rows.tolist()])
        d = torch.cat([enc(x_pos[rows]), enc(x_neg[neg_rows])])
        e = StepEmbeddings(q, d, torch.arange(len(rows)), teacher_q_BE=t_q[rows],
                           teacher_d_NE=torch.cat([t_pos[rows], t_neg[neg_rows]]))
    loss, _ = compute_loss(e, cfg, proj)
    return loss


def _grads(enc, proj):
    params = list(enc.parameters()) + list(proj.parameters())
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params]


def _worker(rank, world, port, cfg_name, out):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        enc, proj, data = _setup()
        rows = torch.arange(rank * B // world, (rank + 1) * B // world)
        loss = _loss(enc, proj, data, rows, cfg_name)
        loss.backward()
        grads = _grads(enc, proj)
        for g in grads:  # what DDP does: average parameter gradients over ranks
            dist.all_reduce(g)
            g /= world
        value = loss.detach().clone()
        dist.all_reduce(value)
        out[rank] = (float(value) / world, grads)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("cfg_name", list(CFGS))
def test_two_process_gloo_matches_one_process(cfg_name):
    enc, proj, data = _setup()
    ref_loss = _loss(enc, proj, data, torch.arange(B), cfg_name)
    ref_loss.backward()
    ref_grads = _grads(enc, proj)

    out = mp.Manager().dict()
    mp.spawn(_worker, args=(2, _free_port(), cfg_name, out), nprocs=2, join=True)
    for rank in range(2):
        loss, grads = out[rank]
        assert loss == pytest.approx(float(ref_loss.detach()), rel=1e-6, abs=1e-6)
        for g, r in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)
