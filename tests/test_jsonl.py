"""The one JSONL reader (``harrier.jsonl``) and the messages each of its callers gives for a bad line."""

from __future__ import annotations

import pytest

from harrier.jsonl import JsonlError, parse_lines


def test_parse_lines_numbers_lines_and_skips_blank_ones():
    lines = ['{"a": 1}', "", "   ", '"x"', "[1, 2]"]
    assert list(parse_lines(lines)) == [(1, {"a": 1}), (4, "x"), (5, [1, 2])]


def test_parse_lines_names_the_bad_line_and_is_lazy():
    rows = parse_lines(['{"a": 1}', "", "{nope", '{"b": 2}'])
    assert next(rows) == (1, {"a": 1})
    with pytest.raises(JsonlError, match=r"line 3: not valid JSON \(Expecting property name") as info:
        next(rows)
    assert info.value.line == 3 and info.value.reason.startswith("not valid JSON (")
    assert isinstance(info.value, ValueError)


def test_teacher_scoring_reports_file_and_line(tmp_path):
    from harrier.train.teacher import _raw_lines

    f = tmp_path / "pairs.jsonl"
    f.write_text('{"query": "a", "positive": "b"}\n\n{broken\n', encoding="utf-8")
    rows = _raw_lines(f)
    assert next(rows) == (1, {"query": "a", "positive": "b"})
    with pytest.raises(ValueError, match=rf"{f}:3: bad record: Expecting property name enclosed in double quotes"):
        next(rows)
