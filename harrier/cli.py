"""The ``harrier`` command: thin argument parsing over the library; every user error is one line and exit 2.

    harrier encode --model microsoft/harrier-oss-v1-270m --prompt-name web_search_query --input q.txt --output q.npy
    harrier encode --model ./my-model --input docs.jsonl --output chunks.jsonl --chunk 512 --overlap 64 --aggregate none
    harrier info --model ./my-model
    harrier similarity --model ./my-model queries.txt docs.txt --prompt-name web_search_query
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harrier import cpu_malloc
from harrier.cli_flags import model_flags, prompt_flags
from harrier.outputs import OutputError, atomic_file, check_file, write_or_rescue

INPUT_FORMATS = (".txt", ".jsonl")
OUTPUT_FORMATS = (".npy", ".jsonl")
log = logging.getLogger("harrier.cli")


class CLIError(Exception):
    """A user error the CLI reports as one line."""


@dataclass(frozen=True)
class TextInput:
    """The non-blank texts of one input, each with its 1-based line number (and, for JSONL, its record)."""

    texts: list[str]
    lines: list[int]
    records: list[dict] | None


def read_texts(source: str, *, strict: bool = False) -> TextInput:
    """Texts from .txt (one per line), .jsonl (a ``text`` field per line) or '-' (stdin, one per line).

    Blank and whitespace-only texts are skipped with one warning giving their count (the rows that come out follow
    the non-blank lines in order, and JSONL rows carry their ``line``), or refused with ``strict``.
    """
    records = None
    if source == "-":
        numbered = list(enumerate((line.rstrip("\r\n") for line in sys.stdin), 1))
    else:
        lines = _read_lines(source)
        if Path(source).suffix == ".txt":
            numbered = list(enumerate(lines, 1))
        else:
            numbered, records = _read_records(source, lines)
    what = "line {} is blank" if records is None else "line {}: 'text' is blank"
    blank = [k for k, (_, text) in enumerate(numbered) if not text.strip()]
    if blank and strict:
        raise CLIError(f"input {source} " + what.format(numbered[blank[0]][0]) + " (--strict)")
    if blank:
        kind = "blank lines" if records is None else "records with a blank 'text'"
        log.warning("input %s: skipped %d %s (first: line %d); the output has one row per non-blank line, in order",
                    source, len(blank), kind, numbered[blank[0]][0])
    keep = sorted(set(range(len(numbered))) - set(blank))
    return TextInput(texts=[numbered[k][1] for k in keep], lines=[numbered[k][0] for k in keep],
                     records=None if records is None else [records[k] for k in keep])


def _read_lines(source: str) -> list[str]:
    path = Path(source).expanduser()
    if path.suffix not in INPUT_FORMATS:
        raise CLIError(f"input {source}: unsupported format {path.suffix or '(none)'}; use .txt, .jsonl or -")
    if not path.is_file():
        raise CLIError(f"input {source}: no such file")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise CLIError(f"input {source}: not UTF-8 text ({err.reason} at byte {err.start})") from err


def _read_records(source: str, lines: list[str]) -> tuple[list[tuple[int, str]], list[dict]]:
    from harrier.jsonl import JsonlError, parse_lines

    numbered, records = [], []
    try:
        for n, record in parse_lines(lines):
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise CLIError(f"input {source} line {n}: expected an object with a string field 'text'")
            numbered.append((n, record["text"]))
            records.append(record)
    except JsonlError as err:
        raise CLIError(f"input {source} line {err.line}: {err.reason}") from err
    clash = sorted({k for r in records for k in ("line", "embedding") if k in r})
    if clash:
        log.warning("input %s: records have the field(s) %s, which the output replaces (input line number, vector)",
                    source, ", ".join(clash))
    return numbered, records


def check_output(target: str, inputs: Sequence[str]) -> Path | None:
    """The output file, checked before any work (format, not an input, a file that can be created); None for '-'."""
    if target == "-":
        return None
    path = Path(target).expanduser()
    if path.suffix not in OUTPUT_FORMATS:
        raise CLIError(f"output {target}: unsupported format {path.suffix or '(none)'}; use .npy, .jsonl or -")
    for source in inputs:
        if source != "-" and path.is_file() and Path(source).expanduser().is_file() and path.samefile(source):
            raise CLIError(f"output {target}: is the input file; give another name")
    return check_file(target)


def check_model_args(args: argparse.Namespace) -> None:
    if args.max_length is not None and args.max_length < 2:
        raise CLIError(f"--max-length must be at least 2 (tokens per text, special tokens included), "
                       f"got {args.max_length}")


def check_encode_args(args: argparse.Namespace) -> None:
    """What can be checked without the model: lengths, budgets and the prompt flags that need no checkpoint."""
    from harrier.prompts import instruction_prefix, task_instruction

    check_model_args(args)
    if args.batch_tokens is not None and args.batch_tokens < 1:
        raise CLIError(f"--batch-tokens must be positive, got {args.batch_tokens}")
    if args.task is not None:
        task_instruction(args.task)
    if args.instruction is not None:
        instruction_prefix(args.instruction)


def write_embeddings(path: Path, emb: np.ndarray, inp: TextInput) -> None:
    """.npy, or .jsonl (records with ``line`` and ``embedding`` fields), atomically."""
    if path.suffix == ".npy":
        with atomic_file(path, "wb") as f:
            np.save(f, emb)
    else:
        write_lines(path, _jsonl_lines(emb, inp))


def write_lines(path: Path, lines: Iterable[str]) -> None:
    with atomic_file(path, "w", encoding="utf-8") as f:
        f.writelines(lines)


def _jsonl_lines(emb: np.ndarray, inp: TextInput) -> Iterator[str]:
    for i, vec in enumerate(emb):
        base = dict(inp.records[i]) if inp.records is not None else {"text": inp.texts[i]}
        base["line"] = inp.lines[i]
        base["embedding"] = [round(float(x), 7) for x in vec]
        yield json.dumps(base, ensure_ascii=False) + "\n"


def load(args: argparse.Namespace):
    from harrier import Embedder

    return Embedder.from_pretrained(args.model, device=args.device, dtype=args.dtype, max_length=args.max_length,
                                    truncation=args.truncation, allow_over_positions=args.allow_over_positions,
                                    compile=args.compile, prefix_cache=not args.no_prefix_cache)


def prompt_kwargs(args: argparse.Namespace) -> dict:
    return {"prompt_name": args.prompt_name, "instruction": args.instruction, "task": args.task,
            "prompt": args.prompt}


def _chunk_lines(result, inp: TextInput) -> Iterator[str]:
    """One JSONL line per chunk: source index, input line (and the record's id), chunk index, character span,
    embedding."""
    for k, vec in enumerate(result.embeddings):
        i, s, e = int(result.source[k]), int(result.char_start[k]), int(result.char_end[k])
        row = {"source": i, "line": inp.lines[i]}
        if inp.records is not None and "id" in inp.records[i]:
            row["id"] = inp.records[i]["id"]
        row.update(chunk=int(result.chunk_index[k]), char_start=s, char_end=e, tokens=int(result.tokens[k]),
                   text=inp.texts[i][s:e], embedding=[round(float(x), 7) for x in vec])
        yield json.dumps(row, ensure_ascii=False) + "\n"


def check_chunk_flags(args: argparse.Namespace) -> None:
    if args.chunk is None:
        if args.overlap is not None or args.aggregate is not None:
            raise CLIError("--overlap and --aggregate need --chunk N (tokens per chunk)")
        return
    if args.aggregate == "none" and args.output != "-" and Path(args.output).suffix != ".jsonl":
        raise CLIError("--aggregate none writes one line per chunk: use a .jsonl output or -")
    if args.chunk < 2:
        raise CLIError(f"--chunk must be at least 2 (tokens per chunk, prompt and special tokens included), "
                       f"got {args.chunk}")
    overlap = 64 if args.overlap is None else args.overlap
    if overlap < 0:
        raise CLIError(f"--overlap must be at least 0, got {overlap}")
    if overlap >= args.chunk:
        raise CLIError(f"--overlap {overlap}{' (the default)' if args.overlap is None else ''} must be below "
                       f"--chunk {args.chunk} (and below its text tokens: the prompt and special tokens count too)")


def cmd_encode(args: argparse.Namespace) -> int:
    out = check_output(args.output, [args.input])
    check_encode_args(args)
    check_chunk_flags(args)
    inp = read_texts(args.input, strict=args.strict)
    model = load(args)
    progress = False if args.no_progress else None
    if args.chunk is not None:
        result = model.encode_chunked(inp.texts, chunk=args.chunk, overlap=64 if args.overlap is None else args.overlap,
                                      aggregate=args.aggregate or "mean", batch_tokens=args.batch_tokens,
                                      progress=progress, **prompt_kwargs(args))
        if result.aggregate == "none":
            if out is None:
                sys.stdout.writelines(_chunk_lines(result, inp))
                return 0
            write_or_rescue(out, lambda path: write_lines(path, _chunk_lines(result, inp)))
            print(f"wrote {len(result.source)} chunk embeddings of {len(inp.texts)} texts to {args.output}",
                  file=sys.stderr)
            return 0
        emb = result.embeddings
    else:
        emb = model.encode(inp.texts, batch_tokens=args.batch_tokens, progress=progress, **prompt_kwargs(args))
    if out is None:
        sys.stdout.writelines(_jsonl_lines(emb, inp))
        return 0
    write_or_rescue(out, lambda path: write_embeddings(path, emb, inp))
    print(f"wrote {emb.shape[0]} embeddings of dim {emb.shape[1]} to {args.output}", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    check_model_args(args)
    info = asdict(load(args).info())
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    for key, value in info.items():
        if key == "prompts":
            print(f"{'prompts':<20}{len(value)}")
            width = max((len(n) for n in value), default=0) + 2
            for name, text in value.items():
                print(f"  {name:<{width}}{text!r}")
        else:
            print(f"{key:<20}{value:,}" if isinstance(value, int) and not isinstance(value, bool) else
                  f"{key:<20}{value}")
    return 0


def cmd_similarity(args: argparse.Namespace) -> int:
    check_encode_args(args)
    if args.a == "-" and args.b == "-":
        raise CLIError("only one of the two inputs can be - (stdin)")
    a = read_texts(args.a, strict=args.strict)
    b = read_texts(args.b, strict=args.strict)
    model = load(args)
    progress = False if args.no_progress else None
    qa = model.encode(a.texts, batch_tokens=args.batch_tokens, progress=progress, **prompt_kwargs(args))
    kb = prompt_kwargs(args) if args.symmetric else {}
    db = model.encode(b.texts, batch_tokens=args.batch_tokens, progress=progress, **kb)
    scores = model.similarity(qa, db)
    for row in scores:
        print(" ".join(f"{x:.4f}" for x in row))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harrier", description="Harrier-style text embeddings")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("encode", help="embed texts into .npy or .jsonl")
    model_flags(p)
    prompt_flags(p)
    p.add_argument("--input", required=True, help=".txt (one text per line), .jsonl (field 'text') or - (stdin); "
                   "blank and whitespace-only texts are skipped with a warning giving their count")
    p.add_argument("--output", required=True, help=".npy (one row per non-blank input line, in order), .jsonl "
                   "(adds the fields 'line', the 1-based input line, and 'embedding') or - (JSONL to stdout); "
                   "checked before the model loads, written atomically")
    p.add_argument("--strict", action="store_true", help="refuse a blank or whitespace-only text (naming its line) "
                   "instead of skipping it")
    p.add_argument("--chunk", type=int, default=None,
                   help="embed in chunks of N tokens (prompt and special tokens included), for texts over the model's "
                        "length; each chunk gets its own BOS/EOS and the prompt")
    p.add_argument("--overlap", type=int, default=None, help="tokens shared by neighbouring chunks (default 64)")
    p.add_argument("--aggregate", choices=["mean", "weighted", "none"], default=None,
                   help="one vector per text: mean (default) or token-weighted mean of the normalised chunk "
                        "vectors; none: one JSONL line per chunk with its character span")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("info", help="architecture, dims, max length, prompts, pooling, parameter count")
    model_flags(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("similarity", help="cosine score matrix between two inputs (prompt applies to the first)")
    model_flags(p)
    prompt_flags(p)
    p.add_argument("a", help="queries: .txt, .jsonl or - (one row per non-blank text)")
    p.add_argument("b", help="documents: .txt or .jsonl (one column per non-blank text)")
    p.add_argument("--strict", action="store_true", help="refuse a blank text instead of skipping it")
    p.add_argument("--symmetric", action="store_true", help="apply the prompt to both inputs")
    p.set_defaults(func=cmd_similarity)

    _add_capabilities(sub)
    return parser


def _add_capabilities(sub) -> None:
    """Subcommands of the eval, train, corpus and serve packages (their heavy imports happen when a command runs)."""
    from harrier.corpus import cli as corpus_cli
    from harrier.eval import cli as eval_cli
    from harrier.serve import cli as serve_cli
    from harrier.train import cli as train_cli

    eval_cli.add_parser(sub)
    train_cli.add_parsers(sub)
    corpus_cli.add_parser(sub)
    serve_cli.add_parser(sub)


def _foreign_origin(err: BaseException) -> str | None:
    """The top-level package that raised ``err`` when that is not harrier (an error of ours names the user's input;
    one raised inside a library may be a bug of ours, so the line says where it came from)."""
    tb = err.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "")
    top = module.split(".")[0]
    return None if top in ("harrier", "__main__", "") else top


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="harrier: %(levelname)s: %(message)s")
    from harrier.tokenize import TruncationError

    try:
        cpu_malloc.tune()  # before any thread starts, so that every thread shares the tuned arena
        with warnings.catch_warnings():
            # harrier's own RuntimeWarnings are logged as well (fastpath.warn_once, the compile fallback): print the
            # "harrier: WARNING: ..." line once, not again as a Python warning with a source path
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"harrier(\.|$)")
            return int(args.func(args) or 0)
    except (CLIError, TruncationError, ValueError, FileNotFoundError, ImportError, OutputError) as err:
        origin = _foreign_origin(err)
        if origin is not None and args.verbose:
            import traceback

            traceback.print_exception(err, file=sys.stderr)
        where = f"{origin}: " if origin is not None else ""
        hint = " (raised inside a library harrier uses; -v shows where)" if origin and not args.verbose else ""
        print(f"harrier: error: {where}{err}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # encode's outputs are written atomically: nothing half-written is left behind
        print("harrier: error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
