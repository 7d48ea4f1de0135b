"""Seeded kill -9 of a training run at random moments (named fault points inside checkpoint saves and the export,
after logged steps, and random delays), then ``--resume``: the run folder ends byte-identical to an uninterrupted
run's (checkpoints, exported model, config; the log too, timings aside), with no temporary file left.
``benchmarks/fault_kills.py`` runs more."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from faultkit import KILLED, Job, Runner, files, kill_chains, reference
from train_helpers import TEXTS

from harrier.train.runfolder import LOG

KILLS = 10
TIMINGS = ("tokens_per_s", "step_s", "teacher_s", "mem_gb")


def run_files(out: Path) -> dict[str, bytes]:
    """The run folder, with the log's timing fields taken out (they differ from run to run)."""
    got = files(out)
    rows = [json.loads(line) for line in got[LOG].decode().splitlines()]
    got[LOG] = "".join(json.dumps({k: v for k, v in r.items() if k not in TIMINGS}) + "\n" for r in rows).encode()
    return got


def training_job(model: Path, folder: Path) -> Job:
    data = folder / "pairs.jsonl"
    data.write_text("".join(json.dumps({"query": TEXTS[i], "positive": TEXTS[(i + 6) % 12],
                                        "negatives": [TEXTS[(i + 3) % 12]]}) + "\n" for i in range(12)))
    recipe = folder / "recipe.yaml"
    recipe.write_text(json.dumps({  # JSON is YAML
        "model": {"init": str(model), "max_length": 32},
        "data": {"datasets": [{"path": str(data)}], "negatives_per_query": 1, "seed": 3},
        "optim": {"lr": 1e-3, "warmup_steps": 1},
        "run": {"steps": 5, "batch_size": 4, "budget_tokens": 32, "checkpoint_every": 1, "keep_checkpoints": 2,
                "progress": False}}))

    def argv(out: Path, resume: bool) -> list[str]:
        return ["train", "--config", str(recipe), "--set", f"run.output={out}", *(["--resume"] if resume else [])]

    return Job("train", argv, run_files)


@pytest.fixture(scope="module")
def runner():
    r = Runner()
    yield r
    r.close()


@pytest.fixture(scope="module")
def case(runner, tiny_gemma3_dir, tmp_path_factory) -> tuple[Job, Path, dict[str, bytes]]:
    """The job, its run folder and the folder an uninterrupted run leaves there (the same run.output: the config,
    which names it, is part of the output)."""
    work = tmp_path_factory.mktemp("train-job")
    job = training_job(tiny_gemma3_dir, work)
    out = work / "run"
    return job, out, reference(runner, job, out, work)


def test_training_survives_seeded_kills(runner, case, tmp_path):
    job, out, want = case
    assert {"train.step", "checkpoint.files", "checkpoint.renamed", "checkpoint.latest", "checkpoint.saved",
            "export.written"} <= set(job.points)
    assert {"model/model.safetensors", "checkpoints/step-0000004/model.pt", "checkpoints/step-0000003/rng-rank0.pt",
            "checkpoints/latest", "config.json", LOG} <= set(want)
    events = kill_chains(runner, job, out, want, tmp_path, seed=31, kills=KILLS)
    print("\n".join(events))


def test_log_rows_after_the_last_checkpoint_are_not_repeated(runner, case, tmp_path):
    """Killed after step 4 was logged but before its checkpoint: resuming from step 3 redoes step 4, and the log
    holds it once (it used to hold rows 4 twice), as do the checkpoints."""
    job, out, want = case
    shutil.rmtree(out, ignore_errors=True)
    rc, _ = runner.run(job.argv(out, False), log=tmp_path / "killed.log", fault="train.step:4")
    assert rc == KILLED
    rc, _ = runner.run(job.argv(out, True), log=tmp_path / "resumed.log")
    assert rc == 0, (tmp_path / "resumed.log").read_text()
    got = run_files(out)
    assert [json.loads(line)["step"] for line in got[LOG].decode().splitlines()] == [1, 2, 3, 4, 5]
    assert got == want


def test_kill_while_an_earlier_export_is_moved_aside(runner, case, tmp_path):
    """A finished run resumed (it redoes the steps after its last checkpoint and exports again) and killed with the
    old export moved aside, the new one not yet in place: the next --resume leaves the same folder, no .model.old."""
    job, out, want = case
    shutil.rmtree(out, ignore_errors=True)
    assert runner.run(job.argv(out, False), log=tmp_path / "first.log")[0] == 0
    rc, _ = runner.run(job.argv(out, True), log=tmp_path / "killed.log", fault="export.swapped:1")
    assert rc == KILLED and (out / ".model.old").is_dir() and not (out / "model").exists()
    assert runner.run(job.argv(out, True), log=tmp_path / "resumed.log")[0] == 0
    assert run_files(out) == want
