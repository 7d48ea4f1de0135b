"""The shared ``harrier serve`` client: batches to the server's limits, splits on 413, reports errors typed."""

from __future__ import annotations

import asyncio
import re

import httpx
import numpy as np
import pytest
from servekit import API_KEY, MAX_CLIENT_BATCH, PAYLOAD_LIMIT, cosine_rows

from harrier.integrations.remote import HarrierServerError, RemoteClient
from harrier.integrations.sides import connect
from harrier.prompts import Prompt


def _count(server, status: int) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    m = re.search(rf'harrier_requests_total{{route="/v1/embeddings",status="{status}"}} ([0-9.e+]+)', text)
    return float(m.group(1)) if m else 0.0


def test_batches_to_server_limits_and_splits_on_413(fw_server, fw_reference):
    """More texts than --max-client-batch-size, and a batch whose body is over --payload-limit: the client sends
    several requests, halves the one the server refuses with 413, and returns every vector in order."""
    texts = [f"document {i}: " + "lorem ipsum dolor sit amet " * (120 + i % 7) for i in range(2 * MAX_CLIENT_BATCH + 5)]
    body_bytes = sum(len(t) for t in texts[:MAX_CLIENT_BATCH])
    assert body_bytes > PAYLOAD_LIMIT  # one full batch is over the server's body limit
    client = RemoteClient(fw_server.url, api_key=API_KEY, max_request_bytes=10**9)
    ok0, big0 = _count(fw_server, 200), _count(fw_server, 413)
    got = client.embed(texts, "document")
    assert _count(fw_server, 413) - big0 >= 1
    assert _count(fw_server, 200) - ok0 >= 4
    assert cosine_rows(got, fw_reference.encode(texts)).min() >= 0.99999
    again = asyncio.run(RemoteClient(fw_server.url, api_key=API_KEY, max_request_bytes=20_000).aembed(texts, "query"))
    assert cosine_rows(again, fw_reference.encode(texts, prompt_name="web_search_query")).min() >= 0.99999


def test_prompt_fields_follow_the_servers_prompts():
    harrier_like = RemoteClient("http://127.0.0.1:1")
    harrier_like._info = {"prompts": {"web_search_query": "Instruct: ...", "sts_query": "..."}}
    assert harrier_like.prompt_fields("query") == {"prompt_name": "web_search_query"}
    assert harrier_like.prompt_fields("document") == {"prompt_name": ""}  # raw even with --default-prompt-name
    gemma_like = RemoteClient("http://127.0.0.1:1", query=Prompt(task="ArguAna"))
    gemma_like._info = {"prompts": {"query": "task: search result | query: ", "document": "title: none | text: "}}
    assert gemma_like.prompt_fields("query") == {"task": "ArguAna"}
    assert gemma_like.prompt_fields("document") == {"prompt_name": "document"}


def test_server_errors_are_typed(fw_server):
    with pytest.raises(HarrierServerError, match="401: missing or wrong API key") as err:
        RemoteClient(fw_server.url, api_key="wrong").embed(["a"], "query")
    assert err.value.status == 401
    with pytest.raises(HarrierServerError, match="unknown prompt name 'web_serch_query'"):
        RemoteClient(fw_server.url, api_key=API_KEY, query=Prompt(prompt_name="web_serch_query")).embed(["a"], "query")
    with pytest.raises(HarrierServerError, match="404: model 'other' is not served here"):
        RemoteClient(fw_server.url, api_key=API_KEY, model="other").embed(["a"], "document")


def test_bad_arguments_are_value_errors(fw_server, fw_reference):
    with pytest.raises(ValueError, match="exactly one of model"):
        connect(fw_reference, url=fw_server.url)
    with pytest.raises(ValueError, match="exactly one of model"):
        connect()
    with pytest.raises(ValueError, match="http"):
        connect(url="127.0.0.1:8000")
    with pytest.raises(ValueError, match="at most one of prompt_name, instruction, task"):
        connect(url=fw_server.url, prompt_name="sts_query", task="ArguAna")
    with pytest.raises(ValueError, match="at most one of"):
        connect(fw_reference, prompt_name="sts_query", task="ArguAna")
    with pytest.raises(ValueError, match="unknown prompt name 'nope'"):
        connect(fw_reference, prompt_name="nope")
    with pytest.raises(ValueError, match="api_key and served_model go with url"):
        connect(fw_reference, api_key="k")
    with pytest.raises(ValueError, match="text #1 is empty"):
        connect(url=fw_server.url, api_key=API_KEY).embed(["a", ""], "document")


def test_empty_list_gives_no_rows(fw_server, fw_reference):
    got = connect(url=fw_server.url, api_key=API_KEY).embed([], "document")
    assert got.shape == (0, fw_reference.dim) and got.dtype == np.float32


REAL_CLIENTS = httpx.Client, httpx.AsyncClient


def _fake_server(monkeypatch, answers: list[int], dim: int = 4):
    """httpx clients whose transport answers /info, then each embeddings request with the next status of
    ``answers`` (200: one base64 vector per input, its index as value)."""
    import base64
    import json

    calls: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/info":
            return httpx.Response(200, json={"prompts": {}, "max_client_batch_size": 8, "dim": dim})
        n = len(json.loads(request.content)["input"])
        status = answers[len(calls)] if len(calls) < len(answers) else 200
        calls.append(n)
        if status != 200:
            return httpx.Response(status, json={"error": {"message": f"status {status}"}},
                                  headers={"retry-after": "0.01"})
        data = [{"index": i, "embedding": base64.b64encode(np.full(dim, i, "<f4").tobytes()).decode()}
                for i in range(n)]
        return httpx.Response(200, json={"data": data})

    transport = httpx.MockTransport(handle)
    real_client, real_async = REAL_CLIENTS
    monkeypatch.setattr(httpx, "Client", lambda **kw: real_client(transport=transport, **kw))
    monkeypatch.setattr(httpx, "AsyncClient", lambda **kw: real_async(transport=transport, **kw))
    monkeypatch.setattr(httpx, "get", lambda url, **kw: real_client(transport=transport).get(url, **kw))
    return calls


def test_429_is_retried_then_reported(monkeypatch):
    calls = _fake_server(monkeypatch, [429, 429])
    got = RemoteClient("http://harrier.test", retries=2).embed(["a", "b", "c"], "document")
    assert calls == [3, 3, 3] and got[:, 0].tolist() == [0, 1, 2]
    calls = _fake_server(monkeypatch, [429] * 10)
    with pytest.raises(HarrierServerError, match="429: status 429"):
        RemoteClient("http://harrier.test", retries=2).embed(["a"], "document")
    assert len(calls) == 3
    calls = _fake_server(monkeypatch, [429, 200])
    got = asyncio.run(RemoteClient("http://harrier.test", retries=1).aembed(list("abcdefghij"), "query"))
    assert sorted(calls) == [2, 8, 8] and got.shape == (10, 4)  # 8 = the server's batch limit, then the rest


def test_413_on_one_text_is_reported(monkeypatch):
    calls = _fake_server(monkeypatch, [413, 413, 413])
    with pytest.raises(HarrierServerError, match="413"):
        RemoteClient("http://harrier.test").embed(["a", "b"], "document")
    assert calls == [2, 1]  # halved once, then the single text's 413 is the answer
