"""Which prompts reproduce EmbeddingGemma's published MTEB scores? Ours vs published per subset, per prompt scheme.

    python benchmarks/prompt_schemes.py --model /root/.cache/harrier-models/embeddinggemma-300m \
        [--dtype bfloat16] [--cache-dir /tmp/harrier-eval-cache] [--schemes checkpoint,published,none]

Schemes (prompt per mteb task type; Tatoeba embeds both sides with the same prompt, as mteb does):

- ``checkpoint``: the checkpoint's ``config_sentence_transformers.json`` by mteb's key priority (harrier's ``model``
  policy): BitextMining ``task: search result | query: ``, PairClassification and STS
  ``task: sentence similarity | query: ``.
- ``published``: the checkpoint's prompts with BitextMining and PairClassification swapped: BitextMining
  ``task: sentence similarity | query: `` (its STS prompt), PairClassification ``task: search result | query: ``
  (its ``query`` prompt). This reproduces the published (results-repo, "mteb 1.34.7") Tatoeba and PAWS-X numbers.
- ``none``: no prompt (what plain mteb 1.34.7 would do with this checkpoint: its prompt validation rejects the
  ``document`` key, mteb 1.34.7 knowing only ``query``/``passage``, and then drops all prompts).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from harrier.eval.encoders import NoPrompts, PromptPolicy, alias_prompts, choose_policy, load_encoder
from harrier.eval.results import compare, format_comparison, read_published
from harrier.eval.run import evaluate, resolve_data_root
from harrier.eval.tasks import select_tasks


def schemes(encoder: object) -> dict[str, PromptPolicy]:
    published = alias_prompts(encoder, ["BitextMining=STS", "PairClassification=query"])  # type: ignore[arg-type]
    return {"checkpoint": choose_policy(encoder, "model"), "published": published, "none": NoPrompts()}  # type: ignore[arg-type]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--published", default="google/embeddinggemma-300m")
    p.add_argument("--published-file", help="default: <data root>/../harrier/published_mteb_scores.json")
    p.add_argument("--data-root")
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    p.add_argument("--backend", default="auto", choices=["auto", "harrier", "sentence-transformers"])
    p.add_argument("--cache-dir", help="embedding cache folder (recommended: each scheme embeds everything anew)")
    p.add_argument("--schemes", default="checkpoint,published,none")
    args = p.parse_args()

    root = resolve_data_root(args.data_root)
    selections = (select_tasks(["Tatoeba"], root, langs=["deu", "fra", "spa", "cmn", "jpn"])
                  + select_tasks(["PawsXPairClassification"], root, langs=["de"])
                  + select_tasks(["STSBenchmark", "STS17"], root))
    published_file = Path(args.published_file) if args.published_file else \
        root.parent / "harrier" / "published_mteb_scores.json"
    published = read_published(published_file, args.published)
    encoder = load_encoder(args.model, backend=args.backend, dtype=args.dtype)
    available = schemes(encoder)
    for name in args.schemes.split(","):
        t0 = time.monotonic()
        policy = available[name]
        results = evaluate(encoder, selections, data_root=root, prompts=policy, cache_dir=args.cache_dir)
        ours = {r.task.name: r.main_scores() for r in results}
        print(f"\n## scheme {name} ({time.monotonic() - t0:.0f} s): "
              + "; ".join(f"{r.task.name}={r.prompts['all']!r}" for r in results))
        print(format_comparison(compare(ours, published)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
