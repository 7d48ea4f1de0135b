"""``harrier corpus encode``, ``harrier corpus index`` and ``harrier search``: thin parsing over ``harrier.corpus``.

    harrier corpus encode --model M --input 'corpus/*.jsonl' --id-field id --text-field text --output vectors/
    harrier corpus encode ... --engine ray --address auto --actors 4 --actor-gpus 1
    harrier corpus index --index vectors/                       # optional HNSW (faiss) + its recall@10 vs exact
    harrier search --model M --index vectors/ --prompt-name web_search_query --query "..." --top-k 10
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harrier.cli_flags import model_flags, prompt_flags

TRUNCATION_COLUMN = "texts over --max-length are cut keeping special tokens; the 'truncated' column says which"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``corpus`` (encode, index) and ``search``."""
    p = sub.add_parser("corpus", help="embed a large corpus into Parquet shards (resumable; local or Ray)")
    csub = p.add_subparsers(dest="corpus_command", required=True)
    e = csub.add_parser("encode", help="stream JSONL/Parquet/TXT files into Parquet shards + manifest.json")
    model_flags(e, truncation_help=TRUNCATION_COLUMN)
    prompt_flags(e)
    e.add_argument("--input", required=True, action="append", help="file or glob (.jsonl, .parquet, .txt); "
                   "repeatable; quote globs")
    e.add_argument("--output", required=True, help="output directory (shards, manifest.json, bad_rows.jsonl)")
    e.add_argument("--id-field", default="id", help="field/column with the record id (TXT: FILE:LINE)")
    e.add_argument("--text-field", default="text", help="field/column with the text")
    e.add_argument("--prompt-field", default=None, help="field naming a per-row prompt name (empty: document)")
    e.add_argument("--store-dtype", default="float32", choices=["float32", "bfloat16"],
                   help="dtype of the stored vectors (bfloat16: raw bits as uint16, see docs/corpus.md)")
    e.add_argument("--shard-rows", type=int, default=100_000)
    e.add_argument("--window-rows", type=int, default=8_192, help="texts length-sorted together for packing")
    e.add_argument("--window-chars", type=int, default=8_000_000, help="character cap of a window")
    e.add_argument("--resume", action="store_true", help="continue a killed job: keep its finished shards")
    e.add_argument("--strict", action="store_true", help="a bad row is an error (default: reported, skipped)")
    e.add_argument("--max-shards", type=int, default=None, help="stop after this many new shards (resumable)")
    e.add_argument("--engine", default="local", choices=["local", "ray"])
    e.add_argument("--address", default=None, help="Ray cluster address (auto: the running cluster; default: "
                   "a local Ray instance)")
    e.add_argument("--actors", type=int, default=2, help="Ray actors, one model each")
    e.add_argument("--actor-cpus", type=float, default=1.0, help="CPUs per Ray actor (its torch threads)")
    e.add_argument("--actor-gpus", type=float, default=0.0, help="GPUs per Ray actor (>0: actors run on cuda)")
    e.set_defaults(func=cmd_corpus_encode)

    i = csub.add_parser("index", help="build an HNSW index (faiss) over a corpus and report its recall@k")
    i.add_argument("--index", required=True, help="corpus directory written by harrier corpus encode")
    i.add_argument("--hnsw-m", type=int, default=32)
    i.add_argument("--ef-construction", type=int, default=200)
    i.add_argument("--ef-search", type=int, default=64)
    i.add_argument("--recall-queries", type=int, default=200, help="corpus vectors used as queries for recall")
    i.add_argument("--top-k", type=int, default=10)
    i.set_defaults(func=cmd_corpus_index)

    s = sub.add_parser("search", help="top-k ids and scores for queries over a corpus (exact, streamed; or ANN)")
    model_flags(s, truncation_help=TRUNCATION_COLUMN)
    prompt_flags(s)
    s.add_argument("--index", required=True, help="corpus directory written by harrier corpus encode")
    s.add_argument("--query", action="append", default=[], help="a query (repeatable)")
    s.add_argument("--queries", help="more queries: .txt (one per line)")
    s.add_argument("--top-k", type=int, default=10)
    s.add_argument("--ann", action="store_true", help="use the HNSW index built by harrier corpus index")
    s.add_argument("--ef-search", type=int, default=64)
    s.add_argument("--check-recall", action="store_true", help="with --ann: also run exact and print recall@k")
    s.add_argument("--json", action="store_true", help="one JSON line per query")
    s.set_defaults(func=cmd_search)


def load(args: argparse.Namespace):
    from harrier import Embedder

    return Embedder.from_pretrained(args.model, device=args.device, dtype=args.dtype, max_length=args.max_length,
                                    truncation=args.truncation, allow_over_positions=args.allow_over_positions,
                                    compile=args.compile, prefix_cache=not args.no_prefix_cache)


def job_prompt(args: argparse.Namespace):
    from harrier.prompts import Prompt

    kw = {"prompt_name": args.prompt_name, "instruction": args.instruction, "task": args.task, "prompt": args.prompt}
    return Prompt(**kw) if any(v is not None for v in kw.values()) else None


