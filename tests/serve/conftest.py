"""A real ``harrier serve`` process on 127.0.0.1 (tiny harrier-shaped model), and the offline reference."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from servekit import API_KEY, MAX_LENGTH, start_server  # noqa: E402


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The reference encodes in this process while a server process computes on the same cores: one thread each
    (two OpenMP threads per process on two busy cores spin against each other, 30x slower here)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def server(tiny_gemma3_dir, tmp_path_factory):
    srv = start_server(tiny_gemma3_dir, tmp_path_factory.mktemp("serve") / "server.log")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def ids_server(tiny_gemma3_dir, tmp_path_factory):
    """A second server that accepts token-id input on /v1/embeddings (``--allow-token-ids``)."""
    srv = start_server(tiny_gemma3_dir, tmp_path_factory.mktemp("serve-ids") / "server.log",
                       extra=("--allow-token-ids",))
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture()
def ids_http(ids_server):
    import httpx

    with httpx.Client(base_url=ids_server.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as c:
        yield c


@pytest.fixture(scope="session")
def reference(tiny_gemma3_dir):
    """The offline library on the same checkpoint and max length: what every served vector must equal."""
    from harrier import Embedder

    return Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="float32", max_length=MAX_LENGTH,
                                    truncation="silent")


@pytest.fixture()
def http(server):
    import httpx

    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as c:
        yield c


@pytest.fixture()
def oai(server):
    import openai  # the official client (in .[dev]): a missing install fails, never skips

    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)
