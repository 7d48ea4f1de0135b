"""The seam between evaluation and models: an ``Encoder`` protocol, prompt policies, and two implementations.

Prompt policies reproduce how mteb prompts each kind of model:

- ``InstructionPrompts`` (harrier-style instruction models, mteb's ``InstructSentenceTransformerModel``): the task's
  instruction (the 131-task table, else the task's own prompt, else mteb's default for the task type) in mteb's
  template ``"Instruct: {instruction}\\nQuery:"``; documents of retrieval/reranking get none, every input of a
  symmetric task type gets it.
- ``NamedPrompts`` (models with prompts in ``config_sentence_transformers.json``, mteb's
  ``SentenceTransformerEncoderWrapper``): the first key present among ``{task}-{prompt_type}``, ``{task}``,
  ``{task type}-{prompt_type}``, ``{task type}``, ``{prompt_type}``.
- ``NoPrompts``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from harrier.eval.tasks import DEFAULT_INSTRUCTIONS, TASK_TYPES
from harrier.prompts import MTEB_TEMPLATE, task_instructions
from harrier.vectors import l2_normalize

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from harrier.embedder import Embedder
    from harrier.loading import DType

log = logging.getLogger(__name__)
PROMPT_TYPES = ("query", "document")


@runtime_checkable
class Encoder(Protocol):
    """Anything that embeds texts: ``encode`` returns float32 [N, D] rows in input order, ``prompt`` prepended."""

    name: str

    @property
    def prompts(self) -> Mapping[str, str]: ...

    def encode(self, texts: Sequence[str], *, prompt: str | None = None) -> np.ndarray: ...


class TaskInfo(Protocol):
    """What a prompt policy reads of a task: a ``TaskSpec``, or the view ``MtebEncoder`` makes of mteb's metadata."""

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def prompt(self) -> str | Mapping[str, str] | None: ...


class PromptPolicy(Protocol):
    """Chooses the literal prompt for one kind of input of a task (``prompt_type`` None, "query" or "document")."""

    kind: str

    def prompt(self, task: TaskInfo, prompt_type: str | None) -> str | None: ...


class NoPrompts:
    kind = "none"

    def prompt(self, task: TaskInfo, prompt_type: str | None) -> str | None:
        return None


class InstructionPrompts:
    """Instruction models as mteb evaluates harrier (``harrier_models.py``); see the module docstring."""

    kind = "instructions"

    def __init__(self, table: Mapping[str, str] | None = None, template: str = MTEB_TEMPLATE) -> None:
        self.table = dict(task_instructions() if table is None else table)
        self.template = template

    def instruction(self, task: TaskInfo, prompt_type: str | None) -> str:
        if task.name in self.table:
            return self.table[task.name]
        prompt = task.prompt
        if isinstance(prompt, Mapping):
            prompt = prompt.get(prompt_type or "query")
        return prompt or DEFAULT_INSTRUCTIONS.get(task.type, DEFAULT_INSTRUCTIONS["Retrieval"])

    def prompt(self, task: TaskInfo, prompt_type: str | None) -> str | None:
        if prompt_type == "document":
            return None
        # no strip(): mteb keeps instructions verbatim, trailing spaces included
        return self.template.format(instruction=self.instruction(task, prompt_type))


def valid_prompt_key(key: str, task_names: Sequence[str] = ()) -> bool:
    """Whether mteb would keep this prompt key (task type, prompt type, task name, or ``{that}-{prompt type}``)."""
    base = key.rsplit("-", 1)[0] if key.endswith(tuple(f"-{p}" for p in PROMPT_TYPES)) else key
    return base in TASK_TYPES or base in PROMPT_TYPES or base in task_names or base in _MTEB_EXTRA_TYPES


# task types mteb knows besides the ones we evaluate (keys for them are valid, just never chosen here)
_MTEB_EXTRA_TYPES = ("InstructionRetrieval", "Summarization", "Compositionality", "VisualSTS(eng)", "Any2AnyRetrieval",
                     "ZeroShotClassification")


class NamedPrompts:
    """Prompts by task name / type / prompt type, in mteb's priority order (``get_prompt_name``)."""

    kind = "model"

    def __init__(self, prompts: Mapping[str, str]) -> None:
        self.prompts = dict(prompts)

    def prompt_name(self, task: TaskInfo, prompt_type: str | None) -> str | None:
        keys = []
        if prompt_type:
            keys.append(f"{task.name}-{prompt_type}")
        keys.append(task.name)
        if prompt_type:
            keys.append(f"{task.type}-{prompt_type}")
        keys.append(task.type)
        if prompt_type:
            keys.append(prompt_type)
        return next((k for k in keys if k in self.prompts), None)

    def prompt(self, task: TaskInfo, prompt_type: str | None) -> str | None:
        name = self.prompt_name(task, prompt_type)
        return None if name is None else self.prompts[name]


