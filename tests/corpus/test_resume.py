"""Resume: a job killed with SIGKILL (or stopped after N shards) and resumed writes the same bytes as one
uninterrupted run; resuming with other settings is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from corpus_helpers import make_texts, write_jsonl

from harrier.cli import main


def tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture()
def corpus(tmp_path) -> Path:
    texts = make_texts(60, seed=7, max_words=12)
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(texts)]
    rows.insert(25, {"id": "no-text"})  # a bad row inside a shard that gets redone
    return write_jsonl(tmp_path / "c.jsonl", rows)


def args(model, src, out, *extra):
    return ["corpus", "encode", "--model", str(model), "--input", str(src), "--output", str(out), "--shard-rows", "6",
            "--window-rows", "3", "--no-progress", *extra]


def test_stop_after_shards_then_resume_is_byte_identical(tiny_gemma3_dir, corpus, tmp_path):
    assert main(args(tiny_gemma3_dir, corpus, tmp_path / "full")) == 0
    assert main(args(tiny_gemma3_dir, corpus, tmp_path / "part", "--max-shards", "4")) == 0
    assert len(list((tmp_path / "part").glob("*.parquet"))) == 4
    assert main(args(tiny_gemma3_dir, corpus, tmp_path / "part", "--resume", "--max-shards", "3")) == 0
    assert main(args(tiny_gemma3_dir, corpus, tmp_path / "part", "--resume")) == 0
    assert tree(tmp_path / "part") == tree(tmp_path / "full")
    assert main(args(tiny_gemma3_dir, corpus, tmp_path / "part", "--resume")) == 0  # complete: nothing to do
    assert tree(tmp_path / "part") == tree(tmp_path / "full")


def test_kill_9_then_resume_is_byte_identical(tiny_gemma3_dir, corpus, tmp_path, caplog):
    assert main(args(tiny_gemma3_dir, corpus, tmp_path / "full")) == 0
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "harrier.cli", *args(tiny_gemma3_dir, corpus, killed)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "shard-00001.parquet").exists():  # two shards finished: kill mid-job
        assert proc.poll() is None and time.monotonic() < deadline, "the job ended or stalled before the kill"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (killed / "bad_rows.jsonl").exists(), "the job finished before it was killed"
    assert (killed / ".harrier.lock").is_file()  # left by the killed job; its flock died with it
    assert main(args(tiny_gemma3_dir, corpus, killed, "--resume")) == 0
    assert f"taking over the lock of pid {proc.pid} " in caplog.text
    assert not list(killed.glob("*.tmp"))
    assert tree(killed) == tree(tmp_path / "full")


def test_resume_refuses_other_settings(tiny_gemma3_dir, corpus, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(args(tiny_gemma3_dir, corpus, out, "--max-shards", "1")) == 0
    capsys.readouterr()
    assert main([*args(tiny_gemma3_dir, corpus, out, "--resume"), "--prompt-name", "web_search_query"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"harrier: error: cannot resume {out}: settings differ") \
        and "prompt: null -> " in err[0]
    corpus.write_text(corpus.read_text() + '{"id": "new", "text": "appended"}\n')
    assert main(args(tiny_gemma3_dir, corpus, out, "--resume")) == 2
    assert "inputs:" in capsys.readouterr().err


def test_resume_removes_only_its_own_temporary_files(tiny_gemma3_dir, corpus, tmp_path):
    out = tmp_path / "o"
    assert main(args(tiny_gemma3_dir, corpus, out, "--max-shards", "2")) == 0
    (out / "shard-00002.parquet.tmp").write_bytes(b"torn")  # a killed run's half-written shard
    (out / "manifest.json.tmp").write_text("{")
    (out / "notes.tmp").write_text("the user's")
    assert main(args(tiny_gemma3_dir, corpus, out, "--resume")) == 0
    assert sorted(p.name for p in out.glob("*.tmp")) == ["notes.tmp"]
    assert (out / "notes.tmp").read_text() == "the user's"


def test_a_mixed_folder_is_refused_by_resume_and_search_naming_the_shard(tiny_gemma3_dir, corpus, tmp_path, capsys):
    """A shard written with another prompt (two jobs at once, before the lock existed) fits the manifest's size and
    row count here; its metadata gives it away, before any model loads."""
    import json

    plain, query = tmp_path / "plain", tmp_path / "query"
    assert main(args(tiny_gemma3_dir, corpus, plain, "--max-shards", "2")) == 0
    assert main(args(tiny_gemma3_dir, corpus, query, "--max-shards", "2", "--prompt-name", "web_search_query")) == 0
    (plain / "shard-00001.parquet").write_bytes((query / "shard-00001.parquet").read_bytes())
    manifest = json.loads((plain / "manifest.json").read_text())
    manifest["shards"][1]["bytes"] = (plain / "shard-00001.parquet").stat().st_size
    (plain / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(args(tiny_gemma3_dir, corpus, plain, "--resume")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"harrier: error: cannot resume {plain}: shard shard-00001.parquet "
                                               "was written by another job: prompt ") and "web_search_query" in err[0]
    no_model = str(tmp_path / "no-model")  # the check runs before the model loads
    assert main(["search", "--model", no_model, "--index", str(plain), "--query", "fox"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"harrier: error: cannot search {plain}: shard shard-00001.parquet "
                                               "was written by another job: prompt ")
    (plain / "shard-00001.parquet").write_bytes(b"x" * manifest["shards"][1]["bytes"])  # same size, not Parquet
    assert main(["search", "--model", no_model, "--index", str(plain), "--query", "fox"]) == 2
    assert f"cannot search {plain}: {plain / 'shard-00001.parquet'}: not a readable Parquet shard (" \
        in capsys.readouterr().err
    (plain / "shard-00000.parquet").write_bytes(b"short")
    assert main(["search", "--model", no_model, "--index", str(plain), "--query", "fox"]) == 2
    assert "shard shard-00000.parquet has 5 bytes, the manifest says" in capsys.readouterr().err
    (plain / "shard-00000.parquet").unlink()
    assert main(args(tiny_gemma3_dir, corpus, plain, "--resume")) == 2
    assert "shard shard-00000.parquet is missing (the manifest lists it as finished)" in capsys.readouterr().err
