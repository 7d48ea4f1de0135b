"""Resident memory of a process after ``Embedder.from_pretrained`` (and its peak during the load), per dtype, each
load in a fresh subprocess. Run it on two checkouts to compare them:

    python benchmarks/load_memory.py --model ~/.cache/harrier-models/embeddinggemma-300m
    PYTHONPATH=/path/to/old/checkout python benchmarks/load_memory.py --model ...   # the same for an older commit
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import gc, json, resource, sys
import torch
torch.set_num_threads(1)
from harrier import Embedder

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
base = rss_mb()
m = Embedder.from_pretrained(sys.argv[1], device="cpu", dtype=sys.argv[2])
gc.collect()
params = sum(p.numel() * p.element_size() for p in m.model.parameters()) / 2**20
print(json.dumps({"dtype": sys.argv[2], "rss_before_mb": base, "rss_after_mb": rss_mb(),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "params_mb": params,
                  "module": __import__("harrier").__file__}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    args = ap.parse_args()
    print(f"{'dtype':<10}{'weights MB':>12}{'RSS before':>12}{'RSS after load':>16}{'peak':>10}   harrier from")
    for dtype in args.dtypes.split(","):
        out = subprocess.run([sys.executable, "-c", CHILD, args.model, dtype], capture_output=True, text=True,
                             check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{dtype:<10}{r['params_mb']:>12.0f}{r['rss_before_mb']:>12.0f}{r['rss_after_mb']:>16.0f}"
              f"{r['peak_mb']:>10.0f}   {r['module']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
