"""The shipped metadata of the 131 MTEB(Multilingual, v2) tasks: type, main score, splits, subsets, protocol.

``harrier/data/mteb_v2_task_metadata.json`` is generated from an installed mteb (``scripts/mteb_task_metadata.py``,
``mteb_metadata.py``) and read here without mteb, so a task file named after an MTEB task is scored with that
task's own constants (AmazonCounterfactualClassification: 32 samples per label, not Classification's 8).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources

from harrier.eval.protocols import DATA_FIELDS, TaskProtocol, protocol_from_json, protocol_json

METADATA_FILE = "data/mteb_v2_task_metadata.json"

# Constants harrier's scorers fix (see mteb_metadata._scorer), by mteb base class: a task whose metadata sets any
# of them otherwise is refused rather than scored differently from mteb.
_SEED = {"seed": 42}
SCORER: dict[str, dict[str, object]] = {
    "AbsTaskClassification": {**_SEED, "evaluator_model": "LogisticRegression()", "is_cross_validation": False},
    "AbsTaskMultilabelClassification": {**_SEED, "evaluator_model": "KNeighborsClassifier()",
                                        "is_cross_validation": False},
    "AbsTaskClustering": dict(_SEED),
    "AbsTaskClusteringLegacy": {**_SEED, "clustering_batch_size": 500},
    "AbsTaskSTS": {**_SEED, "input1_prompt_type": None, "input2_prompt_type": None},
    "AbsTaskPairClassification": {**_SEED, "input1_prompt_type": None, "input2_prompt_type": None},
    "AbsTaskBitextMining": dict(_SEED),
    "AbsTaskRetrieval": dict(_SEED),
}


@dataclass(frozen=True)
class TaskMetadata:
    """One MTEB task as the shipped file describes it (``subsets``: hf_subset -> mteb language codes, in mteb's
    order; ``transforms_data``: mteb methods that change the downloaded data, which a task file must already hold
    transformed)."""

    name: str
    type: str
    main_score: str
    eval_splits: tuple[str, ...]
    subsets: Mapping[str, tuple[str, ...]]
    revision: str | None
    prompt: str | Mapping[str, str] | None
    mteb_class: str
    protocol: TaskProtocol
    scorer: Mapping[str, object]
    transforms_data: tuple[str, ...] = ()
    mteb_version: str = ""


@dataclass(frozen=True)
class MetadataUse:
    """What a result records about the metadata behind its protocol: the MTEB task (None: the task type's
    defaults), the mteb version the file was generated from, and the ``--protocol`` overrides on top."""

    task: str | None
    mteb_version: str | None
    overrides: Mapping[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"task": self.task, "mteb_version": self.mteb_version, "file": METADATA_FILE if self.task else None,
                "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in self.overrides.items()}}


@functools.cache
def _table() -> dict[str, object]:
    return json.loads(resources.files("harrier").joinpath(METADATA_FILE).read_text(encoding="utf-8"))


def mteb_version() -> str:
    """The mteb release the shipped metadata was generated from."""
    return str(_table()["mteb_version"])


def task_names() -> list[str]:
    return list(_table()["tasks"])  # type: ignore[arg-type]


def is_mteb_task(name: str) -> bool:
    return name in _table()["tasks"]  # type: ignore[operator]


def task_metadata(name: str) -> TaskMetadata:
    """The shipped metadata of an MTEB(Multilingual, v2) task; ValueError with close matches for another name."""
    tasks: dict[str, dict] = _table()["tasks"]  # type: ignore[assignment]
    if name not in tasks:
        from harrier.prompts import unknown_name_error

        raise unknown_name_error("MTEB task", name, list(tasks))
    e = tasks[name]
    return TaskMetadata(name=name, type=e["type"], main_score=e["main_score"], eval_splits=tuple(e["eval_splits"]),
                        subsets={s: tuple(langs) for s, langs in e["subsets"].items()},
                        revision=e["dataset"]["revision"], prompt=e["prompt"], mteb_class=e["mteb_class"],
                        protocol=protocol_from_json(e["protocol"]), scorer=e["scorer"],
                        transforms_data=tuple(e["transforms_data"]), mteb_version=mteb_version())


def check_scorer(meta: TaskMetadata) -> None:
    """ValueError when the task needs a scorer constant harrier fixes at another value."""
    ours = SCORER.get(meta.mteb_class)
    if ours is None:
        raise ValueError(f"{meta.name}: harrier has no scorer for mteb's {meta.mteb_class}")
    differ = [f"{k} {v!r} (harrier: {ours.get(k)!r})" for k, v in meta.scorer.items() if ours.get(k) != v]
    if differ:
        raise ValueError(f"{meta.name}: mteb scores it with {', '.join(differ)}, which harrier does not implement")


def protocol_differences(ours: Mapping[str, object], theirs: Mapping[str, object]) -> list[str]:
    """``key ours (mteb: theirs)`` for every protocol constant that differs (data-layout fields aside)."""
    keys = [k for k in dict.fromkeys([*theirs, *ours]) if k not in DATA_FIELDS]
    return [f"{k} {ours.get(k)!r} (mteb: {theirs.get(k)!r})" if k != "name" else
            f"protocol {ours.get(k)} (mteb: {theirs.get(k)})" for k in keys if ours.get(k) != theirs.get(k)]


def expected_protocol(name: str) -> dict[str, object] | None:
    """The protocol JSON mteb's metadata gives task ``name`` (None: not an MTEB(Multilingual, v2) task)."""
    return protocol_json(task_metadata(name).protocol) if is_mteb_task(name) else None
