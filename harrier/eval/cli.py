"""``harrier eval``: parse options, call ``harrier.eval``, print tables. The lead's ``harrier/cli.py`` wires
``add_parser`` and ``run`` in; ValueErrors become one error line (exit 2) there.

    harrier eval --model DIR (--tasks A,B [--langs x,y] | --suite quick | --task-file F --task-type T) [--output DIR]
    harrier eval compare RESULTS_DIR --published MODEL_ID
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from harrier.eval.tasks import SUITES, TASK_TYPES
from harrier.loading import DTYPE_NAMES

log = logging.getLogger(__name__)


def _csv(value: str) -> list[str]:
    return [x.strip() for x in value.split(",") if x.strip()]


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``eval`` subcommand (and ``eval compare``) to the ``harrier`` parser."""
    p = subparsers.add_parser("eval", help="evaluate an embedding model on MTEB-style tasks (offline, local data)",
                              description="Evaluate a model directory on built-in tasks, a named suite, or your own "
                                          "JSONL task file. Subcommand: eval compare RESULTS --published MODEL.")
    p.add_argument("--model", help="model directory (harrier or any Sentence-Transformers model)")
    p.add_argument("--tasks", type=_csv, help="comma-separated task names, e.g. STSBenchmark,Tatoeba")
    p.add_argument("--langs", type=_csv, help="comma-separated subsets or ISO 639-3 codes, e.g. deu,fra")
    p.add_argument("--splits", type=_csv, help="comma-separated splits to evaluate (default: the task's)")
    p.add_argument("--suite", choices=sorted(SUITES), help="a named set of tasks (quick: minutes on a CPU)")
    p.add_argument("--task-file", help="your own task as JSONL (see docs/evaluation.md)")
    p.add_argument("--task-type", choices=TASK_TYPES, help="task type of --task-file (default: --task-name's)")
    p.add_argument("--task-name", help="the MTEB(Multilingual, v2) task --task-file holds: its metadata gives the "
                   "type, main score, protocol and prompt (default: the file's name when it is such a task)")
    p.add_argument("--protocol", action="append", default=[], metavar="KEY=VALUE",
                   help="set a protocol constant (repeatable), e.g. samples_per_label=32; recorded in the results")
    p.add_argument("--no-prefix-cache", action="store_true", help="recompute each prompt for every text (harrier "
                   "runtime; the cache is exact and on by default where it applies)")
    p.add_argument("--instruction", help="instruction for --task-file (instruction models only)")
    p.add_argument("--output", help="folder for one mteb-layout JSON per task")
    p.add_argument("--data-root", help="folder with the raw datasets (default: $HARRIER_DATA)")
    p.add_argument("--prompts", default="auto", choices=["auto", "instructions", "model", "none"],
                   help="prompt policy: instructions (harrier/mteb template), model (config prompts), none")
    p.add_argument("--prompt-alias", action="append", default=[], metavar="KEY=OTHER",
                   help="with the model's prompts, use its OTHER prompt for KEY (repeatable), e.g. BitextMining=STS")
    p.add_argument("--backend", default="auto", choices=["auto", "harrier", "sentence-transformers"],
                   help="runtime that loads --model (auto: harrier when it can)")
    p.add_argument("--dtype", default="float32", choices=DTYPE_NAMES,
                   help="compute dtype (auto: the checkpoint's; bf16 on a CPU only where it measures faster)")
    p.add_argument("--device", help="torch device (default: the runtime's choice)")
    p.add_argument("--batch-tokens", type=int, default=None,
                   help="token budget per batch (harrier runtime; default 4096 on CPU, 16384 on CUDA)")
    p.add_argument("--cache-dir", help="embedding cache folder (re-runs embed only new texts)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars: one line per task and subset instead")
    p.set_defaults(func=run)
    sub = p.add_subparsers(dest="eval_command")
    c = sub.add_parser("compare", help="compare result files with published mteb scores")
    c.set_defaults(func=run)
    c.add_argument("results", help="folder with result JSON files")
    c.add_argument("--published", required=True, help="published model id, e.g. google/embeddinggemma-300m")
    c.add_argument("--published-file", help="published scores JSON (default: harrier/published_mteb_scores.json "
                                            "beside the data root, when it is there)")
    c.add_argument("--data-root", dest="compare_data_root", help="data root used to find the default published file")
    c.add_argument("--tolerance", type=float, default=1.0, help="points of difference flagged with '!'")


