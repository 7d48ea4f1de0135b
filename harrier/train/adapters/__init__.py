"""Adapters: public training corpora turned into records, one dataset per language (pair) for homogeneous batches.

Only training material is read: WMT newstest (not an MTEB set), MASSIVE utterances of the *train* partition,
STSb-multi-mt *train* pairs, SciFact *train* claims. SIB-200, Tatoeba, XQuAD, every STS test split and every
test/dev split are evaluation data; no adapter opens them (``common.check_allowed``; ``test_adapters`` checks).
Instructions use mteb's template (no trailing space) with the task-type instruction the evaluation uses, so the
training prefix is the one the model meets at evaluation time.

One module per corpus (``newstest``, ``massive``, ``stsb``, ``scifact``); ``ADAPTERS`` is the registry that a
config's ``adapter:`` names. A new corpus is a module with a function ``(root, *, options) -> list[MemoryDataset]``
that calls ``check_allowed`` on every file it opens, and one line in ``ADAPTERS``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from pathlib import Path

from harrier.train.adapters.common import BITEXT, ICT, INTENT, SCIFACT, STS, check_allowed
from harrier.train.adapters.massive import massive_intents, massive_parallel
from harrier.train.adapters.newstest import wmt_ict, wmt_newstest
from harrier.train.adapters.scifact import scifact_train
from harrier.train.adapters.stsb import stsb_multi_mt
from harrier.train.records import MemoryDataset

log = logging.getLogger(__name__)
__all__ = ["ADAPTERS", "BITEXT", "ICT", "INTENT", "SCIFACT", "STS", "check_allowed", "load_adapter",
           "massive_intents", "massive_parallel", "scifact_train", "stsb_multi_mt", "wmt_ict", "wmt_newstest"]


ADAPTERS: dict[str, Callable[..., list[MemoryDataset]]] = {
    "wmt-newstest": wmt_newstest,
    "wmt-ict": wmt_ict,
    "massive-parallel": massive_parallel,
    "massive-intents": massive_intents,
    "stsb-multi-mt": stsb_multi_mt,
    "scifact-train": scifact_train,
}


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
