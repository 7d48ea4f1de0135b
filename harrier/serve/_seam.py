"""TEMPORARY: the encoding seam's calls, until its commit lands on main (then this file goes)."""

from __future__ import annotations

import torch

from harrier.engine import pack


def tokenize(m, texts, prefix: str, policy: str):
    ids = m.tokenizer.encode([prefix + t for t in texts], truncation=policy)
    plen = m.tokenizer.prompt_length(prefix) if not m.model.head.pooling.include_prompt else 0
    return ids.ids, [min(plen, len(x)) for x in ids.ids], list(ids.truncated)


def with_specials(m, ids: list[int]) -> list[int]:
    tok = m.tokenizer.tokenizer
    plain = tok.encode("a", add_special_tokens=False).ids
    full = tok.encode("a", add_special_tokens=True).ids
    k = next(i for i in range(len(full)) if full[i:i + len(plain)] == plain)
    return full[:k] + list(ids) + full[k + len(plain):]


def embed_step(model, ids, *, device, prompt_lens=None):
    with torch.inference_mode():
        return model(pack(ids, device, prompt_lens)).float().cpu().numpy()


try:
    from harrier.engine import DEFAULT_BATCH_TOKENS
except ImportError:
    from harrier.embedder import DEFAULT_BATCH_TOKENS  # noqa: F401
