"""Bad input and faults at the ``harrier`` command (issue 14): every case exits with its code and one
``harrier: error:`` line (no traceback), leaves no partial output, modifies no input, and the cheap mistakes are
caught before the model's weights are read. ``pytest tests/test_bad_inputs.py``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harrier import Embedder, loading
from harrier.cli import main

REPO = Path(__file__).resolve().parents[1]

# id: (argv after `encode --model M`, needle of the error line, weights may be read first)
# {tmp} is the test's folder; inputs are made by `inputs` below; --output defaults to {tmp}/o.npy.
CASES = {
    # outputs, checked before anything is read or loaded
    "out_is_dir": (["--input", "{tmp}/ok.txt", "--output", "{tmp}/folder.npy"], "is a directory", False),
    "out_sys": (["--input", "{tmp}/ok.txt", "--output", "/sys/x.jsonl"], "cannot create files in /sys", False),
    "out_proc": (["--input", "{tmp}/ok.txt", "--output", "/proc/x.npy"], "cannot create files in /proc", False),
    "out_no_parent": (["--input", "{tmp}/ok.txt", "--output", "{tmp}/no/o.npy"], "does not exist", False),
    "out_format": (["--input", "{tmp}/ok.txt", "--output", "{tmp}/o.csv"], "unsupported format .csv", False),
    "out_is_input": (["--input", "{tmp}/data.jsonl", "--output", "{tmp}/data.jsonl"], "is the input file", False),
    # cheap arguments
    "batch_tokens": (["--input", "{tmp}/ok.txt", "--batch-tokens", "0"], "--batch-tokens must be positive", False),
    "max_length_0": (["--input", "{tmp}/ok.txt", "--max-length", "0"], "--max-length must be at least 2", False),
    "chunk_0": (["--input", "{tmp}/ok.txt", "--chunk", "0"], "--chunk must be at least 2", False),
    "overlap_neg": (["--input", "{tmp}/ok.txt", "--chunk", "64", "--overlap", "-1"], "--overlap must be", False),
    "overlap_big": (["--input", "{tmp}/ok.txt", "--chunk", "64", "--overlap", "64"], "below --chunk 64", False),
    "overlap_alone": (["--input", "{tmp}/ok.txt", "--overlap", "8"], "need --chunk", False),
    "aggregate_npy": (["--input", "{tmp}/ok.txt", "--chunk", "64", "--aggregate", "none"], "use a .jsonl", False),
    "task": (["--input", "{tmp}/ok.txt", "--task", "Tatoba"], "unknown task 'Tatoba'; did you mean 'Tatoeba'", False),
    "instruction": (["--input", "{tmp}/ok.txt", "--instruction", " "], "instruction is empty", False),
    "dtype_fp16": (["--input", "{tmp}/ok.txt", "--dtype", "float16"], "float16 overflows Gemma-3", False),
    "device": (["--input", "{tmp}/ok.txt", "--device", "tpu"], "device 'tpu' is not supported", False),
    "over_positions": (["--input", "{tmp}/ok.txt", "--max-length", "40000"],
                       "32768 positions; pass allow_over_positions=True (CLI: --allow-over-positions)", False),
    # inputs
    "missing": (["--input", "{tmp}/nope.txt"], "no such file", False),
    "latin1": (["--input", "{tmp}/latin1.txt"], "not UTF-8 text", False),
    "badjson": (["--input", "{tmp}/bad.jsonl"], "line 2: not valid JSON", False),
    "notext": (["--input", "{tmp}/notext.jsonl"], "line 1: expected an object with a string field 'text'", False),
    "in_format": (["--input", "{tmp}/x.csv"], "unsupported format .csv", False),
    "blank_strict": (["--input", "{tmp}/blank.txt", "--strict"], "line 2 is blank (--strict)", False),
    "blank_jsonl_strict": (["--input", "{tmp}/blank.jsonl", "--strict"], "line 3: 'text' is blank (--strict)",
                           False),
    "empty_model_dir": (["--input", "{tmp}/ok.txt"], "has no config.json", False),
    "no_model": (["--input", "{tmp}/ok.txt"], "does not exist", False),
    # what only the checkpoint knows
    "prompt": (["--input", "{tmp}/ok.txt", "--prompt-name", "web_serch_query"],
               "unknown prompt name 'web_serch_query'; did you mean 'web_search_query'", True),
    "truncation_error": (["--input", "{tmp}/long.txt", "--truncation", "error", "--max-length", "16"],
                         "exceed 16 tokens", True),
}


def make_inputs(tmp: Path) -> None:
    (tmp / "ok.txt").write_text("hello\nworld\n", encoding="utf-8")
    (tmp / "long.txt").write_text("short\n" + "word " * 100 + "\n", encoding="utf-8")
    (tmp / "blank.txt").write_text("a\n\n  \nb\n", encoding="utf-8")
    (tmp / "blank.jsonl").write_text('{"text": "a"}\n\n{"text": " "}\n{"text": "b"}\n', encoding="utf-8")
    (tmp / "data.jsonl").write_text('{"id": 1, "text": "a"}\n', encoding="utf-8")
    (tmp / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    (tmp / "bad.jsonl").write_text('{"text": "a"}\n{"text": \n', encoding="utf-8")
    (tmp / "notext.jsonl").write_text('{"txt": "a"}\n', encoding="utf-8")
    (tmp / "x.csv").write_text("a,b\n", encoding="utf-8")
    (tmp / "folder.npy").mkdir()
    (tmp / "empty-model").mkdir()


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@pytest.fixture
def weights_read(monkeypatch):
    """How many times a model's weights were read (``loading.build_model`` is where a load spends its time)."""
    calls = []
    original = loading.build_model

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(loading, "build_model", spy)
    return calls


