"""Each integration, in process and against ``harrier serve``: queries equal ``encode(prompt_name=
"web_search_query")``, documents equal raw ``encode`` (cosine >= 0.99999), sync and async."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from servekit import cosine_rows

QUERIES = ["how much protein should a female eat", "what is the capital of France", "Wie alt ist der Mond?"]
DOCS = ["Protein needs depend on body weight and activity level.", "Paris is the capital and largest city of France.",
        "Der Mond ist etwa 4,5 Milliarden Jahre alt.", "素早い茶色の狐がのろまな犬を飛び越える。", "a"]
COS_MIN = 0.99999


def _langchain(kw):
    from harrier.integrations.langchain import HarrierEmbeddings

    e = HarrierEmbeddings(**kw)
    return (lambda q: [e.embed_query(t) for t in q], e.embed_documents,
            lambda q: asyncio.run(_gather(e.aembed_query, q)), lambda d: asyncio.run(e.aembed_documents(d)))


def _llamaindex(kw):
    from harrier.integrations.llamaindex import HarrierEmbedding

    e = HarrierEmbedding(**kw, embed_batch_size=2)
    return (lambda q: [e.get_query_embedding(t) for t in q], e.get_text_embedding_batch,
            lambda q: asyncio.run(_gather(e.aget_query_embedding, q)),
            lambda d: asyncio.run(e.aget_text_embedding_batch(d)))


def _haystack(kw):
    from haystack import Document
    from haystack.utils import Secret

    from harrier.integrations.haystack import HarrierDocumentEmbedder, HarrierTextEmbedder

    if "api_key" in kw:
        kw = dict(kw, api_key=Secret.from_token(kw["api_key"]))
    text, docs = HarrierTextEmbedder(**kw), HarrierDocumentEmbedder(**kw)

    def embed_docs(d):
        return [x.embedding for x in docs.run(documents=[Document(content=t) for t in d])["documents"]]

    async def aembed_docs(d):
        return [x.embedding for x in (await docs.run_async(documents=[Document(content=t) for t in d]))["documents"]]

    async def aquery(t):
        return (await text.run_async(text=t))["embedding"]

    return (lambda q: [text.run(text=t)["embedding"] for t in q], embed_docs,
            lambda q: asyncio.run(_gather(aquery, q)), lambda d: asyncio.run(aembed_docs(d)))


def _chroma(kw):
    from harrier.integrations.chroma import HarrierEmbeddingFunction

    ef = HarrierEmbeddingFunction(**kw)
    return ef.embed_query, ef, None, None


async def _gather(fn, texts):
    return await asyncio.gather(*(fn(t) for t in texts))


FRAMEWORKS = {"langchain": _langchain, "llamaindex": _llamaindex, "haystack": _haystack, "chroma": _chroma}


@pytest.mark.parametrize("backend", ["local", "remote"], indirect=True)
@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_queries_instructed_documents_raw(framework, backend, fw_reference):
    q_ref = fw_reference.encode(QUERIES, prompt_name="web_search_query")
    d_ref = fw_reference.encode(DOCS)
    assert cosine_rows(q_ref, fw_reference.encode(QUERIES)).max() < 0.999  # the prompt matters on this model
    embed_q, embed_d, aembed_q, aembed_d = FRAMEWORKS[framework](backend)
    for fn, ref, texts in ((embed_q, q_ref, QUERIES), (embed_d, d_ref, DOCS), (aembed_q, q_ref, QUERIES),
                           (aembed_d, d_ref, DOCS)):
        if fn is None:  # Chroma has no async embedding function
            continue
        got = np.asarray(fn(texts), dtype=np.float32)
        assert got.shape == ref.shape
        cos = cosine_rows(got, ref)
        assert cos.min() >= COS_MIN, (framework, cos)


@pytest.mark.parametrize("backend", ["local", "remote"], indirect=True)
@pytest.mark.parametrize("prompt", [{"instruction": "Retrieve parallel sentences"}, {"task": "ArguAna"},
                                    {"prompt_name": "sts_query"}])
def test_query_prompt_is_configurable(prompt, backend, fw_reference):
    from harrier.integrations.langchain import HarrierEmbeddings

    e = HarrierEmbeddings(**backend, **prompt)
    got = np.asarray([e.embed_query(t) for t in QUERIES])
    assert cosine_rows(got, fw_reference.encode(QUERIES, **prompt)).min() >= COS_MIN
    assert cosine_rows(got, fw_reference.encode(QUERIES, prompt_name="web_search_query")).max() < 0.999
    assert cosine_rows(np.asarray(e.embed_documents(DOCS)), fw_reference.encode(DOCS)).min() >= COS_MIN
