"""Results in mteb's JSON layout (one file per task), printed tables, and comparison with published scores."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harrier.eval.protocols import protocol_json
from harrier.eval.tasks import TaskSpec


def _jsonable(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):
        return value.item()  # numpy scalars
    return value


def subset_entry(task: TaskSpec, subset: str, scores: Mapping[str, object]) -> dict[str, object]:
    """One entry of ``scores[split]``: mteb's metric names plus ``hf_subset`` and ``languages``."""
    entry = {k: _jsonable(v) for k, v in scores.items()}
    entry["main_score"] = _jsonable(scores[task.main_score] if task.main_score in scores else scores["main_score"])
    entry["hf_subset"] = subset
    entry["languages"] = list(task.languages.get(subset, ()))
    return entry


@dataclass
class TaskResult:
    """One task's scores per split and subset, with what produced them."""

    task: TaskSpec
    scores: dict[str, list[dict[str, object]]]
    evaluation_time: float
    model: str
    prompts: Mapping[str, str | None] = field(default_factory=dict)
    prompt_policy: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "dataset_revision": self.task.revision,
            "task_name": self.task.name,
            "mteb_version": None,
            "scores": self.scores,
            "evaluation_time": self.evaluation_time,
            "kg_co2_emissions": None,
            "harrier": {"model": self.model, "task_type": self.task.type, "main_score_name": self.task.main_score,
                        "prompt_policy": self.prompt_policy, "prompts": dict(self.prompts),
                        "protocol": protocol_json(self.task.protocol), "source": self.task.source,
                        "metadata": self.task.metadata.to_json() if self.task.metadata else None},
        }

    def write(self, output_dir: str | Path) -> Path:
        """Write ``{output_dir}/{task}.json`` atomically; when that fails (OSError), write it to a rescue path
        (``outputs.rescue_candidates``) and raise OutputError saying where it went."""
        from harrier.outputs import atomic_file, write_or_rescue

        out = Path(output_dir)
        with contextlib.suppress(OSError):
            out.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n"

        def write(path: Path) -> None:
            with atomic_file(path, "w", encoding="utf-8") as f:
                f.write(text)

        return write_or_rescue(out / f"{self.task.name}.json", write, what="result")

    def main_scores(self) -> dict[tuple[str, str], float]:
        """(split, subset) -> main score (0-1 scale, as mteb stores it)."""
        return {(split, e["hf_subset"]): float(e["main_score"]) for split, entries in self.scores.items()  # type: ignore[arg-type]
                for e in entries}


def read_results(folder: str | Path) -> dict[str, dict[tuple[str, str], float]]:
    """Task name -> (split, subset) -> main score, from every mteb-layout ``*.json`` under ``folder``."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"results folder {root} does not exist")
    out: dict[str, dict[tuple[str, str], float]] = {}
    for path in sorted(root.rglob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or "task_name" not in doc or "scores" not in doc:
            continue
        table = out.setdefault(doc["task_name"], {})
        for split, entries in doc["scores"].items():
            for e in entries:
                table[(split, e["hf_subset"])] = float(e["main_score"])
    if not out:
        raise ValueError(f"no mteb result files (*.json with task_name and scores) under {root}")
    return out


def protocol_warnings(folder: str | Path) -> list[str]:
    """One line per result file under ``folder`` whose task is an MTEB(Multilingual, v2) task scored with another
    protocol than mteb's metadata gives it (the published runs used mteb's): its scores are not comparable."""
    from harrier.eval.metadata import expected_protocol, mteb_version, protocol_differences

    lines = []
    for path in sorted(Path(folder).rglob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        block = doc.get("harrier") if isinstance(doc, dict) else None
        theirs = expected_protocol(str(doc.get("task_name"))) if isinstance(block, dict) else None
        if theirs is None or not block.get("protocol"):
            continue
        differ = protocol_differences(block["protocol"], theirs)
        if differ:
            lines.append(f"warning: {doc['task_name']} was scored with {', '.join(differ)}; the published runs use "
                         f"mteb's metadata (mteb {mteb_version()}), so its scores are not comparable")
    return lines


def read_published(path: str | Path, model: str) -> dict[str, dict[tuple[str, str], float]]:
    """Published main scores (x100) of ``model`` from ``published_mteb_scores.json``."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"published scores file {p} does not exist; pass --published-file")
    models = json.loads(p.read_text(encoding="utf-8"))["models"]
    if model not in models:
        from harrier.prompts import unknown_name_error

        raise unknown_name_error("published model", model, list(models))
    return {task: {(split, sub): float(v) for split, subs in doc["splits"].items() for sub, v in subs.items()}
            for task, doc in models[model].items()}


@dataclass(frozen=True)
class Comparison:
    task: str
    split: str
    subset: str
    ours: float  # x100
    published: float | None  # x100

    @property
    def diff(self) -> float | None:
        return None if self.published is None else self.ours - self.published


def compare(ours: Mapping[str, Mapping[tuple[str, str], float]],
            published: Mapping[str, Mapping[tuple[str, str], float]]) -> list[Comparison]:
    """Our scores (0-1) against published ones (x100), per task, split and subset we evaluated."""
    rows = []
    for task, table in ours.items():
        for (split, subset), value in sorted(table.items()):
            rows.append(Comparison(task, split, subset, 100 * value, published.get(task, {}).get((split, subset))))
    return rows


def format_comparison(rows: Sequence[Comparison], tolerance: float = 1.0) -> str:
    """A fixed-width table: ours vs published and the difference; ``!`` marks |diff| > tolerance."""
    lines = [f"{'task':<30} {'split':<10} {'subset':<10} {'ours':>7} {'published':>9} {'diff':>7}"]
    for r in rows:
        pub = "-" if r.published is None else f"{r.published:9.2f}"
        diff = "" if r.diff is None else f"{r.diff:+7.2f}" + (" !" if abs(r.diff) > tolerance else "")
        lines.append(f"{r.task:<30} {r.split:<10} {r.subset:<10} {r.ours:7.2f} {pub:>9} {diff}")
    diffs = [abs(r.diff) for r in rows if r.diff is not None]
    if diffs:
        within = sum(d <= tolerance for d in diffs)
        lines.append(f"{within}/{len(diffs)} subsets within {tolerance:.1f} point of published; "
                     f"mean |diff| {sum(diffs) / len(diffs):.2f}")
    return "\n".join(lines)


def format_results(results: Sequence[TaskResult]) -> str:
    """Main scores (x100) of evaluated tasks, one line per split and subset."""
    lines = [f"{'task':<30} {'split':<10} {'subset':<12} {'main':>7}"]
    for res in results:
        for (split, subset), value in res.main_scores().items():
            lines.append(f"{res.task.name:<30} {split:<10} {subset:<12} {100 * value:7.2f}")
    return "\n".join(lines)
