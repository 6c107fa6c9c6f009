"""The PgSTAC sink, against a real PostgreSQL + pgstac and stac-fastapi-pgstac.

Each test builds a real static catalog from real rasters with the writer (its change
stream on, a cursor for the sink), delivers it through the sink's runner, then looks
at what a user of the API sees (``/search`` and pystac-client) and at ``pgstac.items``
itself. Fault tests stop or kill a private cluster.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

import pytest
import requests
from pydantic import SecretStr, ValidationError

from stacwatchd import testing
from stacwatchd.config import CatalogSettings, CollectionSettings, ItemRules, PgstacSettings, Settings
from stacwatchd.engine.writer import BatchResult, Remove, op_for, open_writer
from stacwatchd.errors import ConfigError
from stacwatchd.model.items import Rules, build
from stacwatchd.publish import publish_all, publish_outbox
from stacwatchd.sinks import configured_sinks
from stacwatchd.sinks.base import Row, Sink, SinkRunner
from stacwatchd.sinks.pgstac import PgstacSink, PublishCounts, PublishError
from stacwatchd.sinks.pgstac.plan import HEAD, Progress
from stacwatchd.state.packed import compress, decompress
from stacwatchd.state.store import State
from stacwatchd.status import read_status
from stacwatchd.testing import capture_logs, wait_until

pytestmark = pytest.mark.pg

COLLECTION = "scenes"
BASE_URL = "https://data.example.test/stac"
PASSWORD_ENV = "STACWATCHD_TEST_PGSTAC_PASSWORD"
MAY_17 = datetime(2024, 5, 17, 10, 30, tzinfo=UTC)
MAY = "2024-05-01T00:00:00Z/2024-05-31T23:59:59Z"
NEAR = (9.0, 44.0, 12.0, 47.0)


# -- the world: rasters in a folder, a catalog with an outbox ----------------------------------


@dataclass(frozen=True)
class Cursor:
    """A sink as the writer sees it: a name and the stream it reads."""

    name: str
    stream: str = "changes"


class World:
    """A watched folder, the writer of its catalog, and helpers to act like a user.

    The writer keeps the change stream for the PgSTAC sink (and ``also``), as the
    daemon does when ``[pgstac]`` is configured.
    """

    def __init__(self, tmp_path: Path, *, items: ItemRules | None = None, also: Sequence[str] = ()) -> None:
        self.data = tmp_path / "data"
        self.data.mkdir()
        self.catalog = CatalogSettings(root=tmp_path / "catalog", title="Test catalog")
        collection = CollectionSettings(id=COLLECTION, title="Scenes")
        self.rules = Rules(collection_id=COLLECTION, root=self.data, collection=collection, items=items or ItemRules())
        cursors = [Cursor(PgstacSink.name), *(Cursor(name) for name in also)]
        self.writer = open_writer(self.catalog, {COLLECTION: collection}, cursors, durability="none")

    def raster(self, name: str, when: datetime, lon: float = 10.0, lat: float = 45.0, **kw: Any) -> Path:
        """A small EPSG:4326 raster whose datetime lives in its TIFF tags (the name has none)."""
        tags = {"TIFFTAG_DATETIME": when.strftime("%Y:%m:%d %H:%M:%S")}
        return testing.geographic(self.data / name, bounds=(lon, lat, lon + 0.1, lat + 0.1), width=32, height=32, tags=tags, **kw)

    def add(self, *paths: Path) -> BatchResult:
        result = self.writer.apply([op_for(build(p, self.rules), self.rules) for p in paths])
        assert not result.rejections, result.rejections
        return result

    def remove(self, *paths: Path) -> BatchResult:
        for path in paths:
            path.unlink()
        return self.writer.apply([Remove(p) for p in paths])

    def ids(self) -> set[str]:
        return {item_id for _, item_id, _ in self.writer.state.all_items()}

    def static_item(self, item_id: str) -> tuple[Path, dict[str, Any]]:
        record = self.writer.state.item(COLLECTION, item_id)
        assert record is not None
        path = self.writer.layout.item_file(COLLECTION, tuple(record.partition.split("/")), item_id)
        return path, json.loads(path.read_text())

    @property
    def state_path(self) -> Path:
        return self.writer.state.path

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def dsn(cluster: Any, user: str | None = None) -> str:
    """The cluster's DSN without the password, as users must write it."""
    return f"postgresql://{user or cluster.user}@{cluster.host}:{cluster.port}/{cluster.dbname}"


@pytest.fixture
def pg_settings(monkeypatch: pytest.MonkeyPatch) -> Callable[..., PgstacSettings]:
    """``make(cluster, **overrides)``: settings reading the password from an environment variable."""

    def make(cluster: Any, **kw: Any) -> PgstacSettings:
        monkeypatch.setenv(PASSWORD_ENV, cluster.password)
        values = {"dsn": SecretStr(dsn(cluster)), "password_env": PASSWORD_ENV, "public_base_url": BASE_URL, **kw}
        return PgstacSettings(**values)

    return make


