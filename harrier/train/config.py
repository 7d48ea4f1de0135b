"""Training configuration: frozen dataclasses read from a YAML recipe, with ``--set a.b=value`` overrides.

The resolved configuration is written next to every checkpoint and into the exported model
(``harrier_training.json``), so an artifact always says how it was made.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from harrier.train.losses import LossConfig


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The student. ``init``: an embedder (Sentence-Transformers dir), a decoder LM (HF dir or ``.gguf``)."""

    init: str
    kind: Literal["auto", "embedder", "decoder-lm"] = "auto"
    max_length: int = 512  # training texts are truncated here
    export_max_length: int | None = None  # the export's max_seq_length (default: the init model's own limit)
    activation_checkpointing: bool = False
    freeze_embeddings: bool = False  # keep the token-embedding table fixed (saves its gradient and Adam state)


@dataclass(frozen=True, kw_only=True)
class TeacherConfig:
    """An embedding model scoring the batch online (KL / alignment). Prompts are the teacher's own."""

    path: str
    query_prompt: str = ""
    document_prompt: str = ""
    max_length: int = 512
    budget_tokens: int = 16_384
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # the alignment projection to start from (a run's projection.safetensors) instead of a fresh one: a later
    # stage that starts with a fresh map sends the student misleading alignment gradients until it re-learns it
    projection: str | None = None


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """One data source: a ``.jsonl``/``.txt`` file or directory (``path``), or an adapter over a dataset folder."""

    path: str
    adapter: str | None = None
    name: str | None = None
    weight: float = 1.0
    instruction: str | None = None
    task: str | None = None
    prompt: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # the teacher's prompts for this dataset's queries / documents (default: the teacher section's)
    teacher_query_prompt: str | None = None
    teacher_document_prompt: str | None = None
    # documents (positives, negatives) carry the query's instruction too: mteb encodes every input of a symmetric
    # task (STS, bitext, classification, clustering) with it, so symmetric pairs train that form on both sides
    symmetric: bool = False


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    datasets: tuple[DatasetSpec, ...]
    temperature: float = 1.0
    negatives_per_query: int = 1
    seed: int = 0
    strict: bool = False


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    lr: float = 2e-5
    projection_lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    schedule: Literal["constant", "linear", "cosine"] = "cosine"
    max_grad_norm: float | None = 1.0


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    output: str
    export: str | None = None  # exported model directory (default: <output>/model)
    steps: int = 100
    batch_size: int = 32
    budget_tokens: int = 4096
    grad_cache: bool = True
    seed: int = 0
    parallel: Literal["auto", "none", "ddp", "fsdp"] = "auto"
    bf16: Literal["auto", "on", "off"] = "auto"
    device: str | None = None
    log_every: int = 1
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    stop_after: int | None = None  # steps to run in this invocation (checkpoint, then stop)
    progress: bool | None = None
    eval_every: int = 0  # steps between evaluations with eval_suite (0: never; rank 0, not under FSDP)
    eval_suite: str = "quick"
    eval_at_start: bool = False  # evaluate the initial student too (logged as step 0)
    eval_data: str | None = None  # evaluation data root (default: $HARRIER_DATA, as harrier eval --data-root)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    model: ModelConfig
    data: DataConfig
    run: RunConfig
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    teacher: TeacherConfig | None = None


def _coerce(value: Any, annotation: str, where: str) -> Any:
    """YAML 1.1 reads ``1e-5`` as a string; numbers in numeric fields are converted (or rejected) here."""
    if isinstance(value, bool) or value is None:
        return value
    if annotation.startswith("bool"):
        raise ValueError(f"{where} must be true or false, got {value!r}")
    if annotation.startswith("float") and isinstance(value, str | int):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{where} must be a number, got {value!r}") from None
    if annotation.startswith("int") and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{where} must be an integer, got {value!r}") from None
    return value


def _literal(value: Any, hint: Any, where: str) -> Any:
    """Check a value against a ``Literal[...]`` field; YAML 1.1 reads ``on``/``off`` as booleans, mapped back."""
    allowed = get_args(hint)
    if isinstance(value, bool) and {"on", "off"} <= set(allowed):
        value = "on" if value else "off"
    if value not in allowed:
        raise ValueError(f"{where} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ValueError(f"config section {where!r} must be a mapping, got {type(raw).__name__}")
    known = {f.name: f for f in fields(cls)}
    hints = get_type_hints(cls)
    unknown = set(raw) - set(known)
    if unknown:
        raise ValueError(f"unknown keys in {where!r}: {sorted(unknown)}; known: {', '.join(known)}")
    kwargs = {}
    for name, value in raw.items():
        if name == "datasets":
            value = tuple(_build(DatasetSpec, d, f"{where}.datasets[{i}]") for i, d in enumerate(value or []))
        elif name == "betas":
            value = tuple(float(v) for v in value)
        kwargs[name] = _coerce(value, str(known[name].type), f"{where}.{name}")
        if get_origin(hints[name]) is Literal:
            kwargs[name] = _literal(kwargs[name], hints[name], f"{where}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"config section {where!r}: {err}") from err


SECTIONS = {"model": ModelConfig, "data": DataConfig, "run": RunConfig, "loss": LossConfig, "optim": OptimConfig,
            "teacher": TeacherConfig}


def from_dict(raw: dict[str, Any]) -> TrainConfig:
    """Validate a nested mapping into a :class:`TrainConfig` (unknown keys are errors, not ignored)."""
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown config sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    for required in ("model", "data", "run"):
        if required not in raw:
            raise ValueError(f"config needs a {required!r} section")
    parts = {k: _build(SECTIONS[k], v, k) for k, v in raw.items() if v is not None}
    cfg = TrainConfig(**parts)
    if not cfg.data.datasets:
        raise ValueError("data.datasets is empty")
    prompted = [i for i, d in enumerate(cfg.data.datasets) if (d.teacher_query_prompt, d.teacher_document_prompt)
                != (None, None)]
    if prompted and cfg.teacher is None:
        raise ValueError(f"data.datasets[{prompted[0]}] sets teacher prompts but the config has no teacher section")
    if cfg.teacher is not None and cfg.teacher.projection and cfg.loss.align_weight == 0:
        raise ValueError("teacher.projection is set but loss.align_weight is 0: nothing uses a projection")
    if cfg.run.steps < 1 or cfg.run.batch_size < 1 or cfg.run.budget_tokens < 1:
        raise ValueError("run.steps, run.batch_size and run.budget_tokens must be >= 1")
    return cfg


def _yaml():
    from harrier.extras import require

    return require("yaml", "train", "reading training recipes")


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["optim.lr=1e-5", "run.steps=10"]`` applied to a nested mapping (values parsed as YAML scalars)."""
    yaml = _yaml()
    out = json.loads(json.dumps(raw))
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set expects key.path=value, got {item!r}")
        key, value = item.split("=", 1)
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {key}: {p!r} is not a section")
        try:
            node[leaf] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ValueError(f"--set {key}: {value!r} is not a YAML value") from err
    return out


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML (or JSON) recipe holds; errors are one ValueError naming the file (and line)."""
    yaml = _yaml()
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file {p} does not exist")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ValueError(f"config file {p}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"config file {where}: invalid YAML ({what})") from err
    if not isinstance(raw, dict):
        raise ValueError(f"config file {p} must hold a mapping of sections, got {type(raw).__name__}")
    return raw


def load(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML (or JSON) recipe and apply overrides."""
    return from_dict(apply_overrides(read_recipe(path), overrides or []))


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved configuration as plain JSON-able data."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))
