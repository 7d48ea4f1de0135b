"""The prefix cache against the uncached path and sentence-transformers, one run, same texts, same machine.

    python benchmarks/prefix_cache.py --n 300                    # both shapes, five text sets, then the quick suite
    python benchmarks/prefix_cache.py --models 270m --no-suite   # one shape, no suite

Models (both causal, last-token pooling, EOS appended, Normalize, as harrier-oss-v1):
- ``270m``: the real Gemma-3-270M weights (``../shared/models/fetch-gemma3-270m.sh``) made harrier-270m-shaped
  (all 18 layers full attention), saved in the Sentence-Transformers layout so both systems load the same files;
- ``0.6b``: random weights of the harrier-0.6b shape (Qwen3, 28 layers, hidden 1024, 16/8 heads, intermediate
  3072), built from its config (speed does not depend on the weights); it uses the Gemma-3 tokenizer (no Qwen3
  tokenizer is on this machine), so its vocabulary is 262,144 instead of 151,936.

Text sets (``--n`` each, from ``--data-root``): XQuAD questions and SciFact claims under harrier's
``web_search_query`` instruction (card template, ``Instruct: ...\\nQuery: ``), STS and Tatoeba sentences under their
MTEB task instructions (mteb template), and XQuAD paragraphs as raw documents (nothing to reuse: the cache must not
slow them down). Each system is warmed up on 16 texts, then timed over all, best of ``--repeat``, the three
systems alternating.
Cosines: cache on against cache off (the exactness check) and against sentence-transformers.

The quick suite (``--suite quick``) runs on the 270m shape with the cache off, then on; wall time and scores.
Absolute figures drift with the machine's load; the ratios within one run are what count.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cpu_modes import machine_line  # noqa: E402

WEB_SEARCH = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: "
ST_FILES = ("modules.json", "1_Pooling", "2_Normalize", "sentence_bert_config.json",
            "config_sentence_transformers.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
QWEN3_06B = dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=128, rope_theta=1e6, max_position_embeddings=32768,
                 rms_norm_eps=1e-6, tie_word_embeddings=True)


def text_sets(data: Path, n: int, seed: int = 0) -> list[tuple[str, list[str], dict]]:
    """(label, texts, prompt kwargs for ``Embedder.encode``)."""
    rng = random.Random(seed)
    questions, paragraphs = [], []
    for lang in ("en", "de", "es", "ru", "zh", "ar", "hi", "tr"):
        doc = json.loads((data / "xquad" / f"xquad.{lang}.json").read_text(encoding="utf-8"))
        for art in doc["data"]:
            for p in art["paragraphs"]:
                paragraphs.append(p["context"])
                questions += [q["question"] for q in p["qas"]]
    with zipfile.ZipFile(data / "scifact" / "scifact.zip") as z:
        claims = [row["claim"] for name in ("claims_train.csv", "claims_test.csv")
                  for row in csv.DictReader(io.TextIOWrapper(z.open(name), encoding="utf-8"))]
    sts = []
    for lang in ("en", "de", "es", "fr", "ru", "zh"):
        with (data / "stsb-multi-mt" / f"stsb-{lang}-test.csv").open(encoding="utf-8") as f:
            sts += [row[0] for row in csv.reader(f)]
    bitext = []
    for lang in ("deu", "fra", "cmn", "jpn", "ara", "swh"):
        bitext += (data / "tatoeba-laser" / f"tatoeba.{lang}-eng.{lang}").read_text(encoding="utf-8").splitlines()
    pick = lambda xs, k: rng.sample(xs, min(k, len(xs)))  # noqa: E731
    return [("XQuAD questions, web_search_query", pick(questions, n), {"prompt": WEB_SEARCH}),
            ("SciFact claims, web_search_query", pick(claims, n), {"prompt": WEB_SEARCH}),
            ("STS sentences, STS17 instruction", pick(sts, n), {"task": "STS17"}),
            ("Tatoeba sentences, Tatoeba instruction", pick(bitext, n), {"task": "Tatoeba"}),
            ("XQuAD paragraphs, raw documents", pick(paragraphs, max(16, n // 4)), {})]


def build_270m(gguf: Path, out: Path) -> Path:
    from harrier.train.student import embedder_from_decoder_lm

    embedder_from_decoder_lm(gguf, device="cpu", max_length=2048).save_pretrained(out)
    return out


def build_06b(like: Path, out: Path) -> Path:
    """Random weights of the harrier-0.6b shape, with ``like``'s tokenizer and Sentence-Transformers head."""
    from transformers import Qwen3Config, Qwen3Model

    # 64 spare rows: sentence-transformers pads these texts with id 262,144 (one past Gemma-3's vocab_size), which
    # Gemma-3 accepts and a Qwen3 table of exactly vocab_size rows does not
    vocab = json.loads((like / "config.json").read_text())["vocab_size"] + 64
    cfg = Qwen3Config(vocab_size=vocab, bos_token_id=2, eos_token_id=1, pad_token_id=0, **QWEN3_06B)
    torch.manual_seed(0)
    Qwen3Model(cfg).save_pretrained(out)
    for name in ST_FILES:
        src = like / name
        if src.is_dir():
            shutil.copytree(src, out / name)
        elif src.is_file():
            shutil.copy(src, out / name)
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def timed(fns, texts, repeat: int) -> list[tuple[float, np.ndarray]]:
    """Each of ``fns`` warmed up, then timed over ``texts`` ``repeat`` times, the systems alternating (so a load
    spike on the machine hits them alike); (best seconds, output) per system."""
    for fn in fns:
        fn(texts[:16])
    best, out = [float("inf")] * len(fns), [None] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            out[i] = np.asarray(fn(texts), dtype=np.float32)
            best[i] = min(best[i], time.perf_counter() - t0)
    return list(zip(best, out, strict=True))


