"""Haystack 2: ``HarrierTextEmbedder`` (a query: the query prompt) and ``HarrierDocumentEmbedder`` (documents:
raw), components with ``run`` / ``run_async``, ``warm_up`` and ``to_dict`` / ``from_dict``.

    from harrier.integrations.haystack import HarrierDocumentEmbedder, HarrierTextEmbedder
    docs = HarrierDocumentEmbedder(url="http://127.0.0.1:8000", api_key=Secret.from_env_var("HARRIER_API_KEY"))
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from harrier.extras import require
from harrier.integrations.sides import connect, rows

if TYPE_CHECKING:
    from harrier import Embedder

haystack = require("haystack", "haystack", "harrier.integrations.haystack")
_auth = require("haystack.utils.auth", "haystack", "harrier.integrations.haystack")
component, Document = haystack.component, haystack.Document
Secret = _auth.Secret


class _Connection:
    """The init parameters both components share, their serialisation, and the lazily made connection."""

    def __init__(self, model: Embedder | str | None, url: str | None, api_key: Any, served_model: str | None,
                 prompt_name: str | None, instruction: str | None, task: str | None, timeout: float) -> None:
        if api_key is not None and not isinstance(api_key, Secret):
            raise ValueError("api_key must be a haystack Secret (Secret.from_env_var(...) or Secret.from_token(...))")
        self.params = dict(url=url, served_model=served_model, prompt_name=prompt_name, instruction=instruction,
                           task=task, timeout=timeout)
        self.model, self.api_key = model, api_key
        self.sides = None
        if (model is None) == (url is None):
            raise ValueError("give exactly one of model (an Embedder, a name or a path) and url (a harrier server)")
        if url is not None:  # no request is made: a bad URL or prompt combination fails here, not at run
            connect(url=url, prompt_name=prompt_name, instruction=instruction, task=task)

    def warm_up(self) -> None:
        if self.sides is None:
            key = self.api_key.resolve_value() if self.api_key is not None else None
            self.sides = connect(self.model, api_key=key, **self.params)

    def init_parameters(self) -> dict[str, Any]:
        """Serialisable: an ``Embedder`` object is stored as its source (reloaded with the default options)."""
        model = self.model if isinstance(self.model, str) or self.model is None else self.model.card.source
        return dict(model=model, api_key=self.api_key.to_dict() if self.api_key is not None else None, **self.params)


def _from_dict(cls, data: dict[str, Any]):
    _auth.deserialize_secrets_inplace(data["init_parameters"], keys=["api_key"])
    return haystack.default_from_dict(cls, data)


@component
class HarrierTextEmbedder:
    """Embeds one query string with the query prompt (``prompt_name``, ``instruction`` or ``task``; none given:
    ``web_search_query`` on harrier checkpoints, else the card's ``query`` prompt). ``model`` (an ``Embedder``, a
    hub id or a path) or ``url`` of ``harrier serve`` (``api_key``: a Haystack ``Secret``)."""

    def __init__(self, model: Embedder | str | None = None, *, url: str | None = None, api_key: Any = None,
                 served_model: str | None = None, prompt_name: str | None = None, instruction: str | None = None,
                 task: str | None = None, timeout: float = 120.0) -> None:
        self._conn = _Connection(model, url, api_key, served_model, prompt_name, instruction, task, timeout)

    def warm_up(self) -> None:
        self._conn.warm_up()

    def to_dict(self) -> dict[str, Any]:
        return haystack.default_to_dict(self, **self._conn.init_parameters())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HarrierTextEmbedder:
        return _from_dict(cls, data)

    @component.output_types(embedding=list[float], meta=dict[str, Any])
    def run(self, text: str) -> dict[str, Any]:
        if not isinstance(text, str):
            raise TypeError("HarrierTextEmbedder takes one string; use HarrierDocumentEmbedder for documents")
        self.warm_up()
        return {"embedding": rows(self._conn.sides.embed([text], "query"))[0],
                "meta": {"model": self._conn.sides.source}}

    @component.output_types(embedding=list[float], meta=dict[str, Any])
    async def run_async(self, text: str) -> dict[str, Any]:
        if not isinstance(text, str):
            raise TypeError("HarrierTextEmbedder takes one string; use HarrierDocumentEmbedder for documents")
        self.warm_up()
        return {"embedding": rows(await self._conn.sides.aembed([text], "query"))[0],
                "meta": {"model": self._conn.sides.source}}


@component
class HarrierDocumentEmbedder:
    """Embeds ``Document``s raw (or with the card's document prompt), ``meta_fields_to_embed`` joined before the
    content with ``embedding_separator``, as Haystack's own embedders do. Other arguments as
    :class:`HarrierTextEmbedder` (the query prompt is unused here but kept, so both can share one config)."""

    def __init__(self, model: Embedder | str | None = None, *, url: str | None = None, api_key: Any = None,
                 served_model: str | None = None, prompt_name: str | None = None, instruction: str | None = None,
                 task: str | None = None, timeout: float = 120.0, meta_fields_to_embed: list[str] | None = None,
                 embedding_separator: str = "\n") -> None:
        self._conn = _Connection(model, url, api_key, served_model, prompt_name, instruction, task, timeout)
        self.meta_fields_to_embed = list(meta_fields_to_embed or [])
        self.embedding_separator = embedding_separator

    def warm_up(self) -> None:
        self._conn.warm_up()

    def to_dict(self) -> dict[str, Any]:
        return haystack.default_to_dict(self, meta_fields_to_embed=self.meta_fields_to_embed,
                                        embedding_separator=self.embedding_separator,
                                        **self._conn.init_parameters())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HarrierDocumentEmbedder:
        return _from_dict(cls, data)

    def _texts(self, documents: list) -> list[str]:
        if not isinstance(documents, list) or any(not isinstance(d, Document) for d in documents):
            raise TypeError("HarrierDocumentEmbedder takes a list of Documents; use HarrierTextEmbedder for a query")
        texts = []
        for doc in documents:
            meta = [str(doc.meta[k]) for k in self.meta_fields_to_embed if doc.meta.get(k) is not None]
            texts.append(self.embedding_separator.join([*meta, doc.content or ""]))
        return texts

    def _result(self, documents: list, emb) -> dict[str, Any]:
        return {"documents": [replace(doc, embedding=vec) for doc, vec in zip(documents, rows(emb), strict=True)],
                "meta": {"model": self._conn.sides.source}}

    @component.output_types(documents=list[Document], meta=dict[str, Any])
    def run(self, documents: list[Document]) -> dict[str, Any]:
        texts = self._texts(documents)
        self.warm_up()
        return self._result(documents, self._conn.sides.embed(texts, "document") if texts else [])

    @component.output_types(documents=list[Document], meta=dict[str, Any])
    async def run_async(self, documents: list[Document]) -> dict[str, Any]:
        texts = self._texts(documents)
        self.warm_up()
        return self._result(documents, await self._conn.sides.aembed(texts, "document") if texts else [])
