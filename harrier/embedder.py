"""``Embedder``: the public entry point. Loads a checkpoint, builds our model, and encodes texts."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from harrier import loading
from harrier.engine import run_batches
from harrier.heads import Head
from harrier.model import EmbeddingModel
from harrier.prompts import PromptConfig, resolve_prefix
from harrier.tokenize import TextTokenizer, TruncationPolicy

log = logging.getLogger(__name__)
DType = Literal["auto", "float32", "bfloat16", "float16"]
DEFAULT_BATCH_TOKENS = {"cpu": 4_096, "cuda": 16_384}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ModelInfo:
    """What ``harrier info`` shows."""

    source: str
    architecture: str
    dim: int
    hidden_size: int
    layers: int
    max_length: int
    attention: str
    pooling: str
    include_prompt: bool
    dense: tuple[str, ...]
    normalize: bool
    prompts: dict[str, str]
    default_prompt_name: str | None
    parameters: int
    dtype: str
    device: str


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bf16 matrix instructions (AVX512-BF16 or AMX); elsewhere bf16 is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: DType | torch.dtype, device: torch.device, hf_config: dict, model_type: str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        chosen = dtype
    elif dtype == "auto":
        name = str(hf_config.get("dtype") or hf_config.get("torch_dtype") or "float32").removeprefix("torch.")
        chosen = DTYPES.get(name, torch.float32)
        if chosen == torch.float16 and model_type == "gemma3_text":
            chosen = torch.bfloat16 if device.type == "cuda" else torch.float32
        if chosen == torch.bfloat16 and device.type == "cpu" and not cpu_has_native_bf16():
            chosen = torch.float32
    elif dtype in DTYPES:
        chosen = DTYPES[dtype]
    else:
        raise ValueError(f"dtype {dtype!r} is not supported; supported: auto, {', '.join(DTYPES)}")
    if chosen == torch.float16 and model_type == "gemma3_text":
        raise ValueError("float16 overflows Gemma-3 activations (NaN/inf embeddings); use bfloat16 or float32")
    if chosen == torch.bfloat16 and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn("this CPU has no native bf16 matrix instructions: bfloat16 will be slower than float32",
                      stacklevel=3)
    return chosen


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


def build_model(ckpt: loading.Checkpoint) -> EmbeddingModel:
    """Our modules holding the checkpoint's tensors (assigned, not copied; cast by the caller)."""
    head = Head(ckpt.pooling, ckpt.dense, ckpt.normalize)
    with torch.device("meta"):
        model = EmbeddingModel(ckpt.decoder, head)
    state = {f"backbone.{k}": v for k, v in ckpt.backbone_state.items()}
    for i, dense_state in enumerate(ckpt.dense_state):
        state.update({f"head.dense.{i}.{k}": v for k, v in dense_state.items()})
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(f"checkpoint {ckpt.source} does not match its config: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return model


class Embedder:
    """A loaded embedding model: ``encode`` texts into [N, dim] float32 arrays."""

    def __init__(self, model: EmbeddingModel, tokenizer: TextTokenizer, prompts: PromptConfig, *,
                 checkpoint: loading.Checkpoint, device: torch.device, dtype: torch.dtype,
                 truncation: TruncationPolicy = "warn") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.prompt_config = prompts
        self.checkpoint = checkpoint
        self.device = device
        self.dtype = dtype
        self.truncation = truncation

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, device: str | torch.device | None = None,
                        dtype: DType | torch.dtype = "auto", max_length: int | None = None,
                        truncation: TruncationPolicy = "warn", revision: str | None = None,
                        cache_dir: str | None = None) -> Embedder:
        """Load a hub id, a local Hugging Face / Sentence-Transformers directory, or a .gguf file.

        Args:
            device: "cpu", "cuda" or None (cuda when available).
            dtype: "auto" (the checkpoint's, bf16 only where the hardware runs it natively), "float32",
                "bfloat16", or "float16" (refused for Gemma-3, whose activations overflow it).
            max_length: tokens per text including special tokens; defaults to the checkpoint's.
            truncation: "warn" (default), "error" or "silent" for texts over max_length.
        """
        ckpt = loading.read_checkpoint(loading.resolve(name_or_path, revision=revision, cache_dir=cache_dir))
        dev = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, dev, ckpt.hf_config, ckpt.decoder.model_type)
        model = build_model(ckpt).to(device=dev, dtype=torch_dtype).eval()
        limit = ckpt.max_length
        if max_length is not None:
            if max_length < 2:
                raise ValueError(f"max_length must be at least 2, got {max_length}")
            if max_length > ckpt.decoder.max_position_embeddings:
                warnings.warn(f"max_length {max_length} exceeds the model's {ckpt.decoder.max_position_embeddings} "
                              "positions", stacklevel=2)
            limit = max_length
        special = {k: ckpt.hf_config.get(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
        tokenizer = TextTokenizer.from_json(ckpt.tokenizer_json, max_length=limit, extra_special=special)
        return cls(model, tokenizer, ckpt.prompts, checkpoint=ckpt, device=dev, dtype=torch_dtype,
                   truncation=truncation)

    @property
    def dim(self) -> int:
        return self.model.dim

    @property
    def max_length(self) -> int:
        return self.tokenizer.max_length

    @property
    def prompts(self) -> dict[str, str]:
        return dict(self.prompt_config.prompts)

    def prefix(self, *, prompt_name: str | None = None, prompt: str | None = None, instruction: str | None = None,
               task: str | None = None) -> str:
        """The text prefix an ``encode`` call with these arguments uses."""
        return resolve_prefix(self.prompt_config, prompt_name=prompt_name, prompt=prompt, instruction=instruction,
                              task=task)

    def tokenize(self, texts: Sequence[str], prefix: str = "") -> list[list[int]]:
        return self.tokenizer.encode([prefix + t for t in texts], truncation=self.truncation).ids

    def encode(self, texts: Sequence[str] | str, *, prompt_name: str | None = None, prompt: str | None = None,
               instruction: str | None = None, task: str | None = None, batch_tokens: int | None = None,
               progress: bool | None = None) -> np.ndarray:
        """Embed texts into [N, dim] float32 (one row per text, input order).

        Queries take one of ``prompt_name`` (the checkpoint's named prompts), ``instruction`` (card template),
        ``task`` (an MTEB(Multilingual, v2) task, mteb's template) or a literal ``prompt``; documents take none.
        ``batch_tokens`` defaults to 4,096 on CPU (activations stay in cache; measured fastest) and 16,384 on CUDA.
        """
        if isinstance(texts, str):
            raise ValueError("encode takes a list of texts; wrap a single text in a list")
        texts = list(texts)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise ValueError(f"text #{bad[0]} is {type(texts[bad[0]]).__name__}, not str")
        pre = self.prefix(prompt_name=prompt_name, prompt=prompt, instruction=instruction, task=task)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = self.tokenize(texts, pre)
        prompt_len = self.tokenizer.prompt_length(pre) if not self.model.head.pooling.include_prompt else 0
        if batch_tokens is None:
            batch_tokens = DEFAULT_BATCH_TOKENS[self.device.type]
        return run_batches(self.model, ids, dim=self.dim, batch_tokens=batch_tokens, device=self.device,
                           prompt_len=prompt_len, progress=progress)

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cosine similarity matrix [len(a), len(b)]."""
        a = np.asarray(a, dtype=np.float32)
        b = np.asarray(b, dtype=np.float32)
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
            raise ValueError(f"similarity needs two [N, D] arrays of the same D, got {a.shape} and {b.shape}")
        an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        return an @ bn.T

    def info(self) -> ModelInfo:
        cfg, head = self.model.cfg, self.model.head
        attention = "causal" if cfg.causal else "bidirectional"
        if cfg.sliding_window and "sliding_attention" in cfg.layer_types:
            n = cfg.layer_types.count("sliding_attention")
            window = self.checkpoint.hf_config.get("sliding_window", cfg.sliding_window)
            attention += f", {n}/{cfg.num_layers} layers sliding window {window}"
        else:
            attention += ", all layers full attention"
        return ModelInfo(
            source=self.checkpoint.source, architecture=cfg.model_type, dim=self.dim, hidden_size=cfg.hidden_size,
            layers=cfg.num_layers, max_length=self.max_length, attention=attention, pooling=head.pooling.mode,
            include_prompt=head.pooling.include_prompt,
            dense=tuple(f"{d.cfg.in_features}->{d.cfg.out_features}" for d in head.dense),
            normalize=head.normalize, prompts=self.prompts,
            default_prompt_name=self.prompt_config.default_prompt_name,
            parameters=self.model.num_parameters(), dtype=str(self.dtype).removeprefix("torch."),
            device=str(self.device),
        )

    def save_pretrained(self, path: str | Path) -> None:
        """Write the harrier Sentence-Transformers layout (loads in harrier and in SentenceTransformer())."""
        from harrier.saving import save_pretrained

        save_pretrained(self, Path(path))
