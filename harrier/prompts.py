"""The one owner of instruction strings: named prompts, the card's template, and mteb's 131 task instructions.

Harrier models embed a query as ``prefix + text`` where the prefix carries a one-sentence task instruction;
documents are embedded raw. Two templates exist and they differ by one space, which changes last-token vectors:

- the model card (and the named prompts in ``config_sentence_transformers.json``):
  ``"Instruct: {instruction}\\nQuery: "`` (trailing space);
- mteb's evaluation (``mteb/models/model_implementations/harrier_models.py``):
  ``"Instruct: {instruction}\\nQuery:"`` (no trailing space), concatenated to the text as a plain prefix.

``instruction=`` uses the card's template, ``task=`` reproduces mteb's string exactly.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

CARD_TEMPLATE = "Instruct: {instruction}\nQuery: "
MTEB_TEMPLATE = "Instruct: {instruction}\nQuery:"
# The named prompts of the published harrier-oss-v1 checkpoints (config_sentence_transformers.json).
HARRIER_PROMPTS = {
    "web_search_query": CARD_TEMPLATE.format(
        instruction="Given a web search query, retrieve relevant passages that answer the query"),
    "sts_query": CARD_TEMPLATE.format(instruction="Retrieve semantically similar text"),
    "bitext_query": CARD_TEMPLATE.format(instruction="Retrieve parallel sentences"),
}


@cache
def task_instructions() -> dict[str, str]:
    """The 131 MTEB(Multilingual, v2) task instructions harrier was evaluated with, by mteb task name."""
    text = resources.files("harrier").joinpath("data/mteb_v2_task_instructions.json").read_text(encoding="utf-8")
    return dict(json.loads(text)["instructions"])


def close_matches(name: str, choices: list[str], n: int = 5) -> list[str]:
    """Names in ``choices`` that look like ``name`` (case-insensitive), best first."""
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    prefix_hits = [c for c in choices if c.lower().startswith(name.lower()[:4])] if len(name) >= 4 else []
    out = [lowered[h] for h in hits]
    return out + [c for c in prefix_hits if c not in out][: max(0, n - len(out))]


def unknown_name_error(kind: str, name: str, choices: list[str]) -> ValueError:
    """A ValueError for an unknown prompt/task name that lists close matches, and the valid names when they are few
    (or when nothing is close)."""
    matches = close_matches(name, choices)
    hints = ["did you mean " + ", ".join(repr(m) for m in matches) + "?"] if matches else []
    if not choices:
        hints.append("this model defines none")
    elif not matches or len(choices) <= 20:
        hints.append("known: " + ", ".join(sorted(choices)[:20]) + (" ..." if len(choices) > 20 else ""))
    return ValueError(f"unknown {kind} {name!r}; {' '.join(hints)}")


def task_instruction(task: str) -> str:
    """The instruction for one of the 131 MTEB(Multilingual, v2) tasks; unknown names list close matches."""
    table = task_instructions()
    if task not in table:
        raise unknown_name_error("task", task, list(table))
    return table[task]


def instruction_prefix(instruction: str, *, template: str = CARD_TEMPLATE) -> str:
    """The query prefix for a one-sentence instruction (card template unless told otherwise), verbatim: mteb keeps
    even trailing spaces some task instructions carry, and they change last-token vectors."""
    if not instruction.strip():
        raise ValueError("instruction is empty")
    return template.format(instruction=instruction)


def task_prefix(task: str) -> str:
    """The exact query prefix mteb uses for ``task`` with harrier models."""
    return instruction_prefix(task_instruction(task), template=MTEB_TEMPLATE)


# What a query gets when the caller names no prompt: harrier checkpoints' retrieval prompt, else the card's "query"
# (sentence-transformers' encode_query). Documents: sentence-transformers' encode_document candidates, in its order.
QUERY_PROMPT_NAMES = ("web_search_query", "query")
DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")
Side = Literal["query", "document"]
SIDES: tuple[Side, ...] = ("query", "document")


def side_prompt_name(prompts: Mapping[str, str], side: Side) -> str | None:
    """The named prompt a query (or a document) gets when the caller gives none, or None: no prefix. The
    checkpoint's ``default_prompt_name`` plays no part, as in sentence-transformers v5's encode_query/_document."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {', '.join(SIDES)}, got {side!r}")
    names = QUERY_PROMPT_NAMES if side == "query" else DOCUMENT_PROMPT_NAMES
    return next((name for name in names if name in prompts), None)


