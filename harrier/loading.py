"""Reading checkpoints: hub ids, Hugging Face / Sentence-Transformers directories (single or sharded safetensors),
and GGUF files. Writing them back in the harrier Sentence-Transformers layout lives in ``saving.py``.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harrier.heads import SUPPORTED_POOLING, DenseConfig, PoolingConfig
from harrier.models.config import DecoderConfig, decoder_config
from harrier.prompts import PromptConfig

log = logging.getLogger(__name__)
SUPPORTED_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")
HUB_FILES = ["*.json", "*.safetensors", "tokenizer.model", "*/*.json", "*/*.safetensors"]
LOCAL_HINT = ("pass --model a local directory in Hugging Face / Sentence-Transformers layout "
              "(e.g. --model ~/.cache/harrier-models/embeddinggemma-300m, fetched by "
              "shared/models/fetch-embeddinggemma-300m.sh) or a .gguf file")


class ModelSourceError(ValueError):
    """The model could not be found or downloaded."""


@dataclass(kw_only=True)
class Checkpoint:
    """Everything read from disk, before any module is built."""

    source: str
    hf_config: dict[str, Any]
    decoder: DecoderConfig
    backbone_state: dict[str, torch.Tensor]
    pooling: PoolingConfig
    dense: list[DenseConfig] = field(default_factory=list)
    dense_state: list[dict[str, torch.Tensor]] = field(default_factory=list)
    normalize: bool = True
    tokenizer_json: str
    tokenizer_files: dict[str, str] = field(default_factory=dict)
    prompts: PromptConfig
    max_length: int


def resolve(name_or_path: str | Path, *, revision: str | None = None, cache_dir: str | None = None) -> Path:
    """A local directory or .gguf file for a path or a hub id (downloaded with huggingface_hub)."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    text = str(name_or_path)
    if text.startswith((".", "/", "~")) or text.endswith(".gguf") or text.count("/") != 1:
        raise ModelSourceError(f"model path {text!r} does not exist")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return Path(snapshot_download(text, revision=revision, cache_dir=cache_dir, allow_patterns=HUB_FILES))
    except (OSError, HfHubHTTPError) as err:
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise ModelSourceError(f"cannot download {text!r} from the Hugging Face hub ({reason}); {LOCAL_HINT}") from err


