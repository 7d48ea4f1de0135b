"""LangChain: ``HarrierEmbeddings``, a ``langchain_core.embeddings.Embeddings`` whose ``embed_query`` carries the
query prompt and ``embed_documents`` does not (sync and async).

    from harrier.integrations.langchain import HarrierEmbeddings
    emb = HarrierEmbeddings("microsoft/harrier-oss-v1-270m")            # in process
    emb = HarrierEmbeddings(url="http://127.0.0.1:8000", api_key=KEY)    # a harrier serve
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harrier.extras import require
from harrier.integrations.sides import connect, rows

if TYPE_CHECKING:
    from harrier import Embedder

Embeddings = require("langchain_core.embeddings", "langchain", "harrier.integrations.langchain").Embeddings


class HarrierEmbeddings(Embeddings):
    """Queries with the query prompt (``prompt_name``, ``instruction`` or ``task``; none given: ``web_search_query``
    on harrier checkpoints, else the card's ``query`` prompt), documents raw (or the card's document prompt).

    ``model``: an ``Embedder``, or a hub id / path to load; or ``url`` of ``harrier serve`` with ``api_key`` and
    ``served_model`` (the served name, None: whatever it serves).
    """

    def __init__(self, model: Embedder | str | None = None, *, url: str | None = None, api_key: str | None = None,
                 served_model: str | None = None, prompt_name: str | None = None, instruction: str | None = None,
                 task: str | None = None, timeout: float = 120.0) -> None:
        self.sides = connect(model, url=url, api_key=api_key, served_model=served_model, prompt_name=prompt_name,
                             instruction=instruction, task=task, timeout=timeout)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return rows(self.sides.embed(list(texts), "document"))

    def embed_query(self, text: str) -> list[float]:
        return rows(self.sides.embed([text], "query"))[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return rows(await self.sides.aembed(list(texts), "document"))

    async def aembed_query(self, text: str) -> list[float]:
        return rows(await self.sides.aembed([text], "query"))[0]
