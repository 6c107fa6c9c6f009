"""Prometheus metrics and a health check for the running daemon.

The engine reports events through a few small calls (``item_changed``, ``refused``,
``committed``/``flushed`` or ``batch_written``, ``build_time``, ``tick``) and registers callables for what is read
at scrape time (queue depth, settle backlog, sinks). Counting is always on and costs a
lock per event; the HTTP endpoint exists only when ``[metrics] listen`` is set:
``/metrics`` in the Prometheus text format and ``/healthz``, 200 while the main loop
and the writer are alive, 503 with the reason otherwise.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from stacwatchd import __version__
from stacwatchd.config import listen_address
from stacwatchd.log import get_logger

__all__ = ["MAIN_LOOP_STALE_SECONDS", "Metrics", "MetricsServer"]

#: The main loop ticks at least once a second; this long without a tick means it is stuck.
MAIN_LOOP_STALE_SECONDS = 15.0
#: Outcomes counted from the start at zero, so alert rules see a series before the first event.
ITEM_OUTCOMES = ("added", "updated", "removed")

_WRITE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BUILD_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)

Probe = Callable[[], float | int | None]


@dataclass(frozen=True, slots=True)
class _Sink:
    backlog: Probe
    last_success: Probe


class Metrics:
    """Every number the daemon exports, in a registry of its own (one per daemon)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._items = Counter(
            "stacwatchd_items", "Items changed in the catalog, by outcome.", ["outcome"], registry=self.registry
        )
        self._refused = Counter(
            "stacwatchd_refused_files", "Files refused (not cataloged), by reason.", ["reason"], registry=self.registry
        )
        self._batch = Histogram(
            "stacwatchd_batch_write_seconds", "Time to apply one writer batch (state transaction and files).",
            buckets=_WRITE_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self._build = Histogram(
            "stacwatchd_build_seconds", "Time to build one Item from its file(s).",
            buckets=_BUILD_BUCKETS, registry=self.registry,
        )  # fmt: skip
        for outcome in ITEM_OUTCOMES:
            self._items.labels(outcome)
        self._lock = threading.Lock()
        self._last_write: float | None = None
        self._committing = 0.0
        self._last_tick: float | None = None
        self._gauges: dict[str, tuple[str, Probe]] = {}
        self._sinks: dict[str, _Sink] = {}
        self._writer_alive: Callable[[], bool] = lambda: True
        self._server: MetricsServer | None = None
        self.registry.register(_Probes(self))
        ProcessCollector(registry=self.registry)

    # -- events, called by the engine ------------------------------------------------------

    def item_changed(self, outcome: str) -> None:
        """An Item was ``added``, ``updated`` or ``removed``."""
        self._items.labels(outcome).inc()

    def refused(self, reason: str) -> None:
        """A file was refused; ``reason`` is the error kind (``unreadable_raster``, ``no_datetime``…)."""
        self._refused.labels(reason).inc()

    def batch_written(self, seconds: float) -> None:
        """A writer batch landed, state and files; also the time of the last successful write."""
        self._batch.observe(seconds)
        with self._lock:
            self._last_write = time.time()

    def committed(self, seconds: float) -> None:
        """A batch's state transaction succeeded; its files are written by the next ``flushed``."""
        with self._lock:
            self._committing += seconds

    def flushed(self, seconds: float) -> None:
        """The catalog files of the batches committed so far are written: they have landed."""
        with self._lock:
            total, self._committing = self._committing + seconds, 0.0
        self.batch_written(total)

    def build_time(self, seconds: float) -> None:
        self._build.observe(seconds)

    def tick(self) -> None:
        """The main loop is alive (called once per loop turn)."""
        with self._lock:
            self._last_tick = time.monotonic()

    # -- probes, registered once at start ----------------------------------------------------

    def watch(self, *, queue_depth: Probe, settle_backlog: Probe, writer_alive: Callable[[], bool]) -> None:
        """What is read at scrape time: work waiting, files settling, the writer thread."""
        self._gauges["stacwatchd_queue_depth"] = ("Decisions waiting for a worker or the writer.", queue_depth)
        self._gauges["stacwatchd_settle_backlog"] = ("Files seen but not yet settled.", settle_backlog)
        self._writer_alive = writer_alive

    def sink(self, name: str, *, backlog: Probe, last_success: Probe) -> None:
        """A publisher (``pgstac``…): changes it has not published yet, and when it last succeeded."""
        self._sinks[name] = _Sink(backlog, last_success)

    # -- health and serving ---------------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        """(healthy, reason): the main loop ticked recently and the writer thread runs."""
        with self._lock:
            tick = self._last_tick
        if tick is None:
            return False, "starting: the main loop has not run yet"
        quiet = time.monotonic() - tick
        if quiet > MAIN_LOOP_STALE_SECONDS:
            return False, f"main loop stuck: no tick for {quiet:.0f} s"
        if not _safe_bool(self._writer_alive):
            return False, "writer thread stopped"
        return True, "ok"

    def serve(self, listen: str | None) -> MetricsServer | None:
        """Start the HTTP endpoint when ``listen`` is set (``host:port``); None otherwise."""
        if listen is None:
            return None
        self._server = MetricsServer(self, listen).start()
        return self._server

    def close(self) -> None:
        """Stop the endpoint, if one was started."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _last_write_time(self) -> float | None:
        with self._lock:
            return self._last_write


class _Probes(Collector):
    """Values read when Prometheus scrapes, from the callables the engine registered."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        info = GaugeMetricFamily("stacwatchd_build_info", "The running version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        for name, (text, probe) in list(m._gauges.items()):
            value = _safe(probe)
            if value is not None:
                yield GaugeMetricFamily(name, text, value=value)
        last = m._last_write_time()
        if last is not None:
            yield GaugeMetricFamily(
                "stacwatchd_last_write_timestamp_seconds", "When a writer batch last landed (Unix time).", value=last
            )
        backlog = GaugeMetricFamily("stacwatchd_sink_backlog", "Changes a sink has not published yet.", labels=["sink"])
        success = GaugeMetricFamily(
            "stacwatchd_sink_last_success_timestamp_seconds", "When a sink last published (Unix time).", labels=["sink"]
        )
        for name, sink in list(m._sinks.items()):
            depth = _safe(sink.backlog)
            if depth is not None:
                backlog.add_metric([name], depth)
            when = _safe(sink.last_success)
            if when is not None:
                success.add_metric([name], when)
        yield backlog
        yield success
        healthy, _ = m.health()
        yield GaugeMetricFamily("stacwatchd_healthy", "1 while the main loop and the writer are alive.", value=int(healthy))


def _safe(probe: Probe) -> float | None:
    """A probe that fails (a state file being replaced…) is left out of one scrape, not fatal."""
    try:
        value = probe()
    except Exception:  # a scrape must never take the daemon down
        return None
    return None if value is None else float(value)


def _safe_bool(probe: Callable[[], bool]) -> bool:
    try:
        return bool(probe())
    except Exception:  # an unanswerable health probe is an unhealthy one
        return False


class MetricsServer:
    """``/metrics`` and ``/healthz`` over HTTP, on a thread of their own."""

    def __init__(self, metrics: Metrics, listen: str) -> None:
        self.metrics = metrics
        self.listen = listen
        self.host, self.port = listen_address(listen)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> MetricsServer:
        """Bind and serve; ``port`` is the bound port afterwards (useful with port 0)."""
        handler = _handler_for(self.metrics)
        server_class = _IPv6Server if ":" in self.host else ThreadingHTTPServer
        self._httpd = server_class((self.host, self.port), handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="stacwatchd-metrics", daemon=True)
        self._thread.start()
        get_logger().info("metrics_listening", host=self.host, port=self.port, url=f"http://{self.listen_url}/metrics")
        return self

    @property
    def listen_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _handler_for(metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = f"stacwatchd/{__version__}"

        def do_GET(self) -> None:  # noqa: N802 - the http.server contract
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                healthy, reason = metrics.health()
                self._reply(200 if healthy else 503, f"{reason}\n".encode(), "text/plain; charset=utf-8")
            else:
                self._reply(404, b"not found: try /metrics or /healthz\n", "text/plain; charset=utf-8")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the http.server contract
            """Scrapes every few seconds would drown the log; nothing is logged per request."""

    return Handler
