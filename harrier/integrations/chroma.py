"""Chroma: ``HarrierEmbeddingFunction``, an ``EmbeddingFunction`` whose ``__call__`` embeds documents (raw) and
whose ``embed_query`` (what ``collection.query(query_texts=...)`` calls) adds the query prompt.

    from harrier.integrations.chroma import HarrierEmbeddingFunction
    ef = HarrierEmbeddingFunction(url="http://127.0.0.1:8000")           # the key from $HARRIER_API_KEY
    col = chromadb.Client().create_collection("docs", embedding_function=ef)

Registered under the name ``harrier``, so a persisted collection rebuilds it from ``get_config()`` (which stores
the name of the API key's environment variable, never the key).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from harrier.extras import require
from harrier.integrations.sides import connect

if TYPE_CHECKING:
    from harrier import Embedder

_types = require("chromadb.api.types", "chroma", "harrier.integrations.chroma")
_registry = require("chromadb.utils.embedding_functions", "chroma", "harrier.integrations.chroma")
CONFIG_KEYS = ("model", "url", "served_model", "prompt_name", "instruction", "task", "api_key_env_var", "timeout")


@_registry.register_embedding_function
class HarrierEmbeddingFunction(_types.EmbeddingFunction[_types.Documents]):
    """``model`` (an ``Embedder``, a hub id or a path) or ``url`` of ``harrier serve``; the key is ``api_key`` or
    else the environment variable ``api_key_env_var``. Query prompt: ``prompt_name``, ``instruction`` or ``task``
    (none given: ``web_search_query`` on harrier checkpoints, else the card's ``query`` prompt)."""

    def __init__(self, model: Embedder | str | None = None, *, url: str | None = None, api_key: str | None = None,
                 api_key_env_var: str = "HARRIER_API_KEY", served_model: str | None = None,
                 prompt_name: str | None = None, instruction: str | None = None, task: str | None = None,
                 timeout: float = 120.0) -> None:
        if url is not None and api_key is None:
            api_key = os.environ.get(api_key_env_var) or None
        self.sides = connect(model, url=url, api_key=api_key, served_model=served_model, prompt_name=prompt_name,
                             instruction=instruction, task=task, timeout=timeout)
        source = model if isinstance(model, str) or model is None else model.card.source
        self.config = dict(model=source, url=url, served_model=served_model, prompt_name=prompt_name,
                           instruction=instruction, task=task, api_key_env_var=api_key_env_var, timeout=timeout)

    def __call__(self, input: Any) -> Any:
        return list(self.sides.embed(_texts(input), "document"))

    def embed_query(self, input: Any) -> Any:
        return list(self.sides.embed(_texts(input), "query"))

    @staticmethod
    def name() -> str:
        return "harrier"

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine", "ip", "l2"]

    def get_config(self) -> dict[str, Any]:
        return dict(self.config)

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> HarrierEmbeddingFunction:
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(f"unknown harrier embedding function config key(s): {', '.join(unknown)}")
        return HarrierEmbeddingFunction(**config)


def _texts(input: Any) -> list[str]:
    if isinstance(input, str):
        return [input]
    if isinstance(input, np.ndarray) or not isinstance(input, list | tuple):
        raise ValueError(f"HarrierEmbeddingFunction embeds text (a list of str), got {type(input).__name__}")
    return list(input)
