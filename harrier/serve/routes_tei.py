"""text-embeddings-inference routes: ``/embed``, ``/similarity``, ``/tokenize``, ``/info``, ``/health``,
``/metrics``; field names and response shapes as TEI's."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from harrier.serve import pipeline
from harrier.serve.errors import APIError
from harrier.serve.runtime import InputError, PromptChoice
from harrier.serve.schemas import EmbedRequest, SimilarityRequest, TokenizeRequest
from harrier.vectors import l2_normalize

router = APIRouter()


def _check_tei_options(state, normalize: bool, direction: str) -> None:
    assert state.runtime is not None
    if direction.lower() == "left":
        raise APIError(422, "truncation_direction 'Left' is not supported: harrier cuts the end of over-long texts "
                            "(the query prefix stays whole); send 'Right' or omit it", "truncation_direction")
    if not normalize and state.runtime.normalizes:
        raise APIError(422, "normalize=false is not available: this model's head ends in Normalize, so its "
                            "vectors are unit length by definition", "normalize")


@router.post("/embed")
async def embed(body: EmbedRequest, request: Request) -> JSONResponse:
    state = pipeline.state_of(request)
    _check_tei_options(state, body.normalize, body.truncation_direction)
    inputs = pipeline.parse_inputs(body.inputs, state, "inputs")
    pipeline.check_dimensions(body.dimensions, state.runtime.dim)
    prepared = await pipeline.prepare(state, inputs, pipeline.prompt_choice(body, state), body.truncate, request)
    emb = pipeline.truncate_dims(await pipeline.embed(state, prepared, request), body.dimensions, body.normalize)
    return JSONResponse(emb.tolist())


@router.post("/similarity")
async def similarity(body: SimilarityRequest, request: Request) -> JSONResponse:
    """Cosine of ``source_sentence`` (with the prompt: the query) against each of ``sentences`` (raw documents)."""
    state = pipeline.state_of(request)
    _check_tei_options(state, True, body.truncation_direction)
    source = pipeline.parse_inputs(body.inputs.source_sentence, state, "inputs.source_sentence")
    docs = pipeline.parse_inputs(body.inputs.sentences, state, "inputs.sentences")
    q = await pipeline.prepare(state, source, pipeline.prompt_choice(body, state), body.truncate, request)
    d = await pipeline.prepare(state, docs, PromptChoice(), body.truncate, request)
    q_emb, d_emb = await asyncio.gather(pipeline.embed(state, q, request), pipeline.embed(state, d, request))
    request.state.tokens = q.num_tokens + d.num_tokens
    return JSONResponse((l2_normalize(d_emb) @ l2_normalize(q_emb)[0]).tolist())


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, request: Request) -> JSONResponse:
    """Tokens as the model sees them: the prompt prefix and the special tokens included (unless told not to)."""
    state = pipeline.state_of(request)
    runtime = state.runtime
    inputs = pipeline.parse_inputs(body.inputs, state, "inputs")
    if inputs.texts is None:
        raise APIError(422, "inputs must be text for /tokenize", "inputs")
    try:
        prefix = runtime.prefix(pipeline.prompt_choice(body, state))
    except InputError as err:
        raise APIError(err.status, str(err)) from err
    tokens = await asyncio.to_thread(runtime.token_table, inputs.texts, prefix)
    return JSONResponse([[t for t in seq if body.add_special_tokens or not t["special"]] for seq in tokens])


@router.get("/info")
async def info(request: Request) -> JSONResponse:
    state = pipeline.state_of(request)
    runtime = state.runtime
    batch_tokens = state.batcher.batch_tokens
    d = runtime.description
    return JSONResponse({
        "model_id": runtime.model_id, "model_sha": None, "model_dtype": d.get("dtype"),
        "model_type": {"embedding": {"pooling": d.get("pooling")}},
        "max_concurrent_requests": None, "max_input_length": runtime.max_length,
        "max_batch_tokens": batch_tokens, "max_batch_requests": None,
        "max_client_batch_size": state.config.max_client_batch_size,
        "max_queued_tokens": state.batcher.max_queued_tokens, "auto_truncate": state.config.truncation != "error",
        "tokenization_workers": None, "version": request.app.version, "dim": runtime.dim,
        "device": d.get("device"), "prompts": d.get("prompts"),
        "default_prompt_name": state.config.default_prompt_name, "prefix_cache": d.get("prefix_cache"),
        "cpu_malloc": d.get("cpu_malloc"),
    })


@router.get("/health")
async def health(request: Request) -> Response:
    """Readiness: 200 once the model is loaded, 503 while loading, after a failed load, and while draining."""
    state = request.app.state.harrier
    why = state.unavailable()
    if why is not None:
        raise APIError(503, why)
    return Response(status_code=200)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    state = request.app.state.harrier
    if state.batcher is not None:
        state.metrics.queued_tokens.set(state.batcher.queued_tokens)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
