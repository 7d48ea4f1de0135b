"""Every Python block of docs/integrations.md, run against a real ``harrier serve`` (the tiny model under the
docs' served name): each block's ``q`` must be the instructed query and ``d`` the raw documents."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from servekit import API_KEY, MODEL_NAME, cosine_rows

DOC = Path(__file__).parents[2] / "docs" / "integrations.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
SETUP, EXAMPLES = BLOCKS[0], BLOCKS[1:]


def _first_line(block: str) -> str:
    return next(line for line in block.splitlines() if line.startswith(("from ", "import ")) and "__future__" not in
                line and not line.startswith(("import os", "from typing")))


def test_docs_have_one_block_per_framework():
    text = "\n".join(EXAMPLES)
    for needle in ("langchain_core.vectorstores", "langchain_openai", "llama_index", "haystack", "chromadb",
                   "from openai import OpenAI", "encode_query"):
        assert needle in text, needle


@pytest.mark.parametrize("block", EXAMPLES, ids=[_first_line(b) for b in EXAMPLES])
def test_docs_example_runs_and_gives_the_right_vectors(block, fw_server, fw_reference, tiny_gemma3_dir,
                                                       monkeypatch):
    monkeypatch.setenv("HARRIER_API_KEY", API_KEY)
    monkeypatch.setenv("ANONYMIZED_TELEMETRY", "False")
    def local(code: str) -> str:
        return (code.replace("http://127.0.0.1:8080", fw_server.url).replace('"harrier-270m', f'"{MODEL_NAME}')
                .replace('"microsoft/harrier-oss-v1-270m"', repr(str(tiny_gemma3_dir))))

    ns: dict = {}
    exec(compile(local(SETUP), "setup", "exec"), ns)
    exec(compile(local(block), "example", "exec"), ns)
    q = np.asarray(ns["q"], dtype=np.float32).reshape(1, -1)
    d = np.asarray(ns["d"], dtype=np.float32)
    assert cosine_rows(q, fw_reference.encode([ns["query"]], prompt_name="web_search_query")).min() >= 0.99999
    assert cosine_rows(d, fw_reference.encode(ns["docs"])).min() >= 0.99999
