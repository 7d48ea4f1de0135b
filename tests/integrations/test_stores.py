"""Round trips through the frameworks' own stores: LangChain's InMemoryVectorStore on real weights (a paraphrased
query finds its document), a Chroma collection and a Haystack pipeline on the tiny model (stored and query vectors
equal the library's)."""

from __future__ import annotations

import numpy as np
import pytest
from servekit import API_KEY, cosine_rows

DOCS = {
    "protein": "Adult women need about 46 grams of protein a day, more when pregnant or very active.",
    "paris": "Paris has been the capital of France since the tenth century and is its largest city.",
    "moon": "The Moon formed about 4.5 billion years ago, shortly after the Solar System itself.",
    "python": "To reverse a list in Python, call list.reverse() or slice it with [::-1].",
    "tides": "Ocean tides are caused mainly by the gravitational pull of the Moon on the Earth's water.",
}
QUERIES = {  # paraphrases: few words shared with their document
    "protein": "how much protein should a woman eat daily",
    "paris": "which city is France's seat of government",
    "moon": "what is the age of our natural satellite",
    "python": "flip the order of items in a python array",
    "tides": "why does the sea rise and fall twice a day",
}


@pytest.mark.real
def test_langchain_in_memory_store_finds_paraphrased_query(embeddinggemma_dir):
    from langchain_core.documents import Document
    from langchain_core.vectorstores import InMemoryVectorStore

    from harrier import Embedder
    from harrier.integrations.langchain import HarrierEmbeddings

    model = Embedder.from_pretrained(embeddinggemma_dir, device="cpu", dtype="float32")
    store = InMemoryVectorStore(HarrierEmbeddings(model))
    store.add_documents([Document(page_content=text, id=key) for key, text in DOCS.items()])
    stored = np.asarray([store.store[key]["vector"] for key in DOCS])
    assert cosine_rows(stored, model.encode(list(DOCS.values()), prompt_name="document")).min() >= 0.99999
    for key, query in QUERIES.items():
        hits = store.similarity_search_with_score(query, k=2)
        assert hits[0][0].id == key, (query, [(d.id, s) for d, s in hits])


@pytest.mark.parametrize("backend", ["local", "remote"], indirect=True)
def test_chroma_collection_round_trip(backend, fw_reference, tmp_path, monkeypatch):
    import chromadb
    from chromadb.config import Settings

    from harrier.integrations.chroma import HarrierEmbeddingFunction

    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"), settings=Settings(anonymized_telemetry=False))
    ef = HarrierEmbeddingFunction(**backend)
    col = client.create_collection("docs", embedding_function=ef)
    col.add(ids=list(DOCS), documents=list(DOCS.values()))
    stored = col.get(ids=list(DOCS), include=["embeddings"])["embeddings"]
    assert cosine_rows(np.asarray(stored), fw_reference.encode(list(DOCS.values()))).min() >= 0.99999
    queries = list(QUERIES.values())
    res = col.query(query_texts=queries, n_results=len(DOCS), include=["distances"])
    q = fw_reference.encode(queries, prompt_name="web_search_query")
    d = fw_reference.encode(list(DOCS.values()))
    expected = np.argsort(-(q @ d.T), axis=1)  # cosine space: the library's ranking with instructed queries
    assert [[list(DOCS).index(i) for i in row] for row in res["ids"]] == expected.tolist()
    assert col.configuration["embedding_function"].name() == "harrier"
    monkeypatch.setenv("HARRIER_API_KEY", API_KEY)  # a rebuilt function reads the key from the environment
    rebuilt = HarrierEmbeddingFunction.build_from_config(ef.get_config())
    assert cosine_rows(np.asarray(rebuilt.embed_query(queries)), q).min() >= 0.99999
    assert "api_key" not in ef.get_config()
    reopened = chromadb.PersistentClient(path=str(tmp_path / "chroma"), settings=Settings(anonymized_telemetry=False))
    again = reopened.get_collection("docs")  # no embedding function given: Chroma rebuilds ours from its config
    assert again.query(query_texts=queries, n_results=len(DOCS))["ids"] == res["ids"]


def test_haystack_pipeline_and_serialisation(fw_server, fw_reference, monkeypatch):
    from haystack import Document, Pipeline
    from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
    from haystack.document_stores.in_memory import InMemoryDocumentStore
    from haystack.utils import Secret

    from harrier.integrations.haystack import HarrierDocumentEmbedder, HarrierTextEmbedder

    monkeypatch.setenv("HARRIER_TEST_KEY", API_KEY)
    key = Secret.from_env_var("HARRIER_TEST_KEY")
    store = InMemoryDocumentStore(embedding_similarity_function="cosine")
    docs = HarrierDocumentEmbedder(url=fw_server.url, api_key=key, meta_fields_to_embed=["title"])
    written = docs.run([Document(content=t, meta={"title": k}) for k, t in DOCS.items()])["documents"]
    texts = [f"{k}\n{t}" for k, t in DOCS.items()]
    assert cosine_rows(np.asarray([x.embedding for x in written]), fw_reference.encode(texts)).min() >= 0.99999
    store.write_documents(written)
    pipe = Pipeline()
    pipe.add_component("embed", HarrierTextEmbedder(url=fw_server.url, api_key=key))
    pipe.add_component("retrieve", InMemoryEmbeddingRetriever(document_store=store, top_k=len(DOCS)))
    pipe.connect("embed.embedding", "retrieve.query_embedding")
    # the key travels as the name of its environment variable
    again = Pipeline.from_dict(pipe.to_dict(), allowed_modules=["harrier.integrations.haystack"])
    assert API_KEY not in str(pipe.to_dict())
    query = QUERIES["moon"]
    got = [d.meta["title"] for d in again.run({"embed": {"text": query}})["retrieve"]["documents"]]
    q = fw_reference.encode([query], prompt_name="web_search_query")
    order = np.argsort(-(q @ fw_reference.encode(texts).T)[0])
    assert got == [list(DOCS)[i] for i in order]
    with pytest.raises(ValueError, match="api_key must be a haystack Secret"):
        HarrierTextEmbedder(url=fw_server.url, api_key=API_KEY)
