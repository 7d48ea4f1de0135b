"""The batcher behind real HTTP (uvicorn in a thread), with a model whose forward waits on a gate: queue bound
(429/413), dropped work of disconnected clients, several requests and prompts in one batch, requests spanning
batches, 503 while loading, a failed forward failing only its requests."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
import uvicorn
from servekit import TEXTS, cosine_rows, free_port

from harrier.serve import app
from harrier.serve.runtime import EmbedderRuntime


class GatedRuntime:
    """The real runtime, but each forward records its sequences and waits until the test opens the gate."""

    def __init__(self, inner: EmbedderRuntime) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.forwarding = threading.Event()
        self.batches: list[list[tuple[int, ...]]] = []
        self.fail_next = False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def embed(self, ids, prompt_lens, prefix_lens):
        self.batches.append([tuple(x) for x in ids])
        self.forwarding.set()
        assert self.gate.wait(30), "test never opened the gate"
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("simulated device error")
        return self.inner.embed(ids, prompt_lens, prefix_lens)


@contextmanager
def serving(application):
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture()
def gated(reference):
    return GatedRuntime(EmbedderRuntime(reference, "tiny"))


def _post(url, route, body, timeout=30.0):
    return httpx.post(f"{url}{route}", json=body, timeout=timeout)


def _wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def _queued(url) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("harrier_queue_tokens "):
            return float(line.split()[1])
    raise AssertionError("no queue gauge")


def _vectors(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array([d["embedding"] for d in response.json()["data"]])


def test_queue_bound_429_then_recovers(gated, reference):
    a_text, b_texts = TEXTS[1], TEXTS[2:4]
    b_tokens = sum(len(x) for x in reference.tokenize(b_texts))
    application = app(model="unused", runtime=gated, max_queued_tokens=b_tokens + 10)
    with serving(application) as url, ThreadPoolExecutor(4) as pool:
        a = pool.submit(_post, url, "/v1/embeddings", {"input": [a_text]})
        assert gated.forwarding.wait(10)
        b = pool.submit(_post, url, "/v1/embeddings", {"input": b_texts})
        _wait(lambda: _queued(url) == b_tokens)
        r = _post(url, "/v1/embeddings", {"input": TEXTS[:2]})
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["type"] == "rate_limit_error" and "queue is full" in r.json()["error"]["message"]
        r = _post(url, "/embed", {"inputs": TEXTS[:2]})
        assert r.status_code == 429 and r.json()["error_type"] == "Overloaded"
        r = _post(url, "/v1/embeddings", {"input": [TEXTS[5]] * 3})
        assert r.status_code == 413 and "queue limit" in r.json()["error"]["message"]
        gated.gate.set()
        assert cosine_rows(_vectors(a.result()), reference.encode([a_text])).min() >= 0.99999
        assert cosine_rows(_vectors(b.result()), reference.encode(b_texts)).min() >= 0.99999
        assert _queued(url) == 0
        assert _vectors(_post(url, "/v1/embeddings", {"input": TEXTS[:2]})).shape == (2, 64)


def test_disconnected_client_work_is_dropped(gated, reference):
    application = app(model="unused", runtime=gated)
    dropped = ["only the impatient client sends this sentence"]
    dropped_ids = {tuple(x) for x in reference.tokenize(dropped)}
    with serving(application) as url, ThreadPoolExecutor(2) as pool:
        a = pool.submit(_post, url, "/v1/embeddings", {"input": [TEXTS[0]]})
        assert gated.forwarding.wait(10)
        with pytest.raises(httpx.ReadTimeout):
            _post(url, "/v1/embeddings", {"input": dropped}, timeout=1.0)
        _wait(lambda: _queued(url) == 0)  # the server saw the disconnect and released the tokens
        gated.gate.set()
        assert _vectors(a.result()).shape == (1, 64)
        assert _vectors(_post(url, "/v1/embeddings", {"input": [TEXTS[3]]})).shape == (1, 64)
    assert not any(seq in dropped_ids for batch in gated.batches for seq in batch)


def test_requests_and_prompts_share_a_batch(gated, reference):
    application = app(model="unused", runtime=gated, allow_token_ids=True)
    raw = [reference.tokenizer.tokenizer.encode(t, add_special_tokens=False).ids for t in TEXTS[4:]]
    bodies = [({"input": TEXTS[:3], "prompt_name": "web_search_query"}, reference.encode(TEXTS[:3],
                                                                                       prompt_name="web_search_query")),
              ({"input": TEXTS[3:5], "instruction": "Find it"}, reference.encode(TEXTS[3:5], instruction="Find it")),
              ({"input": raw}, reference.encode(TEXTS[4:]))]
    with serving(application) as url, ThreadPoolExecutor(4) as pool:
        first = pool.submit(_post, url, "/v1/embeddings", {"input": ["warm up"]})
        assert gated.forwarding.wait(10)
        futures = [pool.submit(_post, url, "/v1/embeddings", body) for body, _ in bodies]
        _wait(lambda: _queued(url) > 0 and len(gated.batches) == 1 and _all_queued(url, 7))
        gated.gate.set()
        for fut, (_, want) in zip(futures, bodies, strict=True):
            assert cosine_rows(_vectors(fut.result()), want).min() >= 0.99999
        assert first.result().status_code == 200
        metrics = httpx.get(f"{url}/metrics").text
    assert len(gated.batches) == 2 and len(gated.batches[1]) == 7  # three requests, three prompts, one forward
    assert "harrier_batch_requests_bucket{le=\"4.0\"} 2.0" in metrics


def _all_queued(url, n_texts) -> bool:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("harrier_request_inputs_sum "):
            return float(line.split()[1]) == 1 + n_texts
    return False


def test_one_request_spans_batches_in_order(gated, reference):
    gated.gate.set()
    application = app(model="unused", runtime=gated, max_batch_tokens=40)
    with serving(application) as url:
        got = _vectors(_post(url, "/v1/embeddings", {"input": TEXTS}))
    assert len(gated.batches) >= 3 and max(sum(map(len, b)) for b in gated.batches if len(b) > 1) <= 40
    assert cosine_rows(got, reference.encode(TEXTS)).min() >= 0.99999


def test_failed_forward_fails_its_request_only(gated, reference):
    gated.gate.set()
    gated.fail_next = True
    with serving(app(model="unused", runtime=gated)) as url:
        r = _post(url, "/v1/embeddings", {"input": TEXTS[:2]})
        assert r.status_code == 500 and "simulated device error" in r.json()["error"]["message"]
        assert cosine_rows(_vectors(_post(url, "/v1/embeddings", {"input": TEXTS[:2]})),
                           reference.encode(TEXTS[:2])).min() >= 0.99999


def test_503_while_loading_and_after_a_failed_load(gated):
    release = threading.Event()

    def slow_loader(config):
        assert release.wait(30)
        return gated

    gated.gate.set()
    with serving(app(model="unused", loader=slow_loader)) as url:
        r = httpx.get(f"{url}/health")
        assert r.status_code == 503 and r.json() == {"error": "model is loading", "error_type": "Unhealthy"}
        r = _post(url, "/v1/embeddings", {"input": "a"})
        assert r.status_code == 503 and r.json()["error"]["type"] == "service_unavailable"
        release.set()
        _wait(lambda: httpx.get(f"{url}/health").status_code == 200)
        assert _vectors(_post(url, "/v1/embeddings", {"input": "a"})).shape == (1, 64)

    errors = []

    def broken_loader(config):
        raise FileNotFoundError("no model at ./missing")

    with serving(app(model="./missing", loader=broken_loader, on_load_error=errors.append)) as url:
        _wait(lambda: bool(errors))
        r = httpx.get(f"{url}/health")
        assert r.status_code == 503 and "no model at ./missing" in r.json()["error"]
    assert errors == ["FileNotFoundError: no model at ./missing"]


def test_default_prompt_name_and_raw_override(gated, reference):
    gated.gate.set()
    with serving(app(model="unused", runtime=gated, default_prompt_name="sts_query")) as url:
        default = _vectors(_post(url, "/v1/embeddings", {"input": TEXTS[:3]}))
        raw = _vectors(_post(url, "/v1/embeddings", {"input": TEXTS[:3], "prompt_name": ""}))
        other = _vectors(_post(url, "/v1/embeddings", {"input": TEXTS[:3], "instruction": "Find it"}))
    assert cosine_rows(default, reference.encode(TEXTS[:3], prompt_name="sts_query")).min() >= 0.99999
    assert cosine_rows(raw, reference.encode(TEXTS[:3])).min() >= 0.99999
    assert cosine_rows(other, reference.encode(TEXTS[:3], instruction="Find it")).min() >= 0.99999


def test_unknown_default_prompt_name_fails_the_load(gated):
    errors = []
    with serving(app(model="unused", runtime=gated, default_prompt_name="web_serch_query",
                     on_load_error=errors.append)) as url:
        _wait(lambda: bool(errors))
        r = httpx.get(f"{url}/health")
    assert r.status_code == 503 and "did you mean 'web_search_query'" in r.json()["error"]


@pytest.mark.parametrize("private", [False, True])
def test_metrics_open_by_default_and_private_on_request(gated, private):
    """/health stays open for probes; /metrics is open like it unless --private-metrics, then it needs the key."""
    gated.gate.set()
    with serving(app(model="unused", runtime=gated, api_key="k3y", private_metrics=private)) as url:
        assert httpx.get(f"{url}/health").status_code == 200
        anonymous = httpx.get(f"{url}/metrics")
        keyed = httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer k3y"})
        assert keyed.status_code == 200 and "harrier_requests_total" in keyed.text
        if private:
            assert anonymous.status_code == 401 and anonymous.json()["error_type"] == "Unauthorized"
        else:
            assert anonymous.status_code == 200 and "harrier_requests_total" in anonymous.text


def test_graceful_timeout_answers_503_in_the_api_json(gated):
    """A request still running when --graceful-timeout ends gets a 503 JSON, not uvicorn's plain-text 500."""
    from concurrent.futures import ThreadPoolExecutor

    application = app(model="unused", runtime=gated)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, timeout_graceful_shutdown=0.5))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    try:
        with ThreadPoolExecutor(1) as pool:
            stuck = pool.submit(_post, url, "/v1/embeddings", {"input": ["stuck in the model"]})
            assert gated.forwarding.wait(10)
            application.state.harrier.draining = True  # what SIGTERM does (harrier.serve.cli)
            server.should_exit = True
            r = stuck.result(timeout=30)
    finally:
        gated.gate.set()
        thread.join(30)
    assert r.status_code == 503, r.text
    assert r.json()["error"]["type"] == "service_unavailable" and "graceful-timeout" in r.json()["error"]["message"]


