"""``harrier serve``: parse flags, build the app, run it on uvicorn (SIGTERM drains, then exit 0)."""

from __future__ import annotations

import argparse
import contextlib
import logging

DESCRIPTION = """Serve one model over HTTP: OpenAI POST /v1/embeddings (+ GET /v1/models) and TEI's /embed,
/similarity, /tokenize, /info, /health, /metrics. Requests from all clients share token-budget batches."""


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="OpenAI- and TEI-compatible embedding server", description=DESCRIPTION)
    p.add_argument("--model", required=True, help="hub id, local directory or .gguf file")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for all interfaces)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (health, metrics open)")
    p.add_argument("--served-model-name", default=None, help="the name clients send as 'model' "
                   "(default: the model's folder name)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16", "int8"])
    p.add_argument("--compile", action="store_true", help="torch.compile the decoder layers (CPU modes, see "
                   "docs/cpu-modes.md); compiled while loading, so /health turns 200 only when it is done")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--max-length", type=int, default=None, help="tokens per text incl. special tokens")
    p.add_argument("--truncation", default="warn", choices=["warn", "error", "silent"],
                   help="over-long texts of requests that do not send 'truncate' (warn: cut and log)")
    p.add_argument("--max-batch-tokens", type=int, default=None,
                   help="tokens per forward batch (default 4096 on CPU, 16384 on CUDA)")
    p.add_argument("--max-client-batch-size", type=int, default=512, help="inputs per request (413 above)")
    p.add_argument("--max-queued-tokens", type=int, default=None,
                   help="tokens waiting for the model before new requests get 429 (default 64 batches)")
    p.add_argument("--payload-limit", type=int, default=8_000_000, help="request body bytes (413 above)")
    p.add_argument("--body-timeout", type=float, default=30.0, help="seconds a request's whole body may take to "
                   "arrive (408 after; a stalled upload never holds a connection for good)")
    p.add_argument("--default-prompt-name", default=None,
                   help="prompt for requests that name none (clients send prompt_name \"\" for raw documents)")
    p.add_argument("--allow-token-ids", action="store_true", help="accept token-id input on /v1/embeddings (off by "
                   "default: OpenAI clients such as LangChain's OpenAIEmbeddings send ids of OpenAI's own vocabulary, "
                   "which this model would embed as meaningless vectors; TEI's /embed always accepts ids)")
    p.add_argument("--private-metrics", action="store_true", help="with --api-key, /metrics needs the key too "
                   "(default: open like /health, for scrapers and probes)")
    p.add_argument("--no-prefix-cache", action="store_true", help="recompute each prompt for every request "
                   "(the uncached path, for A/B runs; the cache is exact and on by default on causal models)")
    p.add_argument("--prefix-cache-mb", type=float, default=256, help="memory bound of the store of prompt "
                   "prefixes shared across requests (least recently used evicted; see /metrics)")
    p.add_argument("--graceful-timeout", type=float, default=30.0,
                   help="seconds SIGTERM waits for in-flight requests")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from harrier.extras import require

    uvicorn = require("uvicorn", "serve", "harrier serve")
    check_address(args.host, args.port)  # a taken port is one line, before the model loads
    app = require("harrier.serve.server", "serve", "harrier serve").app
    from harrier.serve.config import ServeConfig
    config = ServeConfig(model=args.model, served_model_name=args.served_model_name, device=args.device,
                         dtype=args.dtype, compile=args.compile, max_length=args.max_length,
                         truncation=args.truncation,
                         max_batch_tokens=args.max_batch_tokens, max_client_batch_size=args.max_client_batch_size,
                         max_queued_tokens=args.max_queued_tokens, payload_limit=args.payload_limit,
                         body_timeout=args.body_timeout,
                         api_key=args.api_key, default_prompt_name=args.default_prompt_name,
                         allow_token_ids=args.allow_token_ids, private_metrics=args.private_metrics,
                         prefix_cache=not args.no_prefix_cache, prefix_cache_mb=args.prefix_cache_mb)
    failure: list[str] = []
    server: uvicorn.Server | None = None

    def on_load_error(message: str) -> None:
        failure.append(message)
        if server is not None:
            server.should_exit = True

    application = app(config, on_load_error=on_load_error)
    state = application.state.harrier
    _setup_logging()
    logging.getLogger("harrier.serve").info("harrier serve: loading %s, listening on http://%s:%d", args.model,
                                            args.host, args.port)

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            state.draining = True  # /health 503 at once; admitted requests still complete
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self):
            with super().capture_signals():
                yield
                # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown (the process then dies of the
                # signal); a completed drain is a clean stop for supervisors: exit 0.
                self._captured_signals.clear()

    server = DrainingServer(uvicorn.Config(application, host=args.host, port=args.port, access_log=False,
                                           log_config=None, timeout_graceful_shutdown=args.graceful_timeout))
    try:
        server.run()
    except SystemExit as stop:  # uvicorn exits 1 when it cannot bind (the port was taken after our check)
        if server.started:
            raise
        raise ValueError(f"could not listen on {args.host}:{args.port} (see the log above)") from stop
    if failure:
        raise ValueError(f"model {args.model} failed to load: {failure[0]}")
    if not server.started:
        raise ValueError(f"could not listen on {args.host}:{args.port} (see the log above)")
    return 0


def check_address(host: str, port: int) -> None:
    """ValueError (one line) when ``host:port`` cannot be listened on: a bad port or host, or one already taken."""
    import socket

    if not 0 <= port <= 65535:
        raise ValueError(f"--port must be 0-65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as err:
        raise ValueError(f"--host {host}: {err.strerror}") from err
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as err:
            raise ValueError(f"cannot listen on {host}:{port}: {err.strerror}") from err


def _setup_logging() -> None:
    """Server logs at INFO (startup line, errors) and the JSON access log, whatever ``-v`` says."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in ("harrier.serve", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        logger.propagate = False
