"""Process-group helpers and the cross-device gather that keeps gradients right.

Why a custom gather: ``dist.all_gather`` returns tensors without autograd history, so rank ``r`` would see other
ranks' negatives as constants and the gradient that rank ``s``'s loss sends to rank ``r``'s documents would be
lost. :func:`gather_rows` puts the local slice back with its history and, in backward, sums every rank's gradient
for the local slice (an all-reduce), so each rank receives ``d(sum_s loss_s) / d(local rows)``. DDP/FSDP then
average parameter gradients over ranks, which makes the update equal to the gradient of the mean loss over the
global batch, exactly what one process computes on the whole batch.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank, world size, local rank, device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_from_env(device: str | None = None, timeout_s: int = 1800) -> DistInfo:
    """Initialise the default process group from torchrun's environment (no-op for a single process).

    NCCL when CUDA is available, gloo otherwise (CPU tests)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    dev = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device(device or "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
        log.info("process group %s: rank %d / %d", backend, dist.get_rank(), world)
    rank = dist.get_rank() if dist.is_initialized() else 0
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def _all_sizes(n: int, device: torch.device) -> list[int]:
    size = torch.tensor([n], device=device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s.item()) for s in sizes]


def _gather_padded(x: Tensor, sizes: list[int]) -> list[Tensor]:
    width = max(sizes)
    padded = torch.zeros((width, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x
    out = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(out, padded.contiguous())
    return [t[:n] for t, n in zip(out, sizes, strict=True)]


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, sizes: list[int], rank: int) -> Tensor:  # type: ignore[override]
        ctx.sizes, ctx.rank = sizes, rank
        parts = _gather_padded(x.detach(), sizes)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def gather_rows(x: Tensor) -> tuple[Tensor, int]:
    """All ranks' rows of ``x`` concatenated in rank order, and the offset of this rank's rows.

    Ranks may hold different row counts. Gradients flow back to every rank's rows (see module docstring).
    Single process: returns ``(x, 0)`` unchanged.
    """
    if not is_distributed():
        return x, 0
    sizes = _all_sizes(x.shape[0], x.device)
    rank = dist.get_rank()
    offset = sum(sizes[:rank])
    if x.requires_grad:
        return _GatherWithGrad.apply(x, sizes, rank), offset
    return torch.cat(_gather_padded(x, sizes), dim=0), offset


def all_mean(value: float, device: torch.device) -> float:
    """Mean of a scalar over ranks (for logging)."""
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / dist.get_world_size()


def all_sum_int(value: int, device: torch.device) -> int:
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.long, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return int(t.item())


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
