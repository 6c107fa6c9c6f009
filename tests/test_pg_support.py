"""The PostgreSQL / pgstac / stac-fastapi test support works for real.

Uses the session cluster (``pg_cluster``), the per-test clean state
(``pgstac_db``), private clusters for stop/kill/restart (``pg_cluster_factory``)
and a real stac-fastapi-pgstac under uvicorn (``stac_api``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if str(Path(__file__).parent) not in sys.path:  # tests/ holds the `support` package
    sys.path.insert(0, str(Path(__file__).parent))

# Idempotent: no-op when tests/conftest.py already loads these plugins.
pytest_plugins = ["support.pg", "support.stacapi"]

if TYPE_CHECKING:
    from support.pg import PgCluster
# support.pg / support.stacapi are imported inside the tests, not here: importing
# them before pytest loads them as plugins would skip pytest's assert rewriting.

pytestmark = pytest.mark.pg

COLLECTION_ID = "sentinel-test"


def make_collection(cid: str = COLLECTION_ID) -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": cid,
        "description": "test collection",
        "license": "proprietary",
        "links": [],
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [["2020-01-01T00:00:00Z", None]]},
        },
    }


def make_item(iid: str, lon: float, lat: float, dt: str, cid: str = COLLECTION_ID) -> dict[str, Any]:
    d = 0.1
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": iid,
        "collection": cid,
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]],
        },
        "bbox": [lon, lat, lon + d, lat + d],
        "properties": {"datetime": dt},
        "links": [],
        "assets": {"data": {"href": f"file:///data/{iid}.tif", "type": "image/tiff; application=geotiff"}},
    }


# in bbox [0, 0, 20, 20] and in 2021 | outside the time range | outside the bbox
ITEMS = [
    make_item("hit-1", 10.0, 10.0, "2021-06-01T10:00:00Z"),
    make_item("hit-2", 5.0, 15.0, "2021-11-30T23:00:00Z"),
    make_item("late", 10.0, 10.0, "2022-06-01T10:00:00Z"),
    make_item("far", 100.0, 50.0, "2021-06-01T10:00:00Z"),
]
BBOX = [0.0, 0.0, 20.0, 20.0]
DATETIME = "2021-01-01T00:00:00Z/2021-12-31T23:59:59Z"
EXPECTED = {"hit-1", "hit-2"}


def load_with_pypgstac(cluster: PgCluster, collections: list[dict], items: list[dict]) -> None:
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods

    db = PgstacDB(dsn=cluster.dsn)
    try:
        loader = Loader(db)
        loader.load_collections(iter(collections), Methods.upsert)
        loader.load_items(iter(items), Methods.upsert)
    finally:
        db.disconnect()
        db.close()


def count(cluster: PgCluster, table: str) -> int:
    with cluster.connect() as conn:
        row = conn.execute(f"SELECT count(*) FROM pgstac.{table}").fetchone()
    assert row is not None
    return int(row[0])


# --------------------------------------------------------------------------- #
# The cluster
# --------------------------------------------------------------------------- #


def test_cluster_is_up_with_pgstac(pg_cluster: PgCluster) -> None:
    import pypgstac

    assert pg_cluster.is_running()
    assert pg_cluster.host == "127.0.0.1" and pg_cluster.port > 0
    assert pg_cluster.pgstac_version() == pypgstac.__version__
    env = pg_cluster.env()
    assert env == {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(pg_cluster.port),
        "PGUSER": pg_cluster.user,
        "PGPASSWORD": pg_cluster.password,
        "PGDATABASE": pg_cluster.dbname,
    }
    assert f"{pg_cluster.user}:{pg_cluster.password}@" in pg_cluster.dsn
    with pg_cluster.connect() as conn:
        # search_path set for the database and the role: unqualified pgstac names work.
        search_path = conn.execute("SHOW search_path").fetchone()[0]
        assert search_path.replace(" ", "").startswith("pgstac,public")
        assert conn.execute("SELECT get_version()").fetchone()[0] == pypgstac.__version__
        assert conn.execute("SELECT postgis_version()").fetchone()[0].startswith("3.")
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0] is False
        for setting, want in (("fsync", "off"), ("full_page_writes", "off"), ("listen_addresses", "127.0.0.1")):
            assert conn.execute(f"SHOW {setting}").fetchone()[0] == want


def test_password_is_enforced_for_app_role(pg_cluster: PgCluster) -> None:
    import psycopg

    bad = f"postgresql://{pg_cluster.user}:wrong@{pg_cluster.host}:{pg_cluster.port}/{pg_cluster.dbname}"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(bad, connect_timeout=5).close()


def test_reset_restores_just_migrated_state(pgstac_db: PgCluster) -> None:
    with pgstac_db.connect() as conn:
        tables_before = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'pgstac'").fetchone()[0]
        queryables_before = conn.execute("SELECT count(*) FROM pgstac.queryables").fetchone()[0]
    load_with_pypgstac(pgstac_db, [make_collection(), make_collection("other")], ITEMS)
    with pgstac_db.connect() as conn:
        conn.execute("SELECT pgstac.search(%s::jsonb)", (json.dumps({"collections": [COLLECTION_ID]}),))
        conn.execute("UPDATE pgstac.pgstac_settings SET value = 'on' WHERE name = 'context'")
        tables_loaded = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'pgstac'").fetchone()[0]
    assert count(pgstac_db, "items") == len(ITEMS)
    assert tables_loaded > tables_before  # item partitions were created

    pgstac_db.reset()

    assert count(pgstac_db, "items") == 0
    assert count(pgstac_db, "collections") == 0
    assert count(pgstac_db, "searches") == 0
    with pgstac_db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'pgstac'").fetchone()[0] == tables_before
        assert conn.execute("SELECT count(*) FROM pgstac.queryables").fetchone()[0] == queryables_before
        assert conn.execute("SELECT value FROM pgstac.pgstac_settings WHERE name = 'context'").fetchone()[0] == "off"
    # And the same ids load again (no leftovers from the dropped partitions).
    load_with_pypgstac(pgstac_db, [make_collection()], ITEMS[:1])
    assert count(pgstac_db, "items") == 1


def test_each_test_starts_empty(pgstac_db: PgCluster) -> None:
    # test_reset_restores_just_migrated_state left one item and a collection behind.
    assert count(pgstac_db, "items") == 0
    assert count(pgstac_db, "collections") == 0


def test_app_role_can_publish_with_sql_functions(pgstac_db: PgCluster) -> None:
    """What stacwatchd's publisher does: pgstac.create_collection / create_items as a non-superuser."""
    with pgstac_db.connect() as conn:
        conn.execute("SELECT pgstac.create_collection(%s::jsonb)", (json.dumps(make_collection()),))
        conn.execute("SELECT pgstac.create_items(%s::jsonb)", (json.dumps(ITEMS),))
        moved = make_item("hit-1", 10.0, 10.0, "2021-06-02T00:00:00Z")
        conn.execute("SELECT pgstac.upsert_item(%s::jsonb)", (json.dumps(moved),))
        got = conn.execute(
            "SELECT pgstac.search(%s::jsonb)",
            (json.dumps({"collections": [COLLECTION_ID], "bbox": BBOX, "datetime": DATETIME}),),
        ).fetchone()[0]
    assert {f["id"] for f in got["features"]} == EXPECTED
    hit1 = next(f for f in got["features"] if f["id"] == "hit-1")
    assert hit1["properties"]["datetime"].startswith("2021-06-02")


