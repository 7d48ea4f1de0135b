"""The job lock with real processes: a second writer of a corpus folder, a run folder or a mined file is refused
with one line naming the holder before any model loads; a lock left by a kill -9 is taken over; two corpus jobs
started at once into one folder leave exactly the bytes of one run."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harrier.cli import main
from harrier.joblock import JobLockedError, hold, lock_path

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
HOLDER = """import sys
from harrier.joblock import hold
with hold(sys.argv[1], "job", folder=sys.argv[2] == "dir"):
    print("held", flush=True)
    sys.stdin.read()
"""


class Holder:
    """Another process that holds a lock until its stdin closes (clean release) or it is killed (stale lock)."""

    def __init__(self, target: Path, *, folder: bool = True) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(target), "dir" if folder else "file"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ENV)
        assert self.proc.stdout.readline() == b"held\n"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def release(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_second_process_refused_then_clean_release_leaves_nothing(tmp_path):
    job = tmp_path / "job"
    holder = Holder(job)
    with pytest.raises(JobLockedError) as info:
        with hold(job, "output job"):
            pass
    msg = str(info.value)
    assert msg.startswith("output job is in use by another harrier job: ")
    assert f"pid {holder.pid} on host {socket.gethostname()}, started 20" in msg and "-c" in msg
    holder.release()
    assert not lock_path(job, folder=True).exists()
    with hold(job, "output job") as path:  # free again; re-entrant in one process
        with hold(job, "output job"):
            assert json.loads(path.read_text())["pid"] == os.getpid()
        assert path.exists()
    assert not path.exists()


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path, caplog):
    out = tmp_path / "mined.jsonl"
    holder = Holder(out, folder=False)
    holder.kill()
    left = lock_path(out, folder=False)
    assert json.loads(left.read_text())["pid"] == holder.pid  # the file stays, the flock died with the process
    with caplog.at_level(logging.WARNING, logger="harrier.joblock"), hold(out, "output x", folder=False):
        assert json.loads(left.read_text())["pid"] == os.getpid()
    assert f"taking over the lock of pid {holder.pid}" in caplog.text and "no longer running" in caplog.text
    assert not left.exists()


def encode_args(model, src, out, *extra):
    return ["corpus", "encode", "--model", str(model), "--input", str(src), "--output", str(out), "--shard-rows",
            "8", "--window-rows", "4", "--no-progress", *extra]


WORDS = "the quick brown fox jumps over lazy dog der schnelle braune fuchs le renard brun rapide".split()


def texts(n: int) -> list[str]:
    return [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(1 + i % 11)) for i in range(n)]


@pytest.fixture()
def corpus(tmp_path) -> Path:
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, t in enumerate(texts(240))),
                    encoding="utf-8")
    return path


def tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_corpus_encode_and_index_refuse_a_held_folder_before_the_model_loads(tiny_gemma3_dir, corpus, tmp_path,
                                                                             capsys):
    out = tmp_path / "vectors"
    holder = Holder(out)
    # a model path that does not exist: the lock error comes first, so nothing was loaded
    assert main(encode_args(tmp_path / "no-model", corpus, out, "--resume")) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"harrier: error: output {out} is in use by another harrier job: pid {holder.pid} ")
    assert main(["corpus", "index", "--index", str(out)]) == 2
    assert f"index {out} is in use by another harrier job: pid {holder.pid} " in one_error_line(capsys)
    holder.kill()  # stale now: the next job takes it over
    assert main(encode_args(tiny_gemma3_dir, corpus, out, "--resume")) == 0
    assert not lock_path(out, folder=True).exists()
    assert main(["corpus", "index", "--index", str(out), "--recall-queries", "5"]) == 0


def test_two_concurrent_corpus_resumes_one_runs_the_other_exits_2(tiny_gemma3_dir, corpus, tmp_path):
    single = tmp_path / "single"
    assert main(encode_args(tiny_gemma3_dir, corpus, single)) == 0
    out = tmp_path / "shared"
    cmd = [sys.executable, "-m", "harrier.cli", *encode_args(tiny_gemma3_dir, corpus, out, "--resume")]
    first = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "shard-00000.parquet").exists():  # mid-job: it holds the lock and has written a shard
        assert first.poll() is None and time.monotonic() < deadline, "the first job ended or stalled"
        time.sleep(0.005)
    first.send_signal(signal.SIGSTOP)  # paused, so the second surely meets it running, however slow this machine
    try:
        second = subprocess.run(cmd, env=ENV, capture_output=True, timeout=120)
    finally:
        first.send_signal(signal.SIGCONT)
    err = second.stderr.decode().strip().splitlines()
    assert second.returncode == 2 and len(err) == 1, err
    assert f"is in use by another harrier job: pid {first.pid} on host" in err[0]
    assert first.wait(timeout=300) == 0, first.stderr.read().decode()
    assert tree(out) == tree(single)


def test_train_run_folder_and_mined_file_are_locked(tiny_gemma3_dir, tmp_path, capsys):
    data = tmp_path / "pairs.jsonl"
    pool = texts(12)
    data.write_text("".join(json.dumps({"query": pool[i], "positive": pool[(i + 6) % 12]}) + "\n"
                            for i in range(12)), encoding="utf-8")
    run_dir = tmp_path / "run"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({
        "model": {"init": str(tiny_gemma3_dir), "max_length": 64}, "data": {"datasets": [{"path": str(data)}]},
        "run": {"output": str(run_dir), "steps": 2, "batch_size": 4, "progress": False}}), encoding="utf-8")
    holder = Holder(run_dir)
    assert main(["train", "--config", str(recipe), "--resume"]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"harrier: error: run.output {run_dir} is in use by another harrier job: pid {holder.pid}")
    assert not (run_dir / "config.json").exists()
    holder.kill()
    assert main(["train", "--config", str(recipe), "--resume"]) == 0
    assert not lock_path(run_dir, folder=True).exists()

    mined = tmp_path / "hard.jsonl"
    holder = Holder(mined, folder=False)
    assert main(["mine-negatives", "--model", str(tmp_path / "no-model"), "--queries", str(data), "--corpus",
                 str(data), "--output", str(mined)]) == 2
    assert f"output {mined} is in use by another harrier job: pid {holder.pid} " in one_error_line(capsys)
    holder.release()
    assert not mined.exists()


CACHE_WRITER = """import sys, hashlib
import numpy as np
from harrier.eval.cache import CachedEncoder

