"""Evaluate a model on a CPU-sized selection of MTEB tasks and print ours vs published per subset.

    python benchmarks/reproduce_published.py --model /root/.cache/harrier-models/embeddinggemma-300m \
        [--published google/embeddinggemma-300m] [--dtype bfloat16] [--suite reproduce|quick] [--output DIR]

The default selection (suite ``reproduce``): STSBenchmark, STS17 (the 6 local subsets), STSBenchmarkMultilingualSTS
(nl, de, fr), Tatoeba (deu, fra, spa, cmn, jpn), SIB200Classification (nld_Latn, jpn_Jpan, deu_Latn),
MassiveIntentClassification (de, sw, en), PawsXPairClassification (de). Subsets without a published score show "-".

EmbeddingGemma's published scores were made with its BitextMining and PairClassification prompts swapped relative
to its checkpoint (see docs/evaluation.md); reproduce them with
``--prompt-alias BitextMining=STS --prompt-alias PairClassification=query`` (use the model's STS prompt for
BitextMining and its query prompt for PairClassification).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from harrier.eval.encoders import alias_prompts, load_encoder
from harrier.eval.results import compare, format_comparison, read_published
from harrier.eval.run import evaluate, resolve_data_root
from harrier.eval.tasks import select_suite, select_tasks


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--published", default="google/embeddinggemma-300m")
    p.add_argument("--published-file", help="default: <data root>/../harrier/published_mteb_scores.json")
    p.add_argument("--suite", default="reproduce")
    p.add_argument("--tasks", help="comma-separated tasks instead of the suite")
    p.add_argument("--langs", help="comma-separated languages (with --tasks)")
    p.add_argument("--data-root")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--backend", default="auto", choices=["auto", "harrier", "sentence-transformers"])
    p.add_argument("--prompts", default="auto", choices=["auto", "instructions", "model", "none"])
    p.add_argument("--prompt-alias", action="append", default=[], metavar="KEY=OTHER",
                   help="with the model's prompts: use its OTHER prompt for KEY (repeatable)")
    p.add_argument("--output", help="folder for the mteb-layout result files")
    p.add_argument("--cache-dir", help="embedding cache folder")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    root = resolve_data_root(args.data_root)
    if args.tasks:
        selections = select_tasks(args.tasks.split(","), root, langs=args.langs.split(",") if args.langs else None)
    else:
        selections = select_suite(args.suite, root)
    start = time.monotonic()
    encoder = load_encoder(args.model, backend=args.backend, dtype=args.dtype, progress=args.progress)
    load_s = time.monotonic() - start
    try:
        prompts = alias_prompts(encoder, args.prompt_alias) if args.prompt_alias else args.prompts
    except ValueError as err:
        p.error(str(err))
    results = []
    for sel in selections:
        t0 = time.monotonic()
        results += evaluate(encoder, [sel], data_root=root, prompts=prompts, output_dir=args.output,
                            cache_dir=args.cache_dir, progress=args.progress)
        print(f"# {sel.task.name}: {time.monotonic() - t0:.0f} s", flush=True)
    total_s = time.monotonic() - start
    published_file = Path(args.published_file) if args.published_file else \
        root.parent / "harrier" / "published_mteb_scores.json"
    ours = {r.task.name: r.main_scores() for r in results}
    print(f"# model {encoder.name}; prompts: " + "; ".join(f"{r.task.name}={r.prompts}" for r in results))
    print(format_comparison(compare(ours, read_published(published_file, args.published))))
    print(f"# total {total_s:.0f} s (model load {load_s:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
