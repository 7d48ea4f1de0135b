"""``Embedder``: the public entry point, a thin facade over a loaded model (``loading``), prompts (``prompts``) and
the encoding engine (``engine``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harrier import chunking, cpu_malloc, loading, saving
from harrier.chunking import Aggregate, ChunkConfig, ChunkedEmbeddings
from harrier.engine import DEFAULT_BATCH_TOKENS, run_batches
from harrier.fastpath import int8_probe
from harrier.loading import DType, LoadedModel
from harrier.prefix_cache import DEFAULT_MAX_MB, PrefixStore, unsupported_reason, weights_version
from harrier.prompts import Prompt, PromptConfig, PromptSpec, Side, prefix_for, resolve_prefix, side_prefix
from harrier.quantize import describe_dtype, is_int8
from harrier.tokenize import TokenizedItems, TruncationPolicy, check_max_length, check_texts, check_truncation
from harrier.vectors import l2_normalize

log = logging.getLogger(__name__)
# sentence-transformers' encode options that encode_query / encode_document take, so that ST code runs unchanged.
ST_OPTIONS = ("show_progress_bar", "normalize_embeddings", "convert_to_tensor", "convert_to_numpy", "batch_size")


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
    prefix_cache: str  # "on (...)", "off (...)" or "not applicable: <why>"
    int8_probe: str = "not run (not an int8 model)"  # the int8 capability probe's figures (fastpath.int8_probe)
    cpu_malloc: str = "not applicable (not on the CPU)"  # how malloc is set up for large tensors (cpu_malloc)


class Embedder:
    """A loaded embedding model: ``encode`` texts into [N, dim] float32 arrays."""

    def __init__(self, loaded: LoadedModel, *, truncation: TruncationPolicy = "warn", prefix_cache: bool = True,
                 prefix_cache_mb: float = DEFAULT_MAX_MB) -> None:
        self.truncation = check_truncation(truncation)
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.card = loaded.card
        self.device = loaded.device
        self.dtype = loaded.dtype
        cfg, pooling = self.model.cfg, self.model.head.pooling
        #: why this model cannot use the prefix cache (None: it can)
        self.prefix_cache_reason = unsupported_reason(causal=cfg.causal, pooling_mode=pooling.mode,
                                                      include_prompt=pooling.include_prompt)
        #: the prompt prefixes' keys/values (see ``harrier.prefix_cache``); None when off or not applicable
        self.prefix_cache: PrefixStore | None = None
        if not isinstance(prefix_cache, bool):
            raise ValueError(f"prefix_cache must be True or False, got {prefix_cache!r}")
        if prefix_cache and self.prefix_cache_reason is None:
            key = f"{self.card.source}:{str(self.dtype).removeprefix('torch.')}:{self.device}:{id(self.model)}"
            self.prefix_cache = PrefixStore(key, max_mb=prefix_cache_mb)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, device: str | torch.device | None = None,
                        dtype: DType | torch.dtype = "auto", max_length: int | None = None,
                        truncation: TruncationPolicy = "warn", revision: str | None = None,
                        cache_dir: str | None = None, allow_over_positions: bool = False,
                        compile: bool = False, prefix_cache: bool = True,
                        prefix_cache_mb: float = DEFAULT_MAX_MB) -> Embedder:
        """Load a hub id, a local Hugging Face / Sentence-Transformers directory, or a .gguf file.

        Args:
            device: "cpu", "cuda" or None (cuda when available).
            dtype: "auto" (the checkpoint's; bf16 on a CPU only where a timed probe finds it faster), "float32",
                "bfloat16", "float16" (refused for Gemma-3, whose activations overflow it), or "int8" (CPU: int8
                linear layers with per-token activations, the rest float32; see docs/cpu-modes.md).
            max_length: tokens per text including special tokens; defaults to the checkpoint's. Above the model's
                position embeddings only with ``allow_over_positions=True`` (one warning is logged).
            truncation: "warn" (default), "error" or "silent" for texts over max_length.
            compile: run the decoder layers through torch.compile (inductor); pays off for long-running
                processes (first batches compile). Falls back to eager, with one warning, where it cannot run.
            prefix_cache: on causal models, compute each prompt's keys/values once and run only each text's own
                tokens (same vectors to float rounding, much less work for instructed queries; see
                docs/prefix-cache.md). Off: the uncached path, bit for bit. ``info().prefix_cache`` says whether
                it applies. ``prefix_cache_mb``: the store's memory bound (least recently used prompts go first).

        Every argument is checked before the checkpoint is read (a ValueError naming the valid values), except
        what only the checkpoint knows (max_length against its positions, float16 for Gemma-3).
        """
        check_truncation(truncation)
        loading.check_dtype(dtype)
        dev = loading.resolve_device(device)
        if max_length is not None:
            check_max_length(max_length)
        if not isinstance(prefix_cache, bool):
            raise ValueError(f"prefix_cache must be True or False, got {prefix_cache!r}")
        PrefixStore("", max_mb=prefix_cache_mb)  # checks the bound before the checkpoint is read
        return cls(loading.load_model(name_or_path, device=dev, dtype=dtype, max_length=max_length,
                                      revision=revision, cache_dir=cache_dir,
                                      allow_over_positions=allow_over_positions, compile=compile),
                   truncation=truncation, prefix_cache=prefix_cache, prefix_cache_mb=prefix_cache_mb)

    @property
    def dim(self) -> int:
        return self.model.dim

    @property
    def max_length(self) -> int:
        return self.tokenizer.max_length

    @property
    def prompt_config(self) -> PromptConfig:
        return self.card.prompts

    @property
    def prompts(self) -> dict[str, str]:
        return dict(self.card.prompts.prompts)

    def prefix(self, *, prompt_name: str | None = None, prompt: str | None = None, instruction: str | None = None,
               task: str | None = None) -> str:
        """The text prefix an ``encode`` call with these arguments uses."""
        return resolve_prefix(self.prompt_config, prompt_name=prompt_name, prompt=prompt, instruction=instruction,
                              task=task)

    def prefix_for(self, prompt: PromptSpec) -> str:
        """The prefix of one item of ``encode_items``: a prompt name, a :class:`~harrier.prompts.Prompt` or None."""
        return prefix_for(self.card.prompts, prompt)

    def tokenize(self, texts: Sequence[str], prefix: str = "", *, truncate: bool = True) -> list[list[int]]:
        """Token ids of ``prefix + text`` per text, special tokens included: cut to ``max_length`` as ``encode``
        cuts them, or in full with ``truncate=False`` (to count or split what a long text holds)."""
        texts = check_texts(texts, "tokenize")
        return self.tokenizer.encode_prompted(texts, [prefix] * len(texts), truncation=self.truncation,
                                              full=not truncate).ids

    def count_tokens(self, texts: Sequence[str], *, prompt_name: str | None = None, prompt: str | None = None,
                     instruction: str | None = None, task: str | None = None) -> list[int]:
        """Tokens each text takes with its prompt and special tokens, not truncated: a count above ``max_length``
        is a text ``encode`` would cut (or refuse with ``truncation="error"``)."""
        pre = self.prefix(prompt_name=prompt_name, prompt=prompt, instruction=instruction, task=task)
        return [len(x) for x in self.tokenize(texts, pre, truncate=False)]

    def tokenize_items(self, items: Sequence[tuple[str, PromptSpec]], *,
                       truncation: TruncationPolicy | None = None) -> TokenizedItems:
        """Token ids and prompt lengths of ``(text, prompt)`` items, each with its own prompt."""
        prefixes: dict[PromptSpec, str] = {}
        for i, item in enumerate(items):
            if not isinstance(item, tuple) or len(item) != 2 or not isinstance(item[0], str):
                raise ValueError(f"item #{i} is not a (text, prompt) pair with a str text")
            if item[1] not in prefixes:
                prefixes[item[1]] = self.prefix_for(item[1])
        return self.tokenizer.encode_prompted([text for text, _ in items], [prefixes[spec] for _, spec in items],
                                              truncation=truncation or self.truncation)

    def encode(self, texts: Sequence[str] | str, *, prompt_name: str | None = None, prompt: str | None = None,
               instruction: str | None = None, task: str | None = None, batch_tokens: int | None = None,
               progress: bool | None = None) -> np.ndarray:
        """Embed texts into [N, dim] float32 (one row per text, input order; unit L2 norm when the model ends in
        Normalize, whatever the compute dtype). Empty and whitespace-only texts are embedded like any other.

        Queries take one of ``prompt_name`` (the checkpoint's named prompts), ``instruction`` (card template),
        ``task`` (an MTEB(Multilingual, v2) task, mteb's template) or a literal ``prompt``; documents take none.
        ``batch_tokens`` defaults to 4,096 on CPU (activations stay in cache; measured fastest) and 16,384 on CUDA.

        Raises ValueError (nothing else, for bad input): ``texts`` not a list of str (naming the first bad item), a
        text that is not valid Unicode (a lone surrogate), an unknown prompt name or task (listing the known ones),
        more than one prompt source, an empty instruction, a non-positive ``batch_tokens``, and
        (``TruncationError``, a ValueError) an over-long text with ``truncation="error"``.
        """
        texts = check_texts(texts, "encode")
        pre = self.prefix(prompt_name=prompt_name, prompt=prompt, instruction=instruction, task=task)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.embed_tokenized(self.tokenizer.encode_prompted(texts, [pre] * len(texts),
                                                                   truncation=self.truncation),
                                    batch_tokens=batch_tokens, progress=progress)

    def encode_query(self, texts: Sequence[str] | str, *, prompt_name: str | None = None, prompt: str | None = None,
                     instruction: str | None = None, task: str | None = None, batch_tokens: int | None = None,
                     progress: bool | None = None, **st_options) -> np.ndarray | torch.Tensor:
        """sentence-transformers v5's ``encode_query``: ``encode`` with the query prompt unless one is given (the
        checkpoint's ``web_search_query`` on harrier checkpoints, else its ``query`` prompt, else none; never the
        ``default_prompt_name``). A single str gives one [dim] vector, as in sentence-transformers.

        ``st_options``: sentence-transformers' ``show_progress_bar``, ``normalize_embeddings``,
        ``convert_to_tensor``, ``convert_to_numpy`` and ``batch_size`` (ignored with a warning: harrier batches by
        ``batch_tokens``); any other name is a ValueError.
        """
        return self._encode_side("query", texts, Prompt(prompt_name=prompt_name, prompt=prompt,
                                                        instruction=instruction, task=task),
                                 batch_tokens=batch_tokens, progress=progress, st_options=st_options)

    def encode_document(self, texts: Sequence[str] | str, *, prompt_name: str | None = None,
                        prompt: str | None = None, instruction: str | None = None, task: str | None = None,
                        batch_tokens: int | None = None, progress: bool | None = None,
                        **st_options) -> np.ndarray | torch.Tensor:
        """sentence-transformers v5's ``encode_document``: ``encode`` with the checkpoint's ``document``,
        ``passage`` or ``corpus`` prompt (the first it declares) unless one is given, else raw (harrier checkpoints
        declare none: documents are raw). Options as :meth:`encode_query`."""
        return self._encode_side("document", texts, Prompt(prompt_name=prompt_name, prompt=prompt,
                                                           instruction=instruction, task=task),
                                 batch_tokens=batch_tokens, progress=progress, st_options=st_options)

    def _encode_side(self, side: Side, texts: Sequence[str] | str, spec: Prompt, *, batch_tokens: int | None,
                     progress: bool | None, st_options: dict) -> np.ndarray | torch.Tensor:
        unknown = sorted(set(st_options) - set(ST_OPTIONS))
        if unknown:
            raise ValueError(f"encode_{side} got unknown option(s) {', '.join(unknown)}; it takes prompt_name, "
                             f"prompt, instruction, task, batch_tokens, progress, {', '.join(ST_OPTIONS)}")
        if st_options.get("batch_size") is not None:
            log.warning("batch_size=%r ignored: harrier batches by tokens (batch_tokens=...)", st_options["batch_size"])
        if st_options.get("show_progress_bar") is not None:
            if progress is not None:
                raise ValueError("give progress or show_progress_bar, not both")
            progress = st_options["show_progress_bar"]
        single = isinstance(texts, str)
        pre = side_prefix(self.prompt_config, side, prompt_name=spec.prompt_name, prompt=spec.prompt,
                          instruction=spec.instruction, task=spec.task)
        emb = self.encode([texts] if single else texts, prompt=pre, batch_tokens=batch_tokens, progress=progress)
        if st_options.get("normalize_embeddings"):
            emb = l2_normalize(emb)
        emb = emb[0] if single else emb
        if st_options.get("convert_to_tensor") or st_options.get("convert_to_numpy") is False:
            return torch.from_numpy(np.ascontiguousarray(emb))
        return emb

    def encode_items(self, items: Sequence[tuple[str, PromptSpec]], *, batch_tokens: int | None = None,
                     progress: bool | None = None) -> np.ndarray:
        """Embed ``(text, prompt)`` items in one call, each text with its own prompt: [N, dim] float32.

        A prompt is a name of the checkpoint's prompts, a :class:`~harrier.prompts.Prompt` (instruction, task or
        literal prefix), or None (raw, as documents are). Texts with different prompts share packed batches.
        """
        if isinstance(items, str) or items is None or not hasattr(items, "__iter__"):
            raise ValueError(f"encode_items takes a list of (text, prompt) pairs, got {type(items).__name__}")
        items = list(items)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.embed_tokenized(self.tokenize_items(items), batch_tokens=batch_tokens, progress=progress)

    def embed_tokenized(self, tok: TokenizedItems, *, batch_tokens: int | None = None,
                        progress: bool | None = None) -> np.ndarray:
        """Embed what ``tokenize_items`` (or ``tokenizer.encode_prompted``) returned: [N, dim] float32."""
        if self.prefix_cache is not None:
            self.prefix_cache.count_fallbacks(tok.fallbacks)
        return self.embed_ids(tok.ids, tok.prompt_lens, prefix_lens=tok.prefix_lens, batch_tokens=batch_tokens,
                              progress=progress)

    def embed_ids(self, ids: Sequence[Sequence[int]], prompt_lens: Sequence[int] | None = None, *,
                  prefix_lens: Sequence[int] | None = None, batch_tokens: int | None = None,
                  progress: bool | None = None) -> np.ndarray:
        """Embed token-id sequences (special tokens included, e.g. from ``tokenizer.with_specials``): [N, dim].

        ``prompt_lens``: each sequence's prompt tokens, skipped by mean pooling with ``include_prompt=False``.
        ``prefix_lens``: each sequence's leading tokens that the prefix cache may reuse across sequences (0: none;
        any leading tokens are exact to reuse, since the cache is keyed by the ids themselves); ignored where the
        cache is off or does not apply.
        """
        vocab = self.model.cfg.vocab_size
        for i, seq in enumerate(ids):
            if not seq:
                raise ValueError(f"token sequence #{i} is empty")
            if len(seq) > self.max_length:
                raise ValueError(f"token sequence #{i} has {len(seq)} tokens, over max_length {self.max_length}")
            if min(seq) < 0 or max(seq) >= vocab:
                raise ValueError(f"token sequence #{i} holds ids outside the vocabulary [0, {vocab})")
        if prompt_lens is not None and len(prompt_lens) != len(ids):
            raise ValueError(f"{len(prompt_lens)} prompt lengths for {len(ids)} sequences")
        if prefix_lens is not None and len(prefix_lens) != len(ids):
            raise ValueError(f"{len(prefix_lens)} prefix lengths for {len(ids)} sequences")
        if self.prefix_cache is not None:
            self.prefix_cache.check_weights(weights_version(self.model))
        if batch_tokens is None:
            batch_tokens = DEFAULT_BATCH_TOKENS[self.device.type]
        if isinstance(batch_tokens, bool) or not isinstance(batch_tokens, int) or batch_tokens < 1:
            raise ValueError(f"batch_tokens must be a positive int, got {batch_tokens!r}")
        return run_batches(self.model, ids, dim=self.dim, batch_tokens=batch_tokens, device=self.device,
                           prompt_lens=prompt_lens, progress=progress, normalize=self.model.head.normalize,
                           prefix_lens=prefix_lens, cache=self.prefix_cache)

    def encode_chunked(self, texts: Sequence[str], *, chunk: int = 512, overlap: int = 64,
                       aggregate: Aggregate = "mean", prompt_name: str | None = None, prompt: str | None = None,
                       instruction: str | None = None, task: str | None = None, batch_tokens: int | None = None,
                       progress: bool | None = None) -> ChunkedEmbeddings:
        """Texts of any length in chunks of ``chunk`` tokens (prompt and special tokens included) sharing ``overlap``
        tokens, each chunk encoded as ``encode`` encodes a text (the prompt on every chunk of a query, documents
        raw). ``aggregate``: "mean" (default) or "weighted" (by text tokens) of the normalised chunk vectors,
        renormalised, one row per text; "none", one row per chunk. Chunk sources and character spans come with
        every result (:class:`~harrier.chunking.ChunkedEmbeddings`)."""
        spec = Prompt(prompt_name=prompt_name, prompt=prompt, instruction=instruction, task=task)
        cfg = ChunkConfig(chunk=chunk, overlap=overlap, aggregate=aggregate)
        return chunking.encode_chunked(self, texts, spec, cfg, batch_tokens=batch_tokens, progress=progress)

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cosine similarity matrix [len(a), len(b)]."""
        a = np.asarray(a, dtype=np.float32)
        b = np.asarray(b, dtype=np.float32)
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
            raise ValueError(f"similarity needs two [N, D] arrays of the same D, got {a.shape} and {b.shape}")
        return l2_normalize(a) @ l2_normalize(b).T

    def info(self) -> ModelInfo:
        cfg, head = self.model.cfg, self.model.head
        attention = "causal" if cfg.causal else "bidirectional"
        if cfg.sliding_window and "sliding_attention" in cfg.layer_types:
            n = cfg.layer_types.count("sliding_attention")
            window = self.card.hf_config.get("sliding_window", cfg.sliding_window)
            attention += f", {n}/{cfg.num_layers} layers sliding window {window}"
        else:
            attention += ", all layers full attention"
        return ModelInfo(
            source=self.card.source, architecture=cfg.model_type, dim=self.dim, hidden_size=cfg.hidden_size,
            layers=cfg.num_layers, max_length=self.max_length, attention=attention, pooling=head.pooling.mode,
            include_prompt=head.pooling.include_prompt,
            dense=tuple(f"{d.cfg.in_features}->{d.cfg.out_features}" for d in head.dense),
            normalize=head.normalize, prompts=self.prompts,
            default_prompt_name=self.card.prompts.default_prompt_name,
            parameters=self.model.num_parameters(),
            dtype=describe_dtype(self.model, str(self.dtype).removeprefix("torch.")),
            device=str(self.device), prefix_cache=self.prefix_cache_state(),
            **({"int8_probe": int8_probe(self.model.backbone.compiled is not None).summary()}
               if is_int8(self.model) else {}),
            **({"cpu_malloc": cpu_malloc.tune()} if self.device.type == "cpu" else {}),
        )

    def prefix_cache_state(self) -> str:
        """Whether the prefix cache runs, in words: "on (...)", "off (...)" or "not applicable: <why>"."""
        if self.prefix_cache_reason is not None:
            return f"not applicable: {self.prefix_cache_reason}"
        if self.prefix_cache is None:
            return "off (prefix_cache=False)"
        return (f"on (causal attention, {self.model.head.pooling.mode} pooling; store bound "
                f"{self.prefix_cache.max_bytes / 2**20:g} MB)")

    def save_pretrained(self, path: str | Path) -> None:
        """Write the harrier Sentence-Transformers layout (loads in harrier and in SentenceTransformer())."""
        if is_int8(self.model):
            raise ValueError("an int8 model is not saved: int8 is applied at load (dtype='int8'); save the float "
                             "model and load that with dtype='int8'")
        saving.save_pretrained(Path(path), model=self.model, card=self.card, max_length=self.max_length,
                               dtype=self.dtype)
