"""The training loop, top to bottom: set up, resume, step, log, checkpoint, export.

One code path for one CPU process, DDP and FSDP2 (``fully_shard`` per decoder layer, then the root), launched
plainly or with ``torchrun``. Each step draws one global batch from one dataset (every rank draws the same
batch, keeps its slice), embeds queries and documents in token-budget mini-batches (GradCache by default),
gathers documents across ranks for negatives, and applies the combined contrastive / KL / alignment loss.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from torch import nn

from harrier import faults
from harrier.embedder import Embedder
from harrier.joblock import hold
from harrier.loading import LoadedModel
from harrier.train import checkpoint, runfolder
from harrier.train.config import TrainConfig, to_dict
from harrier.train.data import build_datasets
from harrier.train.distributed import DistInfo, all_mean, all_sum_int, init_from_env, is_distributed
from harrier.train.gradcache import cached_step, direct_step
from harrier.train.losses import make_projection
from harrier.train.objective import StepEmbeddings, compute_loss
from harrier.train.records import Record
from harrier.train.sampler import MixtureSampler, local_slice
from harrier.train.student import load_student
from harrier.train.teacher import Teacher

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- set-up helpers
def lr_lambda(cfg: TrainConfig):
    """Warm-up then constant / linear / cosine decay to 0, as a multiplier of the base LR."""
    warm, total, kind = cfg.optim.warmup_steps, cfg.run.steps, cfg.optim.schedule

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        if kind == "linear":
            return 1.0 - progress
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return f


def parallelize(model: nn.Module, mode: str, info: DistInfo) -> tuple[nn.Module, str]:
    """Wrap for data parallelism. FSDP2 shards each decoder layer, then the root (embeddings, norm, head)."""
    if mode == "auto":
        mode = "ddp" if info.world_size > 1 else "none"
    if mode != "none" and info.world_size == 1:
        log.warning("run.parallel=%s with one process: running unwrapped", mode)
        return model, "none"
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [info.device.index] if info.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids), mode
    if mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in model.backbone.layers:
            fully_shard(layer)
        fully_shard(model)
        return model, mode
    if mode != "none":
        raise ValueError(f"run.parallel must be auto, none, ddp or fsdp, got {mode!r}")
    return model, mode


def sync_context(wrapped: nn.Module, mode: str):
    """Gradient reduction only on the last GradCache mini-batch."""
    def ctx(last: bool):
        if mode == "ddp" and not last:
            return wrapped.no_sync()
        if mode == "fsdp":
            wrapped.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    return ctx


def memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


@dataclass(frozen=True)
class ProjectionOptim:
    """The distillation projection with its own AdamW and LR schedule (replicated, outside DDP/FSDP)."""

    module: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR


@dataclass(frozen=True)
class Optimizers:
    """AdamW + LR schedule for the student, and for the distillation projection when there is one."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    projection: ProjectionOptim | None = None
    max_grad_norm: float | None = None

    @staticmethod
    def build(cfg: TrainConfig, model: nn.Module, projection: nn.Module | None) -> Optimizers:
        o = cfg.optim
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
        proj = None
        if projection is not None:
            proj_opt = torch.optim.AdamW(projection.parameters(), lr=o.projection_lr)
            proj = ProjectionOptim(projection, proj_opt, torch.optim.lr_scheduler.LambdaLR(proj_opt, lr_lambda(cfg)))
        return Optimizers(model, opt, sched, proj, max_grad_norm=o.max_grad_norm)

    def step(self, world_size: int) -> tuple[float, float | None]:
        """Clip, update, advance the schedule; returns (LR used, gradient norm before clipping)."""
        if self.projection is not None and is_distributed():  # replicated, outside DDP/FSDP: average by hand
            for p in self.projection.module.parameters():
                torch.distributed.all_reduce(p.grad)
                p.grad /= world_size
        norm = None
        if self.max_grad_norm:
            params = [p for p in self.model.parameters() if p.requires_grad]
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm))
        lr = self.scheduler.get_last_lr()[0]
        pairs = [(self.optimizer, self.scheduler)]
        if self.projection is not None:
            pairs.append((self.projection.optimizer, self.projection.scheduler))
        for opt, sched in pairs:
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        return lr, norm

    def extra_state(self) -> dict:
        state = {"scheduler": self.scheduler.state_dict()}
        if self.projection is not None:
            state.update(projection=self.projection.module.state_dict(),
                         projection_optimizer=self.projection.optimizer.state_dict(),
                         projection_scheduler=self.projection.scheduler.state_dict())
        return state

    def load_extra(self, state: dict) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
        if self.projection is not None:
            self.projection.module.load_state_dict(state["projection"])
            self.projection.optimizer.load_state_dict(state["projection_optimizer"])
            self.projection.scheduler.load_state_dict(state["projection_scheduler"])


