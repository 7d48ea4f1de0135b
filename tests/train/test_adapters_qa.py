"""Adapters over shared/data/train (QA, AfriQA, COVID-QA, PubMedQA, parallel, STS-train and NLI sets): records
from tiny fixtures in each corpus's real layout and format, the data/train guard, the recipes' teacher modes, and
counts over the real folder."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from harrier.train import config
from harrier.train.adapters import (
    ADAPTERS,
    BITEXT,
    DUPLICATE_QUESTION,
    QA,
    RETRIEVAL_ADAPTERS,
    STS,
    load_adapter,
)

SHARED = Path(os.environ.get("HARRIER_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")
RECIPES = Path(__file__).parents[2] / "recipes"
SEARCH = ("task: search result | query: ", "title: none | text: ")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _squad(articles: list[tuple[str | None, list[tuple[str, list[str]]]]]) -> str:
    """SQuAD v1.1 JSON: articles of (title, [(context, [questions])])."""
    data = []
    for title, paras in articles:
        art = {"paragraphs": [{"context": c, "qas": [{"id": f"{i}", "question": q,
                                                       "answers": [{"text": c[:3], "answer_start": 0}]}
                                                      for i, q in enumerate(qs)]} for c, qs in paras]}
        data.append(art | ({"title": title} if title else {}))
    return json.dumps({"version": "1.1", "data": data}, ensure_ascii=False)


def _by_name(datasets) -> dict:
    return {d.name: d.records for d in datasets}


@pytest.fixture
def train_root(tmp_path) -> Path:
    return tmp_path / "shared" / "data" / "train"


def test_squad_question_to_paragraph_with_same_article_negatives(train_root):
    root = train_root / "arcd"
    paras = [(f"paragraph {i} of Hamza", [f"q{i}?"]) for i in range(4)]
    paras[1] = ("paragraph 1 of Hamza", ["q1?", "q0?"])  # q0 asked of two paragraphs: one record, two positives
    _write(root / "arcd-train.json", _squad([("Hamza", paras)]))
    _write(root / "arcd-test.json", _squad([("Other", [("other article", [" q9? "])])]))
    (ds,) = load_adapter("arcd", root, negatives=2, seed=1)
    recs = {r.query: r for r in ds.records}
    assert ds.name == "arcd-ar" and list(recs) == ["q9?", "q0?", "q1?", "q2?", "q3?"]  # files sorted; deduped
    assert recs["q0?"].positives == ("paragraph 0 of Hamza", "paragraph 1 of Hamza")
    assert recs["q2?"].positives == ("paragraph 2 of Hamza",) and recs["q2?"].prefix == QA
    for r in recs.values():
        assert not set(r.negatives) & set(r.positives)
        assert all("Hamza" in n for n in r.negatives) and len(r.negatives) == (0 if r.query == "q9?" else 2)
    assert recs["q0?"].negatives == ("paragraph 2 of Hamza", "paragraph 3 of Hamza")  # the only two left
    assert _by_name(load_adapter("arcd", root, negatives=2, seed=1)) == {"arcd-ar": ds.records}  # reproducible
    assert len({r.negatives for s in range(8) for r in load_adapter("arcd", root, negatives=1, seed=s)[0].records
                if r.query == "q3?"}) > 1  # the seed picks among the candidates
    assert all(not r.negatives for r in load_adapter("arcd", root, negatives=0)[0].records)
    assert len(load_adapter("arcd", root, max_records=2)[0]) == 2


@pytest.mark.parametrize("adapter,file,name", [("cmrc2018", "cmrc2018_dev.json", "cmrc2018-zh"),
                                               ("drcd", "DRCD_test.json", "drcd-zh-hant"),
                                               ("piaf", "piaf-v1.0.json", "piaf-fr")])
def test_squad_corpora_find_their_files(train_root, adapter, file, name):
    _write(train_root / adapter / file, _squad([("T", [("ctx a", ["qa"]), ("ctx b", ["qb"])])]))
    (ds,) = load_adapter(adapter, train_root / adapter)
    assert ds.name == name and [(r.query, r.positives, r.negatives) for r in ds.records] == [
        ("qa", ("ctx a",), ("ctx b",)), ("qb", ("ctx b",), ("ctx a",))]


def test_jsquad_drops_the_title_sep_prefix_and_tydiqa_reads_train_files_only(train_root):
    _write(train_root / "jglue-ja" / "jsquad-v1.3" / "valid-v1.3.json",
           _squad([("梅雨", [("梅雨 [SEP] 梅雨は気象現象", ["梅雨とは?"])])]))
    (ds,) = load_adapter("jsquad", train_root / "jglue-ja")
    assert ds.name == "jsquad-ja" and ds.records[0].positives == ("梅雨は気象現象",)
    tydi = train_root / "tydiqa-goldp"
    for lang in ("en", "sw"):
        one, two = (None, [(f"{lang} passage </b>one", [f"{lang} q?"])]), (None, [(f"{lang} two", [f"{lang} q?"])])
        _write(tydi / "train" / f"tydiqa.goldp.{lang}.train.json", _squad([one, two]))
    _write(tydi / "dev" / "tydiqa.goldp.en.dev.json", _squad([(None, [("MIRACL query source", ["dev q?"])])]))
    out = _by_name(load_adapter("tydiqa-goldp", tydi))
    assert list(out) == ["tydiqa-en", "tydiqa-sw"]
    assert [(r.query, r.positives, r.negatives) for r in out["tydiqa-en"]] == [
        ("en q?", ("en passage one", "en two"), ())]  # untitled: each passage its own article
    assert list(_by_name(load_adapter("tydiqa-goldp", tydi, languages=["sw"]))) == ["tydiqa-sw"]
    with pytest.raises(ValueError, match=r"unknown languages \['de'\]; available: en, sw"):
        load_adapter("tydiqa-goldp", tydi, languages=["de"])


def test_iapp_reads_every_jsonl_of_its_zip(train_root):
    root = train_root / "iapp-wiki-qa-th"
    root.mkdir(parents=True)
    row = {"article_id": "a1", "question_id": "a1_000", "context": "บทความ", "question": "คำถาม",
           "answers": {"text": ["x"], "answer_start": [0], "answer_end": [1]}, "title": "t"}
    with zipfile.ZipFile(root / "data.zip", "w") as z:
        z.writestr("data/train.jsonl", _jsonl([row]))
        z.writestr("data/test.jsonl", _jsonl([row, row | {"question": "อีกคำถาม"}]))  # train's question again
    (ds,) = load_adapter("iapp-wiki-qa", root)
    assert ds.name == "iapp-th" and [r.query for r in ds.records] == ["คำถาม", "อีกคำถาม"]


def _afriqa(root: Path) -> None:
    gold = root / "data" / "gold_passages" / "hau"
    row = {"answer_pivot": {"answer_start": [0], "text": ["x"]}, "id": "0", "answer_lang": "x"}
    _write(gold / "gold_span_passages.afriqa.hau.en.train.json", _jsonl([
        row | {"question_lang": "Wace shekara?", "question_translated": "Which year?", "context": "Harris p1",
               "title": "Kamala Harris"},
        row | {"question_lang": "Menene?", "question_translated": "What?", "context": "Harris p2",
               "title": "Kamala Harris"}]))
    _write(gold / "gold_span_passages.afriqa.hau.en.test.json", _jsonl([
        row | {"question_lang": "Babu?", "question_translated": "None?", "context": "None", "title": "None"},
        row | {"question_lang": "NaN?", "question_translated": "NaN?", "context": float("nan"), "title": "X"}]))
    _write(gold.parent / "fon" / "gold_span_passages.afriqa.fon.fr.dev.json", _jsonl([
        row | {"question_lang": "Mɛ?", "question_translated": "Qui?", "context": "passage fr", "title": "T"}]))
    queries = root / "data" / "queries" / "wol"
    _write(queries / "queries.afriqa.wol.fr.train.json", _jsonl([
        {"id": 0, "question": "Kan?", "translated_question": "Quand?", "answers": "['x']", "lang": "wol"}]))


def test_afriqa_cross_lingual_questions_per_language(train_root):
    root = train_root / "afriqa"
    _afriqa(root)
    out = _by_name(load_adapter("afriqa", root, negatives=3))
    assert list(out) == ["afriqa-fon-fr", "afriqa-hau-en"]
    assert [(r.query, r.positives, r.negatives, r.prefix) for r in out["afriqa-hau-en"]] == [
        ("Wace shekara?", ("Harris p1",), ("Harris p2",), QA), ("Menene?", ("Harris p2",), ("Harris p1",), QA)]
    tr = _by_name(load_adapter("afriqa", root, question="translated", languages=["hau"]))
    assert [r.query for r in tr["afriqa-hau-en-translated"]] == ["Which year?", "What?"]
    with pytest.raises(ValueError, match="question must be one of original, translated"):
        load_adapter("afriqa", root, question="english")
    (bt,) = load_adapter("afriqa-bitext", root)
    assert bt.name == "afriqa-bitext-wol-fr" and bt.records[0].positives == ("Quand?",)
    assert bt.records[0].prefix == BITEXT


def test_covid_faq_papers_and_question_pairs(train_root):
    data = train_root / "deepset-covid-qa" / "data"
    head = "question\tanswer\tanswer_html\tlink\tname\tsource\tcategory\tcountry\tregion\tcity\tlang\tlast_update\n"
    _write(data / "faqs" / "faq_200327.tsv", head + "".join(
        f"Frage {i}?\tAntwort {i}\t<p>\tl\tBMG\ts\tc\tDE\t\t\tde\t20\n" for i in range(3))
        + "Q en?\tA en\t<p>\tl\tCDC\ts\tc\tUS\t\t\ten\t20\n")
    _write(data / "faqs" / "faq_covidbert.csv", head.replace("\t", ",") + "Q en?,A en,<p>,l,CDC,s,c,US,,,en,20\n"
           + 'Q2 en?,"A2, en",<p>,l,CDC,s,c,US,,,en,20\n')
    _write(data / "faqs" / "MT_ar_faq_covidbert.csv", "," + head.replace("\t", ",").strip()
           + ",question_ar,answer_ar\n0,Q en?,A en,<p>,l,CDC,s,c,US,,,en,20,سؤال؟,جواب\n")
    out = _by_name(load_adapter("covid-faq", train_root / "deepset-covid-qa", negatives=5))
    assert list(out) == ["covid-faq-ar", "covid-faq-de", "covid-faq-en"]
    assert [(r.query, r.positives) for r in out["covid-faq-en"]] == [("Q en?", ("A en",)), ("Q2 en?", ("A2, en",))]
    de = out["covid-faq-de"][0]
    assert de.positives == ("Antwort 0",) and de.negatives == ("Antwort 1", "Antwort 2") and de.prefix == QA

    paper = "Title\n\nhttps://x\n\n" + " ".join(f"Sentence {i} about the virus is here." for i in range(60))
    start = paper.index("Sentence 50")
    squad = {"data": [{"paragraphs": [{"context": paper, "document_id": 1, "qas": [
        {"question": "What about 50?", "id": "1", "is_impossible": False,
         "answers": [{"text": "Sentence 50", "answer_start": start}]}]}]}]}
    _write(data / "question-answering" / "200423_covidQA.json", json.dumps(squad))
    (ds,) = load_adapter("covid-qa-papers", train_root / "deepset-covid-qa", max_chars=400, negatives=2)
    (rec,) = ds.records
    assert ds.name == "covid-papers-en" and "Sentence 50 about" in rec.positives[0] and len(rec.positives[0]) <= 400
    assert rec.positives[0].endswith(".") and len(rec.negatives) == 2  # cut after a sentence end
    assert all(len(n) >= 200 and "Sentence" in n for n in rec.negatives)  # title and url pieces are no negatives

    _write(data / "eval_question_similarity_en.csv",
           "question_1,question_2,similar\nWhat is it?,What is this?,1\nWhat is it?,Where to test?,0\nA?,B?,0\n")
    (qp,) = load_adapter("covid-question-pairs", train_root / "deepset-covid-qa")
    assert qp.name == "covid-questions-en" and [(r.query, r.positives, r.negatives, r.prefix) for r in qp.records] == [
        ("What is it?", ("What is this?",), ("Where to test?",), DUPLICATE_QUESTION)]  # no positive: dropped


def test_pubmedqa_question_to_abstract(train_root):
    root = train_root / "pubmedqa-l"
    _write(root / "ori_pqal.json", json.dumps({"1": {"QUESTION": "Do X?", "CONTEXTS": ["Background.", "Results."],
                                                     "LONG_ANSWER": "Yes.", "final_decision": "yes"}}))
    (ds,) = load_adapter("pubmedqa", root)
    assert ds.name == "pubmedqa-en" and ds.records[0].positives == ("Background. Results. Yes.",)


def test_parallel_sets_non_english_to_english(train_root, tmp_path):
    tico = train_root / "tico19" / "testsets"
    _write(tico / "en-fr" / "tico19-test.fr", "Bonjour\nMerci\nBonjour\n")
    _write(tico / "en-fr" / "tico19-test.en", "Hello\nThanks\nHi\n")
    _write(tico / "en-es_LA" / "tico19-test.es_LA", "Hola\n")
    _write(tico / "en-es_LA" / "tico19-test.en", "Hello\n")
    out = _by_name(load_adapter("tico19", train_root / "tico19"))
    assert list(out) == ["tico19-es_LA-en", "tico19-fr-en"]
    assert [(r.query, r.positives, r.prefix) for r in out["tico19-fr-en"]] == [
        ("Bonjour", ("Hello", "Hi"), BITEXT), ("Merci", ("Thanks",), BITEXT)]  # a repeated sentence: one record
    for d in ("devset", "testset"):
        for lang in ("ar", "en", "es", "fr", "ru", "zh"):
            _write(train_root / "un" / "testsets" / d / f"UNv1.0.{d}.{lang}", f"{d} {lang}\n")
    out = _by_name(load_adapter("un-parallel", train_root / "un", languages=["ar", "zh"]))
    assert {k: [(r.query, r.positives) for r in v] for k, v in out.items()} == {
        "un-ar-en": [("devset ar", ("devset en",)), ("testset ar", ("testset en",))],
        "un-zh-en": [("devset zh", ("devset en",)), ("testset zh", ("testset en",))]}
    assert list(_by_name(load_adapter("un-parallel", train_root / "un", pivot="fr"))) == [
        "un-ar-fr", "un-en-fr", "un-es-fr", "un-ru-fr", "un-zh-fr"]
    wmt = train_root / "wmt-newstest-2008-2015-fr-es-hi"
    _write(wmt / "fra-eng" / "news-test2008.fra", "Un\nDeux\n")
    _write(wmt / "fra-eng" / "news-test2008.eng", "One\nTwo\n")
    (ds,) = load_adapter("wmt-news-2008-2015", wmt, paragraph=2)
    assert ds.name == "wmt08-15-fra-eng-p2" and ds.records[0].query == "Un Deux"
    ro = train_root / "ro-sts-train" / "dataset" / "ro-en"
    _write(ro / "RO-STS.train.ro", "Un avion.\n")
    _write(ro / "RO-STS.train.en", "A plane.\n")
    (ds,) = load_adapter("ro-sts-parallel", train_root / "ro-sts-train")
    assert ds.name == "ro-sts-ro-en" and ds.records[0].positives == ("A plane.",)
    outside = tmp_path / "elsewhere" / "tico19" / "testsets" / "en-fr"  # the same files outside data/train
    _write(outside / "tico19-test.fr", "Bonjour\n")
    _write(outside / "tico19-test.en", "Hello\n")
    with pytest.raises(ValueError, match="evaluation data"):
        load_adapter("tico19", outside.parents[1])


def test_sts_train_and_nli_pairs(train_root):
    _write(train_root / "ro-sts-train" / "dataset" / "text-similarity" / "RO-STS.train.tsv",
           "5.0\tUn avion.\tUn avion zboară.\n1.0\tUn om.\tO pisică.\n")
    (ro,) = load_adapter("ro-sts", train_root / "ro-sts-train")
    assert ro.name == "ro-sts-ro" and [(r.query, r.positives, r.prefix) for r in ro.records] == [
        ("Un avion.", ("Un avion zboară.",), STS)]
    assert len(load_adapter("ro-sts", train_root / "ro-sts-train", min_score=0.5)[0]) == 2
    jglue = train_root / "jglue-ja"
    _write(jglue / "jsts-v1.3" / "train-v1.3.json", _jsonl([{"sentence1": "猫", "sentence2": "ねこ", "label": 4.4},
                                                            {"sentence1": "犬", "sentence2": "車", "label": 0.0}]))
    _write(jglue / "jsts-v1.3" / "valid-v1.3.json", _jsonl([{"sentence1": "評価", "sentence2": "評価", "label": 5.0}]))
    (js,) = load_adapter("jsts", jglue)
    assert js.name == "jsts-ja" and [r.query for r in js.records] == ["猫"]  # train only
    _write(jglue / "jnli-v1.3" / "test-v1.3.json", _jsonl([
        {"sentence1": "p", "sentence2": "e", "label": "entailment"},
        {"sentence1": "p", "sentence2": "c", "label": "contradiction"},
        {"sentence1": "p", "sentence2": "n", "label": "neutral"},
        {"sentence1": "q", "sentence2": "c2", "label": "contradiction"}]))
    (jn,) = load_adapter("jnli", jglue)
    assert jn.name == "jnli-ja" and [(r.query, r.positives, r.negatives, r.prefix) for r in jn.records] == [
        ("p", ("e",), ("c",), STS)]
    _write(train_root / "klue-nli-dev" / "klue-nli-v1.1_dev.json", json.dumps([
        {"premise": "전제", "hypothesis": h, "gold_label": g}
        for h, g in (("함의", "entailment"), ("중립", "neutral"), ("모순", "contradiction"))], ensure_ascii=False))
    (kl,) = load_adapter("klue-nli", train_root / "klue-nli-dev")
    assert kl.name == "klue-nli-ko" and (kl.records[0].positives, kl.records[0].negatives) == (("함의",), ("모순",))


def test_search_mode_recipes_score_exactly_the_retrieval_adapters_with_search_prompts():
    assert RETRIEVAL_ADAPTERS <= set(ADAPTERS)
    recipes = [config.load(p) for p in sorted(RECIPES.glob("*.yaml"))]
    search = [c for c in recipes if any(d.teacher_query_prompt for d in c.data.datasets)]
    assert len(search) >= 4  # stage 3, stage 5, stage 6, gpu
    for cfg in search:
        for d in cfg.data.datasets:
            prompts = (d.teacher_query_prompt, d.teacher_document_prompt)
            assert prompts == (SEARCH if d.adapter in RETRIEVAL_ADAPTERS else (None, None)), d


def test_stage6_recipe_uses_every_new_adapter():
    cfg = config.load(RECIPES / "distill-270m-cpu-stage6.yaml")
    used = {d.adapter for d in cfg.data.datasets}
    new = set(ADAPTERS) - {"wmt-newstest", "wmt-ict", "massive-parallel", "massive-intents", "stsb-multi-mt",
                           "scifact-train"}
    assert new <= used and all(d.path.startswith("/work/shared/data/") for d in cfg.data.datasets)


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared data not on this machine")
def test_real_shared_train_folder():
    train = SHARED / "train"
    counts = {}
    for name, folder, options in [
            ("arcd", "arcd", {}), ("cmrc2018", "cmrc2018", {}), ("drcd", "drcd", {}), ("piaf", "piaf-fr", {}),
            ("jsquad", "jglue-ja", {}), ("tydiqa-goldp", "tydiqa-goldp", {}), ("iapp-wiki-qa", "iapp-wiki-qa-th", {}),
            ("afriqa", "afriqa", {}), ("afriqa-bitext", "afriqa", {}), ("covid-faq", "deepset-covid-qa", {}),
            ("covid-qa-papers", "deepset-covid-qa", {}), ("covid-question-pairs", "deepset-covid-qa", {}),
            ("pubmedqa", "pubmedqa-l", {}), ("tico19", "tico19", {}), ("un-parallel", "un-parallel-testsets", {}),
            ("wmt-news-2008-2015", "wmt-newstest-2008-2015-fr-es-hi", {}), ("ro-sts-parallel", "ro-sts-train", {}),
            ("ro-sts", "ro-sts-train", {}), ("jsts", "jglue-ja", {}), ("jnli", "jglue-ja", {}),
            ("klue-nli", "klue-nli-dev", {})]:
        for ds in load_adapter(name, train / folder, **options):
            assert ds.name not in counts and all(r.positives and r.query for r in ds.records)
            assert len({r.query for r in ds.records}) == len(ds)  # each query once
            counts[ds.name] = len(ds)
    assert set(ADAPTERS) - RETRIEVAL_ADAPTERS - {"wmt-newstest", "massive-parallel", "massive-intents",
                                                  "stsb-multi-mt"} == {
        "tico19", "un-parallel", "wmt-news-2008-2015", "ro-sts-parallel", "afriqa-bitext", "ro-sts", "jsts", "jnli",
        "klue-nli", "covid-question-pairs"}  # every new adapter was loaded above
    expected_min = {"arcd-ar": 1300, "cmrc2018-zh": 4000, "drcd-zh-hant": 7000, "piaf-fr": 3800, "jsquad-ja": 8800,
                    "tydiqa-en": 3600, "tydiqa-ko": 1500, "tydiqa-sw": 2400, "iapp-th": 7000, "pubmedqa-en": 1000,
                    "covid-papers-en": 1300, "covid-faq-de": 390, "un-ar-en": 7800, "wmt08-15-fra-eng": 21000,
                    "wmt08-15-hin-eng": 2500, "ro-sts-ro-en": 10000, "ro-sts-ro": 1300, "jsts-ja": 1200,
                    "jnli-ja": 600, "klue-nli-ko": 1000, "covid-questions-de": 100}
    assert {k: counts[k] for k in expected_min if counts[k] < expected_min[k]} == {}
    assert len([k for k in counts if k.startswith("tico19-")]) == 38 and min(
        v for k, v in counts.items() if k.startswith("tico19-")) > 1900
    afriqa = [k for k in counts if k.startswith("afriqa-") and not k.startswith("afriqa-bitext")]
    assert len(afriqa) == 9 and min(counts[k] for k in afriqa) > 250  # wol has no gold passages
    assert len([k for k in counts if k.startswith("afriqa-bitext-")]) == 10
