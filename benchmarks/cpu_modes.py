"""harrier's CPU modes against the peers, one run, same texts, same machine: tokens/s, ratio, min/mean cosine.

    python benchmarks/cpu_modes.py --n 300

Rows: harrier auto / fp32 / fp32-compiled / bf16 / bf16-compiled / int8 / int8-compiled on EmbeddingGemma-300M
and on the harrier-270m shape (the Gemma-3-270M GGUF: causal, last-token pooling);
sentence-transformers fp32 / bf16 (this venv); ONNX Runtime dynamic int8 through sentence-transformers' ONNX
backend and OpenVINO int8 through optimum-intel, each in its own venv (``--onnx-python``, ``--openvino-python``:
their transformers / huggingface-hub pins differ from ours); llama.cpp (llama-cpp-python, ``--llama-python``) on
the Gemma-3-270M GGUF requantised to Q8_0 (and as shipped, Q4_K_M) against harrier on the same file. The int8
probe's figures (``fastpath.int8_probe``) are printed. ``--isa avx2`` reruns everything with oneDNN, fbgemm and
ATen capped at AVX2 (what an AVX2-only CPU such as AMD Zen 2 runs; MKL's fp32 may keep its wider kernels on AMD,
which favours fp32). A peer that cannot run prints why, in its row. Each system is warmed up on the first 32 texts
(for compiled modes that is the compile, printed as ``warm-up s``), then timed over all texts ``--repeat`` times
(the best pass counts). Cosines are against sentence-transformers fp32 (llama.cpp rows: against harrier fp32 on the
GGUF). ``mm share``: the share of CPU time in matrix products (``aten::mm``, ``addmm``, ``_int_mm``, oneDNN linear)
in a torch profile of ``--profile-n`` texts, harrier modes only.

Texts: ``encode_speed.benchmark_texts`` (multilingual mix, mean about 50 tokens). Absolute figures drift with the
machine's load; ratios within one run are what count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MM_OPS = ("aten::mm", "aten::addmm", "aten::_int_mm", "aten::bmm", "mkldnn::_linear_pointwise",
          "onednn::qlinear_pointwise", "quantized::linear_dynamic")
WARMUP = 32
AVX2_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def machine_line() -> str:
    """lscpu's model name and the matrix-relevant flags."""
    flags, model = set(), platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", "x86_64"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8",
              "amx_tile")
    have = [f for f in wanted if f in flags]
    missing = [f for f in wanted if f not in flags]
    absent = f" (no {', '.join(missing)})" if missing else ""
    return f"{model}, {os.cpu_count()} CPUs, flags: {' '.join(have)}{absent}"


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


REPEAT = [3]  # timed passes per system (--repeat); the best counts


def timed(fn, texts):
    """(warm-up seconds on the first texts, best seconds of ``REPEAT`` passes over all texts, output of the last).
    The best of a few passes: on a shared VM one pass moved by up to 40% (harrier fp32: 15.2 s and 22.4 s in two
    runs of the same code), which a single pass would put into the ratios."""
    t0 = time.perf_counter()
    fn(texts[:WARMUP])
    warm = time.perf_counter() - t0
    best = float("inf")
    for _ in range(REPEAT[0]):
        t0 = time.perf_counter()
        out = fn(texts)
        best = min(best, time.perf_counter() - t0)
    return warm, best, np.asarray(out, dtype=np.float32)


def mm_share(fn, texts) -> float:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn(texts)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key in MM_OPS) / max(total, 1)


# -- peers in their own venvs: this file is run there with --peer NAME (it imports no harrier code) --------------

def run_peer(name: str, spec_file: Path) -> None:
    spec = json.loads(spec_file.read_text())
    texts, out = spec["texts"], Path(spec["out"])
    REPEAT[0] = spec.get("repeat", REPEAT[0])
    if name.startswith("llama.cpp"):
        from llama_cpp import LLAMA_POOLING_TYPE_LAST, Llama

        gguf = spec["gguf"]
        if name == "llama.cpp-q8_0":  # the shipped Q4_K_M file requantised to Q8_0 with llama.cpp's own quantiser
            import llama_cpp

            gguf = str(Path(spec["workdir"]) / "gemma-3-270m-q8_0.gguf")
            if not Path(gguf).is_file():
                params = llama_cpp.llama_model_quantize_default_params()
                params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
                params.allow_requantize = True
                params.nthread = spec["threads"]
                rc = llama_cpp.llama_model_quantize(spec["gguf"].encode(), gguf.encode(), params)
                if rc != 0:
                    raise SystemExit(f"llama_model_quantize failed ({rc})")
        llm = Llama(gguf, embedding=True, pooling_type=LLAMA_POOLING_TYPE_LAST, n_ctx=8192, n_batch=4096,
                    n_ubatch=4096, n_threads=spec["threads"], verbose=False)

        def fn(x):
            return llm.embed(x, normalize=True)
    else:
        from sentence_transformers import SentenceTransformer

        if name == "onnx-int8":
            from sentence_transformers import export_dynamic_quantized_onnx_model

            work = Path(spec["workdir"]) / "onnx"
            if not (work / "onnx" / "model_qint8_avx512_vnni.onnx").is_file():
                SentenceTransformer(spec["model"], backend="onnx", device="cpu").save_pretrained(str(work))
                export_dynamic_quantized_onnx_model(SentenceTransformer(str(work), backend="onnx", device="cpu"),
                                                    "avx512_vnni", str(work))
            st = SentenceTransformer(str(work), backend="onnx", device="cpu",
                                     model_kwargs={"file_name": "onnx/model_qint8_avx512_vnni.onnx"})
        else:  # openvino-int8: weight int8 compression through optimum-intel (nncf)
            st = SentenceTransformer(spec["model"], backend="openvino", device="cpu",
                                     model_kwargs={"quantization_config": {"bits": 8}})

        def fn(x):
            return st.encode(x, prompt_name=spec["prompt_name"], batch_size=spec["batch_size"])
    warm, secs, emb = timed(fn, texts)
    np.save(out, emb)
    print(json.dumps({"warm": warm, "secs": secs}))


