"""Writing the harrier Sentence-Transformers layout: config.json + model.safetensors + tokenizer files at the root,
then ``modules.json`` with ``1_Pooling``, ``k_Dense`` and ``k_Normalize``, ``config_sentence_transformers.json``
(prompts) and ``sentence_bert_config.json`` (max length). Both harrier and ``SentenceTransformer()`` load it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from harrier import faults
from harrier.heads import st_pooling_config
from harrier.loading import ModelCard
from harrier.model import EmbeddingModel

ST_PREFIX = "sentence_transformers.models."


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def save_pretrained(path: Path, *, model: EmbeddingModel, card: ModelCard, max_length: int, dtype: torch.dtype,
                    extra_files: dict[str, Any] | None = None) -> None:
    """Write ``model`` to ``path`` atomically (a temporary sibling directory renamed into place).

    Args:
        card: what the checkpoint declared (config, tokenizer files, prompts); ``model``'s head is written as is.
        max_length: the limit to declare (``sentence_bert_config.json``, ``tokenizer_config.json``).
        dtype: recorded in config.json.
        extra_files: more JSON files to write (name -> object), e.g. the resolved training config.
    """
    from safetensors.torch import save_file

    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    dtype_name = str(dtype).removeprefix("torch.")
    _write_json(tmp / "config.json", {**card.hf_config, "dtype": dtype_name})
    save_file(_contiguous(model.backbone.state_dict()), tmp / "model.safetensors", metadata={"format": "pt"})
    (tmp / "tokenizer.json").write_text(card.tokenizer_json, encoding="utf-8")
    tok_cfg = json.loads(card.tokenizer_files.get("tokenizer_config.json", "{}"))
    tok_cfg["model_max_length"] = max_length
    _write_json(tmp / "tokenizer_config.json", tok_cfg)
    for name, text in card.tokenizer_files.items():
        if name != "tokenizer_config.json":
            (tmp / name).write_text(text, encoding="utf-8")

    modules = [{"idx": 0, "name": "0", "path": "", "type": ST_PREFIX + "Transformer"}]
    head = model.head
    _write_json(tmp / "1_Pooling" / "config.json",
                st_pooling_config(head.pooling, model.cfg.hidden_size))
    modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": ST_PREFIX + "Pooling"})
    for dense in head.dense:
        idx = len(modules)
        sub = f"{idx}_Dense"
        c = dense.cfg
        _write_json(tmp / sub / "config.json", {"in_features": c.in_features, "out_features": c.out_features,
                                               "bias": c.bias, "activation_function": c.activation})
        save_file(_contiguous(dense.state_dict()), tmp / sub / "model.safetensors", metadata={"format": "pt"})
        modules.append({"idx": idx, "name": str(idx), "path": sub, "type": ST_PREFIX + "Dense"})
    if head.normalize:
        idx = len(modules)
        (tmp / f"{idx}_Normalize").mkdir()
        modules.append({"idx": idx, "name": str(idx), "path": f"{idx}_Normalize", "type": ST_PREFIX + "Normalize"})
    _write_json(tmp / "modules.json", modules)
    _write_json(tmp / "config_sentence_transformers.json", {
        "model_type": "SentenceTransformer",
        "prompts": dict(card.prompts.prompts),
        "default_prompt_name": card.prompts.default_prompt_name,
        "similarity_fn_name": "cosine",
    })
    _write_json(tmp / "sentence_bert_config.json", {"max_seq_length": max_length, "do_lower_case": False})
    for name, obj in (extra_files or {}).items():
        _write_json(tmp / name, obj)
    os.chmod(tmp, 0o755)
    faults.point("export.written")
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        path.rename(old)
        faults.point("export.swapped")
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(path)
