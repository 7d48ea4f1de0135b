"""Frameworks load only with their integration, and a missing one names the extra that installs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

FRAMEWORKS = {"langchain": "langchain_core", "llamaindex": "llama_index", "haystack": "haystack", "chroma": "chromadb"}


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_harrier_imports_no_framework():
    out = _run("import sys, harrier, harrier.integrations, harrier.integrations.sides\n"
               f"print([m for m in {list(FRAMEWORKS.values())!r} if m in sys.modules])")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("extra", list(FRAMEWORKS))
def test_missing_framework_names_its_extra(extra):
    blocked = FRAMEWORKS[extra]
    out = _run(f"import sys; sys.modules[{blocked!r}] = None\nimport harrier.integrations.{extra}")
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: harrier.integrations.")
    assert f"[{extra}]'" in last, last
