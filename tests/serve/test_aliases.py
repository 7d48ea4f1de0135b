"""Model aliases, one per named prompt (``tiny-harrier@web_search_query``), through the official openai client:
naming the alias gives that prompt's vectors, naming the served name gives raw ones."""

from __future__ import annotations

import numpy as np
import openai
import pytest
from servekit import API_KEY, MODEL_NAME, TEXTS, cosine_rows


def _vectors(resp) -> np.ndarray:
    return np.asarray([d.embedding for d in resp.data], dtype=np.float32)


def test_models_lists_one_alias_per_prompt(oai, reference):
    ids = [m.id for m in oai.models.list().data]
    assert ids == [MODEL_NAME, *(f"{MODEL_NAME}@{name}" for name in sorted(reference.prompts))]


@pytest.mark.parametrize("name", ["web_search_query", "sts_query", "bitext_query"])
def test_alias_gives_its_prompt(oai, reference, name):
    resp = oai.embeddings.create(model=f"{MODEL_NAME}@{name}", input=TEXTS)
    assert resp.model == f"{MODEL_NAME}@{name}"
    got = _vectors(resp)
    assert cosine_rows(got, reference.encode(TEXTS, prompt_name=name)).min() >= 0.99999
    assert cosine_rows(got, reference.encode(TEXTS)).max() < 0.999  # not the raw vectors


def test_plain_name_gives_raw_documents(oai, reference):
    got = _vectors(oai.embeddings.create(model=MODEL_NAME, input=TEXTS, encoding_format="float"))
    assert cosine_rows(got, reference.encode(TEXTS)).min() >= 0.99999


def test_alias_with_base64(server, reference):
    """The openai client's default encoding (base64) through the alias, decoded by the client itself."""
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)
    resp = client.embeddings.create(model=f"{MODEL_NAME}@web_search_query", input=TEXTS[:2])
    assert cosine_rows(_vectors(resp), reference.encode(TEXTS[:2], prompt_name="web_search_query")).min() >= 0.99999


def test_unknown_alias_is_404(oai):
    with pytest.raises(openai.NotFoundError, match="web_search_query"):  # the message lists the aliases
        oai.embeddings.create(model=f"{MODEL_NAME}@web_serch_query", input=["a"])
    with pytest.raises(openai.NotFoundError):
        oai.embeddings.create(model="other@web_search_query", input=["a"])


def test_alias_and_prompt_field_conflict_is_422(oai):
    with pytest.raises(openai.UnprocessableEntityError, match="selects prompt 'sts_query'; do not also send task"):
        oai.embeddings.create(model=f"{MODEL_NAME}@sts_query", input=["a"], extra_body={"task": "ArguAna"})
