"""Loading a ready model: hub ids, Hugging Face / Sentence-Transformers directories (single or sharded safetensors)
and GGUF files become our model on its device and dtype, its tokenizer and its prompts.

The one owner of device and dtype resolution. Weights are cast as they are read and handed to the model; nothing
else keeps them, so a model loaded in bf16 holds no float32 copy. Writing the layout back lives in ``saving.py``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import torch

from harrier import cpu_malloc
from harrier.heads import DenseConfig, Head, PoolingConfig, pooling_from_st_config
from harrier.model import EmbeddingModel
from harrier.models.config import DecoderConfig, decoder_config
from harrier.prompts import PromptConfig
from harrier.tokenize import TextTokenizer, check_max_length

log = logging.getLogger(__name__)
SUPPORTED_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")
HUB_FILES = ["*.json", "*.safetensors", "tokenizer.model", "*/*.json", "*/*.safetensors"]
LOCAL_HINT = ("pass --model a local directory in Hugging Face / Sentence-Transformers layout (one you downloaded "
              "or saved, e.g. with `huggingface-cli download microsoft/harrier-oss-v1-270m --local-dir DIR` on a "
              "machine with hub access) or a .gguf file")
DType = Literal["auto", "float32", "bfloat16", "float16", "int8"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_NAMES = ("auto", *DTYPES, "int8")  # int8: float32 model, int8 linear layers (fastpath.py)


class ModelSourceError(ValueError):
    """The model could not be found, downloaded or read (the message names the file)."""


@dataclass(frozen=True, kw_only=True)
class ModelCard:
    """What a checkpoint declares besides its weights. A loaded model keeps this (``info`` and saving read it)."""

    source: str
    hf_config: dict[str, Any]
    decoder: DecoderConfig
    pooling: PoolingConfig
    dense: tuple[DenseConfig, ...] = ()
    normalize: bool = True
    tokenizer_json: str
    tokenizer_files: dict[str, str] = field(default_factory=dict)
    prompts: PromptConfig
    max_length: int  # the checkpoint's own limit (what an export declares)


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """A checkpoint found on disk: its card, and readers of its weights that cast each tensor as they read it."""

    card: ModelCard
    read_backbone: Callable[[torch.dtype], dict[str, torch.Tensor]]  # names as in our Decoder's state dict
    read_dense: Callable[[torch.dtype], list[dict[str, torch.Tensor]]]  # one state dict per Dense module


@dataclass(frozen=True, kw_only=True)
class LoadedModel:
    """A ready model: our module on its device and dtype, its tokenizer, and what its checkpoint declared."""

    model: EmbeddingModel
    tokenizer: TextTokenizer
    card: ModelCard
    device: torch.device
    dtype: torch.dtype

    @property
    def prompts(self) -> PromptConfig:
        return self.card.prompts


BF16_SPEEDUP = 1.3  # bf16 must beat fp32 matrix products by this much for ``auto`` to choose it on a CPU


@cache
def cpu_has_native_bf16() -> bool:
    """True when this CPU has bf16 matrix instructions (AVX512-BF16 or AMX); elsewhere bf16 is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _matmul_seconds(dtype: torch.dtype) -> float:
    a, b = torch.randn(512, 1024, dtype=dtype), torch.randn(1024, 1024, dtype=dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return best


@cache
def cpu_bf16_is_faster() -> bool:
    """Whether bf16 is the faster CPU dtype here: the instructions exist and a timed probe (about 50 ms, once per
    process) finds bf16 matrix products at least ``BF16_SPEEDUP`` times faster than float32. Flags alone mislead:
    an Intel Xeon with AVX512-BF16 but no AMX measured bf16 at 0.65-0.75x float32. ``HARRIER_CPU_BF16=1``/``0``
    skips the probe."""
    forced = os.environ.get("HARRIER_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    if not cpu_has_native_bf16():
        return False
    ratio = _matmul_seconds(torch.float32) / _matmul_seconds(torch.bfloat16)
    log.info("CPU bf16 probe: bf16 matrix products %.2fx float32 (auto picks bf16 at >= %.1fx)", ratio, BF16_SPEEDUP)
    return ratio >= BF16_SPEEDUP


def int8_down_proj() -> bool:
    """``HARRIER_INT8_DOWN_PROJ=1``: an int8 model's down_proj in int8 too, where the calibration check passes
    (``fastpath.apply_fast_modes``). Off by default: on EmbeddingGemma it made int8 compiled 12% faster but took the
    worst of 948 MasakhaNEWS headlines from min cosine 0.9964 to 0.9922 against float32; a last-token model keeps
    each sequence's pooled row of it float, and the 270m shape's worst headline still fell from 0.9936 to 0.9860
    (docs/cpu-modes.md)."""
    value = os.environ.get("HARRIER_INT8_DOWN_PROJ", "0")
    if value not in ("0", "1"):
        raise ValueError(f"HARRIER_INT8_DOWN_PROJ must be 0 or 1, got {value!r}")
    return value == "1"


def int8_exact_rows() -> bool | None:
    """``HARRIER_INT8_EXACT_ROWS``: whether an int8 model's rows at positions 0-2 (and, in a last-token model, each
    sequence's pooled row) multiply with float weights in int8 layers (``fastpath.apply_fast_modes``): ``1``
    on, ``0`` off, unset or ``auto`` (None) on for last-token models only; the copies are kept in the first and
    last ``quantize.EXACT_EDGE_LAYERS`` int8 layers. Measured (docs/cpu-modes.md): the harrier-270m shape's worst
    MasakhaNEWS headline 0.9936 -> 0.9973 against float32 at 0.92x the speed; EmbeddingGemma (mean pooling,
    already 0.9971) gains nothing, with the rows in every int8 layer it ran at 0.89x."""
    value = os.environ.get("HARRIER_INT8_EXACT_ROWS", "auto")
    if value not in ("0", "1", "auto"):
        raise ValueError(f"HARRIER_INT8_EXACT_ROWS must be 0, 1 or auto, got {value!r}")
    return None if value == "auto" else value == "1"


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind = str(device).split(":", 1)[0]
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device {str(device)!r} is not supported; supported: cpu, cuda, cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but CUDA is not available here; use --device cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device {str(device)!r} is not a valid device string ({err})") from err


def check_dtype(dtype: object) -> None:
    """A ValueError listing the supported names unless ``dtype`` is one of them or their torch dtype."""
    if (isinstance(dtype, str) and dtype in DTYPE_NAMES) or (isinstance(dtype, torch.dtype) and
                                                              dtype in DTYPES.values()):
        return
    raise ValueError(f"dtype {dtype!r} is not supported; supported: {', '.join(DTYPE_NAMES)}")


def resolve_dtype(dtype: DType | torch.dtype, device: torch.device, hf_config: dict, model_type: str) -> torch.dtype:
    """The compute dtype. ``auto``: the checkpoint's, except float16 for Gemma-3 (its activations overflow) and
    bf16 on a CPU where it is not faster than float32 (``cpu_bf16_is_faster``); those fall back to bf16 on CUDA /
    float32. An explicit dtype is kept (bf16 on such a CPU logs that it is slower)."""
    fast_bf16 = device.type != "cpu" or cpu_bf16_is_faster()
    gemma = model_type == "gemma3_text"
    if isinstance(dtype, str) and dtype == "auto":
        name = str(hf_config.get("dtype") or hf_config.get("torch_dtype") or "float32").removeprefix("torch.")
        chosen = DTYPES.get(name, torch.float32)
        if chosen == torch.float16 and gemma:
            chosen = torch.bfloat16 if device.type == "cuda" else torch.float32
        return torch.float32 if chosen == torch.bfloat16 and not fast_bf16 else chosen
    check_dtype(dtype)
    chosen = dtype if isinstance(dtype, torch.dtype) else DTYPES[dtype]
    if chosen == torch.float16 and gemma:
        raise ValueError("float16 overflows Gemma-3 activations (NaN/inf embeddings); use bfloat16 or float32")
    if chosen == torch.bfloat16 and not fast_bf16:
        log.warning("bfloat16 matrix products are not faster than float32 on this CPU (measured); float32 is the "
                    "faster choice here")
    return chosen


def load_model(name_or_path: str | Path, *, device: str | torch.device | None = None,
               dtype: DType | torch.dtype = "auto", max_length: int | None = None, revision: str | None = None,
               cache_dir: str | None = None, allow_over_positions: bool = False,
               compile: bool = False) -> LoadedModel:
    """A hub id, local directory or .gguf file as a ready model (see ``Embedder.from_pretrained`` for arguments)."""
    from harrier.fastpath import apply_fast_modes, split_dtype
    from harrier.quantize import calibration_texts

    ckpt = read_checkpoint(resolve(name_or_path, revision=revision, cache_dir=cache_dir))
    dev = resolve_device(device)
    if dev.type == "cpu":
        cpu_malloc.tune()  # large tensors from the heap, not fresh pages (once per process)
    dtype, int8 = split_dtype(dtype)
    loaded = ready_model(ckpt, device=dev, dtype=resolve_dtype(dtype, dev, ckpt.card.hf_config,
                                                                ckpt.card.decoder.model_type), max_length=max_length,
                         allow_over_positions=allow_over_positions)
    calibration = loaded.tokenizer.encode(calibration_texts(), truncation="silent").ids if int8 else ()
    apply_fast_modes(loaded.model, dev, int8=int8, compile=compile, calibration_ids=calibration,
                     faster_mode=lambda: "bfloat16" if cpu_bf16_is_faster() else "float32",
                     bf16_faster=cpu_bf16_is_faster, try_down_proj=int8 and int8_down_proj(),
                     exact_rows=int8_exact_rows() if int8 else None)
    return loaded


def ready_model(ckpt: Checkpoint, *, device: torch.device, dtype: torch.dtype, max_length: int | None = None,
                allow_over_positions: bool = False) -> LoadedModel:
    """Build the model from ``ckpt`` (its weights are read here, once) and its tokenizer truncating at
    ``max_length`` (default: the checkpoint's limit; above the model's positions only with
    ``allow_over_positions``)."""
    card = ckpt.card
    limit = card.max_length
    if max_length is not None:
        limit = check_max_length(max_length, card.decoder.max_position_embeddings,
                                 allow_over_positions=allow_over_positions)
    special = {k: card.hf_config.get(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    try:
        tokenizer = TextTokenizer.from_json(card.tokenizer_json, max_length=limit, extra_special=special)
    except Exception as err:  # the tokenizers library raises plain Exceptions for a malformed file
        raise ModelSourceError(f"{card.source}: tokenizer.json cannot be read ({str(err)[:200]})") from err
    model = build_model(card, ckpt, dtype).to(device=device).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, card=card, device=device, dtype=dtype)


def build_model(card: ModelCard, ckpt: Checkpoint, dtype: torch.dtype) -> EmbeddingModel:
    """Our modules holding the checkpoint's tensors, cast to ``dtype`` as read and assigned (not copied)."""
    with torch.device("meta"):
        model = EmbeddingModel(card.decoder, Head(card.pooling, list(card.dense), card.normalize))
    state = {f"backbone.{k}": v for k, v in ckpt.read_backbone(dtype).items()}
    for i, dense_state in enumerate(ckpt.read_dense(dtype) if card.dense else []):
        state.update({f"head.dense.{i}.{k}": v for k, v in dense_state.items()})
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(f"checkpoint {card.source} does not match its config: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return model


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
    """A Sentence-Transformers / Hugging Face directory or a GGUF file: its card now, its weights when read."""
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
    try:
        cfg = decoder_config(hf_config)
    except KeyError as err:
        raise ModelSourceError(f"{root / 'config.json'}: missing required key {err}") from err
    except (TypeError, AttributeError) as err:
        raise ModelSourceError(f"{root / 'config.json'}: a value has the wrong type ({err})") from err
    pooling, normalize = _read_pooling(path, modules)
    dense = _read_dense(path, modules)
    st_config = _read_json(path / "config_sentence_transformers.json") or {}
    for file in _safetensors_files(root):  # a missing or truncated weights file fails here, before any work
        _check_safetensors(file)
    card = ModelCard(
        source=str(path),
        hf_config=hf_config,
        decoder=cfg,
        pooling=pooling,
        dense=tuple(dense),
        normalize=normalize,
        tokenizer_json=_read_tokenizer(root),
        tokenizer_files={n: (root / n).read_text(encoding="utf-8") for n in ("tokenizer_config.json",
                         "special_tokens_map.json") if (root / n).is_file()},
        prompts=PromptConfig(prompts=dict(st_config.get("prompts") or {}),
                             default_prompt_name=st_config.get("default_prompt_name")),
        max_length=_max_length(path, root, cfg),
    )
    dense_dirs = [path / sub for sub in modules.get("Dense", [])]
    for d in dense_dirs:
        if (d / "model.safetensors").is_file():
            _check_safetensors(d / "model.safetensors")
    return Checkpoint(card=card, read_backbone=lambda dtype: read_safetensors_dir(root, dtype=dtype),
                      read_dense=lambda dtype: [_read_module_weights(d, dtype) for d in dense_dirs])


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
    return pooling_from_st_config(raw), "Normalize" in modules


def _read_dense(path: Path, modules: dict[str, list[str]]) -> list[DenseConfig]:
    configs = []
    for sub in modules.get("Dense", []):
        raw = _read_json(path / sub / "config.json")
        if raw is None:
            raise ModelSourceError(f"{path / sub} has no config.json")
        configs.append(DenseConfig(
            in_features=int(raw["in_features"]), out_features=int(raw["out_features"]),
            bias=bool(raw.get("bias", True)),
            activation=raw.get("activation_function") or "torch.nn.modules.activation.Tanh",
        ))
        if not any((path / sub / n).is_file() for n in ("model.safetensors", "pytorch_model.bin")):
            raise ModelSourceError(f"{path / sub} has no model.safetensors or pytorch_model.bin")
    return configs


def _read_module_weights(path: Path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    if (path / "model.safetensors").is_file():
        from safetensors.torch import load_file

        file = path / "model.safetensors"
        try:
            return {k: v.to(dtype) for k, v in load_file(file).items()}
        except Exception as err:  # SafetensorError derives from Exception only
            raise ModelSourceError(f"{file}: damaged or not a safetensors file ({err})") from err
    if (path / "pytorch_model.bin").is_file():
        state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
        return {k: v.to(dtype) for k, v in state.items()}
    raise ModelSourceError(f"{path} has no model.safetensors or pytorch_model.bin")


def _safetensors_files(root: Path) -> list[Path]:
    index = _read_json(root / "model.safetensors.index.json")
    if index is not None:
        if not isinstance(index.get("weight_map"), dict):
            raise ModelSourceError(f"{root / 'model.safetensors.index.json'}: no 'weight_map' mapping")
        files = sorted(set(index["weight_map"].values()))
    elif (root / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise ModelSourceError(f"{root} has no model.safetensors or model.safetensors.index.json")
    missing = [n for n in files if not (root / n).is_file()]
    if missing:
        raise ModelSourceError(f"shard {missing[0]} listed in the index is missing from {root}")
    return [root / n for n in files]


def _check_safetensors(file: Path) -> None:
    """Read the header (cheap): a truncated or foreign file is one error naming it."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt"):
            pass
    except Exception as err:  # SafetensorError derives from Exception only
        raise ModelSourceError(f"{file}: damaged or not a safetensors file ({err})") from err


def read_safetensors_dir(root: Path, *, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Backbone weights from model.safetensors or a sharded index, with ``model.`` prefixes and lm_head dropped,
    each tensor cast to ``dtype`` as it is read (peak memory: the cast weights plus one tensor as stored)."""
    from safetensors import safe_open

    state: dict[str, torch.Tensor] = {}
    for file in _safetensors_files(root):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if key.startswith("lm_head."):
                    continue
                tensor = f.get_tensor(key)
                state[key.removeprefix("model.")] = tensor if dtype is None else tensor.to(dtype)
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

    gguf = read_gguf(path)
    cfg = decoder_config(gguf.config)
    log.info("GGUF %s: using last-token pooling + L2 normalisation (a decoder LM has no pooling config)", path.name)
    card = ModelCard(source=str(path), hf_config=gguf.config, decoder=cfg, pooling=PoolingConfig(mode="lasttoken"),
                     normalize=True, tokenizer_json=gguf.tokenizer_json, prompts=PromptConfig(prompts={}),
                     max_length=min(cfg.max_position_embeddings, 32_768))
    held = [gguf.state_dict]  # dequantized already (the file must be read to know its config); handed over once

    def read_backbone(dtype: torch.dtype) -> dict[str, torch.Tensor]:
        if not held:
            raise RuntimeError(f"the weights of {path} were already handed to a model")
        state = held.pop()
        return {k: state.pop(k).to(dtype) for k in list(state)}

    return Checkpoint(card=card, read_backbone=read_backbone, read_dense=lambda dtype: [])
