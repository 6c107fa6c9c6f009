"""End to end: the daemon publishes to PgSTAC; stac-fastapi-pgstac finds what was dropped."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pystac_client
import pytest

from stacwatchd import testing
from stacwatchd.testing import wait_until
from daemon_support import DaemonProcess

pytestmark = pytest.mark.pg

PASSWORD_ENV = "STACWATCHD_E2E_PGPASSWORD"


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

        def status() -> dict:
            result = subprocess.run(
                [sys.executable, "-m", "stacwatchd", "status", "--config", str(daemon.config), "--json"],
                capture_output=True, text=True, timeout=60,
            )
            return json.loads(result.stdout)

        report = wait_until(lambda: (s := status())["outbox_depth"] > 0 and "last_publish_error" in s and s, timeout=60)
        assert cluster.password not in json.dumps(report)
        cluster.start()
        wait_until(lambda: set(ids_in_pgstac(cluster)) == expected, timeout=120, message="drained after restart")
        ids = ids_in_pgstac(cluster)
        assert len(ids) == len(set(ids)) == len(expected)
        wait_until(lambda: status()["outbox_depth"] == 0, timeout=60)
        assert cluster.password not in daemon.log_path.read_text()
    finally:
        daemon.close()
