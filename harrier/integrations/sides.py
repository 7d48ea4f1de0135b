"""What every framework integration embeds through: queries and documents kept apart, in process or remote.

``connect(...)`` returns a :class:`Sides`: an in-process :class:`~harrier.Embedder` (``model=``: the object, or a
name or path to load) or a ``harrier serve`` URL (``url=``). Queries get the query prompt (``prompt_name``,
``instruction`` or ``task``; none given: ``web_search_query`` on harrier checkpoints, else the card's ``query``
prompt), documents the card's document prompt if any, else none: the rule of ``Embedder.encode_query`` /
``encode_document`` and :func:`harrier.prompts.side_prompt_name`, on both paths.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Protocol

import numpy as np

from harrier.integrations.remote import RemoteClient
from harrier.prompts import Prompt, Side

if TYPE_CHECKING:
    from harrier import Embedder


class Sides(Protocol):
    """Embed texts as queries or as documents: [N, dim] float32. ``source``: what to call the model in a
    framework's settings (the checkpoint's source, or the served name / URL)."""

    source: str

    def embed(self, texts: list[str], side: Side) -> np.ndarray: ...

    async def aembed(self, texts: list[str], side: Side) -> np.ndarray: ...


class LocalSides:
    """An in-process ``Embedder``; one call at a time (the async methods run it on a worker thread)."""

    def __init__(self, embedder: Embedder, query: Prompt) -> None:
        self.embedder = embedder
        self.query = query
        self.source = embedder.card.source
        self._lock = threading.Lock()
        embedder.prefix(prompt_name=query.prompt_name, prompt=query.prompt, instruction=query.instruction,
                        task=query.task)  # an unknown prompt name or task fails here, not at the first query

    def embed(self, texts: list[str], side: Side) -> np.ndarray:
        with self._lock:
            if side == "query":
                q = self.query
                return self.embedder.encode_query(texts, prompt_name=q.prompt_name, prompt=q.prompt,
                                                  instruction=q.instruction, task=q.task)
            return self.embedder.encode_document(texts)

    async def aembed(self, texts: list[str], side: Side) -> np.ndarray:
        return await asyncio.to_thread(self.embed, texts, side)


def connect(model: Embedder | str | None = None, *, url: str | None = None, api_key: str | None = None,
            served_model: str | None = None, prompt_name: str | None = None, instruction: str | None = None,
            task: str | None = None, timeout: float = 120.0) -> Sides:
    """Exactly one of ``model`` (an ``Embedder``, or a hub id / path loaded with ``Embedder.from_pretrained``'s
    defaults) and ``url`` (``harrier serve``; ``api_key`` and ``served_model`` go with it)."""
    from harrier import Embedder

    if (model is None) == (url is None):
        raise ValueError("give exactly one of model (an Embedder, a name or a path) and url (a harrier server)")
    query = Prompt(prompt_name=prompt_name, instruction=instruction, task=task)
    if url is not None:
        return RemoteClient(url, api_key=api_key, model=served_model, query=query, timeout=timeout)
    if api_key is not None or served_model is not None:
        raise ValueError("api_key and served_model go with url=, not with an in-process model")
    if isinstance(model, str):
        model = Embedder.from_pretrained(model)
    if not isinstance(model, Embedder):
        raise ValueError(f"model must be an Embedder, a hub id or a path, got {type(model).__name__}")
    return LocalSides(model, query)


def rows(emb: np.ndarray) -> list[list[float]]:
    """Vectors as lists of Python floats (what LangChain, LlamaIndex and Haystack store)."""
    return np.asarray(emb, dtype=np.float32).tolist()

