"""Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

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
        self.abandoned = Counter("harrier_batches_abandoned", "forwards stopped part-way because every request in "
                                 "them had disconnected", registry=r)
        self.body_timeouts = Counter("harrier_body_timeouts", "requests whose body did not arrive within "
                                     "--body-timeout (answered 408)", registry=r)
        self.ready = Gauge("harrier_ready", "1 when the model is loaded and the server takes requests", registry=r)

    def watch_prefix_cache(self, store) -> None:
        """Export a ``PrefixStore``'s figures (read at scrape time): hits, misses, tokens saved, fallbacks,
        evictions, entries and bytes against the bound. Nothing is exported when the cache is off."""
        if store is not None:
            self.registry.register(_PrefixCacheCollector(store))

    def on_batch(self, stats: BatchStats) -> None:
        if stats.abandoned:
            self.abandoned.inc()
            return
        self.batch_sequences.observe(stats.sequences)
        self.batch_tokens.observe(stats.tokens)
        self.batch_requests.observe(stats.requests)
        self.batch_seconds.observe(stats.seconds)
        self.tokens.inc(stats.tokens)


class _PrefixCacheCollector:
    """The prefix store's counters and sizes as Prometheus metrics (``harrier_prefix_cache_*``)."""

    COUNTERS = {"hits": "texts whose prompt prefix came from the cache",
                "misses": "prompt prefixes computed (then kept, memory allowing)",
                "tokens_saved": "prompt tokens not recomputed thanks to the cache",
                "fallbacks": "texts whose prompt's shared tokens did not match their own (ran in full)",
                "evictions": "prefixes evicted to stay within the memory bound"}
    GAUGES = {"entries": "prefixes held", "bytes": "bytes held", "max_bytes": "the memory bound"}

    def __init__(self, store) -> None:
        self.store = store

    def describe(self):
        return []

    def collect(self):
        stats = self.store.stats()
        for name, doc in self.COUNTERS.items():
            yield CounterMetricFamily(f"harrier_prefix_cache_{name}", doc, value=stats[name])
        for name, doc in self.GAUGES.items():
            yield GaugeMetricFamily(f"harrier_prefix_cache_{name}", doc, value=stats[name])
