"""The Ray engine: a shard's windows go through Ray Data ``map_batches`` on an actor pool (one ``Embedder`` per
actor, CPU or GPU); each actor runs the same ``encode_window`` as the local engine on the same windows.

The driver keeps reading the inputs and writing the shards (one writer: deterministic shards, the same resume),
so the inputs and the output directory need only be on the driver's machine; the model path must exist on every
node. ``ray`` is imported when the engine is built (``pip install 'harrier-embed[ray]'``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from harrier.corpus.window import Window, WindowResult, encode_window, prompt_from_json, prompt_to_json
from harrier.extras import require

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayEngineConfig:
    model: str  # a path every node can read (or a hub id every node can download)
    dtype: str = "auto"
    max_length: int | None = None
    truncation: str = "warn"
    allow_over_positions: bool = False
    prefix_cache: bool = True  # each actor keeps its own store of prompt prefixes
    batch_tokens: int = 4_096
    actors: int = 2
    actor_cpus: float = 1.0  # also the actor's torch threads
    actor_gpus: float = 0.0  # > 0: the actors load the model on cuda
    address: str | None = None  # None: a local Ray instance; "auto": the running cluster

    def __post_init__(self) -> None:
        if self.actors < 1 or self.actor_cpus <= 0 or self.actor_gpus < 0:
            raise ValueError(f"Ray engine needs actors >= 1, actor_cpus > 0 and actor_gpus >= 0, got {self.actors}, "
                             f"{self.actor_cpus}, {self.actor_gpus}")


class WindowEncoder:
    """The actor: loads the model once, then embeds one window per call."""

    def __init__(self, cfg: RayEngineConfig) -> None:
        import torch

        from harrier import Embedder

        torch.set_num_threads(max(1, int(cfg.actor_cpus)))
        self.model = Embedder.from_pretrained(cfg.model, device="cuda" if cfg.actor_gpus > 0 else "cpu",
                                              dtype=cfg.dtype, max_length=cfg.max_length, truncation=cfg.truncation,
                                              allow_over_positions=cfg.allow_over_positions,
                                              prefix_cache=cfg.prefix_cache)
        self.batch_tokens = cfg.batch_tokens

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, list] = {"window": [], "emb": [], "n_tokens": [], "truncated": [], "error": []}
        for k, raw in zip(batch["window"], batch["items"], strict=True):
            items = json.loads(raw)
            ids, texts, prompts = zip(*items, strict=True) if items else ((), (), ())
            window = Window(list(ids), list(texts), [prompt_from_json(p) for p in prompts])
            try:  # bad input comes back as a message (a raised error reaches the driver as an untyped Ray failure)
                result = encode_window(self.model, window, self.batch_tokens)
            except ValueError as err:
                result, error = None, str(err)
            else:
                error = ""
            out["window"].append(int(k))
            out["emb"].append(b"" if result is None else result.emb_ND.astype("<f4").tobytes())
            out["n_tokens"].append(json.dumps(None if result is None else result.n_tokens))
            out["truncated"].append(json.dumps(None if result is None else result.truncated))
            out["error"].append(error)
        return {"window": np.array(out["window"], dtype=np.int64), "emb": np.array(out["emb"], dtype=object),
                **{key: np.array(out[key]) for key in ("n_tokens", "truncated", "error")}}


class RayEngine:
    """Each shard's windows become one Ray Dataset (one row per window) mapped by an actor pool."""

    def __init__(self, cfg: RayEngineConfig) -> None:
        ray = require("ray", "ray", "the Ray engine")
        self.cfg = cfg
        self._started = False
        if not ray.is_initialized():
            try:
                ray.init(address=cfg.address, log_to_driver=False, include_dashboard=False,
                         **({} if cfg.address else {"num_cpus": max(1, int(cfg.actors * cfg.actor_cpus))}))
            except ConnectionError as err:
                raise ValueError(f"no Ray cluster at --address {cfg.address} ({err}); start one with "
                                 "'ray start --head' or leave out --address for a local instance") from err
            self._started = True
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # one "Starting execution" line per shard otherwise

    def encode(self, windows: Iterable[Window]) -> Iterator[WindowResult]:
        import ray

        windows = list(windows)
        if not windows:
            return
        rows = [{"window": k, "items": json.dumps([[i, t, prompt_to_json(p)]
                                                   for i, t, p in zip(w.ids, w.texts, w.prompts, strict=True)])}
                for k, w in enumerate(windows)]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            WindowEncoder, fn_constructor_args=(self.cfg,), batch_size=1, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=min(self.cfg.actors, len(rows))), num_cpus=self.cfg.actor_cpus,
            num_gpus=self.cfg.actor_gpus)
        results: dict[int, WindowResult] = {}
        for row in ds.iter_rows():
            if row["error"]:
                raise ValueError(row["error"])
            k = int(row["window"])
            emb = np.frombuffer(row["emb"], dtype="<f4").reshape(len(windows[k].texts), -1).astype(np.float32)
            results[k] = WindowResult(emb, json.loads(row["n_tokens"]), json.loads(row["truncated"]))
        assert sorted(results) == list(range(len(windows))), "Ray returned a different set of windows"
        for k in range(len(windows)):
            yield results.pop(k)

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False
