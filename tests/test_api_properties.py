"""The public API under random and bad input (issue 14): a seeded generator mixes empty, whitespace, very long,
mixed-script and control-character texts with random prompts; ``encode`` either returns unit-norm finite float32
vectors in input order or raises a documented ``ValueError``. Enumerated options are checked where they enter.
``pytest tests/test_api_properties.py``."""

from __future__ import annotations

import logging
import random
import re
import warnings

import numpy as np
import pytest
import tiny

from harrier import Embedder
from harrier.heads import PoolingConfig
from harrier.loading import load_model

MAX_LENGTH = 48
PIECES = ["", " ", "\t\n", "\u3000", "a", "Hund", "敏捷的棕色狐狸", "Быстрая лиса", "الثعلب", "🙂", "e\u0301",
          "\x00", "\x1b[31m", "\u200b", "\ufeff", "\r", "\x7f", "<bos>", "<eos>", "Query: ",
          "The quick brown fox jumps over the lazy dog."]
GOOD_PROMPTS = [{}, {"prompt_name": "web_search_query"}, {"prompt_name": "sts_query"}, {"task": "STSBenchmark"},
                {"instruction": "Retrieve parallel sentences"}, {"prompt": ""}, {"prompt": "\x00 weird: "}]
BAD_PROMPTS = [({"prompt_name": "nope"}, "unknown prompt name 'nope'"), ({"task": "NoSuchTask"}, "unknown task"),
               ({"instruction": " "}, "instruction is empty"),
               ({"prompt_name": "sts_query", "prompt": "x"}, "give at most one"),
               ({"prompt_name": 3}, "prompt_name must be a str")]
BAD_ITEMS = [(None, "is NoneType, not str"), (7, "is int, not str"), (b"bytes", "is bytes, not str")]


