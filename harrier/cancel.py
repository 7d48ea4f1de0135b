"""Stopping a forward in progress once nobody waits for it: the server's model thread installs a check, the
decoder asks it before each layer, and ``Cancelled`` ends the forward there (at most one layer's time later).

    with cancel_when(lambda: all(job.cancelled for job in jobs)):
        emb = step(...)                # raises Cancelled between layers once the check turns true

Outside ``cancel_when`` (the library, training, evaluation) ``raise_if_cancelled`` costs one attribute read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_local = threading.local()


class Cancelled(Exception):
    """The forward was stopped because its check said nobody waits for the result."""


@contextmanager
def cancel_when(check: Callable[[], bool]) -> Iterator[None]:
    """Within the block, on this thread, forwards stop before the next layer once ``check()`` is true."""
    before = getattr(_local, "check", None)
    _local.check = check
    try:
        yield
    finally:
        _local.check = before


def raise_if_cancelled() -> None:
    """Raise ``Cancelled`` if this thread's check (see ``cancel_when``) is true; a no-op without one."""
    check = getattr(_local, "check", None)
    if check is not None and check():
        raise Cancelled("the forward's results are no longer wanted")
