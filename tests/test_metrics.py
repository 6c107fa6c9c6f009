"""The Prometheus endpoint: scraped over HTTP while a real daemon catalogs files."""

from __future__ import annotations

import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from daemon_support import DaemonProcess
from prometheus_client.parser import text_string_to_metric_families

from stacwatchd import metrics as metrics_module
from stacwatchd import testing
from stacwatchd.metrics import Metrics
from stacwatchd.testing import wait_until

#: Loopback only, and never through a proxy the environment may name.
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> tuple[int, str]:
    try:
        with _LOCAL.open(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as {(name, labels): value}."""
    status, text = get(f"{base}/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def daemon(tmp_path: Path):
    process = DaemonProcess(tmp_path / "d", extra='[metrics]\nlisten = "127.0.0.1:0"')
    yield process
    process.close()


def test_metrics_follow_what_the_daemon_catalogs(daemon, tmp_path):
    started = time.time()
    daemon.start()
    listening = daemon.wait_events("metrics_listening")[0]
    assert listening["host"] == "127.0.0.1"
    base = f"http://127.0.0.1:{listening['port']}"
    wait_until(lambda: get(f"{base}/healthz") == (200, "ok\n"), timeout=10, message="healthy")
    before = scrape(base)
    assert value(before, "stacwatchd_items_total", outcome="added") == 0
    assert value(before, "stacwatchd_queue_depth") == 0

    source = tmp_path / "source"
    source.mkdir()
    good = [testing.cog(source / f"scene_{day}.tif") for day in ("20240517", "20240518", "20240519")]
    broken = [testing.truncated(source / "broken_20240517.tif"), testing.random_bytes(source / "noise_20240517.tif")]
    undated = testing.utm(source / "undated.tif")
    for path in [*good, *broken, undated]:
        shutil.copy(path, daemon.watched / path.name)
    daemon.wait_items({p.stem for p in good})
    daemon.wait_events("item_rejected", 3)

    def settled() -> dict | None:
        # Items are counted once their files are on disk, just after the Item JSON
        # appears: wait for the count too, then check it is exact.
        now = scrape(base)
        idle = value(now, "stacwatchd_queue_depth") == 0 and value(now, "stacwatchd_settle_backlog") == 0
        refused = value(now, "stacwatchd_refused_files_total", reason="unreadable_raster") == 2
        return now if idle and refused and value(now, "stacwatchd_items_total", outcome="added") >= 3 else None

    now = wait_until(settled, timeout=30, message="metrics settled")
    assert value(now, "stacwatchd_items_total", outcome="added") == 3
    assert value(now, "stacwatchd_items_total", outcome="updated") == 0
    assert value(now, "stacwatchd_refused_files_total", reason="unreadable_raster") == 2
    assert value(now, "stacwatchd_refused_files_total", reason="no_datetime") == 1
    assert value(now, "stacwatchd_build_seconds_count") >= 6
    assert value(now, "stacwatchd_batch_write_seconds_count") >= 1
    assert value(now, "stacwatchd_batch_write_seconds_sum") > 0
    assert started <= value(now, "stacwatchd_last_write_timestamp_seconds") <= time.time()
    assert value(now, "stacwatchd_healthy") == 1

    (daemon.watched / good[0].name).unlink()
    shutil.copy(testing.utm(source / "other.tif"), daemon.watched / good[1].name)
    daemon.wait_events("item_removed")
    daemon.wait_events("item_updated")
    after = wait_until(
        lambda: s if value(s := scrape(base), "stacwatchd_items_total", outcome="updated") == 1 else None,
        timeout=30,
        message="update counted",
    )
    assert value(after, "stacwatchd_items_total", outcome="removed") == 1
    assert value(after, "stacwatchd_items_total", outcome="added") == 3
    assert value(after, "stacwatchd_last_write_timestamp_seconds") >= value(now, "stacwatchd_last_write_timestamp_seconds")

    assert daemon.stop() == 0
    with pytest.raises(urllib.error.URLError):
        _LOCAL.open(f"{base}/healthz", timeout=5)


def serve(metrics: Metrics) -> str:
    server = metrics.serve("127.0.0.1:0")
    assert server is not None
    return f"http://127.0.0.1:{server.port}"


def test_healthz_is_200_only_while_the_main_loop_ticks_and_the_writer_runs(monkeypatch):
    metrics = Metrics()
    writer = {"alive": True}
    metrics.watch(queue_depth=lambda: 0, settle_backlog=lambda: 0, writer_alive=lambda: writer["alive"])
    base = serve(metrics)
    try:
        assert get(f"{base}/healthz") == (503, "starting: the main loop has not run yet\n")
        metrics.tick()
        assert get(f"{base}/healthz") == (200, "ok\n")
        writer["alive"] = False
        assert get(f"{base}/healthz") == (503, "writer thread stopped\n")
        writer["alive"] = True
        monkeypatch.setattr(metrics_module, "MAIN_LOOP_STALE_SECONDS", 0.05)
        status, text = wait_until(lambda: r if (r := get(f"{base}/healthz"))[0] == 503 else None, timeout=5)
        assert text.startswith("main loop stuck: no tick for")
        assert get(f"{base}/nothing")[0] == 404
    finally:
        metrics.close()


def test_sinks_report_their_backlog_and_last_success_and_a_failing_probe_is_left_out():
    metrics = Metrics()
    metrics.watch(queue_depth=lambda: 4, settle_backlog=lambda: 1 / 0, writer_alive=lambda: True)
    metrics.sink("pgstac", backlog=lambda: 7, last_success=lambda: 1_700_000_000.0)
    metrics.sink("bucket", backlog=lambda: 0, last_success=lambda: None)
    base = serve(metrics)
    try:
        samples = scrape(base)
    finally:
        metrics.close()
    assert value(samples, "stacwatchd_queue_depth") == 4
    assert value(samples, "stacwatchd_settle_backlog") is None
    assert value(samples, "stacwatchd_sink_backlog", sink="pgstac") == 7
    assert value(samples, "stacwatchd_sink_backlog", sink="bucket") == 0
    assert value(samples, "stacwatchd_sink_last_success_timestamp_seconds", sink="pgstac") == 1_700_000_000.0
    assert value(samples, "stacwatchd_sink_last_success_timestamp_seconds", sink="bucket") is None


def test_events_are_counted_by_outcome_and_reason():
    metrics = Metrics()
    for outcome in ("added", "added", "removed"):
        metrics.item_changed(outcome)
    metrics.refused("no_datetime")
    metrics.build_time(0.2)
    metrics.batch_written(0.01)
    base = serve(metrics)
    try:
        samples = scrape(base)
    finally:
        metrics.close()
    assert value(samples, "stacwatchd_items_total", outcome="added") == 2
    assert value(samples, "stacwatchd_items_total", outcome="updated") == 0
    assert value(samples, "stacwatchd_items_total", outcome="removed") == 1
    assert value(samples, "stacwatchd_refused_files_total", reason="no_datetime") == 1
    assert value(samples, "stacwatchd_build_seconds_bucket", le="0.25") == 1
    assert value(samples, "stacwatchd_batch_write_seconds_count") == 1
    assert 0 < value(samples, "process_start_time_seconds") <= time.time()  # the README's first alert rule uses it
