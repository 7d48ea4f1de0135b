"""A small client of ``harrier serve`` for the framework integrations: ``POST /v1/embeddings`` with harrier's prompt
fields, in requests that fit the server's limits.

Limits: at most ``max_client_batch_size`` texts per request (from ``GET /info``) and at most ``max_request_bytes`` of
body (the server's ``--payload-limit`` is not published, so a 413 splits the request in two and retries, down to
one text); a 429 (queue full) is retried after ``Retry-After`` or a doubling pause, ``retries`` times. Vectors come
back as base64 float32, decoded exactly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from harrier.extras import require
from harrier.prompts import Prompt, Side, side_prompt_name

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 1_000_000


class HarrierServerError(RuntimeError):
    """``harrier serve`` answered with an error (``status``: the HTTP code; the message is the server's)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"harrier serve answered {status}: {message}")
        self.status = status


@dataclass
class RemoteClient:
    """``harrier serve`` at ``url`` (``http://host:port``, no ``/v1``). ``model``: the served model name to send
    (None: whatever the server serves). ``query``: the query prompt as a prompt name, instruction or task (none
    given: the rule of :func:`harrier.prompts.side_prompt_name` applied to the server's prompts)."""

    url: str
    api_key: str | None = None
    model: str | None = None
    query: Prompt = field(default_factory=Prompt)
    timeout: float = 120.0
    max_request_bytes: int = MAX_REQUEST_BYTES
    retries: int = 5
    concurrency: int = 4  # requests in flight at once from the async methods
    _info: dict | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must be an http(s) URL of a harrier server, got {self.url!r}")
        self.url = self.url.rstrip("/").removesuffix("/v1")
        if self.query.prompt is not None:
            raise ValueError("a literal prompt cannot be sent to harrier serve; give prompt_name, instruction or task")
        given = [k for k in ("prompt_name", "instruction", "task") if getattr(self.query, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of prompt_name, instruction, task (got {', '.join(given)})")
        if self.max_request_bytes < 1 or self.retries < 0 or self.concurrency < 1:
            raise ValueError("max_request_bytes and concurrency must be positive, retries >= 0")

    @property
    def source(self) -> str:
        return self.model or self.url

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def info(self) -> dict:
        """The server's ``GET /info`` (fetched once)."""
        if self._info is None:
            httpx = require("httpx", "client", "the harrier serve client")
            resp = httpx.get(f"{self.url}/info", headers=self.headers, timeout=self.timeout)
            self._info = _json_or_raise(resp)
        return self._info

    async def ainfo(self) -> dict:
        """``info`` without blocking the event loop."""
        if self._info is None:
            httpx = require("httpx", "client", "the harrier serve client")
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                self._info = _json_or_raise(await client.get(f"{self.url}/info", headers=self.headers))
        return self._info

    def prompt_fields(self, side: Side) -> dict[str, str]:
        """The request's prompt fields: the configured query prompt, else the server's side prompt, else
        ``prompt_name: ""`` (raw, even where the server has a ``--default-prompt-name``)."""
        if side == "query":
            given = {k: getattr(self.query, k) for k in ("prompt_name", "instruction", "task")}
            given = {k: v for k, v in given.items() if v is not None}
            if given:
                return given
        return {"prompt_name": side_prompt_name(self.info().get("prompts") or {}, side) or ""}

    def embed(self, texts: list[str], side: Side) -> np.ndarray:
        """[len(texts), dim] float32, queries with the query prompt, documents with the document one (or raw)."""
        httpx = require("httpx", "client", "the harrier serve client")
        texts = _check(texts)
        info = self.info()
        fields = self.prompt_fields(side)
        out = []
        with httpx.Client(timeout=self.timeout, headers=self.headers) as client:
            for chunk in self._chunks(texts, info):
                out.extend(self._post(client, chunk, fields))
        return _stack(out, info)

    async def aembed(self, texts: list[str], side: Side) -> np.ndarray:
        httpx = require("httpx", "client", "the harrier serve client")
        texts = _check(texts)
        info = await self.ainfo()
        fields = self.prompt_fields(side)
        gate = asyncio.Semaphore(self.concurrency)

        async def one(client, chunk: list[str]) -> list[np.ndarray]:
            async with gate:
                return await self._apost(client, chunk, fields)

        async with httpx.AsyncClient(timeout=self.timeout, headers=self.headers) as client:
            parts = await asyncio.gather(*(one(client, chunk) for chunk in self._chunks(texts, info)))
        return _stack([row for part in parts for row in part], info)

    def _chunks(self, texts: list[str], info: dict) -> Iterator[list[str]]:
        """Consecutive runs of texts within the server's batch size and ``max_request_bytes``."""
        limit = int(info.get("max_client_batch_size") or 32)
        chunk: list[str] = []
        size = 0
        for text in texts:
            n = len(json.dumps(text, ensure_ascii=False).encode()) + 1
            if chunk and (len(chunk) >= limit or size + n > self.max_request_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(text)
            size += n
        if chunk:
            yield chunk

    def _body(self, texts: list[str], fields: dict[str, str]) -> bytes:
        body = {"input": texts, "encoding_format": "base64", **fields}
        if self.model is not None:
            body["model"] = self.model
        return json.dumps(body, ensure_ascii=False).encode()

    def _post(self, client, texts: list[str], fields: dict[str, str]) -> list[np.ndarray]:
        for attempt in range(self.retries + 1):
            resp = client.post(f"{self.url}/v1/embeddings", content=self._body(texts, fields),
                               headers={"Content-Type": "application/json"})
            if resp.status_code == 413 and len(texts) > 1:
                half = len(texts) // 2
                return self._post(client, texts[:half], fields) + self._post(client, texts[half:], fields)
            if resp.status_code == 429 and attempt < self.retries:
                time.sleep(_pause(resp, attempt))
                continue
            return _vectors(_json_or_raise(resp), len(texts))
        raise AssertionError("unreachable")

    async def _apost(self, client, texts: list[str], fields: dict[str, str]) -> list[np.ndarray]:
        for attempt in range(self.retries + 1):
            resp = await client.post(f"{self.url}/v1/embeddings", content=self._body(texts, fields),
                                     headers={"Content-Type": "application/json"})
            if resp.status_code == 413 and len(texts) > 1:
                half = len(texts) // 2
                return (await self._apost(client, texts[:half], fields)) + \
                    (await self._apost(client, texts[half:], fields))
            if resp.status_code == 429 and attempt < self.retries:
                await asyncio.sleep(_pause(resp, attempt))
                continue
            return _vectors(_json_or_raise(resp), len(texts))
        raise AssertionError("unreachable")


def _check(texts: list[str]) -> list[str]:
    if isinstance(texts, str) or not hasattr(texts, "__iter__"):
        raise ValueError(f"texts must be a list of str, got {type(texts).__name__}")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"text #{i} is {type(text).__name__}, not str")
        if not text:
            raise ValueError(f"text #{i} is empty; harrier serve refuses empty strings")
    return texts


def _pause(resp, attempt: int) -> float:
    after = resp.headers.get("retry-after", "")
    return float(after) if after.replace(".", "", 1).isdigit() else 0.25 * 2**attempt


def _json_or_raise(resp) -> dict:
    if resp.status_code != 200:
        try:
            err = resp.json().get("error")
            message = err.get("message") if isinstance(err, dict) else str(err)
        except ValueError:
            message = resp.text[:500]
        raise HarrierServerError(resp.status_code, message)
    return resp.json()


def _vectors(body: dict, n: int) -> list[np.ndarray]:
    data = sorted(body["data"], key=lambda item: item["index"])
    assert len(data) == n, f"server returned {len(data)} vectors for {n} texts"
    return [np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4").astype(np.float32) for item in data]


def _stack(rows: list[np.ndarray], info: dict) -> np.ndarray:
    return np.stack(rows) if rows else np.zeros((0, int(info.get("dim") or 0)), dtype=np.float32)