@pytest.fixture
def runners() -> Iterator[Callable[..., SinkRunner]]:
    """``make(settings_or_sink, world, **kw)``: the PgSTAC sink's runner on the world's
    state, as the daemon builds it; stopped at the end of the test."""
    made: list[SinkRunner] = []

    def make(sink: PgstacSettings | Sink, world: World, **kw: Any) -> SinkRunner:
        if isinstance(sink, PgstacSettings):
            sink = PgstacSink(sink, world.catalog)
        runner = SinkRunner(sink, world.state_path, **kw)
        made.append(runner)
        return runner

    yield make
    for runner in made:
        runner.stop(5)


@pytest.fixture
def publisher(pgstac_db: Any, pg_settings: Callable[..., PgstacSettings], world: World, runners) -> SinkRunner:
    return runners(pg_settings(pgstac_db), world)


def drain(runner: SinkRunner) -> PublishCounts:
    """Deliver the backlog now; what the PgSTAC sink sent doing it."""
    sink = runner.sink
    assert isinstance(sink, PgstacSink)
    sink.counts = PublishCounts()
    runner.drain()
    return sink.counts


def pgstac_status(world: World) -> dict[str, Any]:
    """The PgSTAC sink's lines of ``stacwatchd status``."""
    return read_status(world.state_path)["sinks"]["pgstac"]


def sql(cluster: Any, query: str, *params: Any, admin: bool = False) -> list[tuple[Any, ...]]:
    with cluster.connect(admin=admin) as conn:
        cursor = conn.execute(query, params or None)
        return cursor.fetchall() if cursor.description is not None else []


def published_ids(cluster: Any) -> list[str]:
    """Every Item id in PgSTAC, duplicates kept (a duplicate is a bug)."""
    return sorted(row[0] for row in sql(cluster, "SELECT id FROM pgstac.items"))


def search_api(api: str, **params: Any) -> list[str]:
    """Item ids, in order, of a GET /search (every page)."""
    query = {"collections": COLLECTION, "limit": 100, **params}
    if "bbox" in query:
        query["bbox"] = ",".join(str(v) for v in query["bbox"])
    response = requests.get(f"{api}/search", params=query, timeout=10)
    assert response.status_code == 200, response.text
    ids = [f["id"] for f in response.json()["features"]]
    assert not any(link["rel"] == "next" for link in response.json().get("links", [])), "more than one page"
    return ids


def search_client(api: str, **params: Any) -> list[str]:
    from pystac_client import Client

    client = Client.open(api)
    return [item.id for item in client.search(collections=[COLLECTION], max_items=500, **params).items()]


def failing_events(logs: list[dict[str, Any]], sink: str = "pgstac") -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "sink_failing" and e["sink"] == sink]


# -- found, removed, moved -----------------------------------------------------------------------


def test_added_items_are_found_by_bbox_and_datetime_through_the_api(world, publisher, pgstac_db, stac_api):
    alpha = world.raster("alpha.tif", MAY_17)
    bravo = world.raster("bravo.tif", MAY_17 + timedelta(days=3), lon=10.5, lat=45.5)
    far = world.raster("far.tif", MAY_17, lon=100.0, lat=10.0)
    late = world.raster("late.tif", MAY_17 + timedelta(days=400))
    world.add(alpha, bravo, far, late)
    queued = publisher.depth()
    assert queued >= 5  # the collection, then four Items

    assert publisher.drain() == queued
    assert publisher.depth() == 0

    assert sorted(search_api(stac_api, bbox=NEAR, datetime=MAY)) == ["alpha", "bravo"]
    assert sorted(search_client(stac_api, bbox=NEAR, datetime=MAY)) == ["alpha", "bravo"]
    assert search_client(stac_api, bbox=NEAR, datetime="2025-01-01T00:00:00Z/..") == ["late"]
    assert published_ids(pgstac_db) == ["alpha", "bravo", "far", "late"]


def test_published_hrefs_are_absolute_and_point_back_to_the_static_json(world, publisher, stac_api):
    world.add(world.raster("alpha.tif", MAY_17))
    publisher.drain()
    static_path, static = world.static_item("alpha")

    item = requests.get(f"{stac_api}/collections/{COLLECTION}/items/alpha", timeout=10).json()

    canonical = [link["href"] for link in item["links"] if link["rel"] == "canonical"]
    expected = BASE_URL + "/" + static_path.relative_to(world.writer.root).as_posix()
    assert canonical == [expected]
    # Every asset resolves exactly where the static catalog's relative href does.
    for key, asset in static["assets"].items():
        assert item["assets"][key]["href"] == urljoin(expected, asset["href"])
        assert item["assets"][key]["href"].startswith("https://")
    # The static structural links are gone; the API's own point at the API.
    for link in item["links"]:
        if link["rel"] in ("root", "parent", "collection", "self"):
            assert link["href"].startswith(stac_api), link
    collection = requests.get(f"{stac_api}/collections/{COLLECTION}", timeout=10).json()
    assert collection["extent"] == json.loads((world.writer.root / COLLECTION / "collection.json").read_text())["extent"]
    assert not [link for link in collection["links"] if link["rel"] == "child"]
    assert [link["href"] for link in collection["links"] if link["rel"] == "canonical"] == [
        f"{BASE_URL}/{COLLECTION}/collection.json"
    ]


