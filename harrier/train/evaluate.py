"""Periodic evaluation during training with harrier's evaluation suite (``run.eval_suite``, e.g. ``quick``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from harrier.embedder import Embedder

log = logging.getLogger(__name__)


def suite_scores(student: Embedder, suite: str, *, data_root: str | None = None, output_dir: Path | None = None,
                 batch_tokens: int = 16_384, tasks: Sequence[str] | None = None) -> dict[str, float]:
    """Mean main score (x100) per task of ``suite`` (optionally only ``tasks`` of it) and their mean."""
    from harrier.eval import HarrierEncoder, evaluate, select_suite
    from harrier.eval.run import resolve_data_root

    was_training = student.model.training
    student.model.eval()
    try:
        enc = HarrierEncoder(student, "student", batch_tokens=batch_tokens)
        root = resolve_data_root(data_root)
        selections = select_suite(suite, root)
        if tasks is not None:
            unknown = set(tasks) - {s.task.name for s in selections}
            if unknown:
                raise ValueError(f"tasks {sorted(unknown)} are not in suite {suite!r}")
            selections = [s for s in selections if s.task.name in tasks]
        results = evaluate(enc, selections, data_root=root, output_dir=output_dir)
    finally:
        student.model.train(was_training)
    scores = {}
    for res in results:
        entries = [e for split in res.scores.values() for e in split]
        scores[res.task.name] = round(100 * sum(float(e["main_score"]) for e in entries) / len(entries), 2)
    scores["mean"] = round(sum(scores.values()) / len(scores), 2)
    log.info("eval %s: %s", suite, scores)
    return scores
