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
# question -> passage (SQuAD-style QA, AfriQA, FAQs, PubMedQA): mteb's instruction for AlloprofReranking, the
# generic form of MIRACL's and RuBQ's; XQuADRetrieval has no instruction of its own in mteb
QA = instruction_prefix("Given a question, retrieve passages that answer the question", template=MTEB_TEMPLATE)
# question -> question with the same meaning: mteb's instruction for SprintDuplicateQuestions
DUPLICATE_QUESTION = instruction_prefix("Find questions that have the same meaning as the input question",
                                        template=MTEB_TEMPLATE)
EVAL_SETS = ("sib-200", "tatoeba", "xquad")
EVAL_SPLITS = ("test", "dev", "validation")
# A folder ``train`` directly inside a folder ``data`` (shared/data/train) holds training-only data: its files are
# splits of sources no evaluation uses, so split words in their names (dev, test) do not make them evaluation data.
TRAIN_FOLDER = ("data", "train")


def in_train_folder(path: Path) -> bool:
    """Whether ``path`` lies under a ``.../data/train/`` folder (after resolving ``..`` and symlinks)."""
    parts = [p.lower() for p in Path(path).resolve().parts]
    return any(tuple(parts[i:i + 2]) == TRAIN_FOLDER for i in range(len(parts) - 1))


def check_allowed(path: Path) -> None:
    """Refuse evaluation data sets everywhere, and test/dev split files outside a ``data/train/`` folder.

    Both the path as given and the file it resolves to are checked, so ``..`` or a symlink can neither hide an
    evaluation set's name nor move a file into ``data/train/``."""
    path = Path(path)
    training_only = in_train_folder(path)
    for p in (path, path.resolve()):
        parts = [x.lower() for x in p.parts]
        split_words = set(re.split(r"[-_.]", parts[-1])) if parts else set()
        bad = [s for s in EVAL_SETS if any(x.startswith(s) for x in parts)]
        if not training_only:
            bad += [w for w in EVAL_SPLITS if w in split_words]
        if bad:
            raise ValueError(f"{path} is evaluation data ({bad[0]}); harrier never trains on it")
