"""The HTTP metrics every request updates, under the names and labels
prometheus-fastapi-instrumentator gave them (dashboards and alerts keep working): requests by
method, status class and route template; request and response sizes by route; latency with many
buckets (no labels) and with few buckets by method and route.

The labelled children are looked up once per (method, status, route) and kept, so a request costs
five plain updates and no label resolution.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, Summary

_HIGHR_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5,
                  7.5, 10, 30, 60, float("inf"))
_LOWR_BUCKETS = (0.1, 0.5, 1, float("inf"))
UNMATCHED = "none"  # the handler label of a request no route matched
EXCLUDED = frozenset({"/metrics"})


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._total = Counter("http_requests_total",
                              "Total number of requests by method, status and handler.",
                              ["method", "status", "handler"], registry=registry)
        self._in_size = Summary("http_request_size_bytes",
                                "Content length of incoming requests by handler (the header's value).",
                                ["handler"], registry=registry)
        self._out_size = Summary("http_response_size_bytes",
                                 "Content length of outgoing responses by handler (the header's value).",
                                 ["handler"], registry=registry)
        self._highr = Histogram("http_request_duration_highr_seconds",
                                "Latency with many buckets but no API specific labels.",
                                buckets=_HIGHR_BUCKETS, registry=registry)
        self._lowr = Histogram("http_request_duration_seconds", "Latency with only few buckets by handler.",
                               ["method", "handler"], buckets=_LOWR_BUCKETS, registry=registry)
        self._children: dict[tuple[str, int, str], tuple[Any, Any, Any, Any]] = {}

    def observe(self, method: str, status: int, handler: str, seconds: float,
                request_bytes: int, response_bytes: int) -> None:
        if handler in EXCLUDED:
            return
        key = (method, status // 100, handler)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self._total.labels(method, f"{status // 100}xx", handler),
                self._in_size.labels(handler),
                self._out_size.labels(handler),
                self._lowr.labels(method, handler),
            )
        total, in_size, out_size, lowr = children
        total.inc()
        in_size.observe(request_bytes)
        out_size.observe(response_bytes)
        self._highr.observe(seconds)
        lowr.observe(seconds)
