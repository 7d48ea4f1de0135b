"""GradCache with token-budget mini-batches gives the full-batch gradients (fp32, atol 1e-5)."""

from __future__ import annotations

import pytest
import torch
from train_helpers import TEXTS

from harrier.train.gradcache import cached_step, direct_step, embed_groups
from harrier.train.losses import LossConfig
from harrier.train.objective import StepEmbeddings, compute_loss


def _groups(emb):
    queries = emb.tokenize(TEXTS[:4], "Instruct: Retrieve parallel sentences\nQuery: ")
    docs = emb.tokenize(TEXTS[4:12], "")
    return [queries, docs]


def _loss_fn(cfg):
    def fn(embs):
        q, d = embs
        return compute_loss(StepEmbeddings(q, d, torch.arange(4)), cfg)
    return fn


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("budget", [12, 40])
def test_cached_gradients_equal_full_batch(tiny_embedder, budget):
    model = tiny_embedder.model.train()
    groups = _groups(tiny_embedder)
    cfg = LossConfig(temperature=0.05, symmetric=True, fn_margin=0.0)
    ref_loss, _ = direct_step(model, groups, _loss_fn(cfg), budget_tokens=100_000, device=torch.device("cpu"))
    ref = _grads(model)
    model.zero_grad()
    loss, parts = cached_step(model, groups, _loss_fn(cfg), budget_tokens=budget, device=torch.device("cpu"))
    got = _grads(model)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert set(got) == set(ref) and len(ref) > 10
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], atol=1e-5, rtol=1e-4, msg=name)
    assert any(float(g.abs().max()) > 1e-4 for g in ref.values())


def test_minibatched_embeddings_keep_input_order(tiny_embedder):
    model = tiny_embedder.model.eval()
    groups = _groups(tiny_embedder)
    whole = embed_groups(model, groups, budget_tokens=100_000, device=torch.device("cpu"))
    small = embed_groups(model, groups, budget_tokens=10, device=torch.device("cpu"))
    runtime = tiny_embedder.encode(TEXTS[4:12])
    for a, b in zip(whole, small, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(whole[1].detach(), torch.from_numpy(runtime), atol=1e-5, rtol=1e-5)


def test_sync_context_only_last_chunk(tiny_embedder):
    flags = []

    class Sync:
        def __init__(self, last):
            flags.append(last)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    cached_step(tiny_embedder.model.train(), _groups(tiny_embedder), _loss_fn(LossConfig()), budget_tokens=20,
                device=torch.device("cpu"), sync=Sync)
    assert len(flags) > 2 and flags[-1] is True and not any(flags[:-1])


def test_activation_checkpointing_keeps_gradients(tiny_embedder):
    model = tiny_embedder.model.train()
    groups = _groups(tiny_embedder)
    fn = _loss_fn(LossConfig())
    direct_step(model, groups, fn, budget_tokens=30, device=torch.device("cpu"))
    ref = _grads(model)
    model.zero_grad()
    model.backbone.gradient_checkpointing = True
    try:
        cached_step(model, groups, fn, budget_tokens=30, device=torch.device("cpu"))
    finally:
        model.backbone.gradient_checkpointing = False
    got = _grads(model)
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], atol=1e-5, rtol=1e-4, msg=name)


def test_bf16_autocast_step_is_close_to_fp32(tiny_embedder):
    model = tiny_embedder.model.train()
    groups = _groups(tiny_embedder)
    ref_loss, _ = direct_step(model, groups, _loss_fn(LossConfig(temperature=0.1)), budget_tokens=64,
                              device=torch.device("cpu"))
    model.zero_grad()
    loss, _ = cached_step(model, groups, _loss_fn(LossConfig(temperature=0.1)), budget_tokens=64,
                          device=torch.device("cpu"), autocast=torch.bfloat16)
    assert abs(loss - ref_loss) < 0.05 * abs(ref_loss) + 0.05
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
