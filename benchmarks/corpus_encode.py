"""Corpus encoding overhead: ``Embedder.encode`` vs the corpus engine (local, and Ray with 2 actors) on the same
texts, plus one ``kill -9`` + ``--resume`` in the middle of a job with the output checked byte for byte.

    python benchmarks/corpus_encode.py --model ~/.cache/harrier-models/embeddinggemma-300m --n 50000 \
        --data-root ../shared/data --work /tmp/corpus-bench

Texts: a deterministic multilingual mix from the data root (Tatoeba sentences in 112 languages, STSb sentences in
10, XQuAD questions and 100-400-token paragraphs in 12), written as JSONL files. Prints texts/s and tokens/s of
each system, the ratios against plain ``encode`` (corpus overhead = 1 - ratio), how close the vectors are, and
the kill/resume check.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

STSB = ["de", "es", "fr", "it", "ja", "nl", "pl", "pt", "ru", "zh"]
XQUAD = ["ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh"]


def corpus_texts(data: Path, n: int, seed: int = 0) -> list[str]:
    """~55% short sentences, ~30% STS sentences and questions, ~15% paragraphs (drawn with replacement)."""
    rng = random.Random(seed)
    short = []
    for f in sorted((data / "tatoeba-laser").glob("tatoeba.*-eng.*")):
        short += [x for x in f.read_text(encoding="utf-8").splitlines() if x.strip()]
    medium, paragraphs = [], []
    for lang in STSB:
        with (data / "stsb-multi-mt" / f"stsb-{lang}-train.csv").open(encoding="utf-8") as f:
            for row in csv.reader(f):
                medium += row[:2]
    for lang in XQUAD:
        doc = json.loads((data / "xquad" / f"xquad.{lang}.json").read_text(encoding="utf-8"))
        for art in doc["data"]:
            for p in art["paragraphs"]:
                paragraphs.append(p["context"])
                medium += [qa["question"] for qa in p["qas"][:2]]
    n_short, n_medium = int(n * 0.55), int(n * 0.30)
    texts = rng.sample(short, min(n_short, len(short))) + rng.sample(medium, min(n_medium, len(medium)))
    texts += rng.choices(paragraphs, k=n - len(texts))
    rng.shuffle(texts)
    return texts


def write_inputs(texts: list[str], folder: Path, files: int = 4) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-len(texts) // files)
    for k in range(files):
        with (folder / f"part-{k}.jsonl").open("w", encoding="utf-8") as f:
            for i in range(k * per, min(len(texts), (k + 1) * per)):
                f.write(json.dumps({"id": f"t{i}", "text": texts[i]}, ensure_ascii=False) + "\n")
    return str(folder / "*.jsonl")


def read_corpus(out: Path) -> tuple[list[str], np.ndarray]:
    from harrier.corpus.manifest import Manifest
    from harrier.corpus.shards import read_vectors

    ids, emb = [], []
    for shard in Manifest.load(out).shards:
        for batch in read_vectors(out / shard.file):
            ids += batch["id"]
            emb.append(batch["embedding"])
    return ids, np.concatenate(emb)


def tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def compare(a: np.ndarray, b: np.ndarray) -> str:
    cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return f"max |diff| {np.abs(a - b).max():.2e}, min cosine {cos.min():.6f}, identical {np.array_equal(a, b)}"


def kill_and_resume(args, pattern: str, out: Path, reference: Path, shard_rows: int, n_shards: int) -> str:
    """Run the CLI job in a subprocess, SIGKILL it once half its shards exist, resume, compare bytes."""
    cmd = [sys.executable, "-m", "harrier.cli", "corpus", "encode", "--model", args.model, "--input", pattern,
           "--output", str(out), "--shard-rows", str(shard_rows), "--dtype", args.dtype, "--device", "cpu",
           "--no-progress", *(["--prompt-name", args.prompt_name] if args.prompt_name else []),
           *(["--window-rows", str(args.window_rows)] if args.window_rows else [])]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = out / f"shard-{n_shards // 2 - 1:05d}.parquet"
    while not target.exists():
        if proc.poll() is not None:
            return f"job ended (rc {proc.returncode}) before the kill"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = time.perf_counter() - t0
    finished = len(list(out.glob("shard-*.parquet")))
    partial = [p.name for p in out.glob("*.tmp")]
    t1 = time.perf_counter()
    rc = subprocess.run([*cmd, "--resume"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    resumed = time.perf_counter() - t1
    same = rc == 0 and tree(out) == tree(reference)
    return (f"killed (SIGKILL) after {killed_at:.0f} s with {finished}/{n_shards} shards done, partial files "
            f"{partial or 'none'}; resume rc {rc} in {resumed:.0f} s; output byte-identical to the uninterrupted "
            f"run: {same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(Path.home() / ".cache/harrier-models/embeddinggemma-300m"))
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--work", default="/tmp/harrier-corpus-bench", help="scratch folder (inputs and outputs)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--prompt-name", default=None, help="applied to every text (default: documents, no prompt)")
    ap.add_argument("--shards", type=int, default=4, help="the local job's shard count (kill after half)")
    ap.add_argument("--io-n", type=int, default=50_000, help="texts for the engine-cost part (0: skip)")
    ap.add_argument("--window-rows", type=int, default=None, help="corpus window (default: the library's)")
    ap.add_argument("--rounds", type=int, default=1, help="plain/local runs, alternated (best of each)")
    ap.add_argument("--skip", default="", help="comma list of steps to skip: ray,kill")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    from harrier import Embedder

    model = Embedder.from_pretrained(args.model, device="cpu", dtype=args.dtype)
    if args.io_n:
        engine_cost(args, model)
    if args.n == 0:
        return
    bench = Bench(args, model)
    emb, local_out = bench.plain_vs_local()
    if "ray" not in skip:
        bench.ray(emb)
    if "kill" not in skip:
        note = kill_and_resume(args, bench.pattern, bench.work / "killed", local_out, bench.shard_rows, args.shards)
        print(f"kill -9 + --resume: {note}", flush=True)


class NullEngine:
    """Returns zero vectors without tokenizing or running the model: what is left is the corpus engine's own work
    (reading, parsing, windows, Parquet shards, manifest, bad-row file)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def encode(self, windows):
        from harrier.corpus.window import WindowResult

        for w in windows:
            yield WindowResult(np.zeros((len(w.texts), self.dim), np.float32), [1] * len(w.texts),
                               [False] * len(w.texts))

    def close(self) -> None:
        pass