# ---------------------------------------------------------------- one step's inputs
@dataclass
class StepTexts:
    queries: list[str]
    raw_queries: list[str]
    docs: list[str]
    raw_docs: list[str]
    pos: list[int]
    group: list[list[int]] | None
    scores: list[list[float]] | None


def step_texts(records: list[Record], rng: np.random.Generator, negatives: int, *,
               symmetric: bool = False) -> StepTexts:
    """Queries (prefixed), documents (one positive + up to ``negatives`` hard negatives each), teacher groups.

    The student's documents are raw unless ``symmetric`` (then they carry their record's prefix, like the query);
    ``raw_queries`` / ``raw_docs`` are the unprefixed texts the teacher embeds under its own prompts."""
    kinds = {r.text_only for r in records}
    if len(kinds) > 1:
        raise ValueError("a batch mixes plain-text and pair records; keep them in separate datasets")
    queries = [r.prefix + r.query for r in records]
    docs: list[str] = []
    student_docs: list[str] = []
    pos: list[int] = []
    groups: list[list[int]] = []
    scored = all(r.teacher_scores is not None for r in records) and not kinds == {True}
    scores: list[list[float]] = []
    for r in records:
        if r.text_only:
            continue
        p = int(rng.integers(len(r.positives)))
        neg_idx = sorted(rng.choice(len(r.negatives), size=min(negatives, len(r.negatives)), replace=False))
        pos.append(len(docs))
        group = [len(docs)] + [len(docs) + 1 + i for i in range(len(neg_idx))]
        mine = [r.positives[p]] + [r.negatives[i] for i in neg_idx]
        docs += mine
        student_docs += [r.prefix + d for d in mine] if symmetric else mine
        groups.append(group)
        if scored:
            assert r.teacher_scores is not None
            scores.append([r.teacher_scores[0]] + [r.teacher_scores[1 + i] for i in neg_idx])
    return StepTexts(queries, [r.query for r in records], student_docs, docs, pos, groups if scored else None,
                     scores if scored else None)


def _padded(rows: list[list], fill, dtype, device) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [fill] * (width - len(r)) for r in rows], dtype=dtype, device=device)


