"""Adapters: public training corpora turned into records, one dataset per language (pair) for homogeneous batches.

Only training material is read: WMT newstest (not an MTEB set), MASSIVE utterances of the *train* partition,
STSb-multi-mt *train* pairs, SciFact *train* claims, and the training-only folder ``shared/data/train`` (QA, FAQ,
parallel, STS-train and NLI sets whose sources no evaluation uses). SIB-200, Tatoeba, XQuAD, every STS test split
and every test/dev split outside a ``data/train/`` folder are evaluation data; no adapter opens them
(``common.check_allowed``; ``test_adapters`` checks). Instructions use mteb's template (no trailing space) with the
task-type instruction the evaluation uses, so the training prefix is the one the model meets at evaluation time.

One module per corpus or format family (``newstest``, ``massive``, ``stsb``, ``scifact``, ``squad``, ``afriqa``,
``covidqa``, ``pubmedqa``, ``parallel``, ``pairs``; shared record shapes in ``shapes``); ``ADAPTERS`` is the
registry that a config's ``adapter:`` names. A new corpus is a module with a function
``(root, *, options) -> list[MemoryDataset]`` that calls ``check_allowed`` on every file it opens, and one line in
``ADAPTERS``.

``RETRIEVAL_ADAPTERS`` names the adapters whose records are asymmetric query -> passage retrieval: a distillation
scores them with the teacher's search prompts (the dataset entry's ``teacher_query_prompt`` /
``teacher_document_prompt``), the others (bitext, STS, NLI, intents, duplicate questions) with its similarity
prompt.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from pathlib import Path

from harrier.train.adapters.afriqa import afriqa, afriqa_bitext
from harrier.train.adapters.common import BITEXT, DUPLICATE_QUESTION, ICT, INTENT, QA, SCIFACT, STS, check_allowed
from harrier.train.adapters.covidqa import covid_faq, covid_qa_papers, covid_question_pairs
from harrier.train.adapters.massive import massive_intents, massive_parallel
from harrier.train.adapters.newstest import wmt_ict, wmt_newstest
from harrier.train.adapters.pairs import jnli, jsts, klue_nli, ro_sts
from harrier.train.adapters.parallel import ro_sts_parallel, tico19, un_parallel, wmt_news_2008_2015
from harrier.train.adapters.pubmedqa import pubmedqa
from harrier.train.adapters.scifact import scifact_train
from harrier.train.adapters.squad import arcd, cmrc2018, drcd, iapp_wiki_qa, jsquad, piaf, tydiqa_goldp
from harrier.train.adapters.stsb import stsb_multi_mt
from harrier.train.records import MemoryDataset

log = logging.getLogger(__name__)
__all__ = ["ADAPTERS", "BITEXT", "DUPLICATE_QUESTION", "ICT", "INTENT", "QA", "RETRIEVAL_ADAPTERS", "SCIFACT", "STS",
           "check_allowed", "load_adapter", "massive_intents", "massive_parallel", "scifact_train", "stsb_multi_mt",
           "wmt_ict", "wmt_newstest"]


ADAPTERS: dict[str, Callable[..., list[MemoryDataset]]] = {
    "wmt-newstest": wmt_newstest,
    "wmt-ict": wmt_ict,
    "massive-parallel": massive_parallel,
    "massive-intents": massive_intents,
    "stsb-multi-mt": stsb_multi_mt,
    "scifact-train": scifact_train,
    # shared/data/train: question -> passage
    "arcd": arcd,
    "cmrc2018": cmrc2018,
    "drcd": drcd,
    "piaf": piaf,
    "jsquad": jsquad,
    "tydiqa-goldp": tydiqa_goldp,
    "iapp-wiki-qa": iapp_wiki_qa,
    "afriqa": afriqa,
    "covid-faq": covid_faq,
    "covid-qa-papers": covid_qa_papers,
    "pubmedqa": pubmedqa,
    # shared/data/train: bitext
    "tico19": tico19,
    "un-parallel": un_parallel,
    "wmt-news-2008-2015": wmt_news_2008_2015,
    "ro-sts-parallel": ro_sts_parallel,
    "afriqa-bitext": afriqa_bitext,
    # shared/data/train: STS train pairs, NLI, duplicate questions
    "ro-sts": ro_sts,
    "jsts": jsts,
    "jnli": jnli,
    "klue-nli": klue_nli,
    "covid-question-pairs": covid_question_pairs,
}
RETRIEVAL_ADAPTERS = frozenset({"wmt-ict", "scifact-train", "arcd", "cmrc2018", "drcd", "piaf", "jsquad",
                                "tydiqa-goldp", "iapp-wiki-qa", "afriqa", "covid-faq", "covid-qa-papers", "pubmedqa"})


def load_adapter(name: str, path: str | Path, **options) -> list[MemoryDataset]:
    """The datasets of adapter ``name`` over ``path``; unknown names and options are a ValueError naming the known."""
    if name not in ADAPTERS:
        raise ValueError(f"unknown adapter {name!r}; known: {', '.join(ADAPTERS)}")
    check_allowed(Path(path))
    params = inspect.signature(ADAPTERS[name]).parameters.values()
    known = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"adapter {name!r}: unknown options {unknown}; known: {', '.join(known) or 'none'}")
    datasets = ADAPTERS[name](path, **options)
    log.info("adapter %s: %s", name, ", ".join(f"{d.name}={len(d)}" for d in datasets))
    return datasets