def random_text(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.1:
        return rng.choice(["", " ", "\n", "\t \u3000"])
    n = rng.randint(60, 200) if kind > 0.85 else rng.randint(1, 8)  # some far over MAX_LENGTH tokens
    return "".join(rng.choice(PIECES) + rng.choice(["", " "]) for _ in range(n))


def random_case(rng: random.Random) -> tuple[list, dict, str | None]:
    """Texts, prompt kwargs, and the ValueError message they must raise (None: they must encode). ``encode`` checks
    the list first, then the prompt, then tokenizes."""
    texts: list = [random_text(rng) for _ in range(rng.randint(0, 7))]
    errors = []
    if texts and rng.random() < 0.2:
        i = rng.randrange(len(texts))
        item, message = rng.choice(BAD_ITEMS)
        texts[i] = item
        errors.append(f"text #{i} {message}")
    if rng.random() < 0.25:
        prompt, message = rng.choice(BAD_PROMPTS)
        errors.append(message)
    else:
        prompt = rng.choice(GOOD_PROMPTS)
    if texts and rng.random() < 0.1:
        i = rng.randrange(len(texts))
        if isinstance(texts[i], str):
            texts[i] += "\ud800"  # a lone surrogate: not encodable text
            errors.append(f"text #{i} is not valid Unicode")
    return texts, prompt, errors[0] if errors else None


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def model(request, tiny_gemma3_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 on a CPU without native bf16 warns that it is slow
        return Embedder.from_pretrained(tiny_gemma3_dir, dtype=request.param, max_length=MAX_LENGTH, device="cpu")


def test_random_inputs_encode_or_raise_documented_value_errors(model, caplog):
    rng = random.Random(14)
    tol = 1e-6
    encoded = 0
    for _ in range(30):
        texts, prompt, error = random_case(rng)
        if error is not None:
            with pytest.raises(ValueError, match=re.escape(error)):
                model.encode(texts, **prompt)
            continue
        out = model.encode(texts, **prompt)
        assert out.dtype == np.float32 and out.shape == (len(texts), model.dim)
        assert np.isfinite(out).all()
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=tol)
        ids = model.tokenize(texts, model.prefix(**prompt)) if texts else []
        for i, text in enumerate(texts):  # input order: each row is that text encoded alone, unlike the others
            alone = model.encode([text], **prompt)[0]
            assert np.abs(out[i] - alone).max() < (1e-5 if model.dtype.itemsize == 4 else 2e-2), i
            others = [float(out[j] @ alone) for j in range(len(texts)) if ids[j] != ids[i]]
            assert float(out[i] @ alone) > max(others, default=-1.0), i
        encoded += len(texts)
    assert encoded > 30


def test_low_precision_outputs_are_unit_norm(tiny_gemma3_dir, tiny_embeddinggemma_dir):
    texts = tiny.mixed_texts()
    for path in (tiny_gemma3_dir, tiny_embeddinggemma_dir):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = Embedder.from_pretrained(path, dtype="bfloat16", device="cpu")
        out = m.encode(texts)
        assert out.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
        chunked = m.encode_chunked(texts, chunk=32, overlap=4, aggregate="none").embeddings
        np.testing.assert_allclose(np.linalg.norm(chunked, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("bad,needle", [(None, "takes a list of texts, got None"), (5, "takes a list of texts"),
                                        ("one text", "wrap a single text in a list"),
                                        (["a", ["b"]], "text #1 is list, not str")])
def test_encode_refuses_non_lists_with_value_error(bad, needle, tiny_gemma3_dir):
    m = Embedder.from_pretrained(tiny_gemma3_dir)
    with pytest.raises(ValueError, match=needle):
        m.encode(bad)
    with pytest.raises(ValueError):
        m.encode_items(bad)


def test_enumerated_options_are_checked_where_they_enter(tiny_gemma3_dir, tiny_qwen3_dir):
    with pytest.raises(ValueError, match="truncation 'bogus' is not supported; supported: warn, error, silent"):
        Embedder.from_pretrained(tiny_gemma3_dir, truncation="bogus")
    with pytest.raises(ValueError, match="truncation 'bogus' is not supported"):
        Embedder(load_model(tiny_gemma3_dir), truncation="bogus")
    m = Embedder.from_pretrained(tiny_gemma3_dir)
    with pytest.raises(ValueError, match="truncation 'cut' is not supported"):
        m.tokenize_items([("a", None)], truncation="cut")
    with pytest.raises(ValueError, match="dtype 'fp8' is not supported; supported: auto, float32, bfloat16"):
        Embedder.from_pretrained(tiny_gemma3_dir, dtype="fp8")
    with pytest.raises(ValueError, match="pooling 'max' is not supported; supported: lasttoken, mean, cls"):
        PoolingConfig(mode="max")
    with pytest.raises(ValueError, match="max_length must be an int of at least 2"):
        Embedder.from_pretrained(tiny_gemma3_dir, max_length=1)
    with pytest.raises(ValueError, match="unknown prompt name 'query'.*known: bitext_query, sts_query, web_search_q"):
        m.encode(["a"], prompt_name="query")


def test_max_length_over_positions_needs_an_opt_in(tiny_qwen3_dir, caplog):
    with pytest.raises(ValueError, match="max_length 4096 exceeds the model's 2048 positions; pass "
                                         "allow_over_positions=True"):
        Embedder.from_pretrained(tiny_qwen3_dir, max_length=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw UserWarning any more
        with caplog.at_level(logging.WARNING):
            m = Embedder.from_pretrained(tiny_qwen3_dir, max_length=4096, allow_over_positions=True)
    lines = [r.getMessage() for r in caplog.records if "positions" in r.getMessage()]
    assert len(lines) == 1 and "4096" in lines[0] and "2048" in lines[0] and "\n" not in lines[0], lines
    assert m.max_length == 4096


def test_count_tokens_does_not_truncate(tiny_gemma3_dir):
    m = Embedder.from_pretrained(tiny_gemma3_dir, max_length=64)
    long_text = "word " * 80
    prefix = m.prefix(prompt_name="web_search_query")
    full = m.tokenize([long_text], prefix, truncate=False)[0]
    assert len(full) > 80 and m.tokenize([long_text], prefix)[0] == full[:63] + full[-1:]
    short = m.tokenize([""], prefix)[0]
    assert len(short) < 64 and m.tokenize([""], prefix, truncate=False)[0] == short
    assert m.count_tokens(["", long_text], prompt_name="web_search_query") == [len(short), len(full)]
    wide = Embedder.from_pretrained(tiny_gemma3_dir)
    assert wide.tokenize([long_text], prefix) == [full]
    with pytest.raises(ValueError, match="text #0 is NoneType"):
        m.count_tokens([None])
