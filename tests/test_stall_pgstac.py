"""A PostgreSQL that stops answering (every process SIGSTOPped) is reported as a stalled
sink within ``stall_warning_seconds``, in the log and in ``stacwatchd status``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from test_daemon_pgstac import daemon_for, ids_in_pgstac

from stacwatchd import testing
from stacwatchd.testing import wait_until

pytestmark = pytest.mark.pg

STALL_SECONDS = 3


def postgres_processes(cluster) -> list[int]:
    """The postmaster and every process it started."""
    postmaster = int((Path(cluster.data_dir) / "postmaster.pid").read_text().splitlines()[0])
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            children.append(int(entry.name))
    return [postmaster, *children]


def send(signum: int, pids: list[int]) -> None:
    """Signal every process still there (a backend may have ended meanwhile)."""
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            continue


def status(config: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "stacwatchd", "status", "--config", str(config), "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result
    return json.loads(result.stdout)


def at(event: dict) -> datetime:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))


def test_stopped_postgresql_is_a_stalled_sink_within_the_configured_time(tmp_path, pg_cluster_factory):
    cluster = pg_cluster_factory()
    daemon = daemon_for(tmp_path, cluster)
    daemon.config.write_text(f"stall_warning_seconds = {STALL_SECONDS}\n" + daemon.config.read_text())
    made = testing.many_cogs(tmp_path / "prepared", 6)
    stopped: list[int] = []
    try:
        daemon.start()
        shutil.copy(made[0], daemon.watched / made[0].name)
        wait_until(lambda: ids_in_pgstac(cluster) == [made[0].stem], timeout=90, message="first Item published")
        stopped = postgres_processes(cluster)
        send(signal.SIGSTOP, stopped)
        for path in made[1:]:
            shutil.copy(path, daemon.watched / path.name)
        daemon.wait_items({p.stem for p in made}, timeout=120)  # the static catalog goes on
        stalled = daemon.wait_events("sink_stalled", timeout=60)[0]
        assert stalled["sink"] == "pgstac" and stalled["backlog"] > 0
        backlog_since = min(at(e) for e in daemon.events("item_added") if e["item_id"] != made[0].stem)
        late = (at(stalled) - backlog_since).total_seconds()
        assert stalled["no_progress_for_s"] >= STALL_SECONDS
        assert late <= STALL_SECONDS + 3, f"warned {late:.1f} s after the backlog appeared"
        report = wait_until(lambda: (s := status(daemon.config)).get("warnings") and s, timeout=30)
        assert any(w.startswith("sink pgstac stalled") for w in report["warnings"]), report["warnings"]
        assert report["daemon"]["sinks"]["pgstac"]["stalled_for_s"] >= STALL_SECONDS
        send(signal.SIGCONT, stopped)
        stopped = []
        wait_until(lambda: set(ids_in_pgstac(cluster)) == {p.stem for p in made}, timeout=120, message="drained")
        daemon.wait_events("sink_moving_again", timeout=30)
        wait_until(lambda: "warnings" not in status(daemon.config), timeout=30)
        assert len(daemon.events("sink_stalled")) == 1
        assert daemon.stop() == 0
    finally:
        send(signal.SIGCONT, stopped)
        daemon.close()