class LayerGate:
    """Hooks on the real model's decoder layers: layer 0 waits for the test's gate, every layer counts its calls."""

    def __init__(self, embedder) -> None:
        self.gate = threading.Event()
        self.in_model = threading.Event()
        layers = embedder.model.backbone.layers
        self.calls = [0] * len(layers)
        self.handles = [layer.register_forward_pre_hook(self._hook(i)) for i, layer in enumerate(layers)]

    def _hook(self, i):
        def hook(module, args):
            self.calls[i] += 1
            if i == 0:
                self.in_model.set()
                assert self.gate.wait(30), "test never opened the gate"
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@pytest.fixture()
def layer_gate(reference):
    hooks = LayerGate(reference)
    yield hooks
    hooks.gate.set()
    hooks.remove()


def _metric(url, name) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_a_forward_whose_clients_all_left_stops_at_the_next_layer(layer_gate, reference):
    """The gone client's forward ends before layer 1 (the next client waits one layer, not a whole batch)."""
    application = app(model="unused", runtime=EmbedderRuntime(reference, "tiny"))
    n_layers = len(layer_gate.calls)
    assert n_layers >= 2
    with serving(application) as url:
        with pytest.raises(httpx.ReadTimeout):
            _post(url, "/v1/embeddings", {"input": TEXTS[:4]}, timeout=1.0)
        assert layer_gate.in_model.is_set()
        _wait(lambda: _metric(url, 'harrier_requests_total{route="/v1/embeddings",status="499"}') == 1)
        layer_gate.gate.set()
        _wait(lambda: _metric(url, "harrier_batches_abandoned_total") == 1)
        assert layer_gate.calls == [1] + [0] * (n_layers - 1)  # stopped before layer 1
        got = _vectors(_post(url, "/v1/embeddings", {"input": TEXTS[4:6]}))
        assert layer_gate.calls[1:] == [1] * (n_layers - 1)  # the next request ran every layer once
        assert _metric(url, "harrier_embedded_tokens_total") == sum(len(x) for x in reference.tokenize(TEXTS[4:6]))
    assert cosine_rows(got, reference.encode(TEXTS[4:6])).min() >= 0.99999


