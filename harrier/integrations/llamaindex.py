"""LlamaIndex: ``HarrierEmbedding``, a ``BaseEmbedding`` whose query embeddings carry the query prompt and whose
text (node) embeddings do not.

    from llama_index.core import Settings
    from harrier.integrations.llamaindex import HarrierEmbedding
    Settings.embed_model = HarrierEmbedding(url="http://127.0.0.1:8000", api_key=KEY)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harrier.extras import require
from harrier.integrations.sides import connect, rows

if TYPE_CHECKING:
    from harrier import Embedder

_base = require("llama_index.core.base.embeddings.base", "llamaindex", "harrier.integrations.llamaindex")
PrivateAttr = require("pydantic", "llamaindex", "harrier.integrations.llamaindex").PrivateAttr


class HarrierEmbedding(_base.BaseEmbedding):
    """Arguments as :class:`harrier.integrations.langchain.HarrierEmbeddings`; ``embed_batch_size`` and the other
    ``BaseEmbedding`` fields pass through (the remote client splits further to the server's limits)."""

    _sides: Any = PrivateAttr()

    def __init__(self, model: Embedder | str | None = None, *, url: str | None = None, api_key: str | None = None,
                 served_model: str | None = None, prompt_name: str | None = None, instruction: str | None = None,
                 task: str | None = None, timeout: float = 120.0, embed_batch_size: int = 64, **kwargs: Any) -> None:
        sides = connect(model, url=url, api_key=api_key, served_model=served_model, prompt_name=prompt_name,
                        instruction=instruction, task=task, timeout=timeout)
        kwargs.setdefault("model_name", sides.source)
        super().__init__(embed_batch_size=embed_batch_size, **kwargs)
        self._sides = sides

    @classmethod
    def class_name(cls) -> str:
        return "HarrierEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return rows(self._sides.embed([query], "query"))[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return rows(await self._sides.aembed([query], "query"))[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return rows(self._sides.embed([text], "document"))[0]

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return rows(await self._sides.aembed([text], "document"))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return rows(self._sides.embed(list(texts), "document"))

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return rows(await self._sides.aembed(list(texts), "document"))
