"""Gemma-3-270M base (real GGUF, dequantized) turned into a harrier-270m-style embedder -- causal, all layers full
attention, EOS appended, last-token pooling, L2 norm -- against transformers' Gemma-3 on the same weights:
``pytest -m real tests/test_parity_gguf.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_parity_real import multilingual_sentences

pytestmark = pytest.mark.real


def test_gemma3_270m_harrier_style_matches_transformers(gemma3_gguf):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from harrier.train.student import embedder_from_decoder_lm

    texts = multilingual_sentences(n_per_lang=2)[:20]
    ours = embedder_from_decoder_lm(gemma3_gguf, device="cpu", max_length=2048)
    assert ours.model.cfg.layer_types == ("full_attention",) * 18 and ours.model.cfg.causal

    folder, name = str(gemma3_gguf.parent), gemma3_gguf.name
    cfg = AutoConfig.from_pretrained(folder, gguf_file=name)
    cfg.layer_types = ["full_attention"] * cfg.num_hidden_layers
    ref_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, config=cfg, dtype=torch.float32).model
    ref_model.eval()
    ref_tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)

    ids = ours.tokenize(texts)
    got = ours.encode(texts)
    for i, text in enumerate(texts):
        ref_ids = ref_tok(text)["input_ids"]
        if ref_ids[-1] != cfg.eos_token_id:
            ref_ids = ref_ids + [cfg.eos_token_id]  # harrier appends EOS; the base tokenizer does not
        assert ids[i] == ref_ids, i
        with torch.no_grad():
            hidden = ref_model(input_ids=torch.tensor([ref_ids])).last_hidden_state[0, -1]
        ref = torch.nn.functional.normalize(hidden, dim=-1).numpy()
        cos = float(np.dot(got[i], ref))
        assert cos >= 0.9999, (i, cos)
