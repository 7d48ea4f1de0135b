"""The fault tests with more kill points: seeded kill -9 chains of the corpus job (local and Ray) and of training,
each resumed to the end and compared byte for byte with an uninterrupted run (tests/faultkit.py does the work; the
CI tests run 10 points per kind, 4 for Ray).

    python benchmarks/fault_kills.py                      # 100 kills each for local and train, 10 for ray
    python benchmarks/fault_kills.py --kinds local --kills 300 --seed 7

Prints, per kind, how many runs were killed where (fault point or random delay) and the time taken; any
difference, leftover file or failed resume stops it with the assertion that names the run.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "corpus"), str(ROOT / "tests" / "train")]

import tiny  # noqa: E402
from faultkit import Runner, kill_chains, reference  # noqa: E402
from test_corpus_faults import corpus_job, small_corpus  # noqa: E402
from test_train_faults import training_job  # noqa: E402


def summary(name: str, events: list[str], seconds: float) -> None:
    killed = [e for e in events if e.endswith(": killed")]
    where = collections.Counter(m.group(1) if (m := re.search(r" at ([\w.]+):\d+: killed$", e)) else "a random delay"
                                for e in killed)
    print(f"{name}: {len(killed)} kills in {len(events)} runs (+ final resumes), every resumed output "
          f"byte-identical, no temporary file left; {seconds:.0f} s")
    for what, n in sorted(where.items()):
        print(f"  {n:4d}  at {what}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default="local,train,ray", help="comma-separated: local, train, ray")
    ap.add_argument("--kills", type=int, default=100, help="kills per kind (local, train)")
    ap.add_argument("--ray-kills", type=int, default=10, help="kills of the Ray driver (~5 s a run)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    kinds = args.kinds.split(",")
    with tempfile.TemporaryDirectory(prefix="harrier-fault-kills-") as tmp:
        work = Path(tmp)
        model = tiny.build_gemma3(work / "model")
        if "ray" in kinds:  # before the runner imports ray: a new local instance may write a new auth token
            import ray

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        runner = Runner(("ray",) if "ray" in kinds else ())
        try:
            for kind in kinds:
                folder = work / kind
                folder.mkdir()
                start = time.perf_counter()
                if kind == "local":
                    job = corpus_job(model, small_corpus(folder))
                    want = reference(runner, job, folder / "reference", folder)
                    events = kill_chains(runner, job, folder / "out", want, folder, seed=args.seed, kills=args.kills)
                elif kind == "train":
                    job = training_job(model, folder)
                    want = reference(runner, job, folder / "run", folder)
                    events = kill_chains(runner, job, folder / "run", want, folder, seed=args.seed, kills=args.kills)
                elif kind == "ray":
                    events = ray_chains(runner, model, folder, args.seed, args.ray_kills)
                else:
                    raise SystemExit(f"unknown kind {kind!r}; choose from local, train, ray")
                summary(kind, events, time.perf_counter() - start)
        finally:
            runner.close()
            if "ray" in kinds:
                ray.shutdown()


def ray_chains(runner: Runner, model: Path, folder: Path, seed: int, kills: int) -> list[str]:
    import ray

    job = corpus_job(model, small_corpus(folder, n=5), "corpus-ray", "--engine", "ray", "--address",
                     ray.get_runtime_context().gcs_address, "--actors", "1", "--actor-cpus", "1")
    want = reference(runner, job, folder / "reference", folder)
    return kill_chains(runner, job, folder / "out", want, folder, seed=seed, kills=kills)


if __name__ == "__main__":
    main()
