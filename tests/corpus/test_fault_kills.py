"""Seeded kill -9 at random moments (named fault points inside shard and manifest writes, and random delays), then
``--resume``: the output is byte-identical to an uninterrupted run's every time, with no ``.tmp`` left behind.
The local engine and the Ray engine (drivers on one local Ray instance). ``benchmarks/fault_kills.py`` runs more."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus_helpers import make_texts, write_jsonl
from faultkit import KILLED, Job, Runner, files, kill_chains, reference

KILLS = 10  # per job kind, in CI


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


def small_corpus(folder: Path) -> Path:
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(make_texts(30, seed=11, max_words=10))]
    rows.insert(13, {"id": "no-text"})  # a bad row: bad_rows.jsonl is part of the output
    return write_jsonl(folder / "c.jsonl", rows)


def test_local_corpus_job_survives_seeded_kills(runner, tiny_gemma3_dir, tmp_path):
    job = corpus_job(tiny_gemma3_dir, small_corpus(tmp_path))
    want = reference(runner, job, tmp_path / "reference", tmp_path)
    assert {"shard.window", "shard.closed", "shard.renamed", "manifest.half", "manifest.written",
            "manifest.saved", "bad_rows.renamed"} <= set(job.points)
    assert sum(name.startswith("shard-") for name in want) == 5
    events = kill_chains(runner, job, tmp_path / "out", want, tmp_path, seed=23, kills=KILLS)
    print("\n".join(events))


def test_kill_between_the_first_shard_and_its_manifest_entry_resumes(runner, tiny_gemma3_dir, tmp_path):
    """The job's first manifest is written before its first shard: a kill right after shard 0 is renamed into
    place (before the manifest lists it) used to leave Parquet files and no manifest, which --resume refused."""
    job = corpus_job(tiny_gemma3_dir, small_corpus(tmp_path))
    want = reference(runner, job, tmp_path / "reference", tmp_path)
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
    in the actors as in the local run)."""
    import ray

    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(make_texts(12, seed=5, max_words=10))]
    src = write_jsonl(tmp_path / "c.jsonl", rows)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    runner = Runner(("ray",))
    try:
        address = ray.get_runtime_context().gcs_address
        local = reference(runner, corpus_job(tiny_gemma3_dir, src), tmp_path / "local", tmp_path)
        job = corpus_job(tiny_gemma3_dir, src, "corpus-ray", "--engine", "ray", "--address", address,
                         "--actors", "1", "--actor-cpus", "1")
        want = reference(runner, job, tmp_path / "reference", tmp_path)
        assert want == local
        events = kill_chains(runner, job, tmp_path / "out", want, tmp_path, seed=29, kills=KILLS)
        print("\n".join(events))
    finally:
        runner.close()
        ray.shutdown()
