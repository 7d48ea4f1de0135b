"""Task-file rows as the dataset split mteb's evaluators take (shared by the parity tests)."""

from __future__ import annotations


def instruction_reranking_split(rows: list[dict]) -> dict:
    """An InstructionReranking task file's rows as mteb's split: corpus, instructed queries, qrels, top-ranked."""
    import datasets

    queries = [r for r in rows if r["kind"] == "query"]
    docs = [r for r in rows if r["kind"] == "document"]
    return {
        "corpus": datasets.Dataset.from_dict({"id": [d["id"] for d in docs], "text": [d["text"] for d in docs]}),
        "queries": datasets.Dataset.from_dict({k: [q[k] for q in queries] for k in ("id", "text", "instruction")}),
        "relevant_docs": {q["id"]: dict(q["relevant"]) for q in queries},
        "top_ranked": {q["id"]: list(q["candidates"]) for q in queries},
    }
