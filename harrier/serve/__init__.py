"""``harrier serve``: an OpenAI- and TEI-compatible embedding server with batching across clients.

``harrier.serve.app(model=...)`` returns the ASGI application (FastAPI); it needs the ``serve`` extra.
"""

from __future__ import annotations


def app(*args, **kwargs):
    """The ASGI app for one model (see ``harrier.serve.server.app`` for the arguments)."""
    from harrier.extras import require

    return require("harrier.serve.server", "serve", "harrier.serve.app").app(*args, **kwargs)


__all__ = ["app"]
