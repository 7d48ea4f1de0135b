"""The ASGI app: ``app(...)`` returns a FastAPI application serving one model with cross-request batching.

    import harrier.serve
    application = harrier.serve.app(model="microsoft/harrier-oss-v1-270m", api_key=KEY)  # any ASGI server runs it

The model loads in a background thread after startup: ``/health`` answers 503 until it is ready (readiness), and
again once the server drains (SIGTERM). Tokenization runs on a thread pool, the forward on one model thread; the
event loop never waits on either.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import replace

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from harrier.serve.batcher import Batcher
from harrier.serve.config import ServeConfig
from harrier.serve.errors import APIError, ClientGoneError, error_response
from harrier.serve.metrics import Metrics
from harrier.serve.runtime import EmbedderRuntime, PromptChoice, Runtime
from harrier.serve.state import ServerState

log = logging.getLogger("harrier.serve")
access_log = logging.getLogger("harrier.serve.access")
OPEN_PATHS = ("/health", "/metrics")
MODEL_PATHS = ("/v1/embeddings", "/embed", "/similarity", "/tokenize")
QUEUE_BATCHES = 64  # default queue bound: this many full batches of tokens


def load_runtime(config: ServeConfig) -> Runtime:
    from harrier import Embedder

    embedder = Embedder.from_pretrained(config.model, device=config.device, dtype=config.dtype,
                                        max_length=config.max_length, truncation=config.truncation,
                                        prefix_cache=config.prefix_cache, prefix_cache_mb=config.prefix_cache_mb,
                                        compile=config.compile)
    if config.compile:  # compile now, while /health says loading, not in the first clients' requests
        log.info("compile warm-up done in %.1f s; /health turns 200 now", compile_warm_up(embedder))
    return EmbedderRuntime(embedder, config.model_id())


def compile_warm_up(embedder) -> float:
    """Run every compiled graph a request can reach once, returning the seconds it took: one batch of two lengths
    (several runs of equal-length sequences) as documents, and again behind a named prompt (the prefix-cache path
    is its own graph). Graphs are compiled with dynamic shapes, so later batches of any size reuse them; int8 and
    float layers, sliding and full attention all run in each forward."""
    t0 = time.perf_counter()
    warm = ["warm up", "warm up " * 24]
    embedder.encode(warm, progress=False)
    if embedder.prompts:
        embedder.encode(warm, prompt_name=next(iter(embedder.prompts)), progress=False)
    return time.perf_counter() - t0


def batch_budget(config: ServeConfig, runtime: Runtime) -> tuple[int, int]:
    from harrier.engine import DEFAULT_BATCH_TOKENS

    device = str(runtime.description.get("device", "cpu")).split(":")[0]
    tokens = config.max_batch_tokens or DEFAULT_BATCH_TOKENS.get(device, 4096)
    return tokens, config.max_queued_tokens or QUEUE_BATCHES * tokens


async def _start_model(state: ServerState, loader: Callable[[ServeConfig], Runtime]) -> None:
    try:
        runtime = state.runtime or await asyncio.to_thread(loader, state.config)
        batch_tokens, queued = batch_budget(state.config, runtime)
        if state.config.default_prompt_name:  # a typo here would fail every request: refuse it at startup
            runtime.prefix(PromptChoice(prompt_name=state.config.default_prompt_name))
    except Exception as err:  # reported on /health and to the CLI; the process stays up to answer 503
        state.load_error = f"{type(err).__name__}: {err}"
        log.error("model %s failed to load: %s", state.config.model, state.load_error)
        if state.on_load_error is not None:
            state.on_load_error(state.load_error)
        return
    batcher = Batcher(runtime.embed, dim=runtime.dim, batch_tokens=batch_tokens, max_queued_tokens=queued,
                      on_batch=state.metrics.on_batch)
    await batcher.start()
    state.runtime, state.batcher = runtime, batcher
    state.metrics.watch_prefix_cache(getattr(getattr(runtime, "embedder", None), "prefix_cache", None))
    state.metrics.ready.set(1)
    d = runtime.description
    log.info("harrier serve ready: model=%s source=%s dim=%d dtype=%s device=%s max_length=%d max_batch_tokens=%d "
             "max_queued_tokens=%d max_client_batch_size=%d default_prompt_name=%s api_key=%s",
             runtime.model_id, d.get("source"), runtime.dim, d.get("dtype"), d.get("device"), runtime.max_length,
             batch_tokens, queued, state.config.max_client_batch_size, state.config.default_prompt_name,
             "set" if state.config.api_key else "none")


def app(config: ServeConfig | None = None, *, runtime: Runtime | None = None,
        loader: Callable[[ServeConfig], Runtime] = load_runtime, on_load_error: Callable[[str], None] | None = None,
        **settings) -> FastAPI:
    """The ASGI application. Pass a ``ServeConfig`` or its fields as keywords (``model=...`` at least);
    ``runtime`` serves an already loaded model (tests, custom deployments) instead of loading one."""
    if config is None:
        config = ServeConfig(**settings)
    elif settings:
        config = replace(config, **settings)
    state = ServerState(config=config, metrics=Metrics(), runtime=runtime, on_load_error=on_load_error)

    @asynccontextmanager
    async def lifespan(application: FastAPI):
        loading = asyncio.create_task(_start_model(state, loader))
        yield
        state.draining = True
        state.metrics.ready.set(0)
        loading.cancel()
        if state.batcher is not None:
            await state.batcher.close()

    application = FastAPI(title="harrier", version=_version(), lifespan=lifespan, docs_url="/docs",
                          redoc_url=None)
    application.state.harrier = state
    _install_errors(application)
    from harrier.serve import routes_openai, routes_tei

    application.include_router(routes_openai.router)
    application.include_router(routes_tei.router)
    application.add_middleware(Gate, state=state)
    return application


def _version() -> str:
    from harrier import __version__

    return __version__


def _install_errors(application: FastAPI) -> None:
    @application.exception_handler(APIError)
    async def _api_error(request: Request, err: APIError) -> JSONResponse:
        return error_response(request.url.path, err.status, err.message, err.param)

    @application.exception_handler(RequestValidationError)
    async def _validation(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = err.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
        loc = [str(x) for x in first.get("loc", ()) if x != "body"]
        kind = first.get("type")
        malformed = (kind == "json_invalid" or (bool(loc) and loc[0] in ("input", "inputs"))
                     or (not loc and kind in ("missing", "model_attributes_type", "dict_type")))
        if kind == "json_invalid":
            ctx = first.get("ctx") or {}
            return error_response(request.url.path, 400, f"body is not valid JSON ({ctx.get('error', 'decode error')})")
        where = ".".join(loc) or "body"
        msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        return error_response(request.url.path, 400 if malformed else 422, f"{where}: {msg}",
                              loc[0] if loc else None)

    @application.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> Response:
        # FastAPI's own 400 for a body it cannot parse (not UTF-8: "There was an error parsing the body") in the
        # API's error JSON instead of {"detail": ...}; unknown routes and methods keep FastAPI's answer
        if err.status_code == 400:
            return error_response(request.url.path, 400, f"body could not be read: {err.detail}")
        return await http_exception_handler(request, err)

    @application.exception_handler(ClientGoneError)
    async def _gone(request: Request, err: ClientGoneError) -> Response:
        return Response(status_code=499)  # nobody reads it; the access log shows the drop (nginx's convention)

    @application.exception_handler(BodyTimeoutError)
    async def _body_timeout(request: Request, err: BodyTimeoutError) -> JSONResponse:
        response = error_response(request.url.path, 408, err.detail)
        response.headers["Connection"] = "close"  # the rest of the body may still come: never reuse the connection
        return response

    @application.exception_handler(BodyTooLargeError)
    async def _too_large(request: Request, err: BodyTooLargeError) -> JSONResponse:
        return error_response(request.url.path, 413, err.detail)


class BodyTimeoutError(HTTPException):
    """Raised while the body streams in too slowly (``body_timeout``); an HTTPException for the same reason."""

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=408, detail=detail)


class BodyTooLargeError(HTTPException):
    """Raised while the body streams in (chunked uploads carry no Content-Length); an HTTPException so that
    FastAPI's body parsing passes it through instead of calling it malformed JSON."""

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=413, detail=detail)