# --------------------------------------------------------------------------- #
# The API
# --------------------------------------------------------------------------- #


def test_api_health_reports_pgstac(stac_api: str, pg_cluster: PgCluster) -> None:
    import requests

    health = requests.get(f"{stac_api}/_mgmt/health", timeout=10).json()
    assert health["pgstac"]["status"] == "UP"
    assert health["pgstac"]["pgstac_version"] == pg_cluster.pgstac_version()


def test_api_search_finds_loaded_items(pgstac_db: PgCluster, stac_api: str) -> None:
    import requests

    load_with_pypgstac(pgstac_db, [make_collection()], ITEMS)

    r = requests.get(
        f"{stac_api}/search",
        params={"bbox": ",".join(map(str, BBOX)), "datetime": DATETIME, "collections": COLLECTION_ID, "limit": 50},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert {f["id"] for f in r.json()["features"]} == EXPECTED

    r = requests.post(
        f"{stac_api}/search",
        json={"bbox": BBOX, "datetime": DATETIME, "collections": [COLLECTION_ID], "limit": 50},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert {f["id"] for f in r.json()["features"]} == EXPECTED

    r = requests.get(f"{stac_api}/collections/{COLLECTION_ID}/items/hit-1", timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["assets"]["data"]["href"] == "file:///data/hit-1.tif"

    # After the per-test reset the API sees an empty catalog (nothing cached).
    pgstac_db.reset()
    assert requests.get(f"{stac_api}/collections", timeout=10).json()["collections"] == []
    r = requests.get(f"{stac_api}/collections/{COLLECTION_ID}/items/hit-1", timeout=10)
    assert r.status_code == 404


def test_pystac_client_search(pgstac_db: PgCluster, stac_api: str) -> None:
    from pystac_client import Client

    load_with_pypgstac(pgstac_db, [make_collection()], ITEMS)
    client = Client.open(stac_api)
    search = client.search(collections=[COLLECTION_ID], bbox=BBOX, datetime=DATETIME, max_items=50)
    items = list(search.items())
    assert {i.id for i in items} == EXPECTED
    assert all(i.collection_id == COLLECTION_ID for i in items)
    # Open-ended interval, as stacwatchd's consumers write it.
    later = client.search(collections=[COLLECTION_ID], datetime="2022-01-01T00:00:00Z/..", max_items=50)
    assert {i.id for i in later.items()} == {"late"}


# --------------------------------------------------------------------------- #
# Lifecycle (private clusters: the shared one keeps serving the API)
# --------------------------------------------------------------------------- #


def test_cluster_survives_stop_start_restart_and_kill(pg_cluster_factory) -> None:
    import psycopg

    c = pg_cluster_factory()
    assert c.is_running()
    assert c.pgstac_version()  # copied from the migrated template
    with c.connect() as conn:
        conn.execute("SELECT pgstac.create_collection(%s::jsonb)", (json.dumps(make_collection()),))
        conn.execute("SELECT pgstac.create_items(%s::jsonb)", (json.dumps(ITEMS),))
    port = c.port

    c.stop()
    assert not c.is_running()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(c.dsn, connect_timeout=2).close()
    c.start()
    assert c.is_running() and c.port == port
    assert count(c, "items") == len(ITEMS)

    c.restart()
    assert c.is_running() and c.port == port
    assert count(c, "items") == len(ITEMS)

    # Commit one more, then an immediate stop (no checkpoint): crash recovery keeps it.
    with c.connect() as conn:
        after = make_item("after", 1.0, 1.0, "2021-01-02T00:00:00Z")
        conn.execute("SELECT pgstac.create_item(%s::jsonb)", (json.dumps(after),))
    c.kill()
    assert not c.is_running()
    c.start()
    assert count(c, "items") == len(ITEMS) + 1

    c.destroy()
    assert not c.is_running()
    if os.environ.get("STACWATCHD_PG_KEEP") != "1":
        assert not c.base_dir.exists()


def test_private_clusters_are_independent(pg_cluster_factory, pgstac_db: PgCluster) -> None:
    a = pg_cluster_factory()
    b = pg_cluster_factory()
    assert len({a.port, b.port, pgstac_db.port}) == 3
    with a.connect() as conn:
        conn.execute("SELECT pgstac.create_collection(%s::jsonb)", (json.dumps(make_collection()),))
    assert count(a, "collections") == 1
    assert count(b, "collections") == 0
    assert count(pgstac_db, "collections") == 0
    a.kill()
    assert b.is_running() and pgstac_db.is_running()


# --------------------------------------------------------------------------- #
# Unavailable: skip locally, fail in CI
# --------------------------------------------------------------------------- #


def test_missing_binaries_raise_pg_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from support.pg import PgUnavailable, check_pg_available

    monkeypatch.setenv("STACWATCHD_PG_BINDIR", str(tmp_path))
    with pytest.raises(PgUnavailable) as err:
        check_pg_available()
    msg = str(err.value)
    for exe in ("initdb", "pg_ctl", "postgres"):
        assert f"{tmp_path}/{exe}" in msg


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_unavailable_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type) -> None:
    from support.pg import _unavailable

    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="missing: something"):
        _unavailable("missing: something")
