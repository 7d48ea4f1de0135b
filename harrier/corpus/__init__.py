"""Corpus encoding and search: stream JSONL/Parquet/TXT files into resumable Parquet shards of embeddings (locally
or on a Ray actor pool) and search them (exact, streamed; or an HNSW index). Needs
``pip install 'harrier-embed[corpus]'`` (pyarrow); the Ray engine needs ``harrier-embed[ray]``.

    from harrier.corpus.encode import CorpusConfig, encode_corpus
    from harrier.corpus.window import LocalEngine
    from harrier.corpus.search import exact_search

Submodules are imported on use, so ``harrier --help`` does not load torch or pyarrow.
"""
