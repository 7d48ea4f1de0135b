"""Many clients at once, and faults under load: every client gets exactly its own vectors, or a connection error,
never another client's vectors."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from servekit import API_KEY, TEXTS, cosine_rows, start_server

PROMPTS = [{}, {"prompt_name": "web_search_query"}, {"prompt_name": "sts_query"}, {"instruction": "Match the topic"},
           {"task": "SCIDOCS"}]
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def _workload(reference, n: int, seed: int):
    """n requests: distinct texts of mixed lengths, each with its own prompt, and the offline answer (one encode
    call per prompt)."""
    rng = random.Random(seed)
    words = " ".join(TEXTS).split()
    bodies = []
    for i in range(n):
        texts = [f"client {i} text {j}: " + " ".join(rng.choices(words, k=rng.randint(1, 40)))
                 for j in range(rng.randint(1, 4))]
        bodies.append({"input": texts, "encoding_format": "float", **PROMPTS[i % len(PROMPTS)]})
    wants = [None] * n
    for k, prompt in enumerate(PROMPTS):
        mine = list(range(k, n, len(PROMPTS)))
        emb = reference.encode([t for i in mine for t in bodies[i]["input"]], **prompt)
        start = 0
        for i in mine:
            wants[i] = emb[start:start + len(bodies[i]["input"])]
            start += len(bodies[i]["input"])
    return list(zip(bodies, wants, strict=True))


def _check(response: httpx.Response, want: np.ndarray) -> None:
    assert response.status_code == 200, response.text
    got = np.array([d["embedding"] for d in response.json()["data"]])
    assert got.shape == want.shape and cosine_rows(got, want).min() >= 0.99999


def _batch_stats(url: str) -> tuple[float, float, float]:
    """(forwards, requests summed over forwards, forwards that held a single request)."""
    text = httpx.get(f"{url}/metrics").text
    value = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith("harrier_batch_")}
    return (value["harrier_batch_requests_count"], value["harrier_batch_requests_sum"],
            value['harrier_batch_requests_bucket{le="1.0"}'])


def test_64_clients_each_get_their_own_vectors(server, reference):
    work = _workload(reference, 64, seed=1)
    before = _batch_stats(server.url)
    barrier = threading.Barrier(64)

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=60, limits=limits) as c:

        def client(item):
            body, want = item
            barrier.wait(30)
            _check(c.post("/v1/embeddings", json=body), want)

        with ThreadPoolExecutor(64) as pool:
            list(pool.map(client, work))
    after = _batch_stats(server.url)
    forwards, requests, single = (a - b for a, b in zip(after, before, strict=True))
    assert requests >= 64  # every request reached a forward (one spanning two forwards counts in both)
    assert forwards < 64 and single < forwards, (forwards, single)  # batches held several requests


def _load(url: str, work, stop: threading.Event, outcomes: list, index: int) -> None:
    """Loop requests until told to stop: record 'ok' (checked vectors) or the transport error's class."""
    with httpx.Client(base_url=url, headers=HEADERS, timeout=30) as c:
        k = index
        while not stop.is_set():
            body, want = work[k % len(work)]
            k += 1
            try:
                r = c.post("/v1/embeddings", json=body)
            except httpx.TransportError as err:
                outcomes.append(type(err).__name__)
                time.sleep(0.05)
                continue
            if r.status_code == 503:
                outcomes.append("503")
                continue
            _check(r, want)  # a response is either exactly this client's vectors or a failure of the test
            outcomes.append("ok")


def test_kill9_under_load_then_restart_then_sigterm_drains(tiny_gemma3_dir, reference, tmp_path):
    work = _workload(reference, 24, seed=2)
    srv = start_server(tiny_gemma3_dir, tmp_path / "a.log")
    try:
        srv.wait_ready()
        stop, outcomes = threading.Event(), []
        threads = [threading.Thread(target=_load, args=(srv.url, work, stop, outcomes, i)) for i in range(8)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while outcomes.count("ok") < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait(10)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(30)
    finally:
        srv.stop()
    errors = [o for o in outcomes if o != "ok"]
    assert outcomes.count("ok") >= 40 and errors, outcomes[-5:]
    assert set(errors) <= {"ConnectError", "ReadError", "RemoteProtocolError", "WriteError"}, set(errors)

    port = int(srv.url.rsplit(":", 1)[1])
    again = start_server(tiny_gemma3_dir, tmp_path / "b.log", port=port)
    try:
        again.wait_ready()
        body, want = work[0]
        _check(httpx.post(f"{again.url}/v1/embeddings", json=body, headers=HEADERS, timeout=30), want)
        _sigterm_drains(again, reference)
    finally:
        again.stop()


def _sigterm_drains(srv, reference) -> None:
    """Requests admitted before SIGTERM all complete with their vectors; the process exits 0."""
    texts = [f"drain {i}: " + "the quick brown fox jumps over the lazy dog " * 12 for i in range(32)]
    want = reference.encode(texts)
    n = 12
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(httpx.post, f"{srv.url}/v1/embeddings", json={"input": texts}, headers=HEADERS,
                               timeout=60) for _ in range(n)]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            metrics = httpx.get(f"{srv.url}/metrics").text
            if f"harrier_request_inputs_count {float(n + 1)}" in metrics:
                break  # all n admitted and queued (plus the restart check's request)
            time.sleep(0.01)
        srv.proc.send_signal(signal.SIGTERM)
        for fut in futures:
            _check(fut.result(), want)
    assert srv.proc.wait(30) == 0
    assert "Shutting down" in srv.log.read_text()


def test_cli_model_that_fails_to_load_is_one_line_and_exit_2(tmp_path):
    srv = start_server(tmp_path / "no-such-model", tmp_path / "c.log")
    assert srv.proc.wait(120) == 2
    last = srv.log.read_text().strip().splitlines()[-1]
    assert last.startswith("harrier: error: model ") and "does not exist" in last


def test_cli_taken_port_or_bad_address_is_one_line_before_the_model_loads(tiny_gemma3_dir, monkeypatch, capsys):
    import socket

    from harrier.cli import main

    monkeypatch.setattr("harrier.serve.server.app", lambda *a, **k: pytest.fail("the app was built first"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for extra, message in ([["--port", str(port)], f"cannot listen on 127.0.0.1:{port}"],
                               [["--port", "70000"], "--port must be 0-65535"],
                               [["--host", "no-such-host.invalid"], "--host no-such-host.invalid"]):
            assert main(["serve", "--model", str(tiny_gemma3_dir), *extra]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("harrier: error: ") and message in err[0], err