class Gate:
    """Pure ASGI middleware (keeps ``receive`` raw so routes see client disconnects): API key, 503 while loading
    or draining, body size limit, structured access log and request metrics."""

    def __init__(self, app, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        path = scope["path"]
        status = {"code": 500}
        scope.setdefault("state", {})

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
            await send(message)

        try:
            refusal = self._refuse(scope)
            if refusal is not None:
                await error_response(path, *refusal)(scope, receive, send_status)
            else:
                try:
                    await self.app(scope, self._limited(receive), send_status)
                except asyncio.CancelledError:
                    if not self.state.draining or status.get("started"):
                        raise
                    # uvicorn cancels what still runs at --graceful-timeout; without this the client gets
                    # uvicorn's plain-text 500 (and the log a CancelledError traceback) instead of our 503
                    await error_response(path, 503, "the server shut down (--graceful-timeout) before this "
                                                    "request finished; retry")(scope, receive, send_status)
        finally:
            self._record(scope, path, status["code"], time.perf_counter() - t0)

    def _refuse(self, scope) -> tuple[int, str] | None:
        path, st = scope["path"], self.state
        key = st.config.api_key
        if key and (path not in OPEN_PATHS or (path == "/metrics" and st.config.private_metrics)):
            headers = dict(scope.get("headers") or [])
            scheme, _, given = headers.get(b"authorization", b"").decode("latin-1").strip().partition(" ")
            # the scheme is case-insensitive (RFC 9110 11.1); the key is compared in constant time
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
                return 401, "missing or wrong API key (send 'Authorization: Bearer <key>')"
        if path in MODEL_PATHS and (why := st.unavailable()) is not None:
            return 503, why
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > st.config.payload_limit:
            return 413, f"request body of {int(length)} bytes is over the limit of {st.config.payload_limit}"
        return None

    def _limited(self, receive):
        """``receive`` with the body's bounds: at most ``payload_limit`` bytes, all of it within ``body_timeout``
        seconds of the first read (a client that sends half a body and stalls gets 408, not a connection held
        forever). Reads after the body (the disconnect watch) wait as long as they need."""
        limit, timeout = self.state.config.payload_limit, self.state.config.body_timeout
        seen = 0
        deadline: float | None = None
        complete = False

        async def wrapped():
            nonlocal seen, deadline, complete
            if complete:
                return await receive()
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + timeout
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                self.state.metrics.body_timeouts.inc()
                raise BodyTimeoutError(f"the request body did not arrive within {timeout:g} s "
                                       f"({seen} bytes read); send it whole") from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLargeError(f"request body is over the limit of {limit} bytes")
                complete = not message.get("more_body", False)
            else:
                complete = True  # the client left
            return message

        return wrapped

    def _record(self, scope, path: str, status: int, seconds: float) -> None:
        extra = scope.get("state") or {}
        route = path if path in MODEL_PATHS or path in OPEN_PATHS or path in ("/info", "/v1/models") else "other"
        self.state.metrics.requests.labels(route, str(status)).inc()
        self.state.metrics.latency.labels(route).observe(seconds)
        if self.state.batcher is not None:
            self.state.metrics.queued_tokens.set(self.state.batcher.queued_tokens)
        if path in OPEN_PATHS and status == 200:
            return  # probes and scrapes would drown the log
        client = scope.get("client")
        record = {"method": scope.get("method"), "path": path, "status": status, "ms": round(seconds * 1e3, 2),
                  "client": f"{client[0]}:{client[1]}" if client else None}
        record.update({k: extra[k] for k in ("inputs", "tokens", "prompt") if k in extra})
        access_log.info(json.dumps(record))