def bench_model(label: str, path: Path, sets, repeat: int) -> list[dict]:
    from sentence_transformers import SentenceTransformer

    from harrier import Embedder

    on = Embedder.from_pretrained(path, device="cpu", dtype="float32")
    off = Embedder.from_pretrained(path, device="cpu", dtype="float32", prefix_cache=False)
    st = SentenceTransformer(str(path), device="cpu")
    print(f"\n## {label}: {on.info().prefix_cache}")
    print(f"{'texts':42s} {'tokens':>7s} {'saved':>6s} {'ST tok/s':>9s} {'off tok/s':>9s} {'on tok/s':>9s} "
          f"{'on/off':>6s} {'on/ST':>6s} {'on texts/s':>10s} {'min cos off':>11s} {'mean':>9s} {'min cos ST':>10s}")
    rows = []
    for name, texts, kw in sets:
        prefix = on.prefix(**kw)
        tok = on.tokenizer.encode_prompted(texts, [prefix] * len(texts))
        tokens = sum(len(x) for x in tok.ids)
        saved = sum(tok.prefix_lens) / tokens
        (t_off, v_off), (t_on, v_on), (t_st, v_st) = timed(
            [lambda t, kw=kw: off.encode(t, progress=False, **kw),
             lambda t, kw=kw: on.encode(t, progress=False, **kw),
             lambda t, p=prefix: st.encode(t, prompt=p or None, batch_size=32)], texts, repeat)
        c_off, c_st = cosine(v_on, v_off), cosine(v_on, v_st)
        row = dict(model=label, texts=name, n=len(texts), tokens=tokens, saved=saved, st=tokens / t_st,
                   off=tokens / t_off, on=tokens / t_on, on_texts=len(texts) / t_on, min_off=c_off.min(),
                   mean_off=c_off.mean(), min_st=c_st.min())
        rows.append(row)
        print(f"{name:42s} {tokens:7d} {saved:6.0%} {row['st']:9.0f} {row['off']:9.0f} {row['on']:9.0f} "
              f"{row['on'] / row['off']:5.2f}x {row['on'] / row['st']:5.2f}x {row['on_texts']:10.1f} "
              f"{row['min_off']:11.6f} {row['mean_off']:9.6f} {row['min_st']:10.6f}", flush=True)
    return rows


def bench_suite(path: Path, suite: str, data: Path) -> None:
    from harrier import Embedder
    from harrier.train.evaluate import suite_scores

    print(f"\n## {suite} suite on {path.name} (mteb task instructions on the query side)")
    results = {}
    for mode in (False, True):
        m = Embedder.from_pretrained(path, device="cpu", dtype="float32", prefix_cache=mode)
        t0 = time.perf_counter()
        scores = suite_scores(m, suite, data_root=str(data), batch_tokens=4096)
        results[mode] = (time.perf_counter() - t0, scores)
        print(f"cache {'on ' if mode else 'off'}: {results[mode][0]:7.1f} s  {scores}", flush=True)
    (t_off, s_off), (t_on, s_on) = results[False], results[True]
    same = all(abs(s_on[k] - s_off[k]) < 0.005 for k in s_off)
    print(f"speed-up {t_off / t_on:.2f}x; scores identical to 2 decimals: {same}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="texts per set")
    ap.add_argument("--models", default="270m,0.6b")
    ap.add_argument("--repeat", type=int, default=2, help="timings: best of this many")
    ap.add_argument("--suite", default="quick")
    ap.add_argument("--no-suite", action="store_true")
    ap.add_argument("--data-root", type=Path, default=HERE.parents[1] / "shared" / "data")
    ap.add_argument("--gguf", type=Path,
                    default=Path.home() / ".cache/harrier-models/gemma-3-270m/gemma-3-270m-q4_k_m.gguf")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    print(f"machine: {machine_line()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    sets = text_sets(args.data_root, args.n)
    root = Path(tempfile.mkdtemp(prefix="harrier-prefix-bench-"))
    try:
        p270 = build_270m(args.gguf, root / "harrier-270m-shape")
        models = args.models.split(",")
        for label in models:
            path = p270 if label == "270m" else build_06b(p270, root / "harrier-0.6b-shape")
            bench_model(f"harrier-{label} shape" + (" (real Gemma-3-270M weights)" if label == "270m" else
                                                     " (random weights)"), path, sets, args.repeat)
        if not args.no_suite:
            bench_suite(p270, args.suite, args.data_root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