def cmd_corpus_encode(args: argparse.Namespace) -> int:
    from harrier.corpus.encode import lock_output
    from harrier.corpus.shards import require_pyarrow

    require_pyarrow()
    with lock_output(Path(args.output).expanduser()):  # held from before the model loads to the job's end
        return _corpus_encode(args)


def _corpus_encode(args: argparse.Namespace) -> int:
    from harrier.corpus.encode import CorpusConfig, check_output, encode_corpus
    from harrier.corpus.readers import ReaderConfig, expand_inputs
    from harrier.engine import DEFAULT_BATCH_TOKENS

    expand_inputs(args.input)  # these checks run before the model loads
    check_output(Path(args.output).expanduser(), resume=args.resume)
    model = load(args)
    cfg = CorpusConfig(
        inputs=tuple(args.input), output=Path(args.output).expanduser(),
        reader=ReaderConfig(args.id_field, args.text_field, args.prompt_field), prompt=job_prompt(args),
        shard_rows=args.shard_rows, window_rows=args.window_rows, window_chars=args.window_chars,
        batch_tokens=args.batch_tokens or DEFAULT_BATCH_TOKENS[model.device.type], store_dtype=args.store_dtype,
        strict=args.strict, resume=args.resume, max_shards=args.max_shards,
        progress=False if args.no_progress else None)
    if args.engine == "ray":
        from harrier.corpus.ray_engine import RayEngine, RayEngineConfig

        engine = RayEngine(RayEngineConfig(
            model=model.info().source, dtype=args.dtype, max_length=args.max_length, truncation=args.truncation,
            allow_over_positions=args.allow_over_positions, prefix_cache=not args.no_prefix_cache,
            batch_tokens=cfg.batch_tokens, actors=args.actors, actor_cpus=args.actor_cpus,
            actor_gpus=args.actor_gpus, address=args.address))
    else:
        from harrier.corpus.window import LocalEngine

        engine = LocalEngine(model, cfg.batch_tokens)
    result = encode_corpus(cfg, model, engine)
    m = result.manifest
    state = "complete" if m.complete else "unfinished (continue with --resume)"
    rate = result.encoded_rows / result.seconds if result.seconds else 0.0
    print(f"{cfg.output}: {m.rows} rows in {len(m.shards)} shards, {m.bad_rows} bad rows skipped, {state}; "
          f"this run embedded {result.encoded_rows} texts ({result.encoded_tokens} tokens) in {result.seconds:.1f} s "
          f"({rate:.1f} texts/s)", file=sys.stderr)
    if m.bad_rows and m.complete:
        print(f"bad rows (file:line: reason): {cfg.output / 'bad_rows.jsonl'}", file=sys.stderr)
    return 0


def cmd_corpus_index(args: argparse.Namespace) -> int:
    from harrier.corpus.search import ann_search, build_ann, exact_search, recall_at_k, sample_vectors

    index = Path(args.index)
    path = build_ann(index, m=args.hnsw_m, ef_construction=args.ef_construction)
    queries = sample_vectors(index, args.recall_queries)
    recall = recall_at_k(ann_search(index, queries, args.top_k, ef_search=args.ef_search),
                         exact_search(index, queries, args.top_k))
    print(f"wrote {path}; recall@{args.top_k} vs exact {recall:.4f} on {len(queries)} corpus vectors as queries "
          f"(ef_search {args.ef_search})", file=sys.stderr)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from harrier.corpus.manifest import model_fingerprint
    from harrier.corpus.search import ann_search, exact_search, open_index, recall_at_k
    from harrier.corpus.shards import require_pyarrow
    from harrier.extras import require

    queries = list(args.query)
    if args.queries:
        queries += [q for q in Path(args.queries).read_text(encoding="utf-8").splitlines() if q.strip()]
    if not queries:
        raise ValueError("no queries: pass --query TEXT or --queries FILE")
    index = Path(args.index)
    require_pyarrow()  # before the model loads
    manifest = open_index(index)  # every shard checked against the manifest
    if args.ann:
        require("faiss", "corpus", "the ANN index")
    model = load(args)
    if model_fingerprint(model.info().source) != manifest.settings["model_fingerprint"]:
        raise ValueError(f"--model {args.model} is not the model that encoded {index} (fingerprints differ)")
    q = model.encode(queries, batch_tokens=args.batch_tokens, progress=False, prompt_name=args.prompt_name,
                     instruction=args.instruction, task=args.task, prompt=args.prompt)
    hits = ann_search(index, q, args.top_k, ef_search=args.ef_search) if args.ann else \
        exact_search(index, q, args.top_k)
    for query, row in zip(queries, hits, strict=True):
        if args.json:
            print(json.dumps({"query": query, "hits": [{"id": h.id, "score": round(h.score, 6)} for h in row]},
                             ensure_ascii=False))
        else:
            print(f"# {query}")
            for rank, h in enumerate(row, 1):
                print(f"{rank}\t{h.score:.4f}\t{h.id}")
    if args.ann and args.check_recall:
        recall = recall_at_k(hits, exact_search(index, q, args.top_k))
        print(f"recall@{args.top_k} vs exact: {recall:.4f} over {len(queries)} queries", file=sys.stderr)
    return 0
