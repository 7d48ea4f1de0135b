"""OpenAI-compatible routes: ``POST /v1/embeddings``, ``GET /v1/models``."""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from harrier.serve import aliases, pipeline
from harrier.serve.errors import APIError
from harrier.serve.schemas import EmbeddingRequest, EmbeddingResponse, ModelCard, ModelList

router = APIRouter()
ERROR_RESPONSES = {code: {"description": text} for code, text in (
    (400, "empty or malformed input; token ids without --allow-token-ids"), (401, "missing or wrong API key"),
    (404, "unknown model"),
    (413, "body or client batch too large"), (422, "bad field value, or over-long input with truncate=false"),
    (429, "queue full, retry"), (503, "loading or draining"))}

# OpenAI's clients tokenize with tiktoken and send those ids (LangChain's OpenAIEmbeddings does by default, with
# check_embedding_ctx_length=True): embedded as this model's ids they give HTTP 200 and meaningless vectors.
TOKEN_IDS_REFUSED = (
    "input holds token ids, which this server refuses on /v1/embeddings: OpenAI-style clients send ids of OpenAI's "
    "tiktoken vocabulary, not this model's, and would get meaningless vectors. Send the texts instead (LangChain: "
    "OpenAIEmbeddings(..., check_embedding_ctx_length=False)); a pipeline that sends this model's own token ids "
    "can start the server with --allow-token-ids (TEI's /embed accepts them always)")


@router.post("/v1/embeddings", response_model=EmbeddingResponse, responses=ERROR_RESPONSES)
async def create_embeddings(body: EmbeddingRequest, request: Request) -> JSONResponse:
    state = pipeline.state_of(request)
    runtime = state.runtime
    assert runtime is not None
    alias = aliases.alias_prompt(body.model, runtime)
    inputs = pipeline.parse_inputs(body.input, state, "input")
    if inputs.ids is not None and not state.config.allow_token_ids:
        raise APIError(400, TOKEN_IDS_REFUSED, "input")
    pipeline.check_dimensions(body.dimensions, runtime.dim)
    choice = aliases.with_alias(pipeline.prompt_choice(body, state), alias, body)
    prepared = await pipeline.prepare(state, inputs, choice, body.truncate, request)
    emb = pipeline.truncate_dims(await pipeline.embed(state, prepared, request), body.dimensions)
    if body.encoding_format == "base64":
        vectors = [base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in emb]
    else:
        vectors = emb.tolist()
    tokens = prepared.num_tokens
    # Built directly (EmbeddingResponse documents the shape): re-validating 512 x 1024 floats costs more than the
    # forward of short texts.
    return JSONResponse({"object": "list", "model": body.model or runtime.model_id,
                         "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


@router.get("/v1/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    state = pipeline.state_of(request)
    assert state.runtime is not None
    created = int(state.started_at)
    return ModelList(data=[ModelCard(id=name, created=created) for name in aliases.model_ids(state.runtime)])


def decode_base64(text: str) -> np.ndarray:
    """The inverse of the base64 encoding above (little-endian float32), for clients and tests."""
    return np.frombuffer(base64.b64decode(text), dtype="<f4")
