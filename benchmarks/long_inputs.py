"""One long text at 2k / 8k / 32k tokens through harrier, sentence-transformers and transformers: time and peak RSS.

    python benchmarks/long_inputs.py --model /tmp/g270 --lengths 2048,8192,32768 --timeout 2400 > long.log

``--model`` is a harrier-shaped Sentence-Transformers directory (``--export-from-gguf`` builds one from a decoder
LM such as Gemma-3-270M with ``harrier.train.student.embedder_from_decoder_lm``), so all three systems load the
same fp32 weights. Each case runs in its own subprocess: load the model, embed a short warm-up text, note RSS
("weights"), reset the peak (Linux ``clear_refs``), time one ``encode`` of the long text and report the peak RSS
(``VmHWM``) above the noted RSS. A case that runs
past its timeout (``--timeout``; for a peer also ``--peer-factor`` times harrier's time) or past ``--rss-cap-gb`` is
stopped and reported as such. The text is multilingual Tatoeba
sentences from ``--data-root`` concatenated and cut to the length in tokens (special tokens included). The table
prints each peer's time and memory as a ratio to harrier's, and the cosine of its vector to harrier's.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SYSTEMS = ("harrier", "sentence-transformers", "transformers")
LANGS = ["deu", "fra", "spa", "rus", "cmn", "jpn", "ara", "hin", "tur", "pol", "ita", "por", "kor", "vie", "ell"]


def long_text(model: str, data: Path, tokens: int) -> str:
    """Tatoeba sentences in 15 languages, concatenated and cut so the text tokenizes to ``tokens`` with specials."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(model) / "tokenizer.json"))
    tok.no_truncation()
    sentences = []
    for lang in LANGS:
        path = data / "tatoeba-laser" / f"tatoeba.{lang}-eng.{lang}"
        sentences += path.read_text(encoding="utf-8").splitlines()[:300]
    text = ""
    i = 0
    while len(tok.encode(text, add_special_tokens=False).ids) < tokens:
        text += " ".join(sentences[i % len(sentences): i % len(sentences) + 200]) + " "
        i += 200
    specials = len(tok.encode("", add_special_tokens=True).ids)
    enc = tok.encode(text, add_special_tokens=False)
    return text[: enc.offsets[tokens - specials - 1][1]]


def status_mib(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident since the last reset) of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets VmHWM, so the peak excludes loading's transient copies."""
    Path("/proc/self/clear_refs").write_text("5")


def run_case(system: str, model: str, text_file: str, out_file: str, threads: int) -> None:
    """Child process: load, warm up, time one encode, write the vector and figures to ``out_file``."""
    import torch

    torch.set_num_threads(threads)
    text = Path(text_file).read_text(encoding="utf-8")
    if system == "harrier":
        from harrier import Embedder

        m = Embedder.from_pretrained(model, device="cpu", dtype="float32", truncation="error")
        n_tokens = len(m.tokenize([text])[0])

        def encode(t):
            return m.encode([t], progress=False)[0]
    elif system == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(model, device="cpu")
        st.max_seq_length = 32_768
        n_tokens = int(st.tokenize([text])["input_ids"].shape[1])

        def encode(t):
            return st.encode([t], convert_to_numpy=True, batch_size=1)[0]
    else:
        from transformers import AutoModel, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model)
        hf = AutoModel.from_pretrained(model, dtype=torch.float32).eval()
        n_tokens = len(tok(text)["input_ids"])

        def encode(t):
            batch = tok([t], return_tensors="pt")
            with torch.inference_mode():
                last = hf(**batch).last_hidden_state[0, -1]
            return torch.nn.functional.normalize(last, dim=-1).numpy()
    encode("warm-up text")
    gc.collect()
    loaded = status_mib("VmRSS")
    reset_peak_rss()
    start = time.perf_counter()
    vec = encode(text)
    seconds = time.perf_counter() - start
    np.save(out_file + ".npy", np.asarray(vec, dtype=np.float32))
    Path(out_file).write_text(json.dumps({"seconds": seconds, "tokens": n_tokens, "loaded_mib": loaded,
                                          "peak_mib": status_mib("VmHWM")}))


