"""Framework integrations that keep queries and documents apart (queries instructed, documents raw), each for an
in-process model and a ``harrier serve`` URL. Each module imports its framework; nothing is imported here:

- ``harrier.integrations.langchain``: ``HarrierEmbeddings`` (``langchain_core.embeddings.Embeddings``);
- ``harrier.integrations.llamaindex``: ``HarrierEmbedding`` (``BaseEmbedding``);
- ``harrier.integrations.haystack``: ``HarrierTextEmbedder``, ``HarrierDocumentEmbedder`` (Haystack components);
- ``harrier.integrations.chroma``: ``HarrierEmbeddingFunction`` (Chroma ``EmbeddingFunction``).

Shared: ``sides.connect`` (model or URL, query prompt) and ``remote.RemoteClient``. See docs/integrations.md.
"""
