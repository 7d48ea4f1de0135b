"""The GPU check: parity with sentence-transformers and tokens/s against it, on one CUDA machine, in one table.

    python benchmarks/gpu_check.py                         # CUDA, the harrier-270m and -0.6b shapes (< 8 min)
    python benchmarks/gpu_check.py --device cpu --quick    # what CI runs (tiny shapes, a few texts, < 60 s)

Models, all built into a temporary directory in the Sentence-Transformers layout (no network, no real weights:
speed does not depend on them): the tiny parity checkpoints of the tests (``tests/tiny.py``), and random-weight
models of the harrier-270m shape (``gemma3_text``: hidden 640, 18 layers, 4 heads / 1 kv head of 256, intermediate
2,048, vocab 262,144, all full attention) and the harrier-0.6b shape (``qwen3``: hidden 1,024, 28 layers, 16 / 8
heads of 128, intermediate 3,072, vocab 151,936). ``--quick`` keeps the two shapes' widths and heads with 1 layer,
intermediate 256 and a small vocabulary. Tokenizers: the tests' byte-level BPE, trained in code; texts are built
from its sentences with a realistic length spread (most short, some paragraphs), so token counts, not texts, are
what the table compares.

Per model: sentence-transformers in fp32 (the reference), fp16 and bf16; harrier in fp32, bf16 and (not Gemma-3,
whose activations overflow it) fp16; ``--compile`` adds harrier bf16 through torch.compile. ``min cos`` is each
row's minimum cosine against sentence-transformers fp32 on the parity texts, as documents and as instructed
queries (``web_search_query``: harrier's prefix cache path). harrier rows must reach ``need``: 0.99999 in fp32
(``tests/test_parity_tiny.py``); in bf16/fp16, no further from fp32 than sentence-transformers in the same dtype
plus 0.001 (the tests' 0.999 bound for bf16 against bf16), or 0.99 (``tests/test_runtime.py``'s bf16-vs-fp32
bound) where sentence-transformers' own row is not finite (fp16 overflowing). Exit status 1 when any harrier row
misses it; 2 for bad arguments. ``tok/s`` is the best of ``--rounds`` timed runs over all texts after a warm-up on the
first 32 (for compiled rows that is the compile); ``vs ST`` divides it by sentence-transformers' tok/s in the same
dtype (``--st-batch-size``, default 32 as in sentence-transformers).
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # harrier from this checkout; tests/tiny.py builds the checkpoints
import tiny  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
HARRIER_DTYPE = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
FP32_MIN, LOW_MIN, LOW_MARGIN = 0.99999, 0.99, 0.001
QUERY_PROMPT = "web_search_query"

SHAPE_270M = dict(hidden_size=640, intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4,
                  num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256, vocab_size=262_144,
                  hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6, max_position_embeddings=32_768)
SHAPE_06B = dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=128, vocab_size=151_936, hidden_act="silu", rms_norm_eps=1e-6,
                 max_position_embeddings=32_768)


@dataclass(frozen=True)
class Row:
    model: str
    system: str  # "sentence-transformers" or "harrier" (+ " compiled")
    dtype: str
    min_cos: float
    need: float | None  # None: not checked (the reference's own rows)
    tokens_per_s: float

    @property
    def ok(self) -> bool:
        return self.need is None or self.min_cos >= self.need  # NaN fails


def build_model(name: str, root: Path, quick: bool) -> Path:
    """A Sentence-Transformers checkpoint directory: the tiny ones in fp32, the shaped ones in bf16 (as published)."""
    small = dict(num_hidden_layers=1, intermediate_size=256, vocab_size=512) if quick else {}
    path = root / name
    if name == "tiny-gemma3":
        return tiny.build_gemma3(path)
    if name == "tiny-qwen3":
        return tiny.build_qwen3(path)
    if name == "270m-shape":
        return tiny.build_gemma3(path, dtype=torch.bfloat16, shape={**SHAPE_270M, **small})
    assert name == "0.6b-shape", name
    return tiny.build_qwen3(path, dtype=torch.bfloat16, shape={**SHAPE_06B, **small})


def make_texts(n: int, seed: int = 0) -> list[str]:
    """~55% short (2-6 words), ~30% medium (6-16), ~15% paragraphs (30-90), from the tests' sentences in 9
    languages (those written without spaces cut into 2-character words): with the tests' small vocabulary, a
    median of about 30 tokens, a mean of about 65 and a tail to about 440 (encode_speed's real mix: mean 53)."""
    rng = random.Random(seed)
    words = []
    for w in " ".join(tiny.TRAIN_TEXT[:10]).split():
        words += [w] if len(w) <= 10 else [w[i:i + 2] for i in range(0, len(w), 2)]
    spans = [(2, 6)] * 11 + [(6, 16)] * 6 + [(30, 90)] * 3
    return [" ".join(rng.choices(words, k=rng.randint(*rng.choice(spans)))) for _ in range(n)]


def low_precision_need(st_err: float) -> float:
    """bf16/fp16: as close to fp32 as sentence-transformers in that dtype, less a margin (the tests' 0.999 bound
    for bf16 against a bf16 reference); ``LOW_MIN`` where the reference row is not finite."""
    return 1.0 - st_err - LOW_MARGIN if np.isfinite(st_err) else LOW_MIN


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def best_seconds(fn, texts: list[str], rounds: int, device: str, warmup: int) -> float:
    fn(texts[:warmup])
    best = float("inf")
    for _ in range(rounds):
        sync(device)
        t0 = time.perf_counter()
        fn(texts)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def check_model(name: str, path: Path, args, texts: list[str], parity: list[str]) -> list[Row]:
    """sentence-transformers' rows first (fp32 is the reference), then harrier's, one model in memory at a time."""
    from sentence_transformers import SentenceTransformer

    from harrier import Embedder

    gemma = "gemma" in name or "270m" in name
    ours = Embedder.from_pretrained(path, device=args.device, dtype="float32")
    n_tokens = sum(len(x) for x in ours.tokenize(texts))
    print(f"{name}: {ours.model.cfg.num_layers} layers, hidden {ours.model.cfg.hidden_size}, "
          f"{sum(p.numel() for p in ours.model.parameters()) / 1e6:.1f} M parameters; {len(texts)} texts, "
          f"{n_tokens} tokens", flush=True)
    del ours

    def both(encode) -> np.ndarray:  # parity texts as documents and as instructed queries
        return np.concatenate([encode(parity, None), encode(parity, QUERY_PROMPT)])

    rows, ref, st_err = [], None, {}
    for dt in args.dtypes:
        st = SentenceTransformer(str(path), device=args.device, model_kwargs={"dtype": DTYPES[dt]})

        def st_encode(x, prompt, st=st):
            return st.encode(x, prompt_name=prompt, batch_size=args.st_batch_size, convert_to_numpy=True,
                             show_progress_bar=False)

        out = both(st_encode)
        ref = out if dt == "fp32" else ref
        cos = float(cosine(out, ref).min())
        st_err[dt] = 1.0 - cos
        secs = best_seconds(lambda x: st_encode(x, None), texts, args.rounds, args.device, args.warmup)
        rows.append(Row(name, "sentence-transformers", dt, cos, None, n_tokens / secs))
        del st
        free(args.device)

    modes = [(dt, False) for dt in args.dtypes if not (dt == "fp16" and gemma)]
    modes += [("bf16", True)] if args.compile and "bf16" in args.dtypes else []
    for dt, compiled in modes:
        ours = Embedder.from_pretrained(path, device=args.device, dtype=HARRIER_DTYPE[dt], compile=compiled)

        def our_encode(x, prompt, ours=ours):
            return ours.encode(x, prompt_name=prompt, batch_tokens=args.batch_tokens, progress=False)

        cos = float(cosine(both(our_encode), ref).min())
        need = FP32_MIN if dt == "fp32" else low_precision_need(st_err[dt])
        secs = best_seconds(lambda x: our_encode(x, None), texts, args.rounds, args.device, args.warmup)
        rows.append(Row(name, "harrier" + (" compiled" if compiled else ""), dt, cos, need, n_tokens / secs))
        del ours
        free(args.device)
    return rows


def header(args) -> str:
    import sentence_transformers
    import transformers

    import harrier

    if args.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        dev = (f"{torch.cuda.get_device_name(0)} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}, "
               f"cuDNN {torch.backends.cudnn.version()}")
    else:
        dev = f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    note = ("" if int(transformers.__version__.split(".")[0]) >= 5 else
            "\nnote: tests/tiny.py writes transformers 5 configs (rope_parameters); this transformers may read "
            "them differently, but both systems load the same config.json")
    return (f"device: {dev}\n"
            f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
            f"sentence-transformers {sentence_transformers.__version__}, harrier {harrier.__version__}{note}")


def table(rows: list[Row], n_tokens_line: str) -> str:
    st = {(r.model, r.dtype): r.tokens_per_s for r in rows if r.system == "sentence-transformers"}
    lines = [n_tokens_line,
             f"{'model':<12}{'system':<24}{'dtype':<6}{'min cos':>10}{'need':>9}{'':>3}{'tok/s':>11}{'vs ST':>7}"]
    for r in rows:
        need = f"{r.need:.5f}" if r.need is not None else "ref" if r.dtype == "fp32" else "-"
        mark = "" if r.need is None else "ok" if r.ok else "!!"
        ratio = r.tokens_per_s / st[(r.model, r.dtype)] if (r.model, r.dtype) in st else float("nan")
        lines.append(f"{r.model:<12}{r.system:<24}{r.dtype:<6}{r.min_cos:>10.6f}{need:>9}{mark:>3}"
                     f"{r.tokens_per_s:>11.0f}{ratio:>6.2f}x")
    return "\n".join(lines)


def parse_args(argv: list[str] | None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--quick", action="store_true", help="1-layer shapes, few texts, one round (CI on the CPU)")
    ap.add_argument("--n", type=int, default=None, help="timed texts (default 2,000; --quick: 16)")
    ap.add_argument("--parity-n", type=int, default=None, help="parity texts (default 64; --quick: 6)")
    ap.add_argument("--rounds", type=int, default=None, help="timed runs per row, best kept (default 3; --quick: 1)")
    ap.add_argument("--dtypes", default=None, help="comma-separated, from fp32, bf16, fp16 (default all; --quick: "
                                                   "fp32,bf16, as fp16 on a CPU is slow)")
    ap.add_argument("--models", default=None, help="comma-separated subset of: tiny-gemma3, tiny-qwen3, "
                                                   "270m-shape, 0.6b-shape (default: all)")
    ap.add_argument("--compile", action="store_true", help="add a harrier bf16 torch.compile row per model")
    ap.add_argument("--st-batch-size", type=int, default=32)
    ap.add_argument("--batch-tokens", type=int, default=None, help="harrier's token budget (default: its own)")
    args = ap.parse_args(argv)
    args.dtypes = [d.strip() for d in (args.dtypes or ("fp32,bf16" if args.quick else "fp32,bf16,fp16")).split(",")
                   if d.strip()]
    bad = [d for d in args.dtypes if d not in DTYPES]
    if bad or "fp32" not in args.dtypes:
        ap.error(f"--dtypes: {', '.join(bad) or 'fp32 missing'}; choose from fp32, bf16, fp16 (fp32 is required: "
                 f"it is the reference)")
    args.dtypes = ["fp32"] + [d for d in args.dtypes if d != "fp32"]
    known = ["tiny-gemma3", "tiny-qwen3", "270m-shape", "0.6b-shape"]
    args.models = known if args.models is None else [m.strip() for m in args.models.split(",")]
    if any(m not in known for m in args.models):
        ap.error(f"--models: choose from {', '.join(known)}")
    for name, value in (("--n", args.n), ("--parity-n", args.parity_n), ("--rounds", args.rounds),
                        ("--st-batch-size", args.st_batch_size), ("--batch-tokens", args.batch_tokens)):
        if value is not None and value < 1:
            ap.error(f"{name} must be at least 1, got {value}")
    args.n = args.n or (16 if args.quick else 2000)
    args.parity_n = args.parity_n or (6 if args.quick else 64)
    args.warmup = 4 if args.quick else 32
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device here (torch.cuda.is_available() is False); "
                 "use --device cpu")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    print(header(args), flush=True)
    texts = make_texts(args.n)
    parity = make_texts(args.parity_n, seed=1)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="harrier-gpu-check-") as tmp:
        for name in args.models:
            t0 = time.perf_counter()
            path = build_model(name, Path(tmp), args.quick)
            t1 = time.perf_counter()
            rows += check_model(name, path, args, texts, parity)
            print(f"{name}: built in {t1 - t0:.0f} s, checked in {time.perf_counter() - t1:.0f} s", flush=True)
            shutil.rmtree(path)
    n_line = (f"{len(texts)} timed texts (tokens per model vary with its tokenizer), {args.parity_n} parity texts "
              f"x 2 prompts, best of {args.rounds}, total {time.perf_counter() - t_start:.0f} s")
    print(table(rows, n_line))
    failed = [r for r in rows if not r.ok]
    for r in failed:
        print(f"PARITY FAILURE: {r.model} {r.system} {r.dtype}: min cosine {r.min_cos:.6f} < {r.need:.5f}")
    print("parity: FAIL" if failed else "parity: ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
