"""harrier ``encode`` vs sentence-transformers ``encode``: same model, same texts, same machine, one run.

    python benchmarks/encode_speed.py --model ~/.cache/harrier-models/embeddinggemma-300m --n 2000

Texts: a deterministic multilingual mix from ../shared/data with a realistic length spread (Tatoeba sentences in
20 languages, STSb translations in 10, XQuAD questions and paragraphs in 12). The two systems run alternately
(``--rounds`` times each); the best time of each is reported, with texts/s, tokens/s, their ratio and the min/mean
cosine between the two outputs.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

TATOEBA = ["deu", "fra", "spa", "rus", "cmn", "jpn", "ara", "hin", "swh", "tur", "pol", "ita", "por", "kor", "vie",
           "heb", "ukr", "ell", "tha", "ind"]
STSB = ["de", "es", "fr", "it", "ja", "nl", "pl", "pt", "ru", "zh"]
XQUAD = ["ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh"]


def benchmark_texts(data: Path, n: int, seed: int = 0) -> list[str]:
    """~55% short sentences, ~30% STS sentences and questions, ~15% paragraphs (100-400 tokens)."""
    rng = random.Random(seed)
    short = []
    for lang in TATOEBA:
        lines = (data / "tatoeba-laser" / f"tatoeba.{lang}-eng.{lang}").read_text(encoding="utf-8").splitlines()
        short += lines[:200]
    medium = []
    for lang in STSB:
        with (data / "stsb-multi-mt" / f"stsb-{lang}-test.csv").open(encoding="utf-8") as f:
            medium += [row[0] for row in csv.reader(f)][:200]
    paragraphs = []
    for lang in XQUAD:
        doc = json.loads((data / "xquad" / f"xquad.{lang}.json").read_text(encoding="utf-8"))
        for art in doc["data"]:
            for p in art["paragraphs"][:2]:
                paragraphs.append(p["context"])
                medium.append(p["qas"][0]["question"])
    texts = (rng.sample(short, int(n * 0.55)) + rng.sample(medium, int(n * 0.30)))
    texts += rng.sample(paragraphs, n - len(texts))
    rng.shuffle(texts)
    return texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(Path.home() / ".cache/harrier-models/embeddinggemma-300m"))
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--prompt-name", default="STS")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="both systems' dtype")
    ap.add_argument("--ours-dtype", default=None, choices=["float32", "bfloat16"], help="override for harrier")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--st-batch-size", type=int, default=32, help="sentence-transformers' default is 32")
    ap.add_argument("--batch-tokens", type=int, default=None, help="harrier's token budget (default: its own)")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()

    from sentence_transformers import SentenceTransformer

    from harrier import Embedder

    texts = benchmark_texts(Path(args.data_root), args.n)
    st_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    st = SentenceTransformer(args.model, device=args.device, model_kwargs={"dtype": st_dtype})
    ours = Embedder.from_pretrained(args.model, device=args.device, dtype=args.ours_dtype or args.dtype)
    n_tokens = sum(len(x) for x in ours.tokenize(texts, ours.prefix(prompt_name=args.prompt_name)))
    print(f"model {args.model}\n{len(texts)} texts, {n_tokens} tokens (mean {n_tokens / len(texts):.1f}), "
          f"torch threads {torch.get_num_threads()}, device {args.device}")

    def run_st():
        return st.encode(texts, prompt_name=args.prompt_name, batch_size=args.st_batch_size, convert_to_numpy=True)

    def run_ours():
        return ours.encode(texts, prompt_name=args.prompt_name, batch_tokens=args.batch_tokens, progress=False)

    times = {"sentence-transformers": [], "harrier": []}
    outputs = {}
    for _ in range(args.rounds):
        for name, fn in (("sentence-transformers", run_st), ("harrier", run_ours)):
            if args.device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            outputs[name] = fn()
            if args.device == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    a, b = outputs["harrier"], outputs["sentence-transformers"]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    best = {k: min(v) for k, v in times.items()}
    print(f"{'system':<24}{'dtype':<10}{'seconds':>9}{'texts/s':>10}{'tokens/s':>10}")
    for name, secs in best.items():
        dtype = (args.ours_dtype or args.dtype) if name == "harrier" else args.dtype
        print(f"{name:<24}{dtype:<10}{secs:>9.1f}{len(texts) / secs:>10.1f}{n_tokens / secs:>10.0f}")
    print(f"ratio harrier / sentence-transformers: {best['sentence-transformers'] / best['harrier']:.2f}x")
    print(f"cosine harrier vs sentence-transformers: min {cos.min():.6f}, mean {cos.mean():.6f}")


if __name__ == "__main__":
    main()
