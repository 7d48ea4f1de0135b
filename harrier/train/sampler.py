"""Homogeneous batches from a weighted mixture of datasets, deterministic and resumable.

Each global batch comes from one dataset (E5/harrier style: in-batch negatives of the same task and language).
All randomness is counter-based (seed, step) / (seed, dataset, epoch), so the state is a few integers and a
resumed run draws exactly the batches the uninterrupted run would have drawn. Every rank draws the same global
batch and keeps its own slice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harrier.train.records import Dataset, Record

log = logging.getLogger(__name__)
MAX_BAD_IN_A_ROW = 1000


def mixture_probabilities(sizes: Sequence[int], weights: Sequence[float], temperature: float) -> np.ndarray:
    """Probability of drawing each dataset for a batch: ``p_i ∝ (w_i * n_i) ** (1 / T)``.

    ``T = 1`` samples in proportion to (weighted) size; larger ``T`` flattens towards uniform (the multilingual
    up-sampling of small languages used by XLM-R/E5)."""
    if temperature <= 0:
        raise ValueError(f"mixture temperature must be > 0, got {temperature}")
    if len(sizes) != len(weights) or not sizes:
        raise ValueError("need one weight per dataset and at least one dataset")
    if any(w < 0 for w in weights) or not any(w > 0 and n > 0 for w, n in zip(weights, sizes, strict=True)):
        raise ValueError("dataset weights must be >= 0 and at least one non-empty dataset must have weight > 0")
    mass = np.asarray(weights, dtype=np.float64) * np.asarray(sizes, dtype=np.float64)
    scaled = np.where(mass > 0, mass / mass.max(), 0.0) ** (1.0 / temperature)
    return scaled / scaled.sum()


@dataclass(frozen=True)
class Batch:
    dataset: str
    records: list[Record]


class MixtureSampler:
    """Draws global batches of ``batch_size`` records; each batch from one dataset chosen by mixture weight."""

    def __init__(self, datasets: Sequence[Dataset], *, batch_size: int, weights: Sequence[float] | None = None,
                 temperature: float = 1.0, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        names = [d.name for d in datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset names must be unique, got {names}")
        self.datasets = list(datasets)
        self.batch_size = batch_size
        self.seed = seed
        self.sizes = [len(d) for d in datasets]
        self.probs = mixture_probabilities(self.sizes, weights or [1.0] * len(datasets), temperature)
        self.step = 0
        self.cursors = {name: [0, 0] for name in names}  # name -> [epoch, position in that epoch's order]
        self._orders: dict[tuple[int, int], np.ndarray] = {}

    def _order(self, ds_index: int, epoch: int) -> np.ndarray:
        key = (ds_index, epoch)
        if key not in self._orders:
            self._orders = {k: v for k, v in self._orders.items() if k[0] != ds_index}
            rng = np.random.default_rng([self.seed, ds_index, epoch])
            self._orders[key] = rng.permutation(self.sizes[ds_index])
        return self._orders[key]

    def _next_record(self, ds_index: int) -> Record | None:
        ds = self.datasets[ds_index]
        cursor = self.cursors[ds.name]
        if cursor[1] >= self.sizes[ds_index]:
            cursor[0], cursor[1] = cursor[0] + 1, 0
            log.info("dataset %s: starting epoch %d", ds.name, cursor[0])
        index = int(self._order(ds_index, cursor[0])[cursor[1]])
        cursor[1] += 1
        return ds.get(index)

    def next_batch(self) -> Batch:
        rng = np.random.default_rng([self.seed, 1_000_003, self.step])
        ds_index = int(rng.choice(len(self.datasets), p=self.probs))
        records: list[Record] = []
        bad = 0
        while len(records) < self.batch_size:
            rec = self._next_record(ds_index)
            if rec is None:
                bad += 1
                if bad >= MAX_BAD_IN_A_ROW:
                    raise ValueError(f"dataset {self.datasets[ds_index].name}: {bad} bad records in a row; "
                                     "check the warnings above")
                continue
            bad = 0
            records.append(rec)
        self.step += 1
        return Batch(self.datasets[ds_index].name, records)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "cursors": {k: list(v) for k, v in self.cursors.items()}, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"checkpoint was written with data seed {state['seed']}, config says {self.seed}")
        missing = set(self.cursors) - set(state["cursors"])
        if missing:
            log.warning("datasets %s are new since the checkpoint; they start from the beginning", sorted(missing))
        self.step = int(state["step"])
        for name, cur in state["cursors"].items():
            if name in self.cursors:
                self.cursors[name] = [int(cur[0]), int(cur[1])]


def local_slice(records: Sequence[Record], rank: int, world_size: int) -> list[Record]:
    """This rank's contiguous share of a global batch (the batch size must divide evenly)."""
    if len(records) % world_size:
        raise ValueError(f"global batch of {len(records)} does not split evenly over {world_size} ranks")
    n = len(records) // world_size
    return list(records[rank * n : (rank + 1) * n])