def peer_row(name: str, python: str | None, spec: dict, work: Path, timeout: int):
    """(warm-up s, seconds, embeddings) of a peer run in its venv, or the reason it did not run."""
    if not python or not Path(python).is_file():
        return f"no venv python at {python!r}"
    spec = {**spec, "out": str(work / f"{name}.npy"), "workdir": str(work)}
    spec_file = work / f"{name}.json"
    spec_file.write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    try:
        proc = subprocess.run([python, str(Path(__file__).resolve()), "--peer", name, "--spec", str(spec_file)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout} s"
    if proc.returncode != 0:
        lines = [x for x in proc.stderr.strip().splitlines() if x.strip()]
        return "failed: " + (lines[-1][:160] if lines else f"exit {proc.returncode}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["warm"], result["secs"], np.load(spec["out"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", help=argparse.SUPPRESS)
    ap.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    models = Path(os.environ.get("HARRIER_MODELS", Path.home() / ".cache" / "harrier-models"))
    ap.add_argument("--model", default=str(models / "embeddinggemma-300m"))
    ap.add_argument("--gguf", default=str(models / "gemma-3-270m" / "gemma-3-270m-q4_k_m.gguf"))
    ap.add_argument("--data-root", default=str(HERE.parents[1] / "shared" / "data"))
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--profile-n", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3, help="timed passes per system; the best counts")
    ap.add_argument("--prompt-name", default="STS")
    ap.add_argument("--st-batch-size", type=int, default=16, help="sentence-transformers' fastest here (16)")
    ap.add_argument("--onnx-python", default="/work/peer-venvs/st-onnx/bin/python")
    ap.add_argument("--openvino-python", default="", help="(its export returned wrong vectors here; off)")
    ap.add_argument("--llama-python", default="/work/peer-venvs/llamacpp/bin/python")
    ap.add_argument("--isa", choices=["native", "avx2"], default="native",
                    help="avx2: cap oneDNN, fbgemm and ATen kernels at AVX2 (re-executes with their variables set)")
    ap.add_argument("--peer-timeout", type=int, default=1800)
    ap.add_argument("--workdir", type=Path, default=None, help="keeps the peers' exported models between runs")
    ap.add_argument("--modes", default=",".join(m for m, _, _ in HARRIER_MODES),
                    help="harrier rows to run, comma-separated (fp32 always runs: the ratios' reference)")
    ap.add_argument("--no-peers", action="store_true",
                    help="skip sentence-transformers bf16, ONNX Runtime and llama.cpp (ST fp32 stays: the cosines' "
                         "reference)")
    args = ap.parse_args()
    known = [m for m, _, _ in HARRIER_MODES]
    wanted = {m.strip() for m in args.modes.split(",") if m.strip()} | {"fp32"}
    if wanted - set(known):
        ap.error(f"--modes: unknown {', '.join(sorted(wanted - set(known)))}; modes: {', '.join(known)}")
    modes = [m for m in HARRIER_MODES if m[0] in wanted]
    if args.isa == "avx2" and os.environ.get("ONEDNN_MAX_CPU_ISA") != "AVX2":
        env = {**os.environ, **AVX2_ENV}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    if args.peer:
        run_peer(args.peer, args.spec)
        return
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    REPEAT[0] = args.repeat

    import torch

    sys.path.insert(0, str(HERE))
    from encode_speed import benchmark_texts
    from sentence_transformers import SentenceTransformer

    from harrier import Embedder

    texts = benchmark_texts(Path(args.data_root), args.n)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="harrier-cpu-modes-"))
    work.mkdir(parents=True, exist_ok=True)
    capped = " (kernels capped at AVX2: " + " ".join(f"{k}={v}" for k, v in AVX2_ENV.items()) + ")" \
        if os.environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2" else ""
    print(f"machine: {machine_line()}{capped}\ntorch {torch.__version__}, {torch.get_num_threads()} threads")
    ours = Embedder.from_pretrained(args.model, device="cpu", dtype="float32")
    n_tokens = sum(len(x) for x in ours.tokenize(texts, ours.prefix(prompt_name=args.prompt_name)))
    del ours
    print(f"{len(texts)} texts, {n_tokens} tokens (mean {n_tokens / len(texts):.1f}), prompt {args.prompt_name}")
    table = Table("harrier fp32" if args.no_peers else "ST bf16")  # --no-peers: harrier fp32 is the 2nd row

    for mode, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))[:1 if args.no_peers else 2]:
        st = SentenceTransformer(args.model, device="cpu", model_kwargs={"dtype": dtype})

        def st_fn(x, st=st):
            return st.encode(x, prompt_name=args.prompt_name, batch_size=args.st_batch_size)
        table.row("sentence-transformers", mode, n_tokens, timed(st_fn, texts))
        del st

    for mode, dtype, compile_ in modes:
        m = Embedder.from_pretrained(args.model, device="cpu", dtype=dtype, compile=compile_)
        if dtype == "int8" and not compile_:
            print(f"{m.info().int8_probe}\n", flush=True)

        def fn(x, m=m):
            return m.encode(x, prompt_name=args.prompt_name, progress=False)
        result = timed(fn, texts)
        table.row("harrier", f"{mode}{auto_says(m, dtype)}", n_tokens, result,
                  share=mm_share(fn, texts[:args.profile_n]))
        del m

    spec = {"texts": texts, "model": args.model, "prompt_name": args.prompt_name, "batch_size": args.st_batch_size,
            "threads": torch.get_num_threads(), "gguf": args.gguf, "repeat": args.repeat}
    for name, python in (("onnx-int8", args.onnx_python), ("openvino-int8", args.openvino_python)):
        if python and not args.no_peers:
            table.row(name, "int8", n_tokens, peer_row(name, python, spec, work, args.peer_timeout))

    if not Path(args.gguf).is_file():
        print(f"| llama.cpp | | not run: no GGUF at {args.gguf} |")
        return
    # the harrier-270m shape: Gemma-3-270M (causal, last-token pooling), from the same GGUF file for both
    g_tokens = sum(len(x) for x in Embedder.from_pretrained(args.gguf, device="cpu").tokenize(texts))
    for mode, dtype, compile_ in modes:
        m = Embedder.from_pretrained(args.gguf, device="cpu", dtype=dtype, compile=compile_)

        def fn(x, m=m):
            return m.encode(x, progress=False)
        table.row("harrier 270m-gguf", f"{mode}{auto_says(m, dtype)}", g_tokens, timed(fn, texts), group="gguf")
        del m
    for name, mode in (("llama.cpp-q8_0", "q8_0"), ("llama.cpp", "q4_k_m"))[:0 if args.no_peers else 2]:
        table.row("llama.cpp 270m-gguf", mode, g_tokens, peer_row(name, args.llama_python, spec, work,
                                                                  args.peer_timeout), group="gguf")


