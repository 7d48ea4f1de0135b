"""Student initialisation: an existing embedder, or a decoder LM turned into a harrier-style embedder.

A decoder LM (Hugging Face directory or ``.gguf``, e.g. Gemma-3-270M base) becomes what harrier-270m is: causal
attention, **every layer full attention** (stock Gemma-3 alternates sliding-window layers; harrier-270m does
not), last-token pooling over an **EOS appended** by the tokenizer's post-processor, L2 normalisation, and the
harrier named prompts. The LM head is dropped by the loader.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import warnings
from pathlib import Path

import torch

from harrier import loading
from harrier.embedder import Embedder
from harrier.heads import PoolingConfig
from harrier.models.config import decoder_config
from harrier.prompts import HARRIER_PROMPTS, PromptConfig

log = logging.getLogger(__name__)


def detect_kind(path: str | Path) -> str:
    """``embedder`` for a Sentence-Transformers directory, ``decoder-lm`` for a bare HF directory or a GGUF."""
    p = Path(path).expanduser()
    if p.is_file():
        return "decoder-lm"
    if (p / "modules.json").is_file():
        return "embedder"
    if (p / "config.json").is_file():
        return "decoder-lm"
    raise ValueError(f"student {p} is neither a model directory (config.json) nor a .gguf file")


def append_eos(tokenizer_json: str, eos_id: int) -> str:
    """The tokenizer with a post-processor that keeps its BOS behaviour and appends ``eos_id``."""
    from tokenizers import Tokenizer, processors

    tok = Tokenizer.from_str(tokenizer_json)
    plain = tok.encode("a", add_special_tokens=False).ids
    full = tok.encode("a", add_special_tokens=True).ids
    if full and full[-1] == eos_id:
        return tokenizer_json
    bos = full[0] if len(full) > len(plain) and full[: len(full) - len(plain)] else None
    eos_tok = tok.id_to_token(eos_id)
    if eos_tok is None:
        raise ValueError(f"eos id {eos_id} is not in the tokenizer's vocabulary")
    specials = [(eos_tok, eos_id)]
    single = f"$A:0 {eos_tok}:0"
    if bos is not None:
        bos_tok = tok.id_to_token(bos)
        specials.insert(0, (bos_tok, bos))
        single = f"{bos_tok}:0 {single}"
    tok.post_processor = processors.TemplateProcessing(single=single, pair=f"{single} $B:1 {eos_tok}:1",
                                                       special_tokens=specials)
    return tok.to_str()


def _eos_id(hf_config: dict) -> int:
    eos = hf_config.get("eos_token_id")
    if isinstance(eos, list):
        eos = eos[0] if eos else None
    if eos is None:
        raise ValueError("the decoder LM's config has no eos_token_id; cannot append EOS for last-token pooling")
    return int(eos)


def embedder_from_decoder_lm(path: str | Path, *, device: str | torch.device | None = None,
                             max_length: int | None = None, full_attention: bool = True) -> Embedder:
    """:func:`student_from_decoder_lm` behind the public :class:`Embedder` facade (texts over the limit are cut
    silently)."""
    return Embedder(student_from_decoder_lm(path, device=device, max_length=max_length,
                                            full_attention=full_attention), truncation="silent")


def student_from_decoder_lm(path: str | Path, *, device: str | torch.device | None = None,
                            max_length: int | None = None, full_attention: bool = True) -> loading.LoadedModel:
    """A harrier-style causal last-token embedder from a decoder LM (fp32 weights, for training).

    The checkpoint's limit (what an export declares) is the LM's context, capped at 32k tokens as harrier's;
    ``max_length`` (default: that limit) is where this embedder's tokenizer truncates, e.g. during training.
    """
    with warnings.catch_warnings():  # "declares no pooling": expected for an LM, we set the pooling below
        warnings.filterwarnings("ignore", message=".*declares no pooling.*")
        ckpt = loading.read_checkpoint(loading.resolve(path))
    card = ckpt.card
    hf = copy.deepcopy(card.hf_config)
    hf.pop("use_bidirectional_attention", None)
    if full_attention and hf.get("model_type") == "gemma3_text":
        hf["layer_types"] = ["full_attention"] * int(hf["num_hidden_layers"])
        hf.pop("sliding_window_pattern", None)
    eos = _eos_id(hf)
    context = min(int(hf.get("max_position_embeddings", 32_768)), 32_768)
    tokenizer_files = {**card.tokenizer_files, "tokenizer_config.json": json.dumps(
        {**json.loads(card.tokenizer_files.get("tokenizer_config.json", "{}")), "model_max_length": context})}
    card = dataclasses.replace(
        card, hf_config=hf, decoder=decoder_config(hf), pooling=PoolingConfig(mode="lasttoken"), dense=(),
        normalize=True, tokenizer_json=append_eos(card.tokenizer_json, eos),
        prompts=PromptConfig(prompts=dict(HARRIER_PROMPTS)), max_length=context, tokenizer_files=tokenizer_files,
    )
    loaded = loading.ready_model(dataclasses.replace(ckpt, card=card), device=loading.resolve_device(device),
                                 dtype=torch.float32, max_length=max_length or context)
    log.info("student from decoder LM %s: %d layers, causal, last-token pooling, EOS %d appended",
             path, card.decoder.num_layers, eos)
    return loaded


def load_student(path: str | Path, *, kind: str = "auto", device: str | torch.device | None = None,
                 max_length: int | None = None) -> loading.LoadedModel:
    """The student as an fp32 model, its tokenizer and prompts; ``model`` trains (mixed precision comes from
    autocast).

    ``max_length``: where texts are truncated (default: the model's own limit); ``student.card.max_length``
    keeps the model's own limit, which the export declares.
    """
    kind = detect_kind(path) if kind == "auto" else kind
    if kind == "decoder-lm":
        return student_from_decoder_lm(path, device=device, max_length=max_length)
    if kind != "embedder":
        raise ValueError(f"model.kind must be auto, embedder or decoder-lm, got {kind!r}")
    return loading.load_model(path, device=device, dtype="float32", max_length=max_length)
