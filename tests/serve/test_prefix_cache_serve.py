"""The prefix cache in ``harrier serve``: one store shared across requests, its figures in /metrics and /info, and
``--no-prefix-cache`` for A/B runs."""

from __future__ import annotations

import re

import httpx
import numpy as np
from servekit import API_KEY, MODEL_NAME, TEXTS, cosine_rows, start_server

# an instruction no other test on the shared session server sends, so this test's first request must miss
INSTRUCTION = {"instruction": "Given a question about prefix caching, retrieve the passages that answer it"}


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{name}(?:_total)? ([0-9.e+]+)$", text, re.M)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def test_store_is_shared_across_requests_and_reported(http, oai, reference):
    assert http.get("/info").json()["prefix_cache"].startswith("on")

    def figures() -> dict[str, float]:
        text = http.get("/metrics").text
        return {k: metric(text, f"harrier_prefix_cache_{k}")
                for k in ("hits", "misses", "fallbacks", "tokens_saved", "bytes", "max_bytes")}

    seen = [figures()]
    for _ in range(2):
        got = oai.embeddings.create(model=MODEL_NAME, input=TEXTS, extra_body=INSTRUCTION)
        vec = np.array([d.embedding for d in got.data], dtype=np.float32)
        assert cosine_rows(vec, reference.encode(TEXTS, **INSTRUCTION)).min() >= 0.99999
        seen.append(figures())
    first, second = ({k: b[k] - a[k] for k in a} for a, b in zip(seen, seen[1:], strict=False))
    assert first["fallbacks"] == second["fallbacks"] == 0, seen
    assert first["misses"] >= 1 and first["hits"] + first["misses"] >= len(TEXTS), seen
    assert second["misses"] == 0 and second["hits"] == len(TEXTS), seen  # all found in the first request's entry
    assert second["tokens_saved"] > 0
    assert 0 < seen[-1]["bytes"] <= seen[-1]["max_bytes"] == 256 * 2**20


def test_off_switch_and_bound_flag(tiny_gemma3_dir, tmp_path, reference):
    import openai

    from harrier import Embedder

    off = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="float32", prefix_cache=False,
                                   max_length=reference.max_length, truncation="silent")
    for extra, state in ((("--no-prefix-cache",), "off"), (("--prefix-cache-mb", "0.5"), "on")):
        srv = start_server(tiny_gemma3_dir, tmp_path / f"{state}.log", extra=extra)
        try:
            srv.wait_ready()
            headers = {"Authorization": f"Bearer {API_KEY}"}
            info = httpx.get(f"{srv.url}/info", headers=headers).json()
            assert info["prefix_cache"].startswith(state), info
            client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)
            got = client.embeddings.create(model=MODEL_NAME, input=TEXTS, extra_body=INSTRUCTION)
            vec = np.array([d.embedding for d in got.data], dtype=np.float32)
            assert cosine_rows(vec, off.encode(TEXTS, **INSTRUCTION)).min() >= 0.99999
            text = httpx.get(f"{srv.url}/metrics").text
            if state == "off":
                assert "harrier_prefix_cache" not in text
            else:
                assert metric(text, "harrier_prefix_cache_max_bytes") == 2**19
        finally:
            srv.stop()
