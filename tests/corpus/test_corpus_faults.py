"""Seeded kill -9 at random moments (named fault points inside shard and manifest writes, and random delays), then
``--resume``: the output is byte-identical to an uninterrupted run's every time, with no ``.tmp`` left behind.
The local engine and the Ray engine (drivers on one local Ray instance). ``benchmarks/fault_kills.py`` runs more."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus_helpers import make_texts, write_jsonl
from faultkit import KILLED, Job, Runner, files, kill_chains, reference

from harrier.corpus.manifest import Manifest, check_shards

KILLS = 10  # per job kind, in CI
RAY_KILLS = 10  # the issue asks for >= 10 per job kind; each Ray kill chain costs 5-9 s here


@pytest.fixture(scope="module")
def runner():
    r = Runner()
    yield r
    r.close()


def corpus_job(model: Path, src: Path, name: str = "corpus-local", *extra: str) -> Job:
    def argv(out: Path, resume: bool) -> list[str]:
        return ["corpus", "encode", "--model", str(model), "--input", str(src), "--output", str(out),
                "--shard-rows", "6", "--window-rows", "3", "--no-progress", *extra, *(["--resume"] if resume else [])]

    return Job(name, argv, files)


def small_corpus(folder: Path, n: int = 30) -> Path:
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(make_texts(n, seed=11, max_words=10))]
    rows.insert(n // 2, {"id": "no-text"})  # a bad row: bad_rows.jsonl is part of the output
    return write_jsonl(folder / "c.jsonl", rows)


@pytest.fixture(scope="module")
def local(runner, tiny_gemma3_dir, tmp_path_factory) -> tuple[Job, dict[str, bytes]]:
    """The local job on a 30-row corpus (5 shards of 2 windows) and its uninterrupted output."""
    work = tmp_path_factory.mktemp("local-job")
    job = corpus_job(tiny_gemma3_dir, small_corpus(work))
    return job, reference(runner, job, work / "reference", work)


def test_local_corpus_job_survives_seeded_kills(runner, local, tmp_path):
    job, want = local
    assert {"shard.window", "shard.closed", "shard.renamed", "manifest.half", "manifest.written",
            "manifest.saved", "bad_rows.renamed"} <= set(job.points)
    assert sum(name.startswith("shard-") for name in want) == 5
    events = kill_chains(runner, job, tmp_path / "out", want, tmp_path, seed=23, kills=KILLS)
    print("\n".join(events))


def test_kill_between_the_first_shard_and_its_manifest_entry_resumes(runner, local, tmp_path):
    """The job's first manifest is written before its first shard: a kill right after shard 0 is renamed into
    place (before the manifest lists it) used to leave Parquet files and no manifest, which --resume refused."""
    job, want = local
    out = tmp_path / "out"
    rc, _ = runner.run(job.argv(out, False), log=tmp_path / "killed.log", fault="shard.renamed:1")
    assert rc == KILLED and (out / "shard-00000.parquet").is_file()
    rc, _ = runner.run(job.argv(out, True), log=tmp_path / "resume.log")
    assert rc == 0, (tmp_path / "resume.log").read_text()
    assert files(out) == want


@pytest.mark.slow
def test_ray_corpus_job_survives_seeded_kills_of_its_driver(tiny_gemma3_dir, tmp_path):
    """Drivers on one local Ray instance started here; each run's driver is killed (its actors die with it) and
    the next run's driver connects to the same instance. The shards equal the local engine's too (one torch thread
    in the actors as in the local run). Fewer kills than the other kinds: a Ray run costs ~5 s here (the driver
    connects, a pool of one actor starts and loads the model); benchmarks/fault_kills.py runs more."""
    import ray

    src = small_corpus(tmp_path, n=5)  # one shard
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    runner = Runner(("ray",))  # after ray.init: a new local instance may write a new auth token the drivers need
    try:
        address = ray.get_runtime_context().gcs_address
        local = reference(runner, corpus_job(tiny_gemma3_dir, src), tmp_path / "local", tmp_path)
        job = corpus_job(tiny_gemma3_dir, src, "corpus-ray", "--engine", "ray", "--address", address,
                         "--actors", "1", "--actor-cpus", "1")
        want = reference(runner, job, tmp_path / "reference", tmp_path)
        assert want == local
        events = kill_chains(runner, job, tmp_path / "out", want, tmp_path, seed=29, kills=RAY_KILLS)
        print("\n".join(events))
    finally:
        runner.close()
        ray.shutdown()


def _full_then_resume(runner, job: Job, out: Path, want: dict[str, bytes], work: Path, free, finished_some: bool,
                      **limit) -> None:
    """The job fails on a full output with one error line, leaves a consistent folder; ``free()``; --resume ends
    byte-identical."""
    rc, _ = runner.run(job.argv(out, False), log=work / "full.log", **limit)
    text = (work / "full.log").read_text()
    errors = [line for line in text.splitlines() if line.startswith("harrier: error:")]
    assert rc == 2 and "Traceback" not in text and len(errors) == 1, text
    assert errors[0].startswith(f"harrier: error: output {out}: cannot write the job's files (") \
        and errors[0].endswith("the finished shards are kept: free space and continue with --resume"), errors[0]
    if finished_some:
        manifest = Manifest.load(out)
        check_shards(out, manifest, "check")  # every listed shard complete
        assert not manifest.complete and 0 < len(manifest.shards) < sum(n.startswith("shard-") for n in want)
        assert not list(out.glob("*.tmp")) and not (out / ".harrier.lock").exists()
    else:  # a new job that finished no shard leaves no job behind
        assert not list(out.iterdir())
    free()
    rc, _ = runner.run(job.argv(out, True), log=work / "resume.log")
    assert rc == 0, (work / "resume.log").read_text()
    assert files(out) == want


def test_a_full_disk_is_one_line_and_resume_completes_after_space_is_freed(runner, local, tmp_path):
    """A size-limited tmpfs, filled but for room for about half the job: the job stops with one line, nothing
    half-written stays, and --resume finishes once the filler is deleted. Needs mount (root); where mount is not
    allowed the RLIMIT_FSIZE test below runs the same code path regardless."""
    import math
    import os
    import subprocess

    job, want = local
    small = tmp_path / "small"
    small.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(small)], capture_output=True,
                           text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mount.stderr.strip()}); the RLIMIT_FSIZE test covers the path")
    try:
        page = os.statvfs(small).f_frsize
        pages = {name: math.ceil(len(data) / page) for name, data in want.items()}
        shards = sorted(n for n in want if n.startswith("shard-"))
        room = 1 + 2 * pages["manifest.json"] + pages["bad_rows.jsonl"] + sum(pages[n] for n in shards[:2])
        st = os.statvfs(small)
        (small / "filler").write_bytes(b"\0" * ((st.f_bavail - room) * page))
        out = small / "out"
        _full_then_resume(runner, job, out, want, tmp_path, (small / "filler").unlink, True)
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_a_file_size_limit_is_one_line_and_resume_completes_without_it(runner, local, tmp_path):
    """RLIMIT_FSIZE below a shard's size (SIGXFSZ ignored: the write fails with EFBIG), the same code path as a full
    disk without needing mount: one line, a consistent folder, --resume without the limit completes."""
    job, want = local
    limit = min(len(data) for name, data in want.items() if name.startswith("shard-")) // 2
    assert limit > len(want["manifest.json"])  # the manifest fits; the first shard does not
    _full_then_resume(runner, job, tmp_path / "out", want, tmp_path, lambda: None, False, max_file_bytes=limit)
