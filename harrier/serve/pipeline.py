"""What every embedding route does: check the input, tokenize it off the event loop, queue it for the batcher
(dropping it if the client goes away), and post-process vectors (``dimensions``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
from fastapi import Request

from harrier.serve.batcher import OverloadedError, TooLargeError
from harrier.serve.errors import APIError, ClientGoneError
from harrier.serve.runtime import InputError, Prepared, PromptChoice
from harrier.serve.state import ServerState
from harrier.vectors import l2_normalize


@dataclass(frozen=True)
class Inputs:
    """A request's input as texts or as raw token-id sequences (never both)."""

    texts: list[str] | None
    ids: list[list[int]] | None

    def __len__(self) -> int:
        return len(self.texts if self.texts is not None else self.ids or [])


def state_of(request: Request) -> ServerState:
    """The server state once the model is loaded. (Draining refuses new requests at the gate; a request that was
    admitted before SIGTERM completes.)"""
    state: ServerState = request.app.state.harrier
    if state.batcher is None or state.runtime is None:
        raise APIError(503, state.unavailable() or "model is loading")
    return state


def parse_inputs(value, state: ServerState, field: str) -> Inputs:
    """``str | list[str] | list[int] | list[list[int]]`` -> ``Inputs``; empty input is a 400, too many a 413."""
    if isinstance(value, str):
        value = [value]
    if not value:
        raise APIError(400, f"{field} is empty; send at least one text", field)
    limit = state.config.max_client_batch_size
    if isinstance(value[0], int):
        value = [value]
    if len(value) > limit:
        raise APIError(413, f"{field} holds {len(value)} items, over this server's --max-client-batch-size {limit}",
                       field)
    if isinstance(value[0], str):
        empty = [i for i, t in enumerate(value) if not t]
        if empty:
            raise APIError(400, f"{field}[{empty[0]}] is an empty string", field)
        return Inputs(texts=list(value), ids=None)
    empty = [i for i, x in enumerate(value) if not x]
    if empty:
        raise APIError(400, f"{field}[{empty[0]}] is an empty token list", field)
    return Inputs(texts=None, ids=[list(x) for x in value])


def prompt_choice(body, state: ServerState) -> PromptChoice:
    """The request's prompt; the server's ``--default-prompt-name`` when it sends none; ``prompt_name: ""``
    asks for no prompt (raw documents) even then."""
    choice = PromptChoice(prompt_name=body.prompt_name, instruction=body.instruction, task=body.task)
    if choice.prompt_name == "":
        return PromptChoice()
    if choice.is_empty() and state.config.default_prompt_name:
        return PromptChoice(prompt_name=state.config.default_prompt_name)
    return choice


async def prepare(state: ServerState, inputs: Inputs, choice: PromptChoice, truncate: bool | None,
                  request: Request) -> Prepared:
    """Token ids for the batcher (tokenized on a worker thread)."""
    runtime = state.runtime
    assert runtime is not None
    try:
        if inputs.ids is not None:
            if not choice.is_empty():
                raise InputError("prompt_name / instruction / task apply to text input; token-id input must already "
                                 "hold its prompt")
            prepared = await asyncio.to_thread(runtime.prepare_ids, inputs.ids, truncate)
            prefix = ""
        else:
            prefix = runtime.prefix(choice)
            prepared = await asyncio.to_thread(runtime.tokenize_texts, inputs.texts, prefix, truncate)
    except InputError as err:
        raise APIError(err.status, str(err)) from err
    request.state.inputs = len(prepared.ids)
    request.state.tokens = prepared.num_tokens
    request.state.prompt = choice.prompt_name or ("instruction" if choice.instruction else choice.task)
    return prepared


async def embed(state: ServerState, prepared: Prepared, request: Request) -> np.ndarray:
    """Vectors in input order; if the client disconnects first, its queued work is dropped (``ClientGoneError``)."""
    assert state.batcher is not None
    state.metrics.inputs.observe(len(prepared.ids))
    work = asyncio.ensure_future(state.batcher.embed(prepared.ids, prepared.prompt_lens, prepared.prefix_lens))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not work.done():
            work.cancel()
        gone.cancel()
    if work not in done:
        # let the cancellation reach the batcher now: its queued rows are dropped and a forward holding only
        # gone requests stops before its next layer (harrier.cancel)
        await asyncio.gather(work, return_exceptions=True)
        raise ClientGoneError()
    try:
        return work.result()
    except OverloadedError as err:
        raise APIError(429, str(err)) from err
    except TooLargeError as err:
        raise APIError(413, str(err)) from err
    except RuntimeError as err:
        raise APIError(503 if state.draining else 500, str(err)) from err


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body was read, so the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def check_dimensions(dimensions: int | None, full: int) -> None:
    if dimensions is not None and not 1 <= dimensions <= full:
        raise APIError(422, f"dimensions must be between 1 and this model's {full}, got {dimensions}", "dimensions")


def truncate_dims(emb: np.ndarray, dimensions: int | None, normalize: bool = True) -> np.ndarray:
    """Matryoshka truncation: keep the first ``dimensions`` then re-normalise to unit length."""
    if dimensions is None or dimensions == emb.shape[1]:
        return emb
    cut = np.ascontiguousarray(emb[:, :dimensions])
    return l2_normalize(cut) if normalize else cut
