"""End to end: the daemon publishes to PgSTAC; stac-fastapi-pgstac finds what was dropped."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import pystac_client
import pytest
from daemon_support import DaemonProcess

from stacwatchd import testing
from stacwatchd.config import load_settings
from stacwatchd.engine.scan import scan
from stacwatchd.testing import wait_until

pytestmark = pytest.mark.pg

PASSWORD_ENV = "STACWATCHD_E2E_PGPASSWORD"
STATE_V1 = Path(__file__).parent / "support" / "state_v1.sql"


def daemon_for(base: Path, cluster) -> DaemonProcess:
    extra = (
        f'[pgstac]\ndsn = "postgresql://{cluster.user}@{cluster.host}:{cluster.port}/{cluster.dbname}"\n'
        f'password_env = "{PASSWORD_ENV}"\nretry_initial_seconds = 0.2\nretry_max_seconds = 1.0\n'
        f'public_base_url = "https://data.example.org/stac/"\n'
    )
    daemon = DaemonProcess(base, extra="")
    daemon.config.write_text(daemon.config.read_text() + "\n" + extra)
    daemon.env = {PASSWORD_ENV: cluster.password}
    return daemon


def search(api: str, **params: str) -> list[dict]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    with urllib.request.urlopen(f"{api}/search?{query}&limit=100", timeout=10) as response:
        return json.load(response)["features"]


def ids_in_pgstac(cluster) -> list[str]:
    with cluster.connect() as conn:
        return [row[0] for row in conn.execute("SELECT id FROM pgstac.items ORDER BY id")]


def cli(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``stacwatchd ARGS --config`` the daemon's configuration, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "stacwatchd", *args, "--config", str(daemon.config)],
        capture_output=True, text=True, timeout=120, env={**os.environ, **daemon.env},
    )  # fmt: skip


def status(daemon: DaemonProcess) -> dict:
    result = cli(daemon, "status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_dropped_file_is_searchable_moves_with_its_date_and_disappears_when_deleted(tmp_path, pgstac_db, stac_api):
    daemon = daemon_for(tmp_path, pgstac_db)
    try:
        daemon.start()
        path = daemon.watched / "scene.tif"
        testing.utm(path, tags={"TIFFTAG_DATETIME": "2024:05:17 10:30:00"})
        bbox = "14.9,45.1,15.1,45.2"

        def found(datetime: str) -> list[str]:
            return [f["id"] for f in search(stac_api, bbox=bbox, datetime=datetime)]

        may = "2024-05-17T00:00:00Z/2024-05-18T00:00:00Z"
        wait_until(lambda: found(may) == ["scene"], timeout=60, message="searchable in May")
        client = pystac_client.Client.open(stac_api)
        items = list(client.search(bbox=[14.9, 45.1, 15.1, 45.2], datetime="2024-05").items())
        assert [i.id for i in items] == ["scene"]
        # the data folder sits beside the catalog root, so its URL is beside the catalog URL
        assert items[0].assets["data"].href == "https://data.example.org/incoming/scene.tif"
        assert any(link.rel == "canonical" for link in items[0].links)

        prepared = testing.utm(tmp_path / "scene.tif", tags={"TIFFTAG_DATETIME": "2025:02:03 04:05:06"})
        shutil.copy(prepared, path)
        february = "2025-02-01T00:00:00Z/2025-03-01T00:00:00Z"
        wait_until(lambda: found(february) == ["scene"], timeout=60, message="moved to February 2025")
        assert found(may) == []
        assert ids_in_pgstac(pgstac_db) == ["scene"]

        path.unlink()
        wait_until(lambda: found(february) == [], timeout=60, message="gone after delete")
        assert ids_in_pgstac(pgstac_db) == []
    finally:
        daemon.close()


def test_database_stopped_mid_stream_loses_and_doubles_nothing(tmp_path, pg_cluster_factory):
    cluster = pg_cluster_factory()
    daemon = daemon_for(tmp_path, cluster)
    source = tmp_path / "prepared"
    made = testing.many_cogs(source, 60)
    try:
        daemon.start()
        for path in made[:20]:
            shutil.copy(path, daemon.watched / path.name)
        wait_until(lambda: len(ids_in_pgstac(cluster)) == 20, timeout=90, message="first 20 published")
        cluster.stop()
        for path in made[20:]:
            shutil.copy(path, daemon.watched / path.name)
        for path in made[:5]:
            (daemon.watched / path.name).unlink()
        expected = {p.stem for p in made[5:]}
        daemon.wait_items(expected, timeout=120)  # static cataloging goes on without the database

        def failing() -> dict | None:
            s = status(daemon)
            return s if s["sinks"]["pgstac"]["backlog"] > 0 and "last_error" in s["sinks"]["pgstac"] else None

        report = wait_until(failing, timeout=60)
        assert report["outbox_depth"] > 0 and report["sinks"]["pgstac"]["last_error_kind"] == "unavailable"
        assert cluster.password not in json.dumps(report)
        readable = cli(daemon, "status").stdout
        assert "pgstac:" in readable and "changes waiting" in readable and "last error (unavailable" in readable
        cluster.start()
        wait_until(lambda: set(ids_in_pgstac(cluster)) == expected, timeout=120, message="drained after restart")
        ids = ids_in_pgstac(cluster)
        assert len(ids) == len(set(ids)) == len(expected)
        wait_until(lambda: status(daemon)["outbox_depth"] == 0, timeout=60)
        wait_until(lambda: "last_error" not in status(daemon)["sinks"]["pgstac"], timeout=30)
        assert status(daemon)["sinks"]["pgstac"]["last_success"]
        assert cluster.password not in daemon.log_path.read_text()
    finally:
        daemon.close()


def test_scan_publishes_what_it_catalogs_and_rebuild_a_renamed_collection(tmp_path, pgstac_db):
    daemon = daemon_for(tmp_path, pgstac_db)
    made = testing.many_cogs(daemon.watched, 3)

    result = cli(daemon, "scan")
    assert result.returncode == 0, result.stderr
    assert ids_in_pgstac(pgstac_db) == sorted(p.stem for p in made)
    assert status(daemon)["sinks"]["pgstac"]["backlog"] == 0

    daemon.config.write_text(daemon.config.read_text().replace('id = "scenes"\n', 'id = "scenes"\ntitle = "Renamed scenes"\n'))
    result = cli(daemon, "rebuild")
    assert result.returncode == 0, result.stderr
    with pgstac_db.connect() as conn:
        title = conn.execute("SELECT content->>'title' FROM pgstac.collections WHERE id = 'scenes'").fetchone()[0]
    assert title == "Renamed scenes"
    assert status(daemon)["sinks"]["pgstac"]["backlog"] == 0


def write_v1_state(current: Path, target: Path) -> int:
    """The state file of the first version holding ``current``'s catalog, with what that
    version's writer queued for PgSTAC still in its outbox; returns the rows queued."""
    db = sqlite3.connect(target)
    try:
        db.executescript(STATE_V1.read_text())
        db.execute("ATTACH DATABASE ? AS now", (f"file:{current}?mode=ro",))
        for table in ("sources", "collections", "items", "item_values", "value_counts", "partitions", "files"):
            columns = ", ".join(row[1] for row in db.execute(f"PRAGMA main.table_info({table})"))  # the ones version 1 had
            db.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM now.{table}")
        db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        db.execute("INSERT INTO meta VALUES ('publish_error', '2026-01-01T00:00:00Z unavailable: from before')")
        db.execute("INSERT INTO outbox (kind, collection, key, queued_at) VALUES ('collection', 'scenes', NULL, 0)")
        db.execute(
            "INSERT INTO outbox (kind, collection, key, queued_at) "
            "SELECT 'item', collection, id, 0 FROM now.items ORDER BY start_us, id"
        )
        db.commit()
        return db.execute("SELECT count(*) FROM outbox").fetchone()[0]
    finally:
        db.close()