def test_without_public_base_url_hrefs_are_file_urls_of_the_local_files(world, pgstac_db, pg_settings, runners):
    publisher = runners(pg_settings(pgstac_db, public_base_url=None), world)
    world.add(world.raster("alpha.tif", MAY_17))
    publisher.drain()

    item = sql(pgstac_db, "SELECT pgstac.get_item('alpha', %s)", COLLECTION)[0][0]

    hrefs = [a["href"] for a in item["assets"].values()] + [link["href"] for link in item["links"]]
    assert hrefs and all(h.startswith("file:///") for h in hrefs)
    for href in hrefs:
        assert Path(url2pathname(urlsplit(href).path)).is_file(), href
    assert [link["rel"] for link in item["links"] if link["rel"] in ("root", "parent", "collection")] == []


def test_removed_file_disappears_and_the_last_one_takes_the_collection_along(world, publisher, pgstac_db, stac_api):
    alpha = world.raster("alpha.tif", MAY_17)
    bravo = world.raster("bravo.tif", MAY_17, lon=10.5)
    world.add(alpha, bravo)
    publisher.drain()

    world.remove(alpha)
    publisher.drain()

    assert search_api(stac_api, bbox=NEAR, datetime=MAY) == ["bravo"]
    assert requests.get(f"{stac_api}/collections/{COLLECTION}/items/alpha", timeout=10).status_code == 404
    assert published_ids(pgstac_db) == ["bravo"]

    world.remove(bravo)
    publisher.drain()
    assert published_ids(pgstac_db) == []
    assert sql(pgstac_db, "SELECT count(*) FROM pgstac.collections")[0][0] == 0
    assert requests.get(f"{stac_api}/collections/{COLLECTION}", timeout=10).status_code == 404


@pytest.mark.parametrize("partition_trunc", [None, "month"])
def test_item_overwritten_with_a_new_date_moves_and_is_found_once(world, publisher, pgstac_db, stac_api, partition_trunc):
    path = world.raster("alpha.tif", MAY_17)
    world.add(path, world.raster("bravo.tif", MAY_17, lon=11.0))
    publisher.drain()
    if partition_trunc:  # what an administrator may do; moves then cross partitions
        sql(pgstac_db, "UPDATE pgstac.collections SET partition_trunc = %s", partition_trunc, admin=True)
    before = sql(pgstac_db, "SELECT tableoid::regclass::text FROM pgstac.items WHERE id = 'alpha'")

    world.raster("alpha.tif", datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert world.add(path).updated == 1
    publisher.drain()

    rows = sql(pgstac_db, "SELECT datetime, tableoid::regclass::text FROM pgstac.items WHERE id = 'alpha'")
    assert len(rows) == 1
    assert rows[0][0] == datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)
    if partition_trunc:
        assert rows[0][1] != before[0][0]
    january = "2023-01-01T00:00:00Z/2023-01-31T23:59:59Z"
    assert search_api(stac_api, bbox=NEAR, datetime=january) == ["alpha"]
    assert search_client(stac_api, bbox=NEAR, datetime=january) == ["alpha"]
    assert search_api(stac_api, bbox=NEAR, datetime=MAY) == ["bravo"]
    assert published_ids(pgstac_db) == ["alpha", "bravo"]


def test_queued_operations_are_coalesced_and_missing_items_are_deleted_quietly(world, publisher, pgstac_db):
    alpha = world.raster("alpha.tif", MAY_17)
    bravo = world.raster("bravo.tif", MAY_17, lon=10.5)
    world.add(alpha, bravo)
    world.remove(alpha)  # added and removed before anything was published
    publisher.drain()
    assert published_ids(pgstac_db) == ["bravo"]

    # Someone deleted it from PgSTAC behind our back; removing the file is still fine.
    sql(pgstac_db, "DELETE FROM pgstac.items WHERE id = 'bravo'", admin=True)
    world.remove(bravo)
    publisher.drain()
    assert publisher.depth() == 0
    assert "last_error" not in pgstac_status(world)


# -- bulk ----------------------------------------------------------------------------------


def settings_for(world: World, pgstac: PgstacSettings) -> Settings:
    return Settings(catalog=world.catalog, pgstac=pgstac)


