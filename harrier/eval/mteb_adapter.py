"""Run any ``Encoder`` through mteb itself (e.g. the full MTEB(Multilingual, v2) benchmark, with network access).

``MtebEncoder`` implements mteb's ``EncoderProtocol`` over our runtime and applies the same prompt policy as
``harrier eval`` (mteb is imported lazily; it is a dev/test dependency, not a runtime one)::

    import mteb
    from harrier.eval.encoders import load_encoder
    from harrier.eval.mteb_adapter import MtebEncoder

    model = MtebEncoder(load_encoder("./my-model"), name="me/my-model")
    mteb.evaluate(model, mteb.get_benchmark("MTEB(Multilingual, v2)"))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from harrier.eval.encoders import Encoder, PromptPolicy, choose_policy
from harrier.vectors import l2_normalize


@dataclass(frozen=True)
class _TaskView:
    """The parts of mteb's TaskMetadata our prompt policies read."""

    name: str
    type: str
    prompt: str | Mapping[str, str] | None = None


class MtebEncoder:
    """mteb ``EncoderProtocol`` over an ``Encoder``; prompts chosen by ``prompts`` (see ``encoders.choose_policy``)."""

    def __init__(self, encoder: Encoder, *, name: str | None = None, revision: str | None = None,
                 prompts: str | PromptPolicy = "auto") -> None:
        self.encoder = encoder
        self.policy = choose_policy(encoder, prompts) if isinstance(prompts, str) else prompts
        self.name = name or f"harrier/{encoder.name}"
        self.revision = revision
        self.used_prompts: dict[tuple[str, str | None], str | None] = {}

    @property
    def mteb_model_meta(self) -> Any:
        from mteb.models.model_meta import ModelMeta

        return ModelMeta.create_empty(overwrites={"name": self.name, "revision": self.revision,
                                                  "similarity_fn_name": "cosine"})

    def prompt_for(self, task_metadata: Any, prompt_type: Any) -> str | None:
        """The literal prompt for an mteb task and prompt type (``PromptType`` or None)."""
        kind = getattr(prompt_type, "value", prompt_type)
        view = _TaskView(task_metadata.name, task_metadata.type, task_metadata.prompt)
        prompt = self.policy.prompt(view, kind)
        self.used_prompts[(task_metadata.name, kind)] = prompt
        return prompt

    def encode(self, inputs: Any, *, task_metadata: Any, hf_split: str, hf_subset: str, prompt_type: Any = None,
               **kwargs: Any) -> np.ndarray:
        texts: list[str] = []
        for batch in inputs:
            texts.extend(batch["text"])
        return self.encoder.encode(texts, prompt=self.prompt_for(task_metadata, prompt_type))

    def similarity(self, embeddings1: Any, embeddings2: Any) -> Any:
        import torch

        a, b = l2_normalize(np.atleast_2d(embeddings1)), l2_normalize(np.atleast_2d(embeddings2))
        return torch.from_numpy(a @ b.T)

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> Any:
        import torch

        a, b = l2_normalize(embeddings1), l2_normalize(embeddings2)
        return torch.from_numpy((a * b).sum(axis=-1))
