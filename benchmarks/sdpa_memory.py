"""Does torch's CPU ``scaled_dot_product_attention`` materialise the [L, L] score matrix? Peak RSS and time per call.

    python benchmarks/sdpa_memory.py --lengths 4096,8192

Each case runs in its own process: causal (``is_causal``, no mask), bidirectional (no mask), an explicit boolean
causal mask, and causal GQA (``enable_gqa``, 1 key/value head). Prints the peak RSS above the inputs and the time.
One [8k, 8k] fp32 score matrix per head is 256 MiB; a kernel that stays near the inputs' size does not build it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

MODES = ("causal", "bidirectional", "causal-mask", "causal-gqa")


def hwm_mib() -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def case(length: int, mode: str, heads: int, head_dim: int) -> str:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    kv = 1 if mode == "causal-gqa" else heads
    q = torch.randn(1, heads, length, head_dim)
    k, v = torch.randn(1, kv, length, head_dim), torch.randn(1, kv, length, head_dim)
    mask = torch.ones(length, length, dtype=torch.bool).tril() if mode == "causal-mask" else None
    Path("/proc/self/clear_refs").write_text("5")  # peak from here on
    before = hwm_mib()
    start = time.perf_counter()
    F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mode in ("causal", "causal-gqa"),
                                   enable_gqa=kv != heads)
    seconds = time.perf_counter() - start
    return f"| {length:,} | {mode} | {hwm_mib() - before:,.0f} | {seconds:.2f} |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="4096,8192")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--case", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(case(int(args.case[0]), args.case[1], args.heads, args.head_dim))
        return 0
    print(f"torch CPU SDPA, {args.heads} heads x {args.head_dim}, fp32, 1 thread")
    print("| tokens | attention | peak RSS above inputs (MiB) | seconds |\n|---|---|---|---|")
    for length in args.lengths.split(","):
        for mode in MODES:
            out = subprocess.run([sys.executable, __file__, "--heads", str(args.heads), "--head-dim",
                                  str(args.head_dim), "--case", length, mode], capture_output=True, text=True,
                                 timeout=600)
            print(out.stdout.strip() or f"| {length} | {mode} | failed: {out.stderr.strip()[-200:]} | |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