@dataclass(frozen=True, kw_only=True)
class PromptConfig:
    """Prompts a checkpoint declares in ``config_sentence_transformers.json``."""

    prompts: Mapping[str, str]
    default_prompt_name: str | None = None


def resolve_prefix(
    config: PromptConfig,
    *,
    prompt_name: str | None = None,
    prompt: str | None = None,
    instruction: str | None = None,
    task: str | None = None,
) -> str:
    """Choose the text prefix for one encode call. At most one source may be given.

    Priority when none is given: the checkpoint's ``default_prompt_name`` (as sentence-transformers does), else no
    prefix (documents are encoded raw).

    Args:
        config: the checkpoint's prompts.
        prompt_name: a key of ``config.prompts`` (e.g. ``web_search_query``).
        prompt: a literal prefix, used as is.
        instruction: a one-sentence task, formatted with the card template.
        task: an MTEB(Multilingual, v2) task name, formatted with mteb's template.

    Returns:
        The prefix ("" for none).
    """
    given = {k: v for k, v in dict(prompt_name=prompt_name, prompt=prompt, instruction=instruction, task=task).items()
             if v is not None}
    for key, value in given.items():
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a str, got {type(value).__name__}")
    if len(given) > 1:
        raise ValueError(f"give at most one of prompt_name, prompt, instruction, task (got {', '.join(given)})")
    if prompt is not None:
        return prompt
    if instruction is not None:
        return instruction_prefix(instruction)
    if task is not None:
        return task_prefix(task)
    name = prompt_name if prompt_name is not None else config.default_prompt_name
    if name is None:
        return ""
    if name not in config.prompts:
        raise unknown_name_error("prompt name", name, list(config.prompts))
    return config.prompts[name]


@dataclass(frozen=True, kw_only=True)
class Prompt:
    """One text's prompt, given one of the four ways ``encode`` takes (at most one set; none: no prefix, unless the
    checkpoint declares a default prompt name)."""

    prompt_name: str | None = None
    prompt: str | None = None
    instruction: str | None = None
    task: str | None = None

    def prefix(self, config: PromptConfig) -> str:
        return resolve_prefix(config, prompt_name=self.prompt_name, prompt=self.prompt, instruction=self.instruction,
                              task=self.task)


PromptSpec = Prompt | str | None  # a Prompt, a prompt name, or None (raw: documents)


def side_prefix(config: PromptConfig, side: Side, *, prompt_name: str | None = None, prompt: str | None = None,
                instruction: str | None = None, task: str | None = None) -> str:
    """The prefix of a query (or document) encode: the given prompt source if any (at most one), else
    ``side_prompt_name``'s prompt, else none."""
    if prompt_name is None and prompt is None and instruction is None and task is None:
        name = side_prompt_name(config.prompts, side)
        return config.prompts[name] if name is not None else ""
    return resolve_prefix(config, prompt_name=prompt_name, prompt=prompt, instruction=instruction, task=task)


def prefix_for(config: PromptConfig, spec: PromptSpec) -> str:
    """The prefix for one item's prompt: a prompt name, a :class:`Prompt`, or None (the checkpoint's default
    prompt if it declares one, else raw)."""
    if isinstance(spec, Prompt):
        return spec.prefix(config)
    if spec is None or isinstance(spec, str):
        return resolve_prefix(config, prompt_name=spec)
    raise ValueError(f"a prompt is a prompt name, a harrier.prompts.Prompt or None, not {type(spec).__name__}")
