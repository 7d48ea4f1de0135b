"""Hash every training adapter's records (and build_datasets over the shipped recipes) so a refactor of the
training data code can show its records unchanged: run before and after, compare the printed digests.

    python benchmarks/records_hash.py --data-root $HARRIER_DATA [--recipes recipes/distill-270m-cpu-stage5.yaml]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

from harrier.train import config
from harrier.train.adapters import load_adapter
from harrier.train.data import build_datasets

RUNS = [
    ("wmt-newstest", "wmt-newstest-2016-2018", {}),
    ("wmt-newstest", "wmt-newstest-2016-2018", {"paragraph": 6}),
    ("wmt-ict", "wmt-newstest-2016-2018", {}),
    ("massive-parallel", "massive-partial", {}),
    ("massive-intents", "massive-partial", {}),
    ("stsb-multi-mt", "stsb-multi-mt", {}),
    ("stsb-multi-mt", "stsb-multi-mt", {"min_score": 3.5}),
    ("scifact-train", "scifact", {}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=os.environ.get("HARRIER_DATA"), help="default: $HARRIER_DATA")
    ap.add_argument("--recipes", nargs="*", default=["recipes/distill-270m-cpu-stage2.yaml",
                                                     "recipes/distill-270m-cpu-stage5.yaml"])
    args = ap.parse_args()
    if not args.data_root:
        ap.error("pass --data-root DIR or set HARRIER_DATA")
    for name, folder, opts in RUNS:
        t0, h, n = time.perf_counter(), hashlib.sha256(), 0
        for ds in load_adapter(name, Path(args.data_root) / folder, **opts):
            h.update(repr((ds.name, type(ds).__name__)).encode())
            for r in ds.records:
                h.update(repr(r).encode())
                n += 1
        print(f"{name:18s} {str(opts):22s} records={n:7d} sha256={h.hexdigest()[:32]}  "
              f"({time.perf_counter() - t0:.1f}s)", flush=True)
    for recipe in args.recipes:
        datasets, sources = build_datasets([s for s in config.load(recipe).data.datasets if s.adapter])
        h, n = hashlib.sha256(), 0
        for d, spec in zip(datasets, sources, strict=True):
            h.update(repr((d.name, type(d).__name__, spec)).encode())
            for i in range(len(d)):
                h.update(repr(d.get(i)).encode())
                n += 1
        print(f"{Path(recipe).name} datasets {len(datasets)} records {n} sha256 {h.hexdigest()[:32]}", flush=True)


if __name__ == "__main__":
    main()