def _published_file(args: argparse.Namespace) -> Path:
    if args.published_file:
        return Path(args.published_file)
    from harrier.eval.run import default_data_root

    given = args.compare_data_root or getattr(args, "data_root", None)
    root = Path(given) if given else default_data_root()
    if root is None:
        raise ValueError("no published scores file: pass --published-file FILE (a published_mteb_scores.json)")
    return root.parent / "harrier" / "published_mteb_scores.json"


def run_compare(args: argparse.Namespace) -> int:
    from harrier.eval.results import compare, format_comparison, read_published, read_results

    ours = read_results(args.results)
    published = read_published(_published_file(args), args.published)
    print(format_comparison(compare(ours, published), args.tolerance))
    from harrier.eval.results import protocol_warnings

    for line in protocol_warnings(args.results):
        print(line)
    return 0


def selections_from_args(args: argparse.Namespace) -> list:
    """The task selections the options ask for (ValueError when they are missing or contradictory)."""
    from harrier.eval.local import load_task_file
    from harrier.eval.run import resolve_data_root
    from harrier.eval.tasks import select_suite, select_tasks

    chosen = [x for x in ("tasks", "suite", "task_file") if getattr(args, x)]
    if len(chosen) != 1:
        raise ValueError("give exactly one of --tasks, --suite or --task-file")
    if args.task_file:
        return [load_task_file(args.task_file, args.task_type, instruction=args.instruction,
                               task_name=args.task_name, protocol=args.protocol)]
    if args.task_type or args.instruction or args.task_name:
        raise ValueError("--task-type, --task-name and --instruction apply only to --task-file")
    root = resolve_data_root(args.data_root)
    selections = select_suite(args.suite, root) if args.suite else select_tasks(args.tasks, root, langs=args.langs,
                                                                               splits=args.splits)
    return [_overridden(sel, args.protocol) for sel in selections] if args.protocol else selections


def _overridden(sel, assignments: list[str]):
    """A built-in task's selection with ``--protocol`` overrides applied (and recorded)."""
    import dataclasses

    from harrier.eval.metadata import MetadataUse
    from harrier.eval.protocols import override

    protocol, changes = override(sel.task.protocol, assignments)
    use = MetadataUse(None, None, changes)
    return dataclasses.replace(sel, task=dataclasses.replace(sel.task, protocol=protocol, metadata=use))


def _progress_line(line: str) -> None:
    """Without progress bars (--no-progress, or stderr not a terminal): a line per task and subset, so a log shows
    the run is alive."""
    print(f"harrier eval: {line}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run ``harrier eval`` (or ``harrier eval compare``); returns the exit code."""
    if getattr(args, "eval_command", None) == "compare":
        return run_compare(args)
    if not args.model:
        raise ValueError("--model is required (a model directory)")
    from harrier.eval.metrics import require_dependencies

    require_dependencies()  # before the task files are read and the model is loaded
    selections = selections_from_args(args)
    from harrier.outputs import check_dir

    if args.batch_tokens is not None and args.batch_tokens < 1:
        raise ValueError(f"--batch-tokens must be >= 1, got {args.batch_tokens}")
    if args.output:
        check_dir(args.output, "--output")
    if args.cache_dir:
        check_dir(args.cache_dir, "--cache-dir")
    from harrier.eval.encoders import alias_prompts, load_encoder
    from harrier.eval.results import format_results
    from harrier.eval.run import ResultsNotWrittenError, evaluate

    encoder = load_encoder(args.model, backend=args.backend, device=args.device, dtype=args.dtype,
                           batch_tokens=args.batch_tokens, progress=not args.no_progress,
                           prefix_cache=not args.no_prefix_cache)
    prompts = alias_prompts(encoder, args.prompt_alias) if args.prompt_alias else args.prompts
    bars = not args.no_progress and sys.stderr.isatty()
    try:
        results = evaluate(encoder, selections, data_root=args.data_root, prompts=prompts, output_dir=args.output,
                           cache_dir=args.cache_dir, progress=bars, report=None if bars else _progress_line)
    except ResultsNotWrittenError as err:
        print(format_results(err.results))  # the scores are never lost to a failed write
        raise
    print(format_results(results))
    if args.output:
        print(f"results written to {args.output}")
    return 0
