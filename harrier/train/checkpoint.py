"""Atomic, resumable training checkpoints.

A checkpoint is a directory ``step-000123/`` holding the full (unsharded) model and optimizer state, the LR
scheduler, the data sampler position, every rank's RNG state and the resolved config. It is written to a
temporary sibling and renamed into place, then ``latest`` (a one-line file) is replaced atomically, so a
``kill -9`` at any moment leaves either the previous or the new checkpoint, never a torn one.

Under FSDP2 the sharded states are gathered to full tensors (``torch.distributed.checkpoint.state_dict``) and
rank 0 writes; on resume every rank reads the full state and keeps its shard.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harrier.train.distributed import barrier, is_distributed

log = logging.getLogger(__name__)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _full_states(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    if is_distributed():
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        return get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return model.state_dict(), optimizer.state_dict()


def _set_full_states(model: nn.Module, optimizer: torch.optim.Optimizer, model_sd: dict, optim_sd: dict) -> None:
    if is_distributed():
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        set_state_dict(model, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd,
                       options=StateDictOptions(full_state_dict=True))
        return
    model.load_state_dict(model_sd)
    optimizer.load_state_dict(optim_sd)


def save(root: Path, step: int, *, model: nn.Module, optimizer: torch.optim.Optimizer, extra: dict[str, Any],
         rank: int, keep: int = 2) -> Path:
    """Write ``root/step-{step}`` atomically (collective under DDP/FSDP: every rank must call)."""
    final = root / f"step-{step:07d}"
    tmp = root / f".step-{step:07d}.tmp"
    model_sd, optim_sd = _full_states(model, optimizer)
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    torch.save(rng_state(), tmp / f"rng-rank{rank}.pt")
    if rank == 0:
        torch.save(model_sd, tmp / "model.pt")
        torch.save({"optimizer": optim_sd, **extra}, tmp / "train_state.pt")
    barrier()
    if rank == 0:
        for f in tmp.iterdir():
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        pointer = root / "latest.tmp"
        pointer.write_text(final.name + "\n", encoding="utf-8")
        os.replace(pointer, root / "latest")
        _prune(root, keep)
        log.info("checkpoint %s", final)
    barrier()
    return final


def _prune(root: Path, keep: int) -> None:
    if keep <= 0:
        return
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root`` (``None`` if there is none)."""
    pointer = root / "latest"
    if pointer.is_file():
        path = root / pointer.read_text(encoding="utf-8").strip()
        if (path / "train_state.pt").is_file():
            return path
    steps = sorted(p for p in root.glob("step-*") if (p / "train_state.pt").is_file())
    return steps[-1] if steps else None


def load(path: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer, rank: int) -> dict[str, Any]:
    """Restore model, optimizer and this rank's RNG; return the rest of the train state."""
    model_sd = torch.load(path / "model.pt", map_location="cpu", weights_only=False)
    state = torch.load(path / "train_state.pt", map_location="cpu", weights_only=False)
    _set_full_states(model, optimizer, model_sd, state.pop("optimizer"))
    rng_file = path / f"rng-rank{rank}.pt"
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=False))
    else:
        log.warning("%s has no RNG state for rank %d (world size changed?); continuing with a fresh RNG", path, rank)
    log.info("resumed from %s (step %d)", path, state["step"])
    return state
