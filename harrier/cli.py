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
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harrier.cli_flags import model_flags, prompt_flags

INPUT_FORMATS = (".txt", ".jsonl")
OUTPUT_FORMATS = (".npy", ".jsonl")


class CLIError(Exception):
    """A user error the CLI reports as one line."""


def read_texts(source: str) -> tuple[list[str], list[dict] | None]:
    """Texts from .txt (one per line), .jsonl (a ``text`` field per line) or '-' (stdin, one per line).

    Returns the texts and, for JSONL, the records (so outputs can carry their other fields).
    """
    if source == "-":
        return [line.rstrip("\r\n") for line in sys.stdin], None
    path = Path(source)
    if path.suffix not in INPUT_FORMATS:
        raise CLIError(f"input {source}: unsupported format {path.suffix or '(none)'}; use .txt, .jsonl or -")
    if not path.is_file():
        raise CLIError(f"input {source}: no such file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise CLIError(f"input {source}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    if path.suffix == ".txt":
        return lines, None
    from harrier.jsonl import JsonlError, parse_lines

    records = []
    try:
        for n, record in parse_lines(lines):
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise CLIError(f"input {source} line {n}: expected an object with a string field 'text'")
            records.append(record)
    except JsonlError as err:
        raise CLIError(f"input {source} line {err.line}: {err.reason}") from err
    return [r["text"] for r in records], records


def check_output(target: str) -> None:
    path = Path(target)
    if target != "-" and path.suffix not in OUTPUT_FORMATS:
        raise CLIError(f"output {target}: unsupported format {path.suffix or '(none)'}; use .npy, .jsonl or -")
    if target != "-" and not path.parent.expanduser().resolve().is_dir():
        raise CLIError(f"output {target}: directory {path.parent} does not exist")


def write_embeddings(target: str, emb: np.ndarray, texts: list[str], records: list[dict] | None) -> None:
    """Write .npy or .jsonl (records with an ``embedding`` field) atomically; '-' writes JSONL to stdout."""
    if target == "-":
        for line in _jsonl_lines(emb, texts, records):
            sys.stdout.write(line)
        return
    path = Path(target).expanduser()
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".npy":
        with tmp.open("wb") as f:
            np.save(f, emb)
    else:
        with tmp.open("w", encoding="utf-8") as f:
            f.writelines(_jsonl_lines(emb, texts, records))
    os.replace(tmp, path)


def _jsonl_lines(emb: np.ndarray, texts: list[str], records: list[dict] | None):
    for i, vec in enumerate(emb):
        base = dict(records[i]) if records is not None else {"text": texts[i]}
        base["embedding"] = [round(float(x), 7) for x in vec]
        yield json.dumps(base, ensure_ascii=False) + "\n"


def load(args: argparse.Namespace):
    from harrier import Embedder

    return Embedder.from_pretrained(args.model, device=args.device, dtype=args.dtype, max_length=args.max_length,
                                    truncation=args.truncation, compile=args.compile)


def prompt_kwargs(args: argparse.Namespace) -> dict:
    return {"prompt_name": args.prompt_name, "instruction": args.instruction, "task": args.task,
            "prompt": args.prompt}


def write_chunks(target: str, result, texts: list[str], records: list[dict] | None) -> None:
    """One JSONL line per chunk: source index (and the record's id), chunk index, character span, embedding."""
    def lines():
        for k, vec in enumerate(result.embeddings):
            i, s, e = int(result.source[k]), int(result.char_start[k]), int(result.char_end[k])
            row = {"source": i}
            if records is not None and "id" in records[i]:
                row["id"] = records[i]["id"]
            row.update(chunk=int(result.chunk_index[k]), char_start=s, char_end=e, tokens=int(result.tokens[k]),
                       text=texts[i][s:e], embedding=[round(float(x), 7) for x in vec])
            yield json.dumps(row, ensure_ascii=False) + "\n"

    if target == "-":
        sys.stdout.writelines(lines())
        return
    path = Path(target).expanduser()
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.writelines(lines())
    os.replace(tmp, path)


def check_chunk_flags(args: argparse.Namespace) -> None:
    if args.chunk is None:
        if args.overlap is not None or args.aggregate is not None:
            raise CLIError("--overlap and --aggregate need --chunk N (tokens per chunk)")
        return
    if args.aggregate == "none" and args.output != "-" and Path(args.output).suffix != ".jsonl":
        raise CLIError("--aggregate none writes one line per chunk: use a .jsonl output or -")


def cmd_encode(args: argparse.Namespace) -> int:
    check_output(args.output)
    check_chunk_flags(args)
    texts, records = read_texts(args.input)
    model = load(args)
    progress = False if args.no_progress else None
    if args.chunk is not None:
        result = model.encode_chunked(texts, chunk=args.chunk, overlap=64 if args.overlap is None else args.overlap,
                                      aggregate=args.aggregate or "mean", batch_tokens=args.batch_tokens,
                                      progress=progress, **prompt_kwargs(args))
        if result.aggregate == "none":
            write_chunks(args.output, result, texts, records)
            if args.output != "-":
                print(f"wrote {len(result.source)} chunk embeddings of {len(texts)} texts to {args.output}",
                      file=sys.stderr)
            return 0
        emb = result.embeddings
    else:
        emb = model.encode(texts, batch_tokens=args.batch_tokens, progress=progress, **prompt_kwargs(args))
    write_embeddings(args.output, emb, texts, records)
    if args.output != "-":
        print(f"wrote {emb.shape[0]} embeddings of dim {emb.shape[1]} to {args.output}", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from dataclasses import asdict

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
    a, _ = read_texts(args.a)
    b, _ = read_texts(args.b)
    model = load(args)
    progress = False if args.no_progress else None
    qa = model.encode(a, batch_tokens=args.batch_tokens, progress=progress, **prompt_kwargs(args))
    kb = prompt_kwargs(args) if args.symmetric else {}
    db = model.encode(b, batch_tokens=args.batch_tokens, progress=progress, **kb)
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
    p.add_argument("--input", required=True, help=".txt (one text per line), .jsonl (field 'text') or - (stdin)")
    p.add_argument("--output", required=True, help=".npy, .jsonl (adds field 'embedding') or - (JSONL to stdout)")
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
    p.add_argument("a", help="queries: .txt, .jsonl or -")
    p.add_argument("b", help="documents: .txt or .jsonl")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="harrier: %(levelname)s: %(message)s")
    from harrier.outputs import OutputError
    from harrier.tokenize import TruncationError

    try:
        return int(args.func(args) or 0)
    except (CLIError, TruncationError, ValueError, FileNotFoundError, ImportError, OutputError) as err:
        print(f"harrier: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harrier: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
