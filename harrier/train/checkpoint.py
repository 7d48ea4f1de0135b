"""Atomic, resumable training checkpoints.

A checkpoint is a directory ``step-000123/`` holding the full (unsharded) model and optimizer state, the LR
scheduler, the data sampler position, every rank's RNG state and the resolved config. It is written to a
temporary sibling and renamed into place, then ``latest`` (a one-line file) is replaced atomically, so a
``kill -9`` at any moment leaves either the previous or the new checkpoint, never a torn one. A ``manifest.json``
records each file's size and SHA-256; ``load_newest`` checks it (and that the files load) before using a
checkpoint and falls back to the newest intact one, saying so, when a disk fault or a copy has damaged the latest.

Under FSDP2 the sharded states are gathered to full tensors (``torch.distributed.checkpoint.state_dict``) and
rank 0 writes; on resume every rank reads the full state and keeps its shard.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harrier import faults
from harrier.train.distributed import barrier, is_distributed

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, truncated or damaged files); the message names the file."""


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
        torch.save(_interned({"optimizer": optim_sd, **extra}), tmp / "train_state.pt")
    barrier()
    if rank == 0:
        files = sorted(f for f in tmp.iterdir() if f.is_file())
        for f in files:
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
        faults.point("checkpoint.files")
        manifest = {f.name: {"bytes": f.stat().st_size, "sha256": _sha256(f)} for f in files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        faults.point("checkpoint.renamed")
        pointer = root / "latest.tmp"
        pointer.write_text(final.name + "\n", encoding="utf-8")
        faults.point("checkpoint.latest")
        os.replace(pointer, root / "latest")
        faults.point("checkpoint.saved")
        prune(root, keep)
        log.info("checkpoint %s", final)
    barrier()
    return final


def _interned(obj: Any) -> Any:
    """``obj`` with every string in its plain dicts, lists and tuples interned. Pickle writes a repeated object once
    and refers back to it, by identity: a resumed run's optimizer keys come from unpickling (not the interned
    literals of a fresh run), so without this the same state would be written as other bytes."""
    if isinstance(obj, str):
        return sys.intern(obj)
    if type(obj) is dict:
        return {_interned(k): _interned(v) for k, v in obj.items()}
    if type(obj) in (list, tuple):
        return type(obj)(_interned(v) for v in obj)
    return obj


def prune(root: Path, keep: int) -> None:
    """Keep the newest ``keep`` checkpoints (all when ``keep <= 0``)."""
    if keep <= 0:
        return
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def candidates(root: Path) -> list[Path]:
    """Checkpoint folders under ``root``, newest first: the ``latest`` pointer's target, then every ``step-*``."""
    found = sorted((p for p in root.glob("step-*") if p.is_dir()), reverse=True)
    pointer = root / "latest"
    if pointer.is_file():
        target = root / pointer.read_text(encoding="utf-8").strip()
        if target in found:
            found.remove(target)
            found.insert(0, target)
    return found


def verify(path: Path) -> None:
    """Check the files against the manifest (older checkpoints without one: only that they exist)."""
    for name in ("model.pt", "train_state.pt"):
        if not (path / name).is_file():
            raise CheckpointError(f"{path / name}: missing")
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        return
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{manifest_file}: unreadable ({err})") from err
    for name, want in manifest.items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"{f}: missing")
        if f.stat().st_size != want["bytes"]:
            raise CheckpointError(f"{f}: {f.stat().st_size} bytes, the manifest says {want['bytes']} (truncated?)")
        if _sha256(f) != want["sha256"]:
            raise CheckpointError(f"{f}: checksum differs from the manifest (damaged)")


def _read(f: Path) -> Any:
    try:
        return torch.load(f, map_location="cpu", weights_only=False)
    except Exception as err:  # torch/pickle/zip raise many types for a damaged file; all mean the same here
        raise CheckpointError(f"{f}: cannot be loaded ({type(err).__name__}: {str(err).splitlines()[0][:200]})") \
            from err


def load(path: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer, rank: int) -> dict[str, Any]:
    """Restore model, optimizer and this rank's RNG; return the rest of the train state.

    Raises CheckpointError (naming the file) when the checkpoint is damaged; nothing is restored then.
    """
    verify(path)
    model_sd = _read(path / "model.pt")
    state = _read(path / "train_state.pt")
    if not isinstance(state, dict) or not {"optimizer", "step"} <= set(state):
        raise CheckpointError(f"{path / 'train_state.pt'}: not a harrier train state (no optimizer/step)")
    try:
        _set_full_states(model, optimizer, model_sd, state.pop("optimizer"))
    except (RuntimeError, KeyError, ValueError) as err:
        raise ValueError(f"{path}: does not fit this run's model/optimizer (was the config changed?): "
                         f"{str(err).splitlines()[0][:300]}") from err
    rng_file = path / f"rng-rank{rank}.pt"
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=False))
    else:
        log.warning("%s has no RNG state for rank %d (world size changed?); continuing with a fresh RNG", path, rank)
    log.info("resumed from %s (step %d)", path, state["step"])
    return state


def load_newest(root: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                rank: int) -> tuple[Path, dict[str, Any]] | None:
    """Resume from the newest intact checkpoint under ``root``, warning about each damaged one it skips.

    ``None`` when there is no checkpoint at all; CheckpointError when every one is damaged.
    """
    found = candidates(root)
    problems = []
    for path in found:
        try:
            return path, load(path, model=model, optimizer=optimizer, rank=rank)
        except CheckpointError as err:
            problems.append(str(err))
            log.warning("checkpoint %s is damaged (%s); trying the previous one", path.name, err)
    if problems:
        raise CheckpointError(f"no intact checkpoint under {root}: {'; '.join(problems)}")
    return None