def run(argv: list) -> int:
    try:
        return main([str(a) for a in argv])
    except SystemExit as stop:  # argparse
        return int(stop.code)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_error_line_and_leaves_nothing(case, tiny_gemma3_dir, tmp_path, capsys, weights_read):
    make_inputs(tmp_path)
    argv, needle, may_load = CASES[case]
    model = {"empty_model_dir": tmp_path / "empty-model", "no_model": tmp_path / "nothing-here"}.get(case,
                                                                                                    tiny_gemma3_dir)
    argv = [a.format(tmp=tmp_path) for a in argv]
    if "--output" not in argv:
        argv += ["--output", f"{tmp_path}/o.npy"]
    before = snapshot(tmp_path)
    assert run(["encode", "--model", model, "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("harrier: error:")]
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err
    assert snapshot(tmp_path) == before  # no partial output, no temporary file, inputs untouched
    assert may_load or not weights_read, "the error came after the model was loaded"


def test_blank_lines_are_skipped_with_a_count_and_rows_carry_line_numbers(tiny_gemma3_dir, tmp_path, caplog):
    make_inputs(tmp_path)
    out = tmp_path / "o.jsonl"
    assert run(["encode", "--model", tiny_gemma3_dir, "--input", tmp_path / "blank.txt", "--output", out]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("skipped 2 blank lines" in w and "first: line 2" in w for w in warnings), warnings
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["line"], r["text"]) for r in rows] == [(1, "a"), (4, "b")]
    ref = Embedder.from_pretrained(tiny_gemma3_dir).encode(["a", "b"])
    np.testing.assert_allclose([r["embedding"] for r in rows], ref, atol=1e-6)
    # .npy: rows follow the non-blank lines in order
    npy = tmp_path / "o.npy"
    assert run(["encode", "--model", tiny_gemma3_dir, "--input", tmp_path / "blank.txt", "--output", npy]) == 0
    np.testing.assert_allclose(np.load(npy), ref, atol=1e-6)
    # JSONL input: a blank 'text' is skipped the same way, the record's own fields kept
    assert run(["encode", "--model", tiny_gemma3_dir, "--input", tmp_path / "blank.jsonl", "--output", out]) == 0
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["line"], r["text"]) for r in rows] == [(1, "a"), (4, "b")]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("fault", ["target_became_a_folder", "folder_removed"])
def test_output_failure_after_the_work_keeps_the_vectors(fault, tiny_gemma3_dir, tmp_path, capsys, monkeypatch):
    outdir, cwd = tmp_path / "out", tmp_path / "cwd"
    outdir.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    inp = tmp_path / "in.txt"
    inp.write_text("hello\nworld\n", encoding="utf-8")
    target = outdir / "v.npy"
    original = Embedder.encode

    def encode_then_break_the_output(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if fault == "target_became_a_folder":
            target.mkdir()
        else:
            outdir.rmdir()
        return result

    monkeypatch.setattr(Embedder, "encode", encode_then_break_the_output)
    assert run(["encode", "--model", tiny_gemma3_dir, "--input", inp, "--output", target]) == 2
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("harrier: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    rescued = (outdir if fault == "target_became_a_folder" else cwd) / "v.rescued.npy"
    assert f"saved to {rescued}" in lines[0], lines[0]
    ref = original(Embedder.from_pretrained(tiny_gemma3_dir), ["hello", "world"])
    np.testing.assert_allclose(np.load(rescued), ref, atol=1e-6)
    left = [p.name for p in (outdir.iterdir() if outdir.exists() else ()) if p.name.endswith(".tmp")]
    assert not left


def test_ctrl_c_mid_encode_exits_130_and_leaves_nothing(tiny_gemma3_dir, tmp_path):
    inp = tmp_path / "in.txt"
    inp.write_text("".join(f"{i} " + "the quick brown fox jumps over the lazy dog " * 30 + "\n" for i in range(600)),
                   encoding="utf-8")
    before = snapshot(tmp_path)
    out = tmp_path / "o.npy"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harrier.cli", "-v", "encode", "--model", str(tiny_gemma3_dir), "--input", str(inp),
         "--output", str(out), "--no-progress", "--batch-tokens", "1024"],
        cwd=REPO, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    seen = []
    for line in proc.stderr:  # the engine logs one INFO line when the first batch starts
        seen.append(line)
        if "batches of at most" in line:
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130, "".join(seen) + rest
    err = "".join(seen) + rest
    assert "Traceback" not in err
    assert [x for x in err.splitlines() if x.startswith("harrier: error:")] == ["harrier: error: interrupted"], err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("missing,argv,needle", [
    ("uvicorn", ["serve", "--model", "{model}"], "harrier serve needs uvicorn, which is not installed: "
                                                 "pip install 'harrier-embed[serve]'"),
    ("fastapi", ["serve", "--model", "{model}"], "harrier serve needs fastapi, which is not installed: "
                                                 "pip install 'harrier-embed[serve]'"),
    ("pyarrow", ["corpus", "encode", "--model", "{model}", "--input", "{tmp}/ok.txt", "--output", "{tmp}/corpus"],
     "harrier corpus needs pyarrow, which is not installed: pip install 'harrier-embed[corpus]'"),
    ("gguf", ["encode", "--model", "{tmp}/m.gguf", "--input", "{tmp}/ok.txt", "--output", "{tmp}/o.npy"],
     "reading GGUF files needs gguf, which is not installed: pip install 'harrier-embed[gguf]'"),
])
def test_missing_extra_names_it_before_the_model_loads(missing, argv, needle, tiny_gemma3_dir, tmp_path, capsys,
                                                        monkeypatch, weights_read):
    make_inputs(tmp_path)
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    for name in [m for m in sys.modules if m == missing or m.startswith(f"{missing}.")] + ["harrier.serve.server"]:
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, missing, None)  # `import missing` now fails as if it were not installed
    before = snapshot(tmp_path)
    assert run([a.format(model=tiny_gemma3_dir, tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert [x for x in err.splitlines() if x.startswith("harrier: error:")] == [f"harrier: error: {needle}"], err
    assert snapshot(tmp_path) == before and not weights_read


def test_an_error_raised_inside_a_library_says_so(monkeypatch, capsys):
    import json

    from harrier import cli

    def fails(args):
        json.loads("{")  # a ValueError raised inside the json package, not by a check of ours

    monkeypatch.setattr(cli, "cmd_info", fails)
    assert cli.main(["info", "--model", "m"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("harrier: error: json: Expecting") and "-v shows where" in err[0]
    assert cli.main(["-v", "info", "--model", "m"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("harrier: error: json: ")
