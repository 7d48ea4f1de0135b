"""MTEB-style evaluation on local data: ``evaluate(encoder, selections)`` with mteb's protocols and prompts.

See docs/evaluation.md. The seams: ``Encoder`` (anything with ``name``, ``prompts`` and ``encode(texts, *, prompt)``)
and ``PromptPolicy``; tasks come from ``select_tasks`` / ``select_suite`` (built-in data) or ``load_task_file``.
"""

from __future__ import annotations

from harrier.eval.encoders import (
    Encoder,
    HarrierEncoder,
    InstructionPrompts,
    NamedPrompts,
    NoPrompts,
    PromptPolicy,
    SentenceTransformerEncoder,
    load_encoder,
)
from harrier.eval.local import load_task_file
from harrier.eval.results import TaskResult, compare, format_comparison, read_published, read_results
from harrier.eval.run import evaluate
from harrier.eval.tasks import SUITES, Selection, TaskSpec, builtin_tasks, select_suite, select_tasks

__all__ = [
    "SUITES", "Encoder", "HarrierEncoder", "InstructionPrompts", "NamedPrompts", "NoPrompts", "PromptPolicy",
    "Selection", "SentenceTransformerEncoder", "TaskResult", "TaskSpec", "builtin_tasks", "compare", "evaluate",
    "format_comparison", "load_encoder", "load_task_file", "read_published", "read_results", "select_suite",
    "select_tasks",
]
