"""Results JSON layout (mteb's), reading results back, comparison with published scores, the embedding cache.
Run: pytest tests/eval/test_results.py -q"""

from __future__ import annotations

import json

import numpy as np
import pytest

from harrier.eval.cache import CachedEncoder
from harrier.eval.data import PairData
from harrier.eval.results import compare, format_comparison, read_published, read_results
from harrier.eval.run import evaluate
from harrier.eval.tasks import Selection, TaskSpec


def _sts_selection():
    s1 = [f"a cat number {i}" for i in range(20)]
    s2 = [f"a cat number {i}" + " big" * (i % 4) for i in range(20)]
    gold = [5.0 - (i % 4) for i in range(20)]
    spec = TaskSpec("STS17", "STS", ("test",), ("en-en", "es-es"), lambda r, s, p: PairData(s1, s2, scores=gold),
                    {"en-en": ("eng",), "es-es": ("spa",)}, revision="rev123")
    return Selection(spec, ("en-en", "es-es"), ("test",))


def test_json_layout(tmp_path, bow):
    evaluate(bow, [_sts_selection()], output_dir=tmp_path, data_root=tmp_path)
    doc = json.loads((tmp_path / "STS17.json").read_text())
    assert {"dataset_revision", "task_name", "mteb_version", "scores", "evaluation_time", "kg_co2_emissions",
            "harrier"} <= set(doc)
    assert doc["task_name"] == "STS17" and doc["dataset_revision"] == "rev123"
    entry = doc["scores"]["test"][0]
    assert entry["hf_subset"] == "en-en" and entry["languages"] == ["eng"]
    assert entry["main_score"] == entry["cosine_spearman"]
    assert doc["harrier"]["prompts"] == {"all": None} and doc["harrier"]["prompt_policy"] == "none"


def test_compare_against_published(tmp_path, bow):
    evaluate(bow, [_sts_selection()], output_dir=tmp_path / "res", data_root=tmp_path)
    ours = read_results(tmp_path / "res")
    value = ours["STS17"][("test", "en-en")]
    pub_file = tmp_path / "pub.json"
    pub_file.write_text(json.dumps({"models": {"org/m": {"STS17": {"splits": {"test": {"en-en": 100 * value + 0.5,
                                                                                          "es-es": 10.0}}}}}}))
    rows = compare(ours, read_published(pub_file, "org/m"))
    by_subset = {r.subset: r for r in rows}
    assert by_subset["en-en"].diff == pytest.approx(-0.5)
    table = format_comparison(rows)
    assert "1/2 subsets within 1.0 point" in table and " !" in table
    with pytest.raises(ValueError, match="unknown published model"):
        read_published(pub_file, "org/other")
    with pytest.raises(ValueError, match="does not exist"):
        read_results(tmp_path / "missing")


def test_cache_embeds_each_text_once(tmp_path, bow):
    enc = CachedEncoder(bow, tmp_path / "cache")
    a = enc.encode(["x y", "z", "x y"], prompt="p: ")
    b = enc.encode(["z", "x y"], prompt="p: ")
    c = enc.encode(["z"], prompt=None)
    assert np.allclose(a[0], b[1]) and np.allclose(a[1], b[0])
    assert bow.calls == [(2, "p: "), (1, None)]
    assert not np.allclose(a[1], c[0])
    enc.close()
    again = CachedEncoder(bow, tmp_path / "cache")
    again.encode(["z"], prompt="p: ")
    assert again.hits == 1 and again.misses == 0