def choose_policy(encoder: Encoder, mode: str = "auto", *, instruction_model: bool | None = None) -> PromptPolicy:
    """The prompt policy for ``encoder``. ``auto``: the model's own prompts when they use mteb keys (task types,
    query/document), else instructions for instruction models (harrier), else none."""
    if mode == "none":
        return NoPrompts()
    if mode == "instructions":
        return InstructionPrompts()
    mteb_keys = {k: v for k, v in (encoder.prompts or {}).items() if v is not None and valid_prompt_key(k)}
    if mode == "model":
        if not mteb_keys:
            raise ValueError(f"model {encoder.name} has no prompts keyed by task type or query/document")
        return NamedPrompts(mteb_keys)
    if mode != "auto":
        raise ValueError(f"unknown prompt mode {mode!r}; expected auto, instructions, model or none")
    if mteb_keys:
        return NamedPrompts(mteb_keys)
    if instruction_model if instruction_model is not None else getattr(encoder, "instruction_model", False):
        return InstructionPrompts()
    return NoPrompts()


def weights_fingerprint(path: str | Path) -> str:
    """A short digest of a model's location and its files' sizes and modification times, so an embedding cache
    never serves vectors of another model that merely shares a directory name (``runs/a/model``, ``runs/b/model``)
    or of a re-trained model written over the same directory."""
    root = Path(path).resolve()
    files = [root] if root.is_file() else sorted(
        f for f in root.rglob("*") if f.is_file() and f.suffix in (".safetensors", ".bin", ".gguf", ".json"))
    h = hashlib.sha256(str(root).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root) if f != root else f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def needs_renormalizing(normalizes: bool, dtype: object) -> bool:
    """A normalising model run in 16-bit floats returns vectors normalised *before* the final rounding (norms
    1 +- 0.4% in bf16), so dot-product and Euclidean metrics drift from cosine. The encoders renormalise those in
    float32, as a float32 run would give (cosine metrics are unaffected)."""
    return normalizes and str(dtype) in ("torch.bfloat16", "torch.float16")


def alias_prompts(encoder: Encoder, aliases: Sequence[str]) -> NamedPrompts:
    """The model's own prompts with ``KEY=OTHER`` remappings: KEY (a task type, task name, ``query``/``document``)
    gets the model's OTHER prompt. EmbeddingGemma's published Tatoeba and PAWS-X scores need ``Tatoeba=STS`` and
    ``PawsXPairClassification=query``; its NusaX bitext scores need its own prompt (docs/evaluation.md)."""
    policy = choose_policy(encoder, "model")
    assert isinstance(policy, NamedPrompts)
    table = dict(policy.prompts)
    for alias in aliases:
        key, sep, other = alias.partition("=")
        if not sep or not key or other not in policy.prompts:
            raise ValueError(f"prompt alias {alias!r}: expected KEY=OTHER with OTHER one of the model's prompts "
                             f"({', '.join(sorted(policy.prompts))})")
        table[key] = policy.prompts[other]
    return NamedPrompts(table)


class HarrierEncoder:
    """harrier's ``Embedder`` behind the ``Encoder`` protocol."""

    instruction_model = True

    def __init__(self, embedder: Embedder, name: str, *, batch_tokens: int | None = None,
                 progress: bool = False) -> None:
        self.embedder = embedder
        self.name = name
        self.prompts = embedder.prompts
        self.batch_tokens = batch_tokens
        self.progress = progress
        self.renormalize = needs_renormalizing(embedder.model.head.normalize, embedder.dtype)
        self.cache_key = name + ("+unit" if self.renormalize else "")

    @classmethod
    def load(cls, path: str, *, device: str | None = None, dtype: DType = "float32", max_length: int | None = None,
             batch_tokens: int | None = None, progress: bool = False, prefix_cache: bool = True) -> HarrierEncoder:
        """``dtype``: one of ``harrier.loading.DTYPE_NAMES``; the name records the dtype it resolved to.
        ``prefix_cache=False``: the uncached path (``Embedder.from_pretrained``)."""
        from harrier import Embedder

        emb = Embedder.from_pretrained(path, device=device, dtype=dtype, max_length=max_length,
                                       prefix_cache=prefix_cache)
        from harrier.quantize import describe_dtype, is_int8

        # an int8 model computes in float32 around its int8 layers: it is named int8 (results, and the embedding
        # cache's key: float32 vectors must not answer an int8 run), and its key names the recipe this process
        # chose (backend, per-layer dtypes, the down_proj check), which changes its vectors
        int8 = is_int8(emb.model)
        computes = str(emb.dtype).removeprefix("torch.")
        enc = cls(emb, f"{Path(path).name}[harrier,{'int8' if int8 else computes}]", batch_tokens=batch_tokens,
                  progress=progress)
        enc.cache_key += "@" + weights_fingerprint(path)
        if int8:
            recipe = describe_dtype(emb.model, computes)
            enc.cache_key += "#" + hashlib.sha256(recipe.encode()).hexdigest()[:16]
        return enc

    def encode(self, texts: Sequence[str], *, prompt: str | None = None) -> np.ndarray:
        out = self.embedder.encode(list(texts), prompt=prompt or None, batch_tokens=self.batch_tokens,
                                   progress=self.progress or None)
        out = np.asarray(out, dtype=np.float32)
        return l2_normalize(out) if self.renormalize else out