def snapshot(cluster: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every row of pgstac's items and collections with its xmin: equal means nothing was rewritten."""
    items = sql(cluster, "SELECT id, xmin::text, datetime, content FROM pgstac.items ORDER BY id")
    collections = sql(cluster, "SELECT id, xmin::text, content FROM pgstac.collections ORDER BY id")
    return items, collections


def test_publish_all_twice_is_idempotent_and_mirrors_the_state(world, pgstac_db, pg_settings):
    for i in range(6):
        world.add(world.raster(f"scene{i}.tif", MAY_17 + timedelta(days=40 * i), lon=10 + i / 10))
    settings = settings_for(world, pg_settings(pgstac_db))

    first = publish_all(settings)
    assert (first.collections, first.items, first.items_changed) == (1, 6, 6)
    assert first.outbox_rows > 0 and read_status(world.state_path)["outbox_depth"] == 0
    assert pgstac_status(world)["backlog"] == 0 and pgstac_status(world)["last_success"]
    before = snapshot(pgstac_db)

    second = publish_all(settings)
    assert (second.items, second.items_changed, second.items_deleted, second.outbox_rows) == (6, 0, 0, 0)
    assert snapshot(pgstac_db) == before  # same rows, same xmin: nothing rewritten
    assert published_ids(pgstac_db) == sorted(world.ids())

    # After a restore PgSTAC may hold an Item the state no longer has: --all removes it.
    ghost = sql(pgstac_db, "SELECT pgstac.get_item('scene0', %s)", COLLECTION)[0][0]
    ghost["id"] = "ghost"
    sql(pgstac_db, "SELECT pgstac.create_item(%s::jsonb)", json.dumps(ghost))
    third = publish_all(settings)
    assert third.items_deleted == 1
    assert published_ids(pgstac_db) == sorted(world.ids())
    assert publish_outbox(settings).outbox_rows == 0


def test_a_large_batch_spanning_many_partitions_is_one_transaction(world, pgstac_db, pg_settings, runners):
    """Bulk, not one call per Item; the locks held grow with partitions, not Items."""
    paths = testing.many_cogs(world.data, 400, span=timedelta(days=1096))
    world.add(paths[0])
    publisher = runners(pg_settings(pgstac_db, batch_size=5000), world)
    publisher.drain()
    sql(pgstac_db, "UPDATE pgstac.collections SET partition_trunc = 'month'", admin=True)
    for start in range(1, len(paths), 200):
        world.add(*paths[start : start + 200])

    with capture_logs() as logs:
        counts = drain(publisher)

    assert counts.items == 399 and counts.items_changed == 399
    batches = [e for e in logs if e["event"].startswith("pgstac_batch")]
    assert [(e["event"], e["items"]) for e in batches] == [("pgstac_batch_published", 399)]
    assert len(published_ids(pgstac_db)) == 400 == len(set(published_ids(pgstac_db)))
    partitions = sql(pgstac_db, "SELECT count(DISTINCT tableoid) FROM pgstac.items")[0][0]
    assert partitions >= 36


def test_item_without_geometry_is_kept_out_of_pgstac(tmp_path, pgstac_db, pg_settings, runners):
    world = World(tmp_path, items=ItemRules(unlocated="null-geometry"))
    try:
        world.add(world.raster("alpha.tif", MAY_17), testing.no_crs(world.data / "plain_20240517.tif"))
        publisher = runners(pg_settings(pgstac_db), world)
        with capture_logs() as logs:
            counts = drain(publisher)
        assert world.ids() == {"alpha", "plain_20240517"}
        assert counts.skipped == 1 and published_ids(pgstac_db) == ["alpha"]
        assert [e["id"] for e in logs if e["event"] == "pgstac_item_skipped"] == ["plain_20240517"]
    finally:
        world.close()


def test_an_item_pgstac_refuses_is_skipped_without_blocking_the_outbox(world, publisher, pgstac_db):
    world.add(world.raster("alpha.tif", MAY_17), world.raster("bravo.tif", MAY_17, lon=10.5))
    publisher.drain()
    # Corrupt bravo's document in the state (a broken geometry PostGIS cannot parse), re-queue it.
    db = world.writer.state.db
    doc = json.loads(decompress(db.execute("SELECT doc FROM items WHERE id = 'bravo'").fetchone()[0]))
    doc["geometry"]["type"] = "Nonsense"
    doc["properties"]["updated"] = "2030-01-01T00:00:00Z"
    db.execute("UPDATE items SET doc = ? WHERE id = 'bravo'", (compress(json.dumps(doc).encode()),))
    db.execute("INSERT INTO outbox (kind, collection, key, queued_at) VALUES ('item', ?, 'bravo', 0)", (COLLECTION,))
    world.add(world.raster("charlie.tif", MAY_17, lon=11.0))

    with capture_logs() as logs:
        counts = drain(publisher)

    assert counts.refused == 1 and publisher.depth() == 0
    assert published_ids(pgstac_db) == ["alpha", "bravo", "charlie"]  # bravo: the last good version
    refused = [e for e in logs if e["event"] == "pgstac_item_refused"]
    assert [e["id"] for e in refused] == ["bravo"] and refused[0]["log_level"] == "error"
    assert pgstac_status(world)["last_refused"]["id"] == "bravo"
    assert "last_error" not in pgstac_status(world)


# -- credentials ------------------------------------------------------------------------------


@pytest.fixture
def app_role(pgstac_db: Any) -> Iterator[tuple[str, str]]:
    """A login role with a distinctive password and only pgstac's ingest and read rights."""
    name = f"publisher_{secrets.token_hex(4)}"
    password = f"Pw-{secrets.token_urlsafe(12)}"
    sql(pgstac_db, f"CREATE ROLE {name} LOGIN PASSWORD '{password}'", admin=True)
    sql(pgstac_db, f"GRANT pgstac_ingest, pgstac_read TO {name}", admin=True)
    yield name, password
    sql(pgstac_db, f"DROP OWNED BY {name}", admin=True)
    sql(pgstac_db, f"DROP ROLE {name}", admin=True)


def all_text(world: World, logs: list[dict[str, Any]], *errors: BaseException) -> str:
    """Everything a password could leak into: logs, errors, ``status``, and the state's
    meta and sink tables."""
    db = world.writer.state.db
    stored = db.execute("SELECT key, value FROM meta").fetchall() + db.execute("SELECT * FROM sink_cursors").fetchall()
    shown = json.dumps(read_status(world.state_path))
    return repr(logs) + repr([str(e) for e in errors]) + repr([repr(e) for e in errors]) + repr(stored) + shown


def test_password_from_the_environment_works_and_never_appears(world, pgstac_db, app_role, runners, monkeypatch):
    user, password = app_role
    monkeypatch.setenv(PASSWORD_ENV, password)
    settings = PgstacSettings(dsn=SecretStr(dsn(pgstac_db, user)), password_env=PASSWORD_ENV, public_base_url=BASE_URL)
    world.add(world.raster("alpha.tif", MAY_17))
    publisher = runners(settings, world)

    with capture_logs() as logs:
        publisher.start()
        publisher.wake()
        wait_until(lambda: published_ids(pgstac_db) == ["alpha"], timeout=15)
        wait_until(lambda: publisher.depth() == 0, timeout=15)
        publisher.stop(5)
        wrong = f"Wrong-{secrets.token_urlsafe(12)}"
        monkeypatch.setenv(PASSWORD_ENV, wrong)
        broken = runners(settings, world)
        world.add(world.raster("bravo.tif", MAY_17, lon=10.5))
        with pytest.raises(PublishError) as failed:
            broken.drain()
        broken.start()
        wait_until(lambda: failing_events(logs), timeout=15)
        broken.stop(5)

    assert "password authentication failed" in str(failed.value)
    assert "password authentication failed" in pgstac_status(world)["last_error"]
    text = all_text(world, logs, failed.value)
    assert password not in text and wrong not in text
    assert user in text  # the masking did not just blank everything


def test_password_from_a_credential_file_with_a_trailing_newline(world, pgstac_db, app_role, runners, tmp_path):
    user, password = app_role
    secret = tmp_path / "credentials" / "pgstac-password"
    secret.parent.mkdir()
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    settings = PgstacSettings(dsn=SecretStr(dsn(pgstac_db, user)), password_file=secret)
    world.add(world.raster("alpha.tif", MAY_17))
    publisher = runners(settings, world)

    with capture_logs() as logs:
        assert publisher.drain() >= 2

    assert published_ids(pgstac_db) == ["alpha"]
    assert password not in all_text(world, logs)


def test_a_password_in_the_dsn_or_a_missing_source_is_refused_without_quoting_it(world, pgstac_db, monkeypatch):
    secret = f"InDsn-{secrets.token_urlsafe(10)}"
    for text in (f"postgresql://stac:{secret}@127.0.0.1:5432/stac", f"host=127.0.0.1 user=stac password={secret}"):
        with pytest.raises(ValidationError) as err:  # refused when the configuration is read
            PgstacSettings(dsn=SecretStr(text))
        assert "must not contain the password" in str(err.value) and secret not in str(err.value)
        # and again by the sink itself, whatever built its settings
        with pytest.raises(ConfigError) as err:
            PgstacSink(PgstacSettings.model_construct(dsn=SecretStr(text)), world.catalog)
        assert secret not in str(err.value)

    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    unset = PgstacSettings(dsn=SecretStr(dsn(pgstac_db)), password_env=PASSWORD_ENV)
    with pytest.raises(ConfigError, match=PASSWORD_ENV):
        PgstacSink(unset, world.catalog)
    missing = PgstacSettings(dsn=SecretStr(dsn(pgstac_db)), password_file=world.data / "nope")
    with pytest.raises(ConfigError, match="password_file"):
        PgstacSink(missing, world.catalog)


# -- failures ----------------------------------------------------------------------------------


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a hung server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def test_connect_timeout_keeps_a_dead_endpoint_short_and_nothing_waits_for_it(world, black_hole, runners, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "unused")
    hung = PgstacSettings(
        dsn=SecretStr(f"postgresql://stac@127.0.0.1:{black_hole}/stac"),
        password_env=PASSWORD_ENV,
        connect_timeout_seconds=2,
        retry_initial_seconds=30,
    )
    world.add(world.raster("alpha.tif", MAY_17))
    publisher = runners(hung, world)

    started = time.monotonic()
    with pytest.raises(PublishError) as err:
        publisher.drain()
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"drain against a hung server took {elapsed:.1f} s"
    assert err.value.kind == "unavailable"

    with socket.socket() as closed:  # nothing listening at all: refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refused = runners(hung.model_copy(update={"dsn": SecretStr(f"postgresql://stac@127.0.0.1:{port}/stac")}), world)
    started = time.monotonic()
    with pytest.raises(PublishError):
        refused.drain()
    assert time.monotonic() - started < 5

    # The thread retries in the background: the writer never waits, stop() is prompt.
    with capture_logs() as logs:
        publisher.start()
        wait_until(lambda: failing_events(logs), timeout=10)
        started = time.monotonic()
        world.add(world.raster("bravo.tif", MAY_17, lon=10.5))
        publisher.wake()
        assert time.monotonic() - started < 2
        assert publisher.depth() >= 3
        started = time.monotonic()
        assert publisher.stop(timeout=5)
        assert time.monotonic() - started < 5
    assert pgstac_status(world)["backlog"] >= 3 and pgstac_status(world)["last_error_kind"] == "unavailable"


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_database_stopped_mid_stream_loses_nothing_and_doubles_nothing(world, pg_cluster_factory, pg_settings, runners, how):
    cluster = pg_cluster_factory()
    settings = pg_settings(cluster, batch_size=4, retry_initial_seconds=0.05, retry_max_seconds=0.5)
    publisher = runners(settings, world, poll_seconds=0.5)
    first = [world.raster(f"first{i:02d}.tif", MAY_17 + timedelta(hours=i), lon=10 + i / 50) for i in range(12)]
    second = [world.raster(f"second{i:02d}.tif", MAY_17 + timedelta(days=2, hours=i)) for i in range(12)]
    db_down = threading.Event()
    failures: list[BaseException] = []

    def stream() -> None:
        """The daemon's writer: one file per batch, waking the publisher after each."""
        try:
            for path in first:
                world.add(path)
                publisher.wake()
            db_down.wait(60)
            for path in second:
                world.add(path)
                publisher.wake()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    with capture_logs() as logs:
        publisher.start()
        writer = threading.Thread(target=stream)
        writer.start()
        wait_until(lambda: len(published_ids(cluster)) >= 2, timeout=20)
        cluster.stop() if how == "stop" else cluster.kill()
        db_down.set()
        writer.join(60)
        assert not writer.is_alive() and not failures, failures
        # Cataloging went on statically; the outbox holds what PgSTAC has not seen.
        assert len(world.ids()) == 24 and all(world.static_item(i)[0].exists() for i in world.ids())
        wait_until(lambda: pgstac_status(world).get("last_error"), timeout=20)
        status = read_status(world.state_path)
        assert status["outbox_depth"] > 0 and status["sinks"]["pgstac"]["last_error_kind"] == "unavailable"
        # More changes while the database is down: a removal and a move.
        world.remove(first[0])
        world.raster("second00.tif", datetime(2022, 2, 2, tzinfo=UTC))
        world.add(second[0])
        depth_while_down = publisher.depth()
        assert depth_while_down > 0

        cluster.start()
        wait_until(lambda: publisher.depth() == 0, timeout=60, message="outbox never drained")
        wait_until(lambda: any(e["event"] == "sink_recovered" and e["sink"] == "pgstac" for e in logs), timeout=10)

    ids = published_ids(cluster)
    assert ids == sorted(world.ids()) and len(ids) == 23  # nothing lost, nothing doubled
    assert sql(cluster, "SELECT datetime FROM pgstac.items WHERE id = 'second00'") == [(datetime(2022, 2, 2, tzinfo=UTC),)]
    assert len(failing_events(logs)) == 1  # one warning per outage, not one per retry
    assert [e["log_level"] for e in failing_events(logs)] == ["warning"]
    assert "last_error" not in pgstac_status(world) and pgstac_status(world)["last_success"]


def test_thread_publishes_soon_after_wake_not_after_the_poll_interval(world, publisher, pgstac_db):
    publisher.poll_seconds = 120.0
    publisher.start()
    wait_until(lambda: publisher.depth() == 0, timeout=10)
    world.add(world.raster("alpha.tif", MAY_17))
    started = time.monotonic()
    publisher.wake()
    wait_until(lambda: published_ids(pgstac_db) == ["alpha"], timeout=10)
    assert time.monotonic() - started < 5
    assert publisher.stop(5)


def test_a_slow_database_blocks_neither_the_writer_nor_stop(world, publisher, pgstac_db, pg_settings, runners):
    world.add(world.raster("alpha.tif", MAY_17))
    publisher.drain()

    def publisher_waits_on_a_lock() -> bool:
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'stacwatchd' AND wait_event_type = 'Lock'"
        return sql(pgstac_db, query, admin=True)[0][0] > 0

    with pgstac_db.connect(admin=True, autocommit=False) as blocker:
        blocker.execute("LOCK TABLE pgstac.collections IN ACCESS EXCLUSIVE MODE")
        publisher.start()
        world.add(world.raster("bravo.tif", MAY_17, lon=10.5))
        publisher.wake()
        wait_until(publisher_waits_on_a_lock, timeout=10)
        started = time.monotonic()
        world.add(world.raster("charlie.tif", MAY_17, lon=11.0))
        publisher.wake()
        assert time.monotonic() - started < 2  # the writer does not wait for PgSTAC
        started = time.monotonic()
        assert publisher.stop(timeout=1)  # the stuck statement is cancelled
        assert time.monotonic() - started < 5
        blocker.rollback()

    runners(pg_settings(pgstac_db), world).drain()  # as the next start would
    assert published_ids(pgstac_db) == ["alpha", "bravo", "charlie"]


def test_a_batch_too_wide_for_the_lock_table_is_split_not_retried_forever(world, pg_cluster_factory, pg_settings, runners):
    """Locks grow with the partitions a transaction touches (~18 each with pgstac 0.10)."""
    cluster = pg_cluster_factory()
    # A small lock table: 10 locks x (40 connections + background processes), plus slack.
    # 200 partitions need ~3,600 locks in one transaction; 25 of them fit.
    sql(cluster, "ALTER SYSTEM SET max_locks_per_transaction = 10", admin=True)
    sql(cluster, "ALTER SYSTEM SET max_connections = 40", admin=True)
    cluster.restart()
    assert sql(cluster, "SHOW max_locks_per_transaction") == [("10",)]
    paths = testing.many_cogs(world.data, 200, start=datetime(2000, 1, 1, tzinfo=UTC), span=timedelta(days=200 * 30.5))
    world.add(paths[0])
    publisher = runners(pg_settings(cluster, batch_size=5000), world)
    publisher.drain()
    sql(cluster, "UPDATE pgstac.collections SET partition_trunc = 'month'", admin=True)
    world.add(*paths[1:])

    with capture_logs() as logs:
        counts = drain(publisher)

    assert counts.items == 199 and publisher.depth() == 0
    assert [e["reason"] for e in logs if e["event"] == "pgstac_batch_bisected"] == ["out_of_locks"]
    ids = published_ids(cluster)
    assert len(ids) == len(set(ids)) == 200
    assert sql(cluster, "SELECT count(DISTINCT tableoid) FROM pgstac.items")[0][0] >= 190


def test_a_batch_that_fails_part_way_is_resumed_after_the_rows_that_got_through(world, publisher, pgstac_db):
    """A refused Item splits the batch; an outage in the middle keeps what committed."""
    paths = [
        world.raster(f"{name}.tif", MAY_17 + timedelta(days=i)) for i, name in enumerate(["alpha", "bravo", "charlie", "zulu"])
    ]
    for path in paths:
        world.add(path)  # rows: (collection, Item) per file, in time order
    # bravo's document is one PostGIS cannot parse: PgSTAC refuses it, the batch is bisected.
    db = world.writer.state.db
    doc = json.loads(decompress(db.execute("SELECT doc FROM items WHERE id = 'bravo'").fetchone()[0]))
    doc["geometry"]["type"] = "Nonsense"
    db.execute("UPDATE items SET doc = ? WHERE id = 'bravo'", (compress(json.dumps(doc).encode()),))
    # zulu's insert fails as an outage would (serialization failure: not the document's fault).
    sql(pgstac_db, """
        CREATE FUNCTION pgstac.stacwatchd_test_outage() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.id = 'zulu' THEN RAISE EXCEPTION 'going away' USING ERRCODE = '40001'; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER stacwatchd_test_outage BEFORE INSERT ON pgstac.items
            FOR EACH ROW EXECUTE FUNCTION pgstac.stacwatchd_test_outage();
    """, admin=True)  # fmt: skip
    try:
        assert publisher.depth() == 8
        with pytest.raises(PublishError) as failed:
            publisher.drain()
        # alpha committed and bravo was refused before charlie's half failed.
        assert failed.value.delivered is not None
        assert published_ids(pgstac_db) == ["alpha"]
        assert publisher.depth() == 3  # charlie's collection row and Item, and zulu's
    finally:
        sql(pgstac_db, "DROP FUNCTION pgstac.stacwatchd_test_outage() CASCADE", admin=True)

    assert drain(publisher).outbox_rows == 3
    assert published_ids(pgstac_db) == ["alpha", "charlie", "zulu"]
    assert pgstac_status(world)["last_refused"]["id"] == "bravo"


def test_a_push_that_failed_part_way_counts_only_rows_whose_effect_is_committed(world, pgstac_db, pg_settings):
    """The rule behind resuming: a row counts once it, and every row before it, is in PgSTAC."""
    world.add(world.raster("alpha.tif", MAY_17))
    world.add(world.raster("bravo.tif", MAY_17 + timedelta(days=1)))
    state = world.writer.state
    rows = state.changes_after(0, 100)
    assert [(row.kind, row.key) for row in rows] == [
        ("collection", None),
        ("item", "alpha"),
        ("collection", None),
        ("item", "bravo"),
    ]
    plan = PgstacSink(pg_settings(pgstac_db), world.catalog).planner.changes(rows, state)
    alpha, bravo = (COLLECTION, "alpha"), (COLLECTION, "bravo")
    seqs = [row.seq for row in rows]

    assert plan.delivered(Progress()) is None
    assert plan.delivered(Progress(head=True)) == seqs[0]
    assert plan.delivered(Progress(head=True, items={alpha})) == seqs[2]
    assert plan.delivered(Progress(head=True, items={bravo})) == seqs[0]
    assert plan.delivered(Progress(head=True, items={alpha, bravo})) == seqs[3]
    assert plan.needs[0] == (seqs[0], HEAD)


# -- one sink among others -------------------------------------------------------------------


class Recorder(Sink):
    """A second sink on the change stream, keeping what it was handed."""

    name = "recorder"
    stream = "changes"

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str | None]] = []

    def deliver(self, rows: Sequence[Row], state: State) -> None:
        self.seen += [(getattr(row, "event", None), getattr(row, "key", None)) for row in rows]