def test_a_forward_runs_on_while_one_of_its_clients_waits(layer_gate, reference):
    """Two requests share a forward; one leaves, the other still gets exact vectors and nothing is abandoned."""
    application = app(model="unused", runtime=EmbedderRuntime(reference, "tiny"))
    with serving(application) as url, ThreadPoolExecutor(2) as pool:
        first = pool.submit(_post, url, "/v1/embeddings", {"input": ["warm up"]})
        assert layer_gate.in_model.wait(10)  # the first forward holds the model: the next two queue together
        stays = pool.submit(_post, url, "/v1/embeddings", {"input": TEXTS[:2]})
        _wait(lambda: _queued(url) > 0)
        with pytest.raises(httpx.ReadTimeout):
            _post(url, "/v1/embeddings", {"input": TEXTS[2:4]}, timeout=1.0)
        layer_gate.gate.set()
        assert first.result().status_code == 200
        got = _vectors(stays.result())
        assert _metric(url, "harrier_batches_abandoned_total") == 0
    assert cosine_rows(got, reference.encode(TEXTS[:2])).min() >= 0.99999


@pytest.mark.parametrize("route", ["/v1/embeddings", "/embed"])
def test_a_stalled_body_gets_408_in_the_api_json_and_others_are_served(gated, reference, route):
    """Half a body, then silence: the connection is answered 408 after --body-timeout and closed; meanwhile and
    afterwards other clients are served."""
    import json
    import socket

    gated.gate.set()
    application = app(model="unused", runtime=gated, body_timeout=1.0)
    with serving(application) as url:
        port = int(url.rsplit(":", 1)[1])
        stalled = socket.create_connection(("127.0.0.1", port))
        stalled.settimeout(20)
        t0 = time.monotonic()
        stalled.sendall(f"POST {route} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        f"Content-Length: 400\r\n\r\n{{\"input\": [\"half a".encode())
        assert _vectors(_post(url, "/v1/embeddings", {"input": TEXTS[:1]})).shape == (1, 64)
        reply = b""
        while chunk := stalled.recv(4096):  # the server closes the connection after its answer
            reply += chunk
        waited = time.monotonic() - t0
        stalled.close()
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), reply
        assert b"connection: close" in head.lower()
        error = json.loads(body)
        if route == "/embed":
            assert error["error_type"] == "Validation" and "within 1 s" in error["error"]
        else:
            assert error["error"]["code"] == "request_timeout" and "within 1 s" in error["error"]["message"]
        assert 0.9 <= waited < 10
        assert _metric(url, "harrier_body_timeouts_total") == 1
        got = _vectors(_post(url, "/v1/embeddings", {"input": TEXTS[1:3]}))
    assert cosine_rows(got, reference.encode(TEXTS[1:3])).min() >= 0.99999


def test_a_slow_but_steady_body_within_the_timeout_is_read(gated, reference):
    """A body sent in pieces over ~0.6 s is fine under a 3 s --body-timeout (the bound is on the whole body)."""
    import json
    import socket

    gated.gate.set()
    with serving(app(model="unused", runtime=gated, body_timeout=3.0)) as url:
        port = int(url.rsplit(":", 1)[1])
        body = json.dumps({"input": TEXTS[:2]}).encode()
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.settimeout(20)
            conn.sendall(f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
            for i in range(0, len(body), len(body) // 3 + 1):
                conn.sendall(body[i:i + len(body) // 3 + 1])
                time.sleep(0.2)
            reply = b""
            while chunk := conn.recv(65536):
                reply += chunk
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), reply[:300]
    got = np.array([d["embedding"] for d in json.loads(payload)["data"]])
    assert cosine_rows(got, reference.encode(TEXTS[:2])).min() >= 0.99999


def test_bad_body_timeout_is_refused():
    for bad in (0, -1.0, True, "5"):
        with pytest.raises(ValueError, match="body_timeout"):
            app(model="unused", body_timeout=bad)
