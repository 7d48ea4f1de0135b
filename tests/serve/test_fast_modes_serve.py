"""``harrier serve --dtype int8 --compile``: ``/health`` answers 503 while the model loads and compiles, and 200
only once the compile warm-up is done; requests after that compile nothing (torch's dynamo log shows no tracing);
``/info`` names the int8 layers; the official openai client gets vectors close to the float32 library's."""

from __future__ import annotations

import time

import httpx
import numpy as np
import openai
from servekit import API_KEY, MODEL_NAME, TEXTS, cosine_rows, start_server

from harrier import Embedder

WARM_DONE = "compile warm-up done in"
TRACING = "torchdynamo start tracing"  # torch's TORCH_LOGS=dynamo line for every graph it compiles


def health_until_200(srv, timeout: float = 300.0) -> list[tuple[int, str]]:
    """/health answers, polled until the first 200, each with the server log as it stood at that moment."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert srv.proc.poll() is None, srv.log.read_text()
        try:
            r = httpx.get(f"{srv.url}/health", timeout=5)
        except httpx.HTTPError:  # not listening yet
            time.sleep(0.1)
            continue
        seen.append((r.status_code, r.text if r.status_code != 200 else srv.log.read_text()))
        if r.status_code == 200:
            return seen
        time.sleep(0.1)
    raise TimeoutError(srv.log.read_text())


def test_int8_compiled_server(tiny_gemma3_dir, tmp_path, reference):
    srv = start_server(tiny_gemma3_dir, tmp_path / "server.log", extra=("--dtype", "int8", "--compile"),
                       env={"TORCH_LOGS": "dynamo"})
    try:
        seen = health_until_200(srv)
        # 503 while loading and compiling; the first 200 comes after the warm-up's log line, never before
        assert seen[0][0] == 503 and "model is loading" in seen[0][1], seen[0]
        assert all(code == 503 for code, _ in seen[:-1]) and seen[-1][0] == 200
        log_at_200 = seen[-1][1]
        assert WARM_DONE in log_at_200 and log_at_200.index(WARM_DONE) < log_at_200.index("harrier serve ready")
        assert log_at_200.count(TRACING) >= 2  # the log is live: plain and prefix-cache graphs (int8 + float)

        headers = {"Authorization": f"Bearer {API_KEY}"}
        info = httpx.get(f"{srv.url}/info", headers=headers).json()
        dtype = str(info.get("model_dtype") or info.get("dtype"))
        assert dtype.startswith("int8 (") and "linear layers" in dtype, info

        client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=API_KEY, max_retries=0, timeout=120)
        for model, prompt_name in ((MODEL_NAME, None), (f"{MODEL_NAME}@web_search_query", "web_search_query")):
            for texts in (TEXTS, TEXTS[:1], TEXTS * 4):  # batches of other sizes than the warm-up's
                got = client.embeddings.create(model=model, input=texts, encoding_format="float")
                vectors = np.array([d.embedding for d in got.data])
                assert cosine_rows(vectors, reference.encode(texts, prompt_name=prompt_name)).min() >= 0.99
        after = srv.log.read_text()[len(log_at_200):]
        assert TRACING not in after, after
    finally:
        srv.stop()


def test_info_names_the_int8_layers(tiny_gemma3_dir):
    assert Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="float32").info().dtype == "float32"
    int8 = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="int8").info().dtype
    assert int8.startswith("int8 (") and "in float32" in int8, int8
