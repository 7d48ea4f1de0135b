"""Adapters over the data root ($HARRIER_DATA): record shapes, per-language datasets, and refusal of evaluation data."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from harrier.train.adapters import BITEXT, STS, check_allowed, load_adapter, stsb_multi_mt, wmt_newstest
from harrier.train.config import DatasetSpec
from harrier.train.data import build_datasets

SHARED = Path(os.environ.get("HARRIER_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")


def test_wmt_and_stsb_from_small_fixtures(tmp_path):
    d = tmp_path / "wmt" / "deu-eng"
    d.mkdir(parents=True)
    (d / "newstest2016.deu").write_text("Hallo Welt\nGuten Tag\n", encoding="utf-8")
    (d / "newstest2016.eng").write_text("Hello world\nGood day\n", encoding="utf-8")
    (ds,) = wmt_newstest(tmp_path / "wmt")
    assert ds.name == "wmt-deu-eng" and ds.records[0].query == "Hallo Welt"
    assert ds.records[0].positives == ("Hello world",) and ds.records[0].prefix == BITEXT
    (para,) = wmt_newstest(tmp_path / "wmt", paragraph=2)
    assert para.name == "wmt-deu-eng-p2" and len(para.records) == 1
    assert para.records[0].query == "Hallo Welt Guten Tag" and para.records[0].positives == ("Hello world Good day",)
    with pytest.raises(ValueError, match="paragraph must be >= 1"):
        wmt_newstest(tmp_path / "wmt", paragraph=0)
    s = tmp_path / "stsb"
    s.mkdir()
    (s / "stsb-fr-train.csv").write_text('a,b,4.5\n"c, d",e,1.0\n', encoding="utf-8")
    (s / "stsb-fr-test.csv").write_text("x,y,5.0\n", encoding="utf-8")
    (ds,) = stsb_multi_mt(s, min_score=4.0)
    assert [r.query for r in ds.records] == ["a"] and ds.records[0].prefix == STS  # test split never read


@pytest.mark.parametrize("path", ["/x/sib-200", "/x/tatoeba-laser", "/x/xquad", "/x/stsb-en-test.csv",
                                  "/x/claims_validation.csv", "/x/en-US_dev.jsonl"])
def test_evaluation_data_is_refused(path):
    with pytest.raises(ValueError, match="evaluation data"):
        load_adapter("wmt-newstest", path)


@pytest.mark.parametrize("name", ["jsts-v1.3/test-v1.3.json", "tico19-test.en", "DRCD_dev.json",
                                  "arcd-test.json", "data/test.jsonl"])
def test_data_train_folder_is_training_data_whatever_the_file_name(tmp_path, name):
    check_allowed(tmp_path / "shared" / "data" / "train" / "corpus" / name)  # no error
    with pytest.raises(ValueError, match="evaluation data"):
        check_allowed(tmp_path / "shared" / "data" / "corpus" / name)  # the same name elsewhere


@pytest.mark.parametrize("rel", ["data/train/xquad/xquad.de.json", "data/train/../stsb/stsb-en-test.csv",
                                 "train/stsb-en-test.csv", "data/x/train/stsb-en-test.csv",
                                 "data/training/stsb-en-test.csv"])
def test_data_train_rule_is_narrow(tmp_path, rel):
    with pytest.raises(ValueError, match="evaluation data"):
        check_allowed(tmp_path / rel)


def test_a_symlink_cannot_move_evaluation_data_into_data_train(tmp_path):
    real = tmp_path / "data" / "stsb" / "stsb-en-test.csv"
    real.parent.mkdir(parents=True)
    real.write_text("a,b,5.0\n", encoding="utf-8")
    link = tmp_path / "data" / "train" / "stsb" / "pairs.csv"
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    with pytest.raises(ValueError, match="evaluation data"):
        check_allowed(link)


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared data not on this machine")
def test_shared_evaluation_files_refused_and_shared_train_files_allowed():
    for path in [SHARED / "stsb-multi-mt" / "stsb-de-test.csv", SHARED / "xquad" / "xquad.de.json",
                 SHARED / "sib-200", SHARED / "tatoeba-laser"]:
        with pytest.raises(ValueError, match="evaluation data"):
            check_allowed(path)
    train = SHARED / "train"
    named_like_eval = [p for p in train.rglob("*") if p.is_file() and set(re.split(r"[-_.]", p.name)) & {"test", "dev"}]
    assert len(named_like_eval) > 50  # tico19-test.*, arcd-test.json, DRCD_dev.json, ...
    for path in named_like_eval:
        check_allowed(path)


def test_spec_prefix_overrides_adapter_prefix(tmp_path):
    d = tmp_path / "wmt" / "fin-eng"
    d.mkdir(parents=True)
    (d / "newstest2017.fin").write_text("Hei\n", encoding="utf-8")
    (d / "newstest2017.eng").write_text("Hi\n", encoding="utf-8")
    datasets, sources = build_datasets([DatasetSpec(path=str(tmp_path / "wmt"), adapter="wmt-newstest", weight=2.0,
                                                    name="bitext", prompt="P: ")])
    assert [d.name for d in datasets] == ["bitext/wmt-fin-eng"] and [s.weight for s in sources] == [2.0]
    assert datasets[0].get(0).prefix == "P: "


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared data not on this machine")
def test_real_shared_data_adapters():
    wmt = load_adapter("wmt-newstest", SHARED / "wmt-newstest-2016-2018")
    assert len(wmt) == 9 and sum(len(d) for d in wmt) > 50_000
    (sci,) = load_adapter("scifact-train", SHARED / "scifact")
    assert 400 < len(sci) < 810 and all(r.positives for r in sci.records)
    assert "  " not in sci.records[0].positives[0] and "['" not in sci.records[0].positives[0]
    stsb = load_adapter("stsb-multi-mt", SHARED / "stsb-multi-mt")
    assert len(stsb) == 11


def test_wmt_ict_pairs_a_sentence_with_the_rest_of_its_passage(tmp_path):
    from harrier.train.adapters import ICT, wmt_ict

    d = tmp_path / "wmt" / "deu-eng"
    d.mkdir(parents=True)
    de = [f"Satz Nummer {i} hat genug Wörter hier." for i in range(7)]
    en = [f"Sentence number {i} has enough words here." for i in range(7)]
    (d / "newstest2016.deu").write_text("\n".join(de) + "\n", encoding="utf-8")
    (d / "newstest2016.eng").write_text("\n".join(en) + "\n", encoding="utf-8")
    out = {ds.name: ds.records for ds in wmt_ict(tmp_path / "wmt", paragraph=3)}
    assert set(out) == {"ict-deu", "ict-eng"} and len(out["ict-deu"]) == 2  # 7 lines -> 2 whole passages
    for lang, lines in (("deu", de), ("eng", en)):
        for n, rec in enumerate(out[f"ict-{lang}"]):
            passage = lines[3 * n:3 * n + 3]
            assert rec.query in passage and rec.prefix == ICT
            assert rec.positives == (" ".join(x for x in passage if x != rec.query),)  # the query is cut out
    again = {ds.name: ds.records for ds in wmt_ict(tmp_path / "wmt", paragraph=3)}
    assert again == out  # reproducible
    with pytest.raises(ValueError, match="paragraph must be >= 3"):
        wmt_ict(tmp_path / "wmt", paragraph=2)


def test_unknown_adapter_options_are_a_clear_error():
    with pytest.raises(ValueError, match=r"adapter 'wmt-ict': unknown options \['paragraf'\]; known: paragraph"):
        load_adapter("wmt-ict", "/x/wmt", paragraf=6)
    with pytest.raises(ValueError, match="adapter 'scifact-train': unknown options .*; known: none"):
        load_adapter("scifact-train", "/x/scifact", seed=1)
