"""The server's settings, resolved once at startup (the CLI fills them from flags; ``app(...)`` from arguments)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """Everything ``harrier serve`` can be told. ``None`` limits resolve from the device (see ``resolved``)."""

    model: str
    served_model_name: str | None = None  # the name clients send as ``model`` (default: the model's folder name)
    device: str | None = None
    dtype: str = "auto"  # auto, float32, bfloat16, float16 or int8 (as Embedder.from_pretrained)
    compile: bool = False  # torch.compile the decoder layers; compiled during loading (/health 503 until done)
    max_length: int | None = None
    truncation: str = "warn"  # what a request without ``truncate`` gets: the library's default (cut and log)
    max_batch_tokens: int | None = None  # tokens per forward (default 4,096 on CPU, 16,384 on CUDA)
    max_client_batch_size: int = 512  # inputs per request (413 above)
    max_queued_tokens: int | None = None  # tokens waiting for the model (429 above; default 64 batches)
    payload_limit: int = 8_000_000  # request body bytes (413 above)
    body_timeout: float = 30.0  # seconds for a request's whole body to arrive (408 after)
    api_key: str | None = None
    private_metrics: bool = False  # /metrics needs the API key too (/health stays open for probes)
    default_prompt_name: str | None = None
    allow_token_ids: bool = False  # token-id input on /v1/embeddings (off: OpenAI clients send tiktoken's ids)
    prefix_cache: bool = True  # reuse each prompt's keys/values across requests (causal models; exact)
    prefix_cache_mb: float = 256  # the prefix store's memory bound (least recently used prompts evicted)

    def __post_init__(self) -> None:
        for name in ("max_batch_tokens", "max_client_batch_size", "max_queued_tokens", "payload_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if isinstance(self.body_timeout, bool) or not isinstance(self.body_timeout, int | float) or \
                not self.body_timeout > 0:
            raise ValueError(f"body_timeout must be a positive number of seconds, got {self.body_timeout!r}")
        if isinstance(self.prefix_cache_mb, bool) or not isinstance(self.prefix_cache_mb, int | float) or \
                self.prefix_cache_mb < 0:
            raise ValueError(f"prefix_cache_mb must be a number of MB >= 0, got {self.prefix_cache_mb!r}")
        if self.truncation not in ("warn", "error", "silent"):
            raise ValueError(f"truncation {self.truncation!r} is not one of warn, error, silent")

    def model_id(self) -> str:
        from pathlib import Path

        return self.served_model_name or Path(self.model.rstrip("/")).name or self.model
