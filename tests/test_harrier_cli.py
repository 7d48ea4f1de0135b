"""The ``harrier`` command end to end on a tiny checkpoint: ``pytest tests/test_cli.py``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from harrier import Embedder
from harrier.cli import main


def run(*argv):
    return main([str(a) for a in argv])


def test_encode_txt_to_npy_matches_library(tiny_gemma3_dir, tmp_path):
    inp = tmp_path / "q.txt"
    inp.write_text("how much protein should a female eat\nsummit define\n", encoding="utf-8")
    out = tmp_path / "q.npy"
    assert run("encode", "--model", tiny_gemma3_dir, "--prompt-name", "web_search_query", "--input", inp,
               "--output", out, "--dtype", "float32") == 0
    got = np.load(out)
    ref = Embedder.from_pretrained(tiny_gemma3_dir, dtype="float32").encode(
        ["how much protein should a female eat", "summit define"], prompt_name="web_search_query")
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_encode_jsonl_keeps_fields_and_task(tiny_qwen3_dir, tmp_path):
    inp = tmp_path / "s.jsonl"
    inp.write_text('{"id": 7, "text": "Hund"}\n\n{"id": 8, "text": "dog"}\n', encoding="utf-8")
    out = tmp_path / "s.jsonl.out.jsonl"
    assert run("encode", "--model", tiny_qwen3_dir, "--task", "STSBenchmark", "--input", inp, "--output", out) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [7, 8] and len(rows[0]["embedding"]) == 64
    ref = Embedder.from_pretrained(tiny_qwen3_dir).encode(["Hund", "dog"], task="STSBenchmark")
    np.testing.assert_allclose(np.array([r["embedding"] for r in rows]), ref, atol=1e-6)


def test_info_and_similarity(tiny_gemma3_dir, tmp_path, capsys):
    assert run("info", "--model", tiny_gemma3_dir, "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "gemma3_text" and info["pooling"] == "lasttoken" and info["dim"] == 64
    assert "web_search_query" in info["prompts"] and info["parameters"] > 0
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("dog\ncat\n")
    b.write_text("Hund\nKatze\nFuchs\n")
    assert run("similarity", "--model", tiny_gemma3_dir, a, b) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 2 and all(len(r.split()) == 3 for r in rows)
    m = Embedder.from_pretrained(tiny_gemma3_dir)
    queries, docs = ["dog", "cat"], ["Hund", "Katze", "Fuchs"]
    ref = Embedder.similarity(m.encode(queries), m.encode(docs))
    np.testing.assert_allclose([[float(x) for x in r.split()] for r in rows], ref, atol=6e-5)  # printed as %.4f
    # the prompt goes to the first input only; --symmetric gives it to both
    for extra, doc_kw in (([], {}), (["--symmetric"], {"prompt_name": "web_search_query"})):
        assert run("similarity", "--model", tiny_gemma3_dir, a, b, "--prompt-name", "web_search_query", *extra) == 0
        got = [[float(x) for x in r.split()] for r in capsys.readouterr().out.strip().splitlines()]
        ref = Embedder.similarity(m.encode(queries, prompt_name="web_search_query"), m.encode(docs, **doc_kw))
        np.testing.assert_allclose(got, ref, atol=6e-5)


@pytest.mark.parametrize("case,needle", [
    ("missing", "no such file"),
    ("badjson", "line 2: not valid JSON"),
    ("notext", "line 1: expected an object with a string field 'text'"),
    ("badext", "unsupported format .csv"),
    ("badout", "unsupported format .csv"),
    ("prompt", "unknown prompt name 'web_serch_query'; did you mean 'web_search_query'"),
    ("task", "unknown task 'Tatoba'; did you mean 'Tatoeba'"),
    ("nomodel", "does not exist"),
    ("fp16", "float16 overflows Gemma-3"),
    ("device", "device 'tpu' is not supported"),
])
def test_bad_input_is_one_line_and_exit_2(case, needle, tiny_gemma3_dir, tmp_path, capsys):
    good = tmp_path / "ok.txt"
    good.write_text("hello\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text({"badjson": '{"text": "a"}\n{"text": \n', "notext": '{"txt": "a"}\n'}.get(case, ""))
    args = {"missing": ["--input", tmp_path / "nope.txt"], "badjson": ["--input", bad], "notext": ["--input", bad],
            "badext": ["--input", tmp_path / "x.csv"], "badout": ["--input", good, "--output", tmp_path / "o.csv"],
            "prompt": ["--input", good, "--prompt-name", "web_serch_query"],
            "task": ["--input", good, "--task", "Tatoba"], "fp16": ["--input", good, "--dtype", "float16"],
            "device": ["--input", good, "--device", "tpu"]}
    model = tmp_path / "nothing-here" if case == "nomodel" else tiny_gemma3_dir
    argv = ["encode", "--model", model, *args.get(case, ["--input", good])]
    if "--output" not in argv:
        argv += ["--output", tmp_path / "o.npy"]
    assert run(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_hub_id_offline_fails_in_one_line_pointing_at_local_dir(tmp_path):
    env_cmd = [sys.executable, "-m", "harrier.cli", "encode", "--model", "microsoft/harrier-oss-v1-270m",
               "--input", "-", "--output", str(tmp_path / "o.npy")]
    proc = subprocess.run(env_cmd, input="hello\n", capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot download 'microsoft/harrier-oss-v1-270m'" in lines[0]
    assert "--model" in lines[0] and "local directory" in lines[0]