# fp32 first: the reference row of each shape
HARRIER_MODES = (("fp32", "float32", False), ("auto", "auto", False), ("fp32-compiled", "float32", True),
                 ("bf16", "bfloat16", False), ("bf16-compiled", "bfloat16", True), ("int8", "int8", False),
                 ("int8-compiled", "int8", True))


def auto_says(m, dtype: str) -> str:
    """For the auto row: which dtype auto resolved to."""
    return f" ({m.info().dtype.split(' ')[0]})" if dtype == "auto" else ""


class Table:
    """Prints each row as it is measured. The first row of a group is that group's reference: ``st`` rows against
    sentence-transformers fp32 (and the second row: ST bf16, or harrier fp32 under --no-peers), ``gguf`` rows
    against harrier fp32 on the GGUF."""

    def __init__(self, second: str = "ST bf16") -> None:
        """``second``: what the second ``st`` row is (the second ratio column's reference)."""
        self.refs: dict[str, list[tuple[float, np.ndarray]]] = {}
        print(f"\n| system | mode | warm-up s | seconds | tokens/s | vs ST fp32 | vs {second} | min cos | mean cos "
              "| mm share |\n|---|---|---|---|---|---|---|---|---|---|", flush=True)

    def row(self, system: str, mode: str, tokens: int, result, *, share: float | None = None,
            group: str = "st") -> None:
        if isinstance(result, str):
            print(f"| {system} | {mode} | | | | | | | | not run: {result} |", flush=True)
            return
        warm, secs, emb = result
        refs = self.refs.setdefault(group, [])
        if len(refs) < 2:
            refs.append((secs, emb))
        cos = cosine(emb, refs[0][1])
        if group == "st":
            vs = f"{refs[0][0] / secs:.2f}x | {refs[1][0] / secs:.2f}x" if len(refs) > 1 else "1.00x | "
        else:
            vs = f"{refs[0][0] / secs:.2f}x vs harrier 270m fp32 | "
        shr = f"{share:.0%}" if share is not None else ""
        print(f"| {system} | {mode} | {warm:.1f} | {secs:.1f} | {tokens / secs:.0f} | {vs} | {cos.min():.5f} "
              f"| {cos.mean():.5f} | {shr} |", flush=True)


if __name__ == "__main__":
    main()
