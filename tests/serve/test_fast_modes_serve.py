"""``harrier serve --dtype int8 --compile``: it starts (the compile warm-up runs in the loader, before ``/health``
turns 200), ``/info`` names the int8 layers, and the vectors stay close to the float32 library's."""

from __future__ import annotations

import httpx
import numpy as np
from servekit import API_KEY, TEXTS, cosine_rows, start_server

from harrier import Embedder


def test_int8_compiled_server(tiny_gemma3_dir, tmp_path, reference):
    srv = start_server(tiny_gemma3_dir, tmp_path / "server.log", extra=("--dtype", "int8", "--compile"))
    try:
        srv.wait_ready()
        assert "harrier serve ready" in srv.log.read_text()
        headers = {"Authorization": f"Bearer {API_KEY}"}
        info = httpx.get(f"{srv.url}/info", headers=headers).json()
        dtype = str(info.get("model_dtype") or info.get("dtype"))
        assert dtype.startswith("int8 (") and "linear layers" in dtype, info
        r = httpx.post(f"{srv.url}/v1/embeddings", json={"input": TEXTS, "prompt_name": "web_search_query"},
                       headers=headers, timeout=120)
        assert r.status_code == 200, r.text
        got = np.array([d["embedding"] for d in r.json()["data"]])
        assert cosine_rows(got, reference.encode(TEXTS, prompt_name="web_search_query")).min() >= 0.99
    finally:
        srv.stop()


def test_info_names_the_int8_layers(tiny_gemma3_dir):
    assert Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="float32").info().dtype == "float32"
    int8 = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="int8").info().dtype
    assert int8.startswith("int8 (") and "in float32" in int8, int8
