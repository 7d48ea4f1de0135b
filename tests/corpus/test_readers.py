"""Readers: JSONL / Parquet / TXT streaming, bad rows reported with file:line and skipped, --strict fatal."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus_helpers import write_jsonl

from harrier.cli import main
from harrier.corpus.readers import BadRow, ReaderConfig, Record, expand_inputs, iter_rows


def test_jsonl_bad_rows_have_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [
        {"id": "a", "text": "fine"},
        b"{not json\n",
        {"id": "b"},
        {"text": "no id"},
        b'{"id": "c", "text": "caf\xe9"}\n',
        b"\n",
        {"id": 7, "text": 3},
        ["a", "list"],
        {"id": 8, "text": "int ids become strings"},
        {"id": 2.5, "text": "a float id is refused, not stored as '2.5'"},
    ])
    rows = list(iter_rows([path], ReaderConfig()))
    good = [r for r in rows if isinstance(r, Record)]
    bad = [(r.line, r.reason.split(" (")[0]) for r in rows if isinstance(r, BadRow)]
    assert [(r.id, r.text, r.line) for r in good] == [("a", "fine", 1), ("8", "int ids become strings", 9)]
    assert bad == [(2, "not valid JSON"), (3, "text field 'text' missing"), (4, "id field 'id' missing"),
                   (5, "not UTF-8"), (7, "text field 'text' not a string"), (8, "expected a JSON object, got list"),
                   (10, "id field 'id' not a string or integer")]
    assert all(r.file == str(path) for r in rows)


def test_parquet_and_txt(tmp_path):
    pq.write_table(pa.table({"doc": ["x", "y", None], "body": ["one", None, "three"]}), tmp_path / "p.parquet")
    (tmp_path / "t.txt").write_bytes(b"first\nsecond \xff\nthird\n")
    cfg = ReaderConfig(id_field="doc", text_field="body")
    rows = list(iter_rows(expand_inputs([str(tmp_path / "*.parquet"), str(tmp_path / "*.txt")]), cfg))
    assert [(type(r).__name__, r.line) for r in rows] == [
        ("Record", 1), ("BadRow", 2), ("BadRow", 3), ("Record", 1), ("BadRow", 2), ("Record", 3)]
    assert [r.id for r in rows if isinstance(r, Record)] == ["x", "t.txt:1", "t.txt:3"]
    with pytest.raises(ValueError, match="no column 'text'"):
        list(iter_rows([tmp_path / "p.parquet"], ReaderConfig(id_field="doc")))


def test_inputs_must_exist_and_be_supported(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        expand_inputs([str(tmp_path / "*.jsonl")])
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="unsupported format .csv"):
        expand_inputs([str(tmp_path / "x.csv")])


def test_cli_counts_bad_rows_and_strict_is_fatal(tmp_path, tiny_gemma3_dir, capsys):
    src = write_jsonl(tmp_path / "a.jsonl", [{"id": "a", "text": "one"}, b"{oops\n", {"id": "b", "text": "two"},
                                             {"id": "c"}])
    out = tmp_path / "out"
    base = ["corpus", "encode", "--model", str(tiny_gemma3_dir), "--input", str(src), "--output", str(out),
            "--no-progress"]
    assert main(base) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"] == 2 and manifest["bad_rows"] == 2 and manifest["complete"]
    assert manifest["bad_row_examples"][0].startswith(f"{src}:2: not valid JSON")
    bad = [json.loads(line) for line in (out / "bad_rows.jsonl").read_text().splitlines()]
    assert [(b["file"], b["line"]) for b in bad] == [(str(src), 2), (str(src), 4)]
    capsys.readouterr()
    assert main([*base[:-2], str(tmp_path / "strict"), "--no-progress", "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"harrier: error: bad row {src}:2: not valid JSON (Expecting property name enclosed in double "
                   "quotes) (--strict)"]
    assert not list((tmp_path / "strict").iterdir())  # no shard finished: no job left, the same command can rerun


def test_windows_respect_rows_and_chars_and_row_prompts():
    from harrier.corpus.window import windows_of

    recs = [Record(f"r{i}", "x" * n, "p" if i == 2 else None, "f", i + 1) for i, n in enumerate([3, 3, 9, 1, 1, 1])]
    windows = list(windows_of(recs, max_rows=4, max_chars=8, job_prompt="job"))
    assert [w.ids for w in windows] == [["r0", "r1"], ["r2"], ["r3", "r4", "r5"]]  # r2 alone exceeds the cap
    assert [w.prompts for w in windows] == [["job", "job"], ["p"], ["job", "job", "job"]]
    assert [w.ids for w in windows_of(recs, max_rows=2, max_chars=100, job_prompt=None)] == [
        ["r0", "r1"], ["r2", "r3"], ["r4", "r5"]]


def test_count_rows(tmp_path):
    from harrier.corpus.readers import count_rows

    (tmp_path / "a.txt").write_text("one\ntwo\nthree")
    (tmp_path / "b.txt").write_text("one\ntwo\n")
    pq.write_table(pa.table({"id": ["a", "b", "c"]}), tmp_path / "c.parquet")
    assert [count_rows(tmp_path / n) for n in ("a.txt", "b.txt", "c.parquet")] == [3, 2, 3]


def test_cli_checks_inputs_and_output_before_the_model_loads(tmp_path, monkeypatch, capsys):
    src = tmp_path / "c.jsonl"
    src.write_text('{"id": 1, "text": "a"}\n')
    (tmp_path / "file").write_text("x")
    job = tmp_path / "job"
    job.mkdir()
    (job / "manifest.json").write_text("{}")
    monkeypatch.setattr("harrier.corpus.cli.load", lambda args: pytest.fail("the model was loaded first"))
    cases = [
        ([str(tmp_path / "none-*.jsonl")], tmp_path / "out", "no such file"),
        ([str(src)], tmp_path / "file", "is a file; corpus output is a directory"),
        ([str(src)], tmp_path / "file" / "sub", "a part of the path is a file"),
        ([str(src)], job, "already holds a corpus job"),
        ([str(src)], "/proc/harrier-job", "cannot create it"),
    ]
    for inputs, out, message in cases:
        argv = ["corpus", "encode", "--model", "m", "--input", *inputs, "--output", str(out), "--no-progress"]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("harrier: error: ") and message in err[0], (out, err)