def make_loss_fn(texts: StepTexts, t_q: torch.Tensor | None, t_d: torch.Tensor | None, dev: torch.device,
                 cfg: TrainConfig, projection: nn.Module | None):
    """The step's loss over ``[query embeddings, document embeddings]``."""
    pos = torch.tensor(texts.pos, dtype=torch.long, device=dev)
    group = None if texts.group is None else _padded(texts.group, -1, torch.long, dev)
    scores = None if texts.scores is None else _padded(texts.scores, 0.0, torch.float32, dev)

    def loss_fn(embs: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        e = StepEmbeddings(embs[0], embs[1], pos, teacher_q_BE=t_q, teacher_d_NE=t_d, group_BG=group,
                           scores_BG=scores)
        return compute_loss(e, cfg.loss, projection)

    return loss_fn


def build_models(cfg: TrainConfig, info: DistInfo) -> tuple[LoadedModel, Teacher | None, nn.Module | None]:
    """The student (fp32, train mode), the frozen teacher, and the alignment projection (when aligning)."""
    student = load_student(cfg.model.init, kind=cfg.model.kind, device=info.device, max_length=cfg.model.max_length)
    student.model.train()
    student.model.backbone.gradient_checkpointing = cfg.model.activation_checkpointing
    if cfg.model.freeze_embeddings:
        student.model.backbone.embed_tokens.weight.requires_grad_(False)
    if cfg.loss.align_weight > 0 and cfg.teacher is None:
        raise ValueError("loss.align_weight > 0 needs a teacher section")
    teacher = None
    if cfg.teacher is not None:
        if cfg.loss.align_weight == 0 and cfg.loss.kl_weight == 0:
            log.warning("a teacher is configured but loss.kl_weight and loss.align_weight are 0: it is not loaded")
        else:
            teacher = Teacher(cfg.teacher, info.device, dtype=cfg.teacher.dtype)
    projection = None
    if cfg.loss.align_weight > 0 and teacher is not None:
        projection = make_projection(student.model.dim, teacher.dim).to(info.device)
        if cfg.teacher is not None and cfg.teacher.projection:
            load_projection(projection, cfg.teacher.projection)
    return student, teacher, projection


PROJECTION_FILE = "projection.safetensors"


def load_projection(projection: nn.Module, path: str) -> None:
    """Start the alignment projection from an earlier run's ``projection.safetensors`` (shapes checked)."""
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise ValueError(f"teacher.projection {path}: no such file (a run writes <run.output>/{PROJECTION_FILE})")
    state = load_file(path)
    want = {k: tuple(v.shape) for k, v in projection.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != want:
        raise ValueError(f"teacher.projection {path} holds {got}, this student/teacher pair needs {want}")
    projection.load_state_dict(state)


def run_eval(student: LoadedModel, cfg: TrainConfig, step: int, log_file: TextIO | None, mode: str) -> None:
    """Evaluate on rank 0 and append ``{"step", "eval": {task: score}}`` to the log (not under FSDP: the
    weights are sharded)."""
    if mode == "fsdp":
        log.warning("run.eval_every is ignored under FSDP (sharded weights); evaluate the export instead")
        return
    if log_file is not None:
        from harrier.train.evaluate import suite_scores
        from harrier.train.export import inference_length

        with inference_length(student, cfg):
            scores = suite_scores(Embedder(student, truncation="silent"), cfg.run.eval_suite,
                                  data_root=cfg.run.eval_data)
        log_file.write(json.dumps({"step": step, "eval": scores}) + "\n")
        log_file.flush()


# ---------------------------------------------------------------- the loop
def train(cfg: TrainConfig, *, resume: bool = False) -> Path | None:
    """Run training; returns the exported model directory (``None`` when stopped early by ``run.stop_after``).

    The main rank holds ``run.output``'s job lock for the whole run, so a second run into the folder is refused."""
    info = init_from_env(cfg.run.device)
    with hold(cfg.run.output, f"run.output {cfg.run.output}") if info.is_main else contextlib.nullcontext():
        return _train(cfg, info, resume=resume)


def _train(cfg: TrainConfig, info: DistInfo, *, resume: bool) -> Path | None:
    torch.manual_seed(cfg.run.seed)
    random.seed(cfg.run.seed)  # unused by the loop, but saved in every checkpoint: seeded, checkpoints repeat
    np.random.seed(cfg.run.seed)
    out = Path(cfg.run.output)
    ckpt_root = out / "checkpoints"
    export_dir = Path(cfg.run.export) if cfg.run.export else out / "model"
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        runfolder.remove_leftovers(out, export_dir)
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n", encoding="utf-8")

    student, teacher, projection = build_models(cfg, info)
    model = student.model
    wrapped, mode = parallelize(model, cfg.run.parallel, info)
    use_bf16 = cfg.run.bf16 == "on" or (cfg.run.bf16 == "auto" and info.device.type == "cuda")
    autocast = torch.bfloat16 if use_bf16 else None
    optim = Optimizers.build(cfg, model, projection)

    datasets, sources = build_datasets(cfg.data.datasets, strict=cfg.data.strict)
    spec_of = {d.name: spec for d, spec in zip(datasets, sources, strict=True)}  # teacher prompts, symmetry
    sampler = MixtureSampler(datasets, batch_size=cfg.run.batch_size, weights=[float(s.weight) for s in sources],
                             temperature=cfg.data.temperature, seed=cfg.data.seed)
    if cfg.run.batch_size % info.world_size:
        raise ValueError(f"run.batch_size {cfg.run.batch_size} must be a multiple of the world size {info.world_size}")

    start = 0
    if resume:
        found = checkpoint.load_newest(ckpt_root, model=model, optimizer=optim.optimizer, rank=info.rank)
        if found is None:
            log.warning("--resume: no checkpoint under %s; starting from step 0", ckpt_root)
        else:
            state = found[1]
            start = state["step"]
            optim.load_extra(state)
            sampler.load_state_dict(state["sampler"])
    if info.is_main:
        runfolder.trim_log(out / runfolder.LOG, start)  # rows a killed run logged after its last checkpoint
        checkpoint.prune(ckpt_root, cfg.run.keep_checkpoints)  # finish a prune a kill interrupted

    log_file = (out / runfolder.LOG).open("a", encoding="utf-8") if info.is_main else None
    bar = None
    if info.is_main and cfg.run.progress is not False:
        from tqdm.auto import tqdm

        quiet = cfg.run.progress is None and not sys.stderr.isatty()
        bar = tqdm(total=cfg.run.steps, initial=start, desc="train", unit="step", disable=quiet)
    step_fn = cached_step if cfg.run.grad_cache else direct_step
    sync_kw = {"sync": sync_context(wrapped, mode)} if cfg.run.grad_cache else {}

    if cfg.run.eval_at_start and start == 0:
        run_eval(student, cfg, 0, log_file, mode)
    for step in range(start, cfg.run.steps):
        t0 = time.perf_counter()
        batch = sampler.next_batch()
        records = local_slice(batch.records, info.rank, info.world_size)
        spec = spec_of[batch.dataset]
        texts = step_texts(records, np.random.default_rng([cfg.data.seed, 7, step, info.rank]),
                           cfg.data.negatives_per_query, symmetric=spec.symmetric)
        q_ids = student.tokenizer.encode(texts.queries, truncation="silent").ids
        d_ids = student.tokenizer.encode(texts.docs, truncation="silent").ids if texts.docs else []
        t_teacher = time.perf_counter()
        t_q = teacher.embed(texts.raw_queries, query=True, prompt=spec.teacher_query_prompt) if teacher else None
        t_d = (teacher.embed(texts.raw_docs, query=False, prompt=spec.teacher_document_prompt)
               if teacher and texts.docs else None)
        t_teacher = time.perf_counter() - t_teacher
        dev = info.device

        loss_fn = make_loss_fn(texts, t_q, t_d, dev, cfg, projection)
        model_for_step = wrapped if mode == "ddp" else model
        loss, parts = step_fn(model_for_step, [q_ids, d_ids], loss_fn, budget_tokens=cfg.run.budget_tokens,
                              device=dev, autocast=autocast, **sync_kw)
        lr, grad_norm = optim.step(info.world_size)

        tokens = all_sum_int(sum(map(len, q_ids)) + sum(map(len, d_ids)), dev)
        loss = all_mean(loss, dev)
        parts = {k: all_mean(v, dev) for k, v in parts.items()}
        elapsed = time.perf_counter() - t0
        if log_file is not None and ((step + 1) % cfg.run.log_every == 0 or step + 1 == cfg.run.steps):
            row = {"step": step + 1, "loss": loss, **parts, "lr": lr,
                   "grad_norm": grad_norm, "dataset": batch.dataset, "tokens": tokens,
                   "tokens_per_s": round(tokens / elapsed, 1), "step_s": round(elapsed, 3),
                   "teacher_s": round(t_teacher, 3),
                   "mem_gb": round(memory_gb(dev), 3)}
            log_file.write(json.dumps(row) + "\n")
            log_file.flush()
        faults.point("train.step")
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
        if cfg.run.eval_every and ((step + 1) % cfg.run.eval_every == 0 or step + 1 == cfg.run.steps):
            run_eval(student, cfg, step + 1, log_file, mode)
        stopping = cfg.run.stop_after is not None and step + 1 - start >= cfg.run.stop_after
        periodic = cfg.run.checkpoint_every and (step + 1) % cfg.run.checkpoint_every == 0
        if (periodic or stopping) and step + 1 < cfg.run.steps:
            extra = {"step": step + 1, "sampler": sampler.state_dict(), "config": to_dict(cfg), **optim.extra_state()}
            checkpoint.save(ckpt_root, step + 1, model=model, optimizer=optim.optimizer, extra=extra, rank=info.rank,
                            keep=cfg.run.keep_checkpoints)
        if stopping and step + 1 < cfg.run.steps:
            log.info("stopping after %d steps (run.stop_after); continue with --resume", cfg.run.stop_after)
            break
    if bar is not None:
        bar.close()
    if log_file is not None:
        log_file.close()
    if sampler.step < cfg.run.steps:
        return None
    from harrier.train.export import export

    if projection is not None and info.is_main:  # not part of the model; a later stage can start from it
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in projection.state_dict().items()},
                  str(out / PROJECTION_FILE))
    return export(student, model, export_dir, cfg, info)