def engine_cost(args: argparse.Namespace, model) -> None:
    """At the full size: the corpus engine's own time per text (null engine), the model's tokenization time, and
    the forward batches the windowed plan needs against one global plan (each window ends in a part-filled batch)."""
    from harrier.corpus.encode import CorpusConfig, encode_corpus
    from harrier.engine import DEFAULT_BATCH_TOKENS, plan_batches

    work = Path(args.work) / "io"
    shutil.rmtree(work, ignore_errors=True)
    texts = corpus_texts(Path(args.data_root), args.io_n)
    pattern = write_inputs(texts, work / "in")
    window = args.window_rows or CorpusConfig.window_rows
    cfg = CorpusConfig(inputs=(pattern,), output=work / "out", shard_rows=-(-len(texts) // args.shards),
                       window_rows=window, progress=False)
    t = time.perf_counter()
    encode_corpus(cfg, model, NullEngine(model.dim))
    io = time.perf_counter() - t
    t = time.perf_counter()
    lengths = [len(x) for x in model.tokenize(texts)]
    tok = time.perf_counter() - t
    budget = DEFAULT_BATCH_TOKENS["cpu"]
    whole = len(plan_batches(lengths, budget))
    windowed = 0
    for s0 in range(0, len(texts), cfg.shard_rows):
        shard = lengths[s0:s0 + cfg.shard_rows]
        windowed += sum(len(plan_batches(shard[w:w + window], budget)) for w in range(0, len(shard), window))
    print(f"engine cost at {len(texts)} texts ({sum(lengths)} tokens), {args.shards} shards, windows of {window}: "
          f"corpus engine without the model {io:.1f} s ({io / len(texts) * 1e3:.2f} ms/text, fingerprint included); "
          f"tokenization {tok:.1f} s (same in both paths); forward batches of {budget} tokens: {windowed} windowed "
          f"vs {whole} in one global plan ({windowed / whole - 1:+.1%})", flush=True)


class Bench:
    """The texts, written as JSONL inputs, and the model; each method runs one comparison and prints it."""

    def __init__(self, args: argparse.Namespace, model) -> None:
        from harrier.corpus.manifest import model_fingerprint
        from harrier.engine import DEFAULT_BATCH_TOKENS
        from harrier.prompts import Prompt

        self.args, self.model = args, model
        self.work = Path(args.work)
        shutil.rmtree(self.work, ignore_errors=True)
        self.texts = corpus_texts(Path(args.data_root), args.n)
        self.pattern = write_inputs(self.texts, self.work / "in")
        self.prompt = Prompt(prompt_name=args.prompt_name) if args.prompt_name else None
        self.n_tokens = sum(len(x) for x in model.tokenize(self.texts, model.prefix_for(self.prompt)))
        self.shard_rows = -(-args.n // args.shards)
        self.batch_tokens = DEFAULT_BATCH_TOKENS["cpu"]
        print(f"{cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads; model {args.model} "
              f"({args.dtype}); {len(self.texts)} texts, {self.n_tokens} tokens "
              f"(mean {self.n_tokens / len(self.texts):.1f}); {args.shards} shards", flush=True)
        t = time.perf_counter()
        model_fingerprint(args.model)
        print(f"model fingerprint (sha256 of the checkpoint files; once per job, included below) "
              f"{time.perf_counter() - t:.1f} s", flush=True)

    def line(self, name: str, seconds: float, note: str) -> None:
        n = len(self.texts)
        print(f"{name:<28} {seconds:8.1f} s  {n / seconds:7.1f} texts/s  {self.n_tokens / seconds:8.0f} tokens/s  "
              f"{note}", flush=True)

    def job(self, name: str, engine) -> tuple[float, float, Path]:
        from harrier.corpus.encode import CorpusConfig, encode_corpus

        cfg = CorpusConfig(inputs=(self.pattern,), output=self.work / name, prompt=self.prompt,
                           shard_rows=self.shard_rows, batch_tokens=self.batch_tokens, progress=False,
                           **({"window_rows": self.args.window_rows} if self.args.window_rows else {}))
        shutil.rmtree(cfg.output, ignore_errors=True)
        t, c = time.perf_counter(), time.process_time()
        encode_corpus(cfg, self.model, engine)
        return time.perf_counter() - t, time.process_time() - c, cfg.output

    def plain_vs_local(self) -> tuple[np.ndarray, Path]:
        from harrier.corpus.window import LocalEngine

        plain, plain_cpu, local, local_cpu = [], [], [], []
        for _ in range(self.args.rounds):  # alternated, best of each: the machine may be shared
            t, c = time.perf_counter(), time.process_time()
            ref = self.model.encode(self.texts, prompt_name=self.args.prompt_name, progress=False)
            plain.append(time.perf_counter() - t)
            plain_cpu.append(time.process_time() - c)
            seconds, cpu, out = self.job("local", LocalEngine(self.model, self.batch_tokens))
            local.append(seconds)
            local_cpu.append(cpu)
        self.plain = min(plain)
        self.line("plain Embedder.encode", self.plain, f"ratio 1.000 (process CPU time {min(plain_cpu):.1f} s)")
        ids, emb = read_corpus(out)
        assert ids == [f"t{i}" for i in range(len(self.texts))]
        self.line("corpus encode, local engine", min(local),
                  f"ratio {self.plain / min(local):.3f} (wall overhead {1 - self.plain / min(local):+.1%}, CPU-time "
                  f"overhead {min(local_cpu) / min(plain_cpu) - 1:+.1%}); vs encode: {compare(emb, ref)}")
        return emb, out

    def ray(self, local_emb: np.ndarray) -> None:
        import ray

        from harrier.corpus.ray_engine import RayEngine, RayEngineConfig

        t = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        started = time.perf_counter() - t
        engine = RayEngine(RayEngineConfig(model=self.args.model, dtype=self.args.dtype, actors=2, actor_cpus=1,
                                           batch_tokens=self.batch_tokens))
        seconds, _, out = self.job("ray", engine)
        ray.shutdown()
        _, emb = read_corpus(out)
        self.line("corpus encode, Ray 2 actors", seconds,
                  f"ratio {self.plain / seconds:.3f} (ray.init {started:.1f} s not counted; the actor pool starts "
                  f"once per shard); vs local: {compare(emb, local_emb)}")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs"


if __name__ == "__main__":
    main()
