"""Quick suite for a distilled student before training, after training, and its teacher, side by side.

    python benchmarks/distill_report.py --student runs/distill-270m-cpu/model \
        [--init /root/.cache/harrier-models/gemma-3-270m/gemma-3-270m-q4_k_m.gguf] \
        [--teacher /root/.cache/harrier-models/embeddinggemma-300m] [--train-log runs/distill-270m-cpu/train_log.jsonl]

All three models are evaluated in one run, with the same data, suite and dtype (bf16 by default). The student is
scored with harrier's instruction prompts (the 131-task table), the teacher with its own checkpoint prompts, as
``harrier eval`` does for each. Prints per subset and per task: before, after, teacher, after/teacher; then the
suite mean (mean over tasks of the mean over subsets, as ``run.eval_every`` logs it) and the training throughput
read from the training log.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from harrier import Embedder
from harrier.eval.encoders import load_encoder, weights_fingerprint
from harrier.eval.run import evaluate, resolve_data_root
from harrier.eval.tasks import select_suite
from harrier.train.student import load_student

MODELS = "/root/.cache/harrier-models"


def suite_run(path: str, selections: list, root: Path, dtype: str,
              cache_dir: str | None) -> tuple[dict[str, dict[str, float]], float]:
    """task -> subset -> main score (x100), and the wall time."""
    start = time.monotonic()
    encoder = load_encoder(path, backend="harrier", dtype=dtype)
    results = evaluate(encoder, selections, data_root=root, cache_dir=cache_dir)
    scores = {r.task.name: {f"{subset}/{split}": 100 * v for (split, subset), v in r.main_scores().items()}
              for r in results}
    return scores, time.monotonic() - start


def task_mean(scores: dict[str, float]) -> float:
    return sum(scores.values()) / len(scores)


def train_summary(log_path: Path) -> str:
    rows = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    steps = {r["step"]: r for r in rows if "loss" in r}  # a resumed run logs re-run steps twice; keep the last
    if not steps:
        return f"# {log_path}: no training steps logged"
    tokens = sum(r["tokens"] for r in steps.values())
    seconds = sum(r["step_s"] for r in steps.values())
    peak = max(r["mem_gb"] for r in steps.values())
    teacher = ""
    if all("teacher_s" in r for r in steps.values()):
        teacher = f" (teacher forward {100 * sum(r['teacher_s'] for r in steps.values()) / seconds:.0f}% of step time)"
    return (f"# training: {len(steps)} steps, {tokens} student tokens in {seconds / 60:.1f} min of steps = "
            f"{tokens / seconds:.0f} tokens/s{teacher}, peak memory {peak:.1f} GB")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--student", required=True, help="the trained student (exported directory)")
    p.add_argument("--init", default=f"{MODELS}/gemma-3-270m/gemma-3-270m-q4_k_m.gguf",
                   help="what the student was initialised from (decoder LM .gguf / directory, or an embedder)")
    p.add_argument("--teacher", default=f"{MODELS}/embeddinggemma-300m")
    p.add_argument("--train-log", help="the run's train_log.jsonl (default: next to the student's directory)")
    p.add_argument("--suite", default="quick")
    p.add_argument("--tasks", help="comma-separated tasks of the suite (default: all)")
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    p.add_argument("--data-root")
    p.add_argument("--cache-dir", help="embedding cache: a re-run embeds only models it has not seen (the converted "
                                       "initial student is kept there too)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    root = resolve_data_root(args.data_root)
    selections = select_suite(args.suite, root)
    if args.tasks:
        wanted = args.tasks.split(",")
        unknown = set(wanted) - {s.task.name for s in selections}
        if unknown:
            p.error(f"tasks {sorted(unknown)} are not in suite {args.suite!r}")
        selections = [s for s in selections if s.task.name in wanted]

    runs: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        init_dir = Path(tmp) / "student-init"
        if args.cache_dir:
            init_dir = Path(args.cache_dir) / f"student-init-{weights_fingerprint(args.init)}"
        if not init_dir.is_dir():
            # the untrained student, converted as training does
            Embedder(load_student(args.init)).save_pretrained(init_dir)
        for label, path in (("before", str(init_dir)), ("after", args.student), ("teacher", args.teacher)):
            runs[label], seconds = suite_run(path, selections, root, args.dtype, args.cache_dir)
            print(f"# {label}: {path} ({seconds:.0f} s)", flush=True)

    print(f"\n{'task':<28} {'subset':<18} {'before':>7} {'after':>7} {'teacher':>7} {'after/teacher':>13}")
    means = {label: {} for label in runs}
    for task, subsets in runs["teacher"].items():
        for key in subsets:
            b, a, t = (runs[label][task][key] for label in ("before", "after", "teacher"))
            print(f"{task:<28} {key:<18} {b:7.2f} {a:7.2f} {t:7.2f} {100 * a / t:12.1f}%")
        for label in runs:
            means[label][task] = task_mean(runs[label][task])
        b, a, t = (means[label][task] for label in ("before", "after", "teacher"))
        print(f"{task:<28} {'(task mean)':<18} {b:7.2f} {a:7.2f} {t:7.2f} {100 * a / t:12.1f}%")
    b, a, t = (task_mean(means[label]) for label in ("before", "after", "teacher"))
    print(f"{'suite mean':<47} {b:7.2f} {a:7.2f} {t:7.2f} {100 * a / t:12.1f}%")
    label = args.suite + (f" ({args.tasks})" if args.tasks else "")
    print(f"# student keeps {100 * a / t:.1f}% of the teacher's {label} mean (before training: {100 * b / t:.1f}%)")
    log_path = Path(args.train_log) if args.train_log else Path(args.student).parent / "train_log.jsonl"
    if log_path.is_file():
        print(train_summary(log_path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
