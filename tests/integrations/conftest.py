"""The framework integrations against the offline library and a real ``harrier serve`` on 127.0.0.1 (the tiny
harrier-shaped model of tests/serve, started with tests/serve/servekit.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "serve"))
from servekit import API_KEY, MAX_LENGTH, start_server  # noqa: E402


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread here while the server process computes on the same cores (see tests/serve/conftest.py)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def fw_server(tiny_gemma3_dir, tmp_path_factory):
    srv = start_server(tiny_gemma3_dir, tmp_path_factory.mktemp("serve-fw") / "server.log")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def fw_reference(tiny_gemma3_dir):
    """The offline library on the served checkpoint and max length: what every vector must equal. Also the
    in-process model of the integrations (so both paths are held to the same reference)."""
    from harrier import Embedder

    return Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="float32", max_length=MAX_LENGTH,
                                    truncation="silent")


@pytest.fixture()
def backend(request, fw_reference):
    """Keyword arguments that select the in-process model or the server (parametrize with "local" / "remote")."""
    if request.param == "local":
        return {"model": fw_reference}
    return {"url": request.getfixturevalue("fw_server").url, "api_key": API_KEY}