def test_a_dead_pgstac_does_not_stop_another_sink_from_advancing(tmp_path, pg_cluster_factory, pg_settings, runners):
    world = World(tmp_path, also=["recorder"])
    try:
        cluster = pg_cluster_factory()
        alpha = world.raster("alpha.tif", MAY_17)
        world.add(alpha)
        pgstac = runners(pg_settings(cluster, retry_initial_seconds=0.05, retry_max_seconds=0.5), world, poll_seconds=0.5)
        recorder = Recorder()
        other = runners(recorder, world, poll_seconds=0.5)
        pgstac.drain()
        other.drain()
        cluster.stop()

        with capture_logs() as logs:
            pgstac.start()
            other.start()
            world.add(world.raster("bravo.tif", MAY_17, lon=10.5), world.raster("charlie.tif", MAY_17, lon=11.0))
            world.remove(alpha)
            pgstac.wake()
            other.wake()
            wait_until(lambda: ("item.removed", "alpha") in recorder.seen and other.depth() == 0, timeout=20)
            wait_until(lambda: failing_events(logs), timeout=20)
            wait_until(lambda: pgstac_status(world).get("last_error"), timeout=20)
            status = read_status(world.state_path)
            assert status["sinks"]["recorder"]["backlog"] == 0 and "last_error" not in status["sinks"]["recorder"]
            assert status["sinks"]["pgstac"]["backlog"] > 0
            # The outbox keeps exactly what the slower sink still needs.
            assert status["outbox_depth"] == status["sinks"]["pgstac"]["backlog"]

            cluster.start()
            wait_until(lambda: pgstac.depth() == 0, timeout=60, message="PgSTAC backlog never drained")

        assert published_ids(cluster) == ["bravo", "charlie"]
        assert read_status(world.state_path)["outbox_depth"] == 0
        assert not failing_events(logs, "recorder")
        assert [key for event, key in recorder.seen if event and event.startswith("item.")] == [
            "alpha",
            "bravo",
            "charlie",
            "alpha",
        ]
    finally:
        world.close()


def test_configured_sinks_include_pgstac_when_configured(world, pgstac_db, pg_settings):
    assert configured_sinks(Settings(catalog=world.catalog)) == []
    sinks = configured_sinks(settings_for(world, pg_settings(pgstac_db)))
    assert [(s.name, s.stream) for s in sinks] == [("pgstac", "changes")] and isinstance(sinks[0], PgstacSink)