def test_backlog_of_a_previous_version_state_is_published_after_upgrade(tmp_path, pgstac_db):
    """A daemon of the first version stopped with changes not yet in PgSTAC; the new one
    migrates its state and delivers them, without cataloging anything again."""
    daemon = daemon_for(tmp_path, pgstac_db)
    made = testing.many_cogs(daemon.watched, 4)
    settings = load_settings(daemon.config)
    scan(settings.catalog, settings.watch, workers=1, progress=None)  # the catalog, no PgSTAC yet
    state_path = settings.catalog.state_path
    old = state_path.with_name("v1.db")
    queued = write_v1_state(state_path, old)
    for leftover in state_path.parent.glob(state_path.name + "*"):
        leftover.unlink()
    old.rename(state_path)
    assert queued == 5

    try:
        daemon.start()
        wait_until(lambda: ids_in_pgstac(pgstac_db) == sorted(p.stem for p in made), timeout=60, message="backlog published")
        started = daemon.wait_events("sink_started")
        assert [(e["sink"], e["backlog"]) for e in started] == [("pgstac", queued)]
        reconciled = daemon.wait_events("reconciled")
        assert reconciled[0]["unchanged"] == 4 and reconciled[0]["changed"] == 0
        assert not daemon.events("item_added") and not daemon.events("item_updated")
        wait_until(lambda: status(daemon)["outbox_depth"] == 0, timeout=30)
        report = status(daemon)
        assert report["sinks"]["pgstac"]["backlog"] == 0 and "last_error" not in report["sinks"]["pgstac"]
        assert "from before" not in json.dumps(report)
    finally:
        daemon.close()