def read_checkpoint(path: Path) -> Checkpoint:
    """Read a Sentence-Transformers / Hugging Face directory or a GGUF file."""
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelSourceError(f"{path} is a file but not .gguf; give a model directory or a .gguf file")
        return _read_gguf(path)
    modules = _read_modules(path)
    root = path / modules["Transformer"][0]
    hf_config = _read_json(root / "config.json")
    if hf_config is None:
        raise ModelSourceError(f"{root} has no config.json")
    if hf_config.get("model_type") == "gemma3" and "text_config" in hf_config:
        raise ValueError("multimodal gemma3 checkpoints are not supported; supported model types: gemma3_text, qwen3")
    cfg = decoder_config(hf_config)
    pooling, normalize = _read_pooling(path, modules)
    dense, dense_state = _read_dense(path, modules)
    max_length = _max_length(path, root, cfg)
    st_config = _read_json(path / "config_sentence_transformers.json") or {}
    return Checkpoint(
        source=str(path),
        hf_config=hf_config,
        decoder=cfg,
        backbone_state=read_safetensors_dir(root),
        pooling=pooling,
        dense=dense,
        dense_state=dense_state,
        normalize=normalize,
        tokenizer_json=_read_tokenizer(root),
        tokenizer_files={n: (root / n).read_text(encoding="utf-8") for n in ("tokenizer_config.json",
                         "special_tokens_map.json") if (root / n).is_file()},
        prompts=PromptConfig(prompts=dict(st_config.get("prompts") or {}),
                             default_prompt_name=st_config.get("default_prompt_name")),
        max_length=max_length,
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ModelSourceError(f"{path} is not valid JSON ({err})") from err


def _read_modules(path: Path) -> dict[str, list[str]]:
    """Module kind -> sub-paths in order from modules.json (only Dense may appear more than once)."""
    spec = _read_json(path / "modules.json")
    if spec is None:
        return {"Transformer": [""]}
    out: dict[str, list[str]] = {}
    for entry in spec:
        kind = str(entry.get("type", "")).rsplit(".", 1)[-1]
        if kind not in SUPPORTED_MODULES:
            raise ValueError(f"module {entry.get('type')!r} in {path / 'modules.json'} is not supported; "
                             f"supported: {', '.join(SUPPORTED_MODULES)}")
        out.setdefault(kind, []).append(entry.get("path", ""))
    if "Transformer" not in out:
        raise ValueError(f"{path / 'modules.json'} has no Transformer module")
    return out


def _read_pooling(path: Path, modules: dict[str, list[str]]) -> tuple[PoolingConfig, bool]:
    if "Pooling" not in modules:
        warnings.warn(f"{path} declares no pooling; using last-token pooling + L2 normalisation (harrier style)",
                      stacklevel=3)
        return PoolingConfig(mode="lasttoken"), True
    raw = _read_json(path / modules["Pooling"][0] / "config.json") or {}
    mode = raw.get("pooling_mode")
    if mode is None:
        legacy = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
                  "pooling_mode_lasttoken": "lasttoken", "pooling_mode_max_tokens": "max",
                  "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                  "pooling_mode_weightedmean_tokens": "weightedmean"}
        modes = [v for k, v in legacy.items() if raw.get(k)]
        mode = modes[0] if len(modes) == 1 else modes
    if isinstance(mode, list):
        mode = mode[0] if len(mode) == 1 else mode
    if mode not in SUPPORTED_POOLING:
        raise ValueError(f"pooling {mode!r} is not supported; supported: {', '.join(SUPPORTED_POOLING)}")
    return PoolingConfig(mode=mode, include_prompt=bool(raw.get("include_prompt", True))), "Normalize" in modules


def _read_dense(path: Path, modules: dict[str, list[str]]) -> tuple[list[DenseConfig], list[dict[str, torch.Tensor]]]:
    configs, states = [], []
    for sub in modules.get("Dense", []):
        raw = _read_json(path / sub / "config.json")
        if raw is None:
            raise ModelSourceError(f"{path / sub} has no config.json")
        configs.append(DenseConfig(
            in_features=int(raw["in_features"]), out_features=int(raw["out_features"]),
            bias=bool(raw.get("bias", True)),
            activation=raw.get("activation_function") or "torch.nn.modules.activation.Tanh",
        ))
        states.append(_read_module_weights(path / sub))
    return configs, states


def _read_module_weights(path: Path) -> dict[str, torch.Tensor]:
    if (path / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(path / "model.safetensors")
    if (path / "pytorch_model.bin").is_file():
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise ModelSourceError(f"{path} has no model.safetensors or pytorch_model.bin")


def read_safetensors_dir(root: Path) -> dict[str, torch.Tensor]:
    """Backbone weights from model.safetensors or a sharded index, with ``model.`` prefixes and lm_head dropped."""
    from safetensors.torch import load_file

    index = _read_json(root / "model.safetensors.index.json")
    if index is not None:
        files = sorted(set(index["weight_map"].values()))
    elif (root / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise ModelSourceError(f"{root} has no model.safetensors or model.safetensors.index.json")
    state: dict[str, torch.Tensor] = {}
    for name in files:
        if not (root / name).is_file():
            raise ModelSourceError(f"shard {name} listed in the index is missing from {root}")
        for key, value in load_file(root / name).items():
            if key.startswith("lm_head."):
                continue
            state[key.removeprefix("model.")] = value
    return state


def _read_tokenizer(root: Path) -> str:
    file = root / "tokenizer.json"
    if not file.is_file():
        raise ModelSourceError(f"{root} has no tokenizer.json (harrier reads the fast-tokenizer file)")
    return file.read_text(encoding="utf-8")


def _max_length(path: Path, root: Path, cfg: DecoderConfig) -> int:
    """sentence_bert_config's max_seq_length, else the tokenizer's model_max_length capped by the model's positions
    (what sentence-transformers does)."""
    sbert = _read_json(path / "sentence_bert_config.json") or {}
    if sbert.get("max_seq_length"):
        return int(sbert["max_seq_length"])
    tok_cfg = _read_json(root / "tokenizer_config.json") or {}
    limit = tok_cfg.get("model_max_length")
    if isinstance(limit, int | float) and 0 < limit < 1e9:
        return min(int(limit), cfg.max_position_embeddings)
    return cfg.max_position_embeddings


def _read_gguf(path: Path) -> Checkpoint:
    from harrier.gguf import read_gguf

    ckpt = read_gguf(path)
    cfg = decoder_config(ckpt.config)
    max_length = min(cfg.max_position_embeddings, 32_768)
    log.info("GGUF %s: using last-token pooling + L2 normalisation (a decoder LM has no pooling config)", path.name)
    return Checkpoint(
        source=str(path),
        hf_config=ckpt.config,
        decoder=cfg,
        backbone_state=ckpt.state_dict,
        pooling=PoolingConfig(mode="lasttoken"),
        normalize=True,
        tokenizer_json=ckpt.tokenizer_json,
        prompts=PromptConfig(prompts={}),
        max_length=max_length,
    )
