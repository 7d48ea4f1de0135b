"""What the routes share: the config, the model (once loaded), the batcher and the lifecycle flags."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from harrier.serve.batcher import Batcher
from harrier.serve.config import ServeConfig
from harrier.serve.metrics import Metrics
from harrier.serve.runtime import Runtime


@dataclass
class ServerState:
    """What the routes share: the config, the model (once loaded), the batcher and the lifecycle flags."""

    config: ServeConfig
    metrics: Metrics
    runtime: Runtime | None = None
    batcher: Batcher | None = None
    draining: bool = False
    load_error: str | None = None
    started_at: float = field(default_factory=time.time)
    on_load_error: Callable[[str], None] | None = None

    def unavailable(self) -> str | None:
        """Why the model routes answer 503 now, or None."""
        if self.draining:
            return "server is shutting down"
        if self.load_error is not None:
            return f"model failed to load: {self.load_error}"
        if self.batcher is None:
            return "model is loading"
        return None
