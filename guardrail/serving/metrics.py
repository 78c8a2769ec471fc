"""Prometheus metrics of the sidecar: counts, latencies, batch sizes, queue depth and what it runs — never
request text.

One :class:`ServingMetrics` per server, each with its own registry, so that several servers (tests) can
live in one process; ``serve`` exposes the registry on a separate port.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_CHAR_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144)


class ServingMetrics:
    """The sidecar's metrics; labels are method names and status codes only."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "guardrail_requests",
            "Finished calls by method and gRPC status code",
            ["method", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "guardrail_request_seconds",
            "Call latency by method",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_texts = Histogram(
            "guardrail_batch_texts", "Texts per forward pass", buckets=_BATCH_BUCKETS, registry=r
        )
        self.batch_chars = Histogram(
            "guardrail_batch_chars", "Characters per forward pass", buckets=_CHAR_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "guardrail_batch_seconds", "Model time per forward pass", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.queue_texts = Gauge("guardrail_queue_texts", "Texts waiting for the model", registry=r)
        self.texts = Counter("guardrail_texts", "Texts read by the model", registry=r)
        self.dropped_texts = Counter(
            "guardrail_dropped_texts",
            "Texts the model did not read, by reason: refused (its deadline would pass behind the queue), "
            "abandoned (the caller left while it waited), expired (its deadline passed or was too close), "
            "stopped (every caller of its batch left during the forward pass)",
            ["reason"],
            registry=r,
        )
        self.late_texts = Counter(
            "guardrail_late_texts", "Texts the model read to the end for a caller that had gone", registry=r
        )
        self.build = Info(
            "guardrail_build",
            "What the sidecar runs: package version, bundle, probe, device, dtype, runtime, why (the runtime "
            "and dtype picked and why), cpu (the CPU's capabilities as the model sees them)",
            registry=r,
        )

    def set_build(self, **labels: str) -> None:
        """Set ``guardrail_build_info`` (once, at start): e.g. ``version``, ``bundle``, ``probe``,
        ``device``, ``dtype``, ``runtime``, ``why``, ``cpu``."""
        self.build.info(labels)

    def observe_call(self, method: str, code: str, seconds: float) -> None:
        """Record one finished call."""
        self.requests.labels(method=method, code=code).inc()
        self.latency.labels(method=method).observe(seconds)

    def serve_http(self, port: int, host: str = "127.0.0.1"):
        """Serve ``/metrics`` on ``host:port`` in a daemon thread; returns the WSGI server."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
