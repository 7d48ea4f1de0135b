"""Seeded kill -9 fault runs, shared by the fault tests and ``benchmarks/fault_kills.py``.

A run is the real ``harrier`` CLI in its own process, killed with a real ``SIGKILL``: either by itself at the n-th hit
of a named fault point (``HARRIER_FAULT_AT``, see ``harrier/faults.py``) or by its parent after a random delay.
Each chain starts a job, kills it (one to three times, each later run with ``--resume``), resumes it to the end, and
compares the output with an uninterrupted run's, byte for byte.

Processes come from a warm ``Runner``: a process that has imported harrier, torch and pyarrow once and forks one
child per run (a fresh interpreter per run would spend ~4 s on imports; a child spends ~0.5 s on the job). The
parent never computes anything with torch (no thread pool exists to be broken by the fork).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

KILLED = -signal.SIGKILL


class Runner:
    """A warm forking process that runs ``harrier`` CLI commands, each in a fresh child (see the module doc)."""

    def __init__(self, preload: tuple[str, ...] = ()) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        env.pop("HARRIER_FAULT_AT", None)
        env["OMP_NUM_THREADS"] = "1"  # tiny models: two threads on a busy 2-core machine run 10x slower, not faster
        self.proc = subprocess.Popen([sys.executable, __file__, *preload], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, text=True)
        assert self.proc.stdout.readline().strip() == "ready", "the fault runner did not start"

    def run(self, argv: list[str], *, log: Path, fault: str | None = None, kill_after: float | None = None,
            trace: Path | None = None, max_file_bytes: int | None = None, timeout: float = 300) -> tuple[int, float]:
        """(exit code, seconds) of ``harrier *argv``; the code is ``KILLED`` when it died of SIGKILL. ``trace``:
        also write how often each fault point was reached (JSON). ``max_file_bytes``: RLIMIT_FSIZE (with SIGXFSZ
        ignored, a write past it fails with EFBIG)."""
        req = {"argv": argv, "log": str(log), "fault": fault, "kill_after": kill_after,
               "trace": str(trace) if trace else None, "fsize": max_file_bytes, "timeout": timeout}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        return reply["rc"], reply["seconds"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _serve(preload: list[str]) -> None:
    import importlib

    import pyarrow.parquet  # noqa: F401
    import torch

    import harrier.cli  # noqa: F401
    import harrier.corpus.encode  # noqa: F401
    import harrier.train.loop  # noqa: F401

    torch.empty(1, device="meta").normal_()  # loads torch's lazily imported reference ops; computes nothing
    for name in preload:
        importlib.import_module(name)
    print("ready", flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            _child(req)
        deadline = start + (req["kill_after"] if req["kill_after"] is not None else req["timeout"])
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.perf_counter() < deadline:
            time.sleep(0.002)
        if done[0] == 0:
            os.kill(pid, signal.SIGKILL)  # the wall-clock kill (or a run past its timeout)
            done = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(done[1])
        print(json.dumps({"rc": rc, "seconds": time.perf_counter() - start}), flush=True)


def _child(req: dict) -> None:
    from harrier import faults
    from harrier.cli import main

    fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if req["fault"]:
        os.environ[faults.ENV] = req["fault"]
    faults.arm()
    if req["fsize"]:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (req["fsize"], req["fsize"]))
    counts: dict[str, int] = {}
    if req["trace"]:
        faults.point = lambda name: counts.__setitem__(name, counts.get(name, 0) + 1)
    try:
        rc = main(req["argv"])
    except SystemExit as err:
        rc = err.code if isinstance(err.code, int) else 1
    except BaseException:  # a traceback is a failure the test reports with this log
        import traceback

        traceback.print_exc()
        rc = 99
    if req["trace"]:
        Path(req["trace"]).write_text(json.dumps(counts))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


@dataclass
class Job:
    """One job kind: its command line (fresh or ``--resume``) for an output path, and how its output is read."""

    name: str
    argv: Callable[[Path, bool], list[str]]
    read: Callable[[Path], dict[str, bytes]]  # the output as path -> bytes (timings taken out)
    points: dict[str, int] = field(default_factory=dict)  # fault point -> hits in an uninterrupted run
    seconds: float = 0.0  # an uninterrupted run's wall time (for the wall-clock kills)


def reference(runner: Runner, job: Job, out: Path, work: Path) -> dict[str, bytes]:
    """Run ``job`` uninterrupted into ``out``: its output, and ``job.points`` / ``job.seconds`` filled in."""
    trace = work / f"{job.name}-trace.json"
    rc, job.seconds = runner.run(job.argv(out, False), log=work / f"{job.name}-reference.log", trace=trace)
    assert rc == 0, (work / f"{job.name}-reference.log").read_text()
    job.points = json.loads(trace.read_text())
    assert job.points, "the job reached no fault point"
    return job.read(out)


def kill_chains(runner: Runner, job: Job, out: Path, want: dict[str, bytes], work: Path, *, seed: int,
                kills: int, wall_share: float = 0.25, max_runs: int = 1000) -> list[str]:
    """Chains of seeded kills (fault points, and a ``wall_share`` of random delays) until ``kills`` runs died of
    SIGKILL; after each chain's final ``--resume`` the output must equal ``want`` (and hold no ``.tmp``). Returns
    what happened, one line per run."""
    rng = random.Random(seed)
    events: list[str] = []
    killed = runs = 0
    while killed < kills:
        shutil.rmtree(out, ignore_errors=True)
        finished, resume = False, False
        for _ in range(rng.randint(1, 3)):
            if rng.random() < wall_share:
                fault, delay = None, round(rng.uniform(0.0, job.seconds), 3)
                what = f"after {delay} s"
            else:
                name = rng.choice(sorted(job.points))
                fault, delay = f"{name}:{rng.randint(1, job.points[name])}", None
                what = f"at {fault}"
            log = work / f"{job.name}-{runs}.log"
            rc, _ = runner.run(job.argv(out, resume), log=log, fault=fault, kill_after=delay)
            runs += 1
            assert runs <= max_runs, "too many runs"
            assert rc in (0, KILLED), f"{job.name} run {runs} ({what}) exited {rc}:\n{log.read_text()[-3000:]}"
            events.append(f"{job.name} run {runs}{' --resume' if resume else ''} {what}: "
                          f"{'killed' if rc == KILLED else 'finished first'}")
            resume = True
            if rc == 0:
                finished = True
                break
            killed += 1
        if not finished:
            log = work / f"{job.name}-{runs}.log"
            rc, _ = runner.run(job.argv(out, True), log=log)
            runs += 1
            assert rc == 0, f"{job.name} resume (run {runs}) exited {rc}:\n{log.read_text()[-3000:]}"
        got = job.read(out)
        left = sorted(p for p in got if p.endswith(".tmp") or "/." in "/" + p)  # temporary or hidden
        assert not left, f"{job.name}: left behind after {events[-3:]}: {left}"
        assert sorted(got) == sorted(want), f"{job.name}: other files after {events[-3:]}: " \
            f"{sorted(set(got) ^ set(want))}"
        differ = [p for p in want if got[p] != want[p]]
        assert not differ, f"{job.name}: bytes differ after {events[-3:]}: {differ}"
    return events


def files(folder: Path) -> dict[str, bytes]:
    """Every file and folder under ``folder`` (hidden ones too) as relative path -> bytes (a folder: b"/")."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else b"/"
            for p in sorted(folder.rglob("*"))}


if __name__ == "__main__":
    _serve(sys.argv[1:])
