"""``harrier train | distill | mine-negatives | score-teacher | merge``: thin parsers over the training library.

The lead's ``harrier/cli.py`` calls :func:`add_parsers` on its subparsers and :func:`run` for these commands.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

COMMANDS = ("train", "distill", "mine-negatives", "score-teacher", "merge")
log = logging.getLogger(__name__)


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register the training subcommands."""
    p = subparsers.add_parser("train", help="train or fine-tune from a YAML recipe (torchrun-ready)")
    p.add_argument("--config", required=True, help="YAML recipe (see recipes/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. optim.lr=1e-5")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of run.output")
    p.set_defaults(train_command="train", func=run)

    p = subparsers.add_parser("distill", help="distil a teacher embedder into a student (decoder LM or embedder)")
    p.add_argument("--teacher", required=True, help="teacher embedding model (directory or hub id)")
    p.add_argument("--student", required=True, help="student: decoder LM (HF dir or .gguf) or an embedder")
    p.add_argument("--data", required=True, action="append", help="JSONL/TXT file or directory (repeatable)")
    p.add_argument("--output", required=True, help="exported student directory (the run's logs go to OUTPUT-run)")
    p.add_argument("--config", help="optional YAML recipe the flags override")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--teacher-query-prompt", default=None, help="default: the teacher's 'query' prompt")
    p.add_argument("--teacher-document-prompt", default=None, help="default: the teacher's 'document' prompt")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--resume", action="store_true")
    p.set_defaults(train_command="distill", func=run)

    p = subparsers.add_parser("mine-negatives", help="add hard negatives to query records")
    p.add_argument("--model", required=True)
    p.add_argument("--queries", required=True, help="JSONL records with query + positive(s)")
    p.add_argument("--corpus", required=True, help="JSONL/TXT documents ({'text': ...} or records)")
    p.add_argument("--output", required=True)
    p.add_argument("--k", type=int, default=7, help="negatives per query")
    p.add_argument("--range-min", type=int, default=0, help="skip this many top candidates")
    p.add_argument("--range-max", type=int, default=100)
    p.add_argument("--margin", type=float, default=0.05, help="drop candidates above score(positive) - margin")
    p.add_argument("--device", default=None)
    p.set_defaults(train_command="mine-negatives", func=run)

    p = subparsers.add_parser("score-teacher", help="add teacher_scores (cosines) to pair records")
    p.add_argument("--teacher", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--query-prompt", default=None, help="default: the teacher's 'query' prompt")
    p.add_argument("--document-prompt", default=None, help="default: the teacher's 'document' prompt")
    p.add_argument("--device", default=None)
    p.set_defaults(train_command="score-teacher", func=run)

    p = subparsers.add_parser("merge", help="merge checkpoints of one architecture (slerp or average)")
    p.add_argument("--models", required=True, nargs="+")
    p.add_argument("--method", choices=("slerp", "average"), default="slerp")
    p.add_argument("--weights", type=float, nargs="+", default=None)
    p.add_argument("--output", required=True)
    p.set_defaults(train_command="merge", func=run)


def teacher_prompts(path: str) -> tuple[str, str]:
    """The teacher's own ``query`` / ``document`` named prompts ('' where it has none)."""
    file = Path(path).expanduser() / "config_sentence_transformers.json"
    prompts = json.loads(file.read_text(encoding="utf-8")).get("prompts", {}) if file.is_file() else {}
    return prompts.get("query", ""), prompts.get("document", "")


def distill_config(args: argparse.Namespace) -> dict[str, Any]:
    """The distillation recipe the flags describe (on top of ``--config`` when given)."""
    from harrier.train.config import read_recipe

    raw: dict[str, Any] = read_recipe(args.config) if args.config else {}
    q_prompt, d_prompt = teacher_prompts(args.teacher)
    output = str(Path(args.output))
    raw.setdefault("model", {})["init"] = args.student
    teacher = raw.setdefault("teacher", {})
    teacher.update(path=args.teacher,
                   query_prompt=args.teacher_query_prompt if args.teacher_query_prompt is not None
                   else teacher.get("query_prompt", q_prompt),
                   document_prompt=args.teacher_document_prompt if args.teacher_document_prompt is not None
                   else teacher.get("document_prompt", d_prompt))
    raw.setdefault("data", {})["datasets"] = [{"path": d} for d in args.data]
    raw.setdefault("loss", {"contrastive_weight": 1.0, "kl_weight": 1.0, "align_weight": 1.0})
    run = raw.setdefault("run", {})
    run.update(output=run.get("output") or f"{output}-run", export=output)
    for key, value in (("steps", args.steps), ("batch_size", args.batch_size)):
        if value is not None:
            run[key] = value
    if args.lr is not None:
        raw.setdefault("optim", {})["lr"] = args.lr
    if args.max_length is not None:
        raw["model"]["max_length"] = args.max_length
        teacher["max_length"] = args.max_length
    return raw


def _main_rank_lock(folder: str, what: str):
    """The job lock of a run folder in the main process (torchrun's other ranks take none)."""
    from harrier.joblock import hold

    return hold(folder, f"{what} {folder}") if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext()


def run(args: argparse.Namespace) -> int:
    """Execute one training subcommand; returns the process exit code."""
    from harrier.joblock import hold
    from harrier.outputs import check_dir, check_file
    from harrier.train import config as train_config

    cmd = args.train_command
    if cmd in ("train", "distill"):
        from harrier.train.loop import train

        if cmd == "train":
            cfg = train_config.load(args.config, args.set)
        else:
            cfg = train_config.from_dict(train_config.apply_overrides(distill_config(args), args.set))
        check_dir(cfg.run.output, "run.output")
        with _main_rank_lock(cfg.run.output, "run.output"):  # before any model loads; train() holds it again
            out = train(cfg, resume=args.resume)
        if os.environ.get("RANK", "0") != "0":  # torchrun: one report, from rank 0
            return 0
        print(f"stopped early; resume with --resume (checkpoints in {cfg.run.output})" if out is None
              else f"exported {out}")
        return 0
    if cmd == "mine-negatives":
        from harrier import Embedder
        from harrier.train.mine import mine_file

        check_file(args.output)
        with hold(args.output, f"output {args.output}", folder=False):
            model = Embedder.from_pretrained(args.model, device=args.device)
            n = mine_file(model, args.queries, args.corpus, args.output, k=args.k, range_min=args.range_min,
                          range_max=args.range_max, margin=args.margin)
        print(f"wrote {n} records with hard negatives to {args.output}")
        return 0
    if cmd == "score-teacher":
        import torch

        from harrier.train.config import TeacherConfig
        from harrier.train.teacher import Teacher, score_file

        check_file(args.output)
        q, d = teacher_prompts(args.teacher)
        cfg = TeacherConfig(path=args.teacher, query_prompt=q if args.query_prompt is None else args.query_prompt,
                            document_prompt=d if args.document_prompt is None else args.document_prompt)
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        with hold(args.output, f"output {args.output}", folder=False):
            n = score_file(Teacher(cfg, device), Path(args.data), Path(args.output))
        print(f"wrote {n} scored records to {args.output}")
        return 0
    if cmd == "merge":
        from harrier.train.merge import merge_models

        check_dir(args.output)
        out = merge_models(args.models, args.output, method=args.method, weights=args.weights)
        print(f"merged {len(args.models)} models into {out}")
        return 0
    raise ValueError(f"unknown training command {cmd!r}; known: {', '.join(COMMANDS)}")


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m harrier.train``): ``--config`` runs ``train``; otherwise a subcommand."""
    parser = argparse.ArgumentParser(prog="python -m harrier.train")
    sub = parser.add_subparsers(dest="command")
    add_parsers(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("--"):
        argv = ["train", *argv]
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except (ValueError, OSError) as err:
        print(f"harrier: error: {err}", file=sys.stderr)
        return 2
