"""The served routes against the offline library: OpenAI client and plain HTTP, every field, every error status."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from servekit import API_KEY, MAX_CLIENT_BATCH, MAX_LENGTH, MODEL_NAME, PAYLOAD_LIMIT, TEXTS, cosine_rows

from harrier.serve.routes_openai import decode_base64

PROMPTS = [{}, {"prompt_name": "web_search_query"}, {"instruction": "Find the recipe"},
           {"task": "ArguAna"}]


def _renorm(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("prompt", PROMPTS, ids=["document", "prompt_name", "instruction", "task"])
def test_openai_client_equals_encode(oai, reference, prompt):
    """The SDK asks for base64 by default; float is asked explicitly; both equal Embedder.encode."""
    want = reference.encode(TEXTS, **prompt)
    got_b64 = oai.embeddings.create(model=MODEL_NAME, input=TEXTS, extra_body=prompt)
    got_float = oai.embeddings.create(model=MODEL_NAME, input=TEXTS, encoding_format="float", extra_body=prompt)
    b64 = np.array([d.embedding for d in got_b64.data], dtype=np.float32)
    flt = np.array([d.embedding for d in got_float.data], dtype=np.float32)
    assert [d.index for d in got_b64.data] == list(range(len(TEXTS)))
    assert cosine_rows(b64, want).min() >= 0.99999
    np.testing.assert_array_equal(b64, flt)
    prefix = reference.prefix(**prompt)
    tokens = sum(len(x) for x in reference.tokenize(TEXTS, prefix))
    assert got_b64.usage.prompt_tokens == got_b64.usage.total_tokens == tokens
    assert got_b64.model == MODEL_NAME


def test_raw_base64_is_little_endian_float32(http, reference):
    body = http.post("/v1/embeddings", json={"input": TEXTS[:2], "encoding_format": "base64"}).json()
    got = np.stack([decode_base64(d["embedding"]) for d in body["data"]])
    assert cosine_rows(got, reference.encode(TEXTS[:2])).min() >= 0.99999


@pytest.mark.parametrize("dims", [1, 16, 63])
def test_dimensions_truncate_and_renormalise(oai, reference, dims):
    want = reference.encode(TEXTS, prompt_name="sts_query")[:, :dims]
    got = oai.embeddings.create(model=MODEL_NAME, input=TEXTS, dimensions=dims,
                                extra_body={"prompt_name": "sts_query"})
    emb = np.array([d.embedding for d in got.data])
    assert emb.shape == (len(TEXTS), dims)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb, _renorm(want), atol=2e-6)


def test_token_ids_equal_text(ids_server, ids_http, http, reference):
    import openai

    raw = [reference.tokenizer.tokenizer.encode(t, add_special_tokens=False).ids for t in TEXTS]
    oai = openai.OpenAI(base_url=f"{ids_server.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)
    by_text = np.array([d.embedding for d in oai.embeddings.create(model=MODEL_NAME, input=TEXTS).data])
    by_ids = np.array([d.embedding for d in oai.embeddings.create(model=MODEL_NAME, input=raw).data])
    np.testing.assert_array_equal(by_ids, by_text)
    one = ids_http.post("/v1/embeddings", json={"input": raw[1], "encoding_format": "float"}).json()
    np.testing.assert_array_equal(np.array(one["data"][0]["embedding"]), by_text[1])
    tei = np.array(http.post("/embed", json={"inputs": raw}).json())  # TEI's route takes ids without the flag
    assert cosine_rows(tei, by_text).min() >= 0.99999


def test_token_ids_refused_by_default(oai, http):
    """What LangChain's OpenAIEmbeddings sends by default (tiktoken ids, base64): a 400 that says what to do,
    through the official client as a BadRequestError, never 200 with meaningless vectors."""
    import openai

    with pytest.raises(openai.BadRequestError) as caught:
        oai.embeddings.create(model=MODEL_NAME, input=[[57668, 53901]], encoding_format="base64")
    err = caught.value.body
    assert err["param"] == "input" and err["type"] == "invalid_request_error", err
    for needle in ("tiktoken", "check_embedding_ctx_length=False", "--allow-token-ids"):
        assert needle in err["message"], err["message"]
    for body in ({"input": [1, 2]}, {"input": [[1, 2], [3]]}):
        r = http.post("/v1/embeddings", json=body)
        assert r.status_code == 400 and "--allow-token-ids" in r.json()["error"]["message"], r.text


def test_overlong_input_truncates_by_default_and_errors_when_asked(http, ids_http, reference):
    long_text = "The quick brown fox jumps over the lazy dog. " * 40
    assert len(reference.tokenize([long_text])[0]) == MAX_LENGTH
    want = reference.encode([long_text])
    for extra in ({}, {"truncate": True}):
        got = http.post("/v1/embeddings", json={"input": [long_text], **extra}).json()
        assert got["usage"]["prompt_tokens"] == MAX_LENGTH
        assert cosine_rows(np.array([got["data"][0]["embedding"]]), want).min() >= 0.99999
    raw = reference.tokenizer.tokenizer.encode("The quick brown fox ", add_special_tokens=False).ids * 40
    frame = len(reference.tokenizer.with_specials([]))
    assert len(raw) > MAX_LENGTH
    got = ids_http.post("/v1/embeddings", json={"input": [raw], "encoding_format": "float"}).json()
    assert got["usage"]["prompt_tokens"] == MAX_LENGTH
    cut = reference.embed_ids([reference.tokenizer.with_specials(raw[:MAX_LENGTH - frame])])
    assert cosine_rows(np.array([got["data"][0]["embedding"]]), cut).min() >= 0.99999
    r = ids_http.post("/v1/embeddings", json={"input": [raw], "truncate": False})
    assert r.status_code == 422 and "max length" in r.json()["error"]["message"]
    r = http.post("/v1/embeddings", json={"input": ["short", long_text], "truncate": False})
    assert r.status_code == 422 and "truncate" in r.json()["error"]["message"]
    r = http.post("/embed", json={"inputs": long_text, "truncate": False})
    assert r.status_code == 422 and r.json()["error_type"] == "Validation"


def test_models_route(oai):
    aliases = [f"{MODEL_NAME}@{p}_query" for p in ("bitext", "sts", "web_search")]  # one per named prompt
    assert [m.id for m in oai.models.list().data] == [MODEL_NAME, *aliases]


def test_tei_embed_similarity_tokenize_info(http, reference):
    emb = http.post("/embed", json={"inputs": TEXTS, "prompt_name": "web_search_query"}).json()
    assert cosine_rows(np.array(emb), reference.encode(TEXTS, prompt_name="web_search_query")).min() >= 0.99999
    single = http.post("/embed", json={"inputs": TEXTS[0], "dimensions": 8}).json()
    np.testing.assert_allclose(single, _renorm(reference.encode(TEXTS[:1])[:, :8]), atol=2e-6)
    sim = http.post("/similarity", json={"inputs": {"source_sentence": TEXTS[0], "sentences": TEXTS[1:]},
                                         "instruction": "Find the recipe"}).json()
    q = reference.encode(TEXTS[:1], instruction="Find the recipe")
    np.testing.assert_allclose(sim, (reference.encode(TEXTS[1:]) @ q[0]), atol=1e-5)
    toks = http.post("/tokenize", json={"inputs": [TEXTS[1]], "prompt_name": "sts_query"}).json()
    assert [t["id"] for t in toks[0]] == reference.tokenize([TEXTS[1]], reference.prefix(prompt_name="sts_query"))[0]
    plain = http.post("/tokenize", json={"inputs": TEXTS[1], "add_special_tokens": False}).json()
    assert [t["id"] for t in plain[0]] == reference.tokenizer.tokenizer.encode(TEXTS[1], add_special_tokens=False).ids
    assert TEXTS[1][plain[0][1]["start"]:plain[0][1]["stop"]] == plain[0][1]["text"]
    info = http.get("/info").json()
    assert info["model_id"] == MODEL_NAME and info["max_input_length"] == MAX_LENGTH
    assert info["max_client_batch_size"] == MAX_CLIENT_BATCH and "web_search_query" in info["prompts"]
    assert info["cpu_malloc"].startswith(("glibc tuned", "left as it is"))  # the served model is on the CPU


LONG = "word " * 400
# (route, body, status, what the message must mention); every one is followed by a good request.
ERRORS = [
    ("/v1/embeddings", {"input": []}, 400, "empty"),
    ("/v1/embeddings", {"input": ""}, 400, "empty"),
    ("/v1/embeddings", {"input": [[]]}, 400, "empty"),
    ("/v1/embeddings", {"input": 5}, 400, "input"),
    ("/v1/embeddings", {"input": ["a", 3]}, 400, "input"),
    ("/v1/embeddings", {"text": "a"}, 400, "input"),
    ("/v1/embeddings", b"{not json", 400, "JSON"),
    ("/v1/embeddings", {"input": "a", "model": "gpt-4"}, 404, "gpt-4"),
    ("/v1/embeddings", {"input": ["a"] * (MAX_CLIENT_BATCH + 1)}, 413, "max-client-batch-size"),
    ("/v1/embeddings", {"input": ["x" * 5000] * 25}, 413, "limit"),
    ("/v1/embeddings", {"input": "a", "dimensions": 0}, 422, "dimensions"),
    ("/v1/embeddings", {"input": "a", "dimensions": 65}, 422, "dimensions"),
    ("/v1/embeddings", {"input": "a", "encoding_format": "hex"}, 422, "encoding_format"),
    ("/v1/embeddings", {"input": "a", "prompt_name": "web_search_query", "task": "ArguAna"}, 422, "at most one"),
    ("/v1/embeddings", {"input": "a", "prompt_name": "nope"}, 422, "unknown prompt name"),
    ("/v1/embeddings", {"input": "a", "task": "ArguAnna"}, 422, "ArguAna"),
    ("/v1/embeddings", {"input": [[1, 2]]}, 400, "--allow-token-ids"),
    ("/embed", {"inputs": [[1, 2, 10**6]]}, 422, "vocabulary"),
    ("/embed", {"inputs": [[1, 2]], "prompt_name": "sts_query"}, 422, "token-id"),
    ("/v1/embeddings", {"input": LONG, "truncate": False}, 422, "truncate"),
    ("/embed", {"inputs": []}, 400, "empty"),
    ("/embed", {"inputs": "a", "dimensions": 0}, 422, "dimensions"),
    ("/embed", {"inputs": "a", "normalize": False}, 422, "normalize"),
    ("/embed", {"inputs": "a", "truncation_direction": "Left"}, 422, "Left"),
    ("/embed", {"inputs": ["a"] * (MAX_CLIENT_BATCH + 1)}, 413, "max-client-batch-size"),
    ("/similarity", {"inputs": {"source_sentence": "a", "sentences": []}}, 400, "empty"),
    ("/tokenize", {"inputs": []}, 400, "empty"),
    # strict types: a JSON bool is neither a token id nor a number of dimensions, a string is not a number
    ("/v1/embeddings", {"input": "a", "dimensions": True}, 422, "dimensions"),
    ("/v1/embeddings", {"input": "a", "dimensions": "64"}, 422, "dimensions"),
    ("/v1/embeddings", {"input": [True, False]}, 400, "input"),
    ("/embed", {"inputs": [True, False]}, 400, "inputs"),
    ("/embed", {"inputs": "a", "dimensions": True}, 422, "dimensions"),
    ("/v1/embeddings", b'{"input": "caf\xe9"}', 400, "body could not be read"),
    ("/embed", b'{"inputs": "caf\xe9"}', 400, "body could not be read"),
]


@pytest.mark.parametrize("route,body,status,needle", ERRORS, ids=[f"{r}-{s}-{n}" for r, _, s, n in ERRORS])
def test_error_status_and_body(http, reference, route, body, status, needle):
    if isinstance(body, bytes):
        r = http.post(route, content=body, headers={"content-type": "application/json"})
    else:
        r = http.post(route, json=body)
    assert r.status_code == status, r.text
    err = r.json()
    if route.startswith("/v1/"):
        assert set(err) == {"error"} and set(err["error"]) == {"message", "type", "param", "code"}
        message = err["error"]["message"]
        assert err["error"]["type"] == "invalid_request_error"
    else:
        assert set(err) == {"error", "error_type"}
        message = err["error"]
        assert err["error_type"] == ("Empty" if status == 400 else "Validation")
    assert needle.lower() in message.lower(), message
    ok = http.post("/v1/embeddings", json={"input": TEXTS[:1], "encoding_format": "float"})
    assert ok.status_code == 200
    assert cosine_rows(np.array([ok.json()["data"][0]["embedding"]]), reference.encode(TEXTS[:1])).min() >= 0.99999


def test_body_over_payload_limit_without_content_length(server):
    def chunks():
        for _ in range(PAYLOAD_LIMIT // 10_000 + 2):
            yield b" " * 10_000
        yield b'{"input": "a"}'

    r = httpx.post(f"{server.url}/v1/embeddings", content=chunks(), timeout=30,
                   headers={"Authorization": f"Bearer {API_KEY}", "content-type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]


def test_api_key(server):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY},
                    {"Authorization": f"Basic {API_KEY}"}, {"Authorization": f"Bearer {API_KEY}x"}):
        r = httpx.post(f"{server.url}/v1/embeddings", json={"input": "a"}, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        r = httpx.post(f"{server.url}/embed", json={"inputs": "a"}, headers=headers)
        assert r.status_code == 401 and r.json()["error_type"] == "Unauthorized"
    for scheme in ("bearer", "BEARER", "Bearer "):  # the scheme is case-insensitive (RFC 9110)
        r = httpx.post(f"{server.url}/v1/embeddings", json={"input": "a"},
                       headers={"Authorization": f"{scheme} {API_KEY}"})
        assert r.status_code == 200, (scheme, r.text)
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert "harrier_requests_total" in httpx.get(f"{server.url}/metrics").text


def test_access_log_and_startup_line(server, http):
    http.post("/v1/embeddings", json={"input": ["logged"], "prompt_name": "sts_query"})
    log = server.log.read_text()
    assert "harrier serve ready: model=tiny-harrier" in log and "max_batch_tokens=4096" in log
    assert '"path": "/v1/embeddings", "status": 200' in log and '"prompt": "sts_query"' in log