class SentenceTransformerEncoder:
    """Any Sentence-Transformers model directory (sentence-transformers is imported only here)."""

    instruction_model = False

    def __init__(self, model: SentenceTransformer, name: str, *, batch_size: int = 32, progress: bool = False) -> None:
        self.model = model
        self.name = name
        self.prompts = {k: v for k, v in (model.prompts or {}).items() if v is not None}
        self.batch_size = batch_size
        self.progress = progress
        params = next(iter(model.parameters()), None)
        self.renormalize = needs_renormalizing(any(type(m).__name__ == "Normalize" for m in model),
                                               None if params is None else params.dtype)
        self.cache_key = name + ("+unit" if self.renormalize else "")

    @classmethod
    def load(cls, path: str, *, device: str | None = None, dtype: DType = "float32", batch_size: int = 32,
             progress: bool = False) -> SentenceTransformerEncoder:
        """``dtype``: one of ``harrier.loading.DTYPE_NAMES`` ("auto": the checkpoint's, as transformers reads it)."""
        from sentence_transformers import SentenceTransformer

        from harrier.loading import DTYPE_NAMES, DTYPES

        if dtype not in DTYPE_NAMES:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPE_NAMES)}")
        if dtype == "int8":
            raise ValueError("dtype 'int8' is harrier's (int8 linear layers); the sentence-transformers backend runs "
                             f"{', '.join(x for x in DTYPE_NAMES if x != 'int8')}")
        torch_dtype = "auto" if dtype == "auto" else DTYPES[dtype]
        model = SentenceTransformer(path, device=device or "cpu", model_kwargs={"torch_dtype": torch_dtype},
                                    local_files_only=True)
        params = next(iter(model.parameters()), None)
        resolved = dtype if params is None else str(params.dtype).removeprefix("torch.")
        enc = cls(model, f"{Path(path).name}[sentence-transformers,{resolved}]", batch_size=batch_size,
                  progress=progress)
        enc.cache_key += "@" + weights_fingerprint(path)
        return enc

    def encode(self, texts: Sequence[str], *, prompt: str | None = None) -> np.ndarray:
        out = self.model.encode(list(texts), prompt=prompt or None, batch_size=self.batch_size,
                                convert_to_numpy=True, show_progress_bar=self.progress)
        out = np.asarray(out, dtype=np.float32)
        return l2_normalize(out) if self.renormalize else out


def auto_backend(path: str | Path) -> str:
    """``"harrier"`` for a ``.gguf`` file or a directory whose Transformer module declares a ``model_type`` harrier
    runs (gemma3_text, qwen3), else ``"sentence-transformers"``. Decided from the files, before loading, so an
    error harrier raises for a model it runs (a dtype, a device, a malformed file) reaches the user."""
    from harrier.models.config import SUPPORTED_MODEL_TYPES

    root = Path(path)
    if root.is_file():
        return "harrier"
    try:
        modules = json.loads((root / "modules.json").read_text(encoding="utf-8")) if (
            root / "modules.json").is_file() else []
        sub = next((str(m.get("path", "")) for m in modules if str(m.get("type", "")).endswith(".Transformer")), "")
        config = root / sub / "config.json"
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type") if config.is_file() else None
    except (json.JSONDecodeError, AttributeError, TypeError):
        return "harrier"  # malformed files: harrier's loader names what is wrong
    return "harrier" if model_type in SUPPORTED_MODEL_TYPES else "sentence-transformers"


def load_encoder(path: str, *, backend: str = "auto", device: str | None = None, dtype: DType = "float32",
                 batch_tokens: int | None = None, progress: bool = False, prefix_cache: bool = True) -> Encoder:
    """Load a model directory with harrier's runtime (``backend="harrier"``) or sentence-transformers.

    ``auto`` uses harrier's runtime for the architectures it runs (``auto_backend``), else sentence-transformers.
    """
    if not Path(path).exists():
        raise ValueError(f"model directory {path} does not exist")
    if backend not in ("auto", "harrier", "sentence-transformers"):
        raise ValueError(f"unknown backend {backend!r}; expected auto, harrier or sentence-transformers")
    if backend == "auto":
        backend = auto_backend(path)
        log.info("backend for %s: %s", path, backend)
    if backend == "harrier":
        return HarrierEncoder.load(path, device=device, dtype=dtype, batch_tokens=batch_tokens, progress=progress,
                                   prefix_cache=prefix_cache)
    if not prefix_cache:
        log.warning("prefix_cache=False ignored: sentence-transformers has no prefix cache")
    return SentenceTransformerEncoder.load(path, device=device, dtype=dtype, progress=progress)