class Fake:  # a deterministic encoder: the vector is a function of the text
    name, prompts = "fake", {}
    def encode(self, texts, *, prompt=None):
        return np.stack([np.frombuffer(hashlib.sha256(t.encode()).digest(), dtype=np.uint8)[:8].astype(np.float32)
                         for t in texts])

enc = CachedEncoder(Fake(), sys.argv[1])
start = int(sys.argv[2])
for b in range(40):  # overlapping ranges: both processes write many of the same keys, in many transactions
    enc.encode([f"text {i}" for i in range(start + b * 25, start + b * 25 + 50)])
enc.close()
"""


def test_eval_cache_shared_by_two_processes_stays_consistent(tmp_path):
    """``eval --cache-dir`` takes no job lock: its SQLite file is safe under concurrent writers (SQLite's own
    locking, one short transaction per batch); two processes writing at once leave every vector right."""
    from harrier.eval.cache import _key

    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", CACHE_WRITER, str(cache), str(start)], env=ENV,
                              stderr=subprocess.PIPE) for start in (0, 500)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read().decode()
    (db,) = cache.glob("*.sqlite")
    rows = dict(sqlite3.connect(db).execute("SELECT k, v FROM emb"))
    expected = {f"text {i}" for i in range(0, 1525)}
    assert len(rows) == len(expected)
    for text in expected:
        want = np.frombuffer(hashlib.sha256(text.encode()).digest(), dtype=np.uint8)[:8].astype(np.float32)
        np.testing.assert_array_equal(np.frombuffer(rows[_key(None, text)], dtype=np.float32), want)
