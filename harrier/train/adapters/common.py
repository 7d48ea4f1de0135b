"""What every adapter shares: the guard that keeps evaluation data out of training, and the query instructions
(mteb's template, no trailing space, the task-type instruction the evaluation uses)."""

from __future__ import annotations

import re
from pathlib import Path

from harrier.prompts import MTEB_TEMPLATE, instruction_prefix

BITEXT = instruction_prefix("Retrieve parallel sentences", template=MTEB_TEMPLATE)
STS = instruction_prefix("Retrieve semantically similar text", template=MTEB_TEMPLATE)
INTENT = instruction_prefix("Given a user utterance as query, find the user intents", template=MTEB_TEMPLATE)
SCIFACT = instruction_prefix("Given a scientific claim, retrieve documents that support or refute the claim",
                             template=MTEB_TEMPLATE)
ICT = instruction_prefix("Given a sentence, retrieve the passage it was taken from", template=MTEB_TEMPLATE)
EVAL_SETS = ("sib-200", "tatoeba", "xquad")
EVAL_SPLITS = ("test", "dev", "validation")


def check_allowed(path: Path) -> None:
    """Refuse evaluation data sets and test/dev split files."""
    parts = [p.lower() for p in path.parts]
    split_words = set(re.split(r"[-_.]", parts[-1])) if parts else set()
    bad = [s for s in EVAL_SETS if any(p.startswith(s) for p in parts)] + [w for w in EVAL_SPLITS if w in split_words]
    if bad:
        raise ValueError(f"{path} is evaluation data ({bad[0]}); harrier never trains on it")