def watch(cmd: list[str], timeout: float, cap_mib: float) -> str | None:
    """Run ``cmd``; None when it exits 0, else why it stopped (timeout, RSS cap, exit status)."""
    proc = subprocess.Popen(cmd)
    start = time.monotonic()
    while proc.poll() is None:
        time.sleep(0.5)
        try:
            rss = int(Path(f"/proc/{proc.pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, IndexError):
            rss = 0.0
        if rss > cap_mib or time.monotonic() - start > timeout:
            proc.kill()
            proc.wait()
            return f"stopped at {rss / 1024:.1f} GB RSS" if rss > cap_mib else f"> {timeout:.0f} s (stopped)"
    return None if proc.returncode == 0 else f"failed (exit {proc.returncode})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="harrier-shaped Sentence-Transformers directory")
    ap.add_argument("--export-from-gguf", help="build --model from this decoder-LM .gguf first (harrier-shaped)")
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--lengths", default="2048,8192,32768")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=2400, help="seconds per case")
    ap.add_argument("--peer-factor", type=float, default=1.5,
                    help="stop a peer once it has run this many times harrier's time at that length (+ 120 s load)")
    ap.add_argument("--rss-cap-gb", type=float, default=10.0, help="stop a case whose RSS passes this")
    ap.add_argument("--case", nargs=3, metavar=("SYSTEM", "TEXT", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        run_case(args.case[0], args.model, args.case[1], args.case[2], args.threads)
        return 0
    if args.export_from_gguf:
        from harrier.train.student import embedder_from_decoder_lm

        embedder_from_decoder_lm(args.export_from_gguf, device="cpu").save_pretrained(args.model)
    work = Path(tempfile.mkdtemp(prefix="harrier-long-"))
    rows = []
    for length in [int(x) for x in args.lengths.split(",")]:
        text_file = work / f"text-{length}.txt"
        text_file.write_text(long_text(args.model, Path(args.data_root), length), encoding="utf-8")
        for system in args.systems.split(","):
            out = work / f"{system}-{length}.json"
            cmd = [sys.executable, __file__, "--model", args.model, "--threads", str(args.threads),
                   "--case", system, str(text_file), str(out)]
            timeout = args.timeout
            ours = next((r for r in rows if r["length"] == length and r["system"] == "harrier"), None)
            if ours is not None and not ours["problem"]:
                timeout = min(timeout, args.peer_factor * ours["seconds"] + 120)  # + load time
            problem = watch(cmd, timeout, args.rss_cap_gb * 1024)
            row = {"system": system, "length": length, "problem": problem}
            if problem is None:
                row.update(json.loads(out.read_text()))
                row["vector"] = np.load(str(out) + ".npy")
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "vector"}), flush=True)
    print_table(rows)
    return 0


def print_table(rows: list[dict]) -> None:
    print("\n| tokens | system | time (s) | peak RSS above load (MiB) | RSS after load (MiB) | time vs harrier | "
          "memory vs harrier | cosine vs harrier |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        ours = next(r for r in rows if r["length"] == row["length"] and r["system"] == "harrier")
        if row["problem"]:
            print(f"| {row['length']:,} | {row['system']} | {row['problem']} | | | | | |")
            continue
        above = row["peak_mib"] - row["loaded_mib"]
        ratio = cos = mem = ""
        if not ours["problem"]:
            ratio = f"{row['seconds'] / ours['seconds']:.2f}x"
            mem = f"{above / max(ours['peak_mib'] - ours['loaded_mib'], 1):.2f}x"
            cos = f"{float(np.dot(row['vector'], ours['vector'])):.6f}"
        print(f"| {row['tokens']:,} | {row['system']} | {row['seconds']:.1f} | {above:,.0f} | "
              f"{row['loaded_mib']:,.0f} | {ratio} | {mem} | {cos} |")


if __name__ == "__main__":
    sys.exit(main())
