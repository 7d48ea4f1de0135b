"""Record parsing, streaming readers with file:line errors, and the mixture sampler."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from harrier.prompts import instruction_prefix, task_prefix
from harrier.train.records import JsonlDataset, MemoryDataset, Record, RecordError, data_files, parse_record
from harrier.train.sampler import MixtureSampler, local_slice, mixture_probabilities


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_parse_record_variants():
    r = parse_record({"query": "q", "positive": "p", "negatives": ["n1", "n2"], "instruction": "Find it",
                      "teacher_scores": [0.9, 0.1, 0.2]})
    assert r == Record("q", ("p",), ("n1", "n2"), instruction_prefix("Find it"), (0.9, 0.1, 0.2))
    assert parse_record({"query": "q", "positives": ["a", "b"], "task": "SCIDOCS"}).prefix == task_prefix("SCIDOCS")
    assert parse_record({"query": "q", "positive": "p", "prompt": "query: "}).prefix == "query: "
    assert parse_record({"query": "q", "positive": "p"}, default_prefix="X: ").prefix == "X: "
    t = parse_record({"text": "hello"})
    assert t.text_only and t.query == "hello"


@pytest.mark.parametrize("obj, fragment", [
    ([1], "JSON object"),
    ({"query": "q"}, "positive"),
    ({"query": "q", "positive": "p", "bogus": 1}, "unknown keys"),
    ({"query": "q", "positive": "p", "task": "SciFact", "instruction": "x"}, "at most one"),
    ({"query": "q", "positive": "p", "teacher_scores": [1.0, 2.0]}, "teacher_scores"),
    ({"query": "", "positive": "p"}, "empty"),
    ({"query": "q", "positive": "p", "task": "NoSuchTask"}, "unknown task"),
    ({"text": "t", "query": "q"}, "cannot be combined"),
])
def test_parse_record_errors(obj, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_record(obj)


def test_jsonl_reader_names_file_and_line(tmp_path, caplog):
    f = _write(tmp_path / "d.jsonl", [json.dumps({"query": "a", "positive": "b"}), "", "{not json",
                                      json.dumps({"query": "c", "positive": "d"})])
    ds = JsonlDataset(f)
    assert len(ds) == 3  # the blank line is not a record
    assert ds.get(0).query == "a" and ds.get(2).query == "c"
    with caplog.at_level(logging.WARNING):
        assert ds.get(1) is None
        assert ds.get(1) is None  # drawn again (a later epoch): skipped, not reported again
    assert caplog.text.count(f"{f}:3: bad record") == 1 and ds.bad_lines == 1
    with pytest.raises(RecordError, match=r"d.jsonl:3: bad record"):
        JsonlDataset(f, strict=True).get(1)


def test_txt_reader_and_data_files(tmp_path):
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub" / "b.txt", ["first text", "", "second text"])
    _write(tmp_path / "a.jsonl", [json.dumps({"text": "x"})])
    files = data_files(tmp_path)
    assert [f.name for f in files] == ["a.jsonl", "b.txt"]
    ds = JsonlDataset(files[1])
    assert [ds.get(i).query for i in range(len(ds))] == ["first text", "second text"]
    with pytest.raises(ValueError, match="does not exist"):
        data_files(tmp_path / "missing")


def test_mixture_probabilities():
    np.testing.assert_allclose(mixture_probabilities([100, 300], [1, 1], 1.0), [0.25, 0.75])
    np.testing.assert_allclose(mixture_probabilities([100, 300], [3, 1], 1.0), [0.5, 0.5])
    p = mixture_probabilities([100, 10_000], [1, 1], 2.0)
    np.testing.assert_allclose(p, [0.1 / 1.1, 1 / 1.1])  # sqrt sizes: 10 vs 100
    with pytest.raises(ValueError):
        mixture_probabilities([1], [1], 0)
    with pytest.raises(ValueError):
        mixture_probabilities([1, 2], [0, 0], 1)


def _mem(name, n):
    return MemoryDataset(name, [Record(f"{name}{i}", (f"p{i}",)) for i in range(n)])


def test_sampler_homogeneous_epochs_and_frequencies():
    s = MixtureSampler([_mem("a", 10), _mem("b", 30)], batch_size=4, temperature=1.0, seed=1)
    counts = {"a": 0, "b": 0}
    seen_a = []
    for _ in range(400):
        b = s.next_batch()
        assert len(b.records) == 4 and all(r.query.startswith(b.dataset) for r in b.records)
        counts[b.dataset] += 1
        if b.dataset == "a":
            seen_a += [r.query for r in b.records]
    assert 0.18 < counts["a"] / 400 < 0.32  # p = 0.25
    assert sorted(seen_a[:10]) == sorted(f"a{i}" for i in range(10))  # one epoch = each record once


def test_sampler_resume_is_exact():
    def make():
        return MixtureSampler([_mem("a", 7), _mem("b", 5)], batch_size=3, seed=5)

    full = make()
    ref = [full.next_batch() for _ in range(12)]
    first = make()
    [first.next_batch() for _ in range(5)]
    state = json.loads(json.dumps(first.state_dict()))
    resumed = make()
    resumed.load_state_dict(state)
    assert [resumed.next_batch() for _ in range(7)] == ref[5:]


def test_sampler_skips_bad_records(tmp_path):
    f = _write(tmp_path / "x.jsonl", [json.dumps({"query": f"q{i}", "positive": "p"}) for i in range(5)] + ["oops"])
    s = MixtureSampler([JsonlDataset(f)], batch_size=6, seed=0)
    b = s.next_batch()
    assert len(b.records) == 6  # the bad line was skipped, the batch refilled from the next epoch


def test_local_slice():
    recs = [Record(str(i), ("p",)) for i in range(6)]
    assert [r.query for r in local_slice(recs, 1, 2)] == ["3", "4", "5"]
    with pytest.raises(ValueError):
        local_slice(recs, 0, 4)
