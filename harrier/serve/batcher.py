"""Batching across requests: one queue of sequences from every client, one model worker thread.

The scheduler runs on the event loop: it takes sequences first-come first-served until the token budget is full
(sequences of one request may span batches; different prompts share a batch), hands the packed batch to the worker
thread, and scatters the rows back to their requests. The queue is bounded in tokens: a request that would
overflow it is refused at once (``OverloadedError``, HTTP 429), never queued without limit. A request that is
cancelled (client gone) leaves the queue: its remaining sequences are skipped and its tokens released, and a
forward already running stops before its next layer once every request in it is gone (``harrier.cancel``), so
the next client waits at most one layer, not the rest of a batch nobody reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from harrier.cancel import Cancelled, cancel_when

log = logging.getLogger(__name__)
StepFn = Callable[[list[list[int]], list[int], list[int]], np.ndarray]  # (ids, prompt_lens, prefix_lens)


class OverloadedError(Exception):
    """The queue holds too many tokens to take this request now (retry later)."""


class TooLargeError(Exception):
    """The request alone is larger than the queue can ever hold."""


@dataclass
class BatchStats:
    """What one forward held (for metrics and the debug log)."""

    sequences: int
    tokens: int
    requests: int
    seconds: float
    abandoned: bool = False  # stopped part-way: every request in it had gone (nothing was delivered)


@dataclass(eq=False)
class _Job:
    """One request in flight: its output rows fill as batches finish."""

    out: np.ndarray
    future: asyncio.Future
    remaining: int
    queued_tokens: int
    enqueued_at: float = field(default_factory=time.perf_counter)
    cancelled: bool = False


@dataclass(frozen=True)
class _Entry:
    job: _Job
    row: int
    ids: list[int]
    prompt_len: int
    prefix_len: int  # leading tokens the prefix cache may reuse (0: none)


class Batcher:
    """Cross-request token-budget batching in front of ``step`` (called on one worker thread only)."""

    def __init__(self, step: StepFn, *, dim: int, batch_tokens: int, max_queued_tokens: int,
                 on_batch: Callable[[BatchStats], None] | None = None) -> None:
        if batch_tokens < 1 or max_queued_tokens < 1:
            raise ValueError("batch_tokens and max_queued_tokens must be positive")
        self._step = step
        self.dim = dim
        self.batch_tokens = batch_tokens
        self.max_queued_tokens = max_queued_tokens
        self._on_batch = on_batch
        self._queue: deque[_Entry] = deque()
        self.queued_tokens = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="harrier-model")
        self.busy = False

    async def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="harrier-batcher")

    async def close(self) -> None:
        """Stop after the batch in progress; queued requests fail (the server drains before this)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for entry in self._queue:
            if not entry.job.future.done():
                entry.job.future.set_exception(RuntimeError("server is shutting down"))
        self._queue.clear()
        self._pool.shutdown(wait=True)

    async def embed(self, ids: list[list[int]], prompt_lens: list[int],
                    prefix_lens: list[int] | None = None) -> np.ndarray:
        """[len(ids), dim] float32 in input order. Raises ``OverloadedError`` / ``TooLargeError`` before queueing.
        ``prefix_lens``: each sequence's tokens the prefix cache may reuse (``TokenizedItems.prefix_lens``).

        Cancelling the awaiting task (client disconnected) drops the request's work that has not run yet.
        """
        assert self._wakeup is not None, "Batcher.start() was not awaited"
        tokens = sum(len(x) for x in ids)
        if tokens > self.max_queued_tokens:
            raise TooLargeError(f"request holds {tokens} tokens, over the server's queue limit "
                                f"{self.max_queued_tokens}")
        if self.queued_tokens + tokens > self.max_queued_tokens:
            raise OverloadedError(f"server queue is full ({self.queued_tokens} of {self.max_queued_tokens} tokens "
                             "queued); retry later")
        loop = asyncio.get_running_loop()
        job = _Job(out=np.empty((len(ids), self.dim), dtype=np.float32), future=loop.create_future(),
                   remaining=len(ids), queued_tokens=tokens)
        if not ids:
            return job.out
        # Longest first within a request: neighbours in a batch are then of equal length (cheap attention groups).
        for row in sorted(range(len(ids)), key=lambda i: -len(ids[i])):
            self._queue.append(_Entry(job, row, ids[row], prompt_lens[row], prefix_lens[row] if prefix_lens else 0))
        self.queued_tokens += tokens
        self._wakeup.set()
        try:
            return await job.future
        except BaseException:
            if not job.cancelled:
                self._cancel(job)
            raise

    def _cancel(self, job: _Job) -> None:
        """Drop the job's queued work (its entries are skipped when reached) and release its tokens."""
        job.cancelled = True
        self.queued_tokens -= job.queued_tokens
        job.queued_tokens = 0
        job.future.cancel()

    def _take(self) -> list[_Entry]:
        """Entries for the next forward: first come first served up to the token budget (one overlong alone)."""
        batch: list[_Entry] = []
        used = 0
        while self._queue:
            entry = self._queue[0]
            if entry.job.cancelled:
                self._queue.popleft()
                continue
            n = len(entry.ids)
            if batch and used + n > self.batch_tokens:
                break
            self._queue.popleft()
            batch.append(entry)
            used += n
            entry.job.queued_tokens -= n
            self.queued_tokens -= n
        return batch

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = self._take()
            if not batch:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch.sort(key=lambda e: -len(e.ids))
            t0 = time.perf_counter()
            self.busy = True
            try:
                emb = await loop.run_in_executor(self._pool, self._guarded_step, batch)
            except Cancelled:
                log.info("stopped a forward of %d sequences part-way: every request in it had gone", len(batch))
                self._report(batch, t0, abandoned=True)
                continue
            except Exception as err:  # a failed forward fails its requests, never the server
                log.exception("forward failed for a batch of %d sequences", len(batch))
                self._fail(batch, err)
                continue
            finally:
                self.busy = False
            self._deliver(batch, emb)
            self._report(batch, t0)

    def _guarded_step(self, batch: list[_Entry]) -> np.ndarray:
        """``step`` on the model thread, stopped between layers once no request of the batch is waiting."""
        jobs = list({id(e.job): e.job for e in batch}.values())
        with cancel_when(lambda: all(job.cancelled for job in jobs)):
            return self._step([e.ids for e in batch], [e.prompt_len for e in batch], [e.prefix_len for e in batch])

    def _report(self, batch: list[_Entry], t0: float, abandoned: bool = False) -> None:
        if self._on_batch is not None:
            self._on_batch(BatchStats(sequences=len(batch), tokens=sum(len(e.ids) for e in batch),
                                      requests=len({id(e.job) for e in batch}), seconds=time.perf_counter() - t0,
                                      abandoned=abandoned))

    @staticmethod
    def _deliver(batch: list[_Entry], emb: np.ndarray) -> None:
        assert emb.shape[0] == len(batch), f"step returned {emb.shape[0]} rows for {len(batch)} sequences"
        for entry, row in zip(batch, emb, strict=True):
            job = entry.job
            if job.cancelled:
                continue
            job.out[entry.row] = row
            job.remaining -= 1
            if job.remaining == 0 and not job.future.done():
                job.future.set_result(job.out)

    def _fail(self, batch: list[_Entry], err: Exception) -> None:
        for entry in batch:
            job = entry.job
            if not job.cancelled:
                job.future.set_exception(RuntimeError(f"model forward failed: {err}"))
                self._cancel(job)
