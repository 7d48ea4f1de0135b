"""Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from harrier.serve.batcher import BatchStats

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
TOKEN_BUCKETS = (16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


class Metrics:
    """Request count/latency by route and status, queue depth, batch size/tokens/requests, tokens embedded."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("harrier_requests", "HTTP requests", ["route", "status"], registry=r)
        self.latency = Histogram("harrier_request_duration_seconds", "HTTP request latency", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.inputs = Histogram("harrier_request_inputs", "inputs per embedding request", buckets=SIZE_BUCKETS,
                                registry=r)
        self.queued_tokens = Gauge("harrier_queue_tokens", "tokens waiting for the model", registry=r)
        self.batch_sequences = Histogram("harrier_batch_sequences", "sequences per forward", buckets=SIZE_BUCKETS,
                                         registry=r)
        self.batch_tokens = Histogram("harrier_batch_tokens", "tokens per forward", buckets=TOKEN_BUCKETS,
                                      registry=r)
        self.batch_requests = Histogram("harrier_batch_requests", "distinct requests per forward",
                                        buckets=SIZE_BUCKETS, registry=r)
        self.batch_seconds = Histogram("harrier_batch_duration_seconds", "forward time per batch",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("harrier_embedded_tokens", "tokens embedded (rate() gives tokens/s)", registry=r)
        self.ready = Gauge("harrier_ready", "1 when the model is loaded and the server takes requests", registry=r)

    def on_batch(self, stats: BatchStats) -> None:
        self.batch_sequences.observe(stats.sequences)
        self.batch_tokens.observe(stats.tokens)
        self.batch_requests.observe(stats.requests)
        self.batch_seconds.observe(stats.seconds)
        self.tokens.inc(stats.tokens)
