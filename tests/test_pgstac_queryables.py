"""Queryables: a STAC API client discovers which Item fields it may filter on, and filters work.

The document is a pure function of the collection and its configuration; registering it
is checked against a real PgSTAC and stac-fastapi-pgstac (``/collections/{id}/queryables``
and CQL2 filters through ``POST /search``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from stacwatchd import testing
from stacwatchd.config import CatalogSettings, CollectionSettings, PgstacSettings
from stacwatchd.engine.writer import op_for, open_writer
from stacwatchd.model.items import Rules, build
from stacwatchd.sinks.base import SinkRunner
from stacwatchd.sinks.pgstac import PgstacSink, queryables_document

COLLECTION = "s2-scenes"
PASSWORD_ENV = "STACWATCHD_TEST_QUERYABLES_PASSWORD"
CONFIGURED = CollectionSettings(
    id=COLLECTION, title="Scenes", platform="Sentinel-2A", constellation="Sentinel-2", instruments=("MSI",), gsd=10
)
SUMMARIES = {
    "proj:code": ["EPSG:32633", "EPSG:4326"],
    "gsd": {"minimum": 10, "maximum": 10},
    "raster:spatial_resolution": {"minimum": 10, "maximum": 10},
    "data_type": ["int16", "uint8"],
    "platform": ["sentinel-2a"],
}


def collection_doc(summaries: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Collection", "id": COLLECTION, "title": "Scenes", "summaries": summaries}


# -- the document --------------------------------------------------------------------------


def test_summary_fields_and_configured_item_fields_become_typed_queryables():
    document = queryables_document(collection_doc(SUMMARIES), CONFIGURED.model_dump(mode="json"))
    properties = document["properties"]
    assert set(properties) == {"proj:code", "gsd", "data_type", "platform", "constellation", "instruments"}
    assert properties["gsd"]["type"] == "number"
    assert properties["instruments"] == {**properties["instruments"], "type": "array", "items": {"type": "string"}}
    assert properties["platform"]["type"] == properties["constellation"]["type"] == "string"
    assert "uint8" in properties["data_type"]["enum"]
    assert document["type"] == "object"


def test_band_level_fields_are_not_advertised_since_filters_cannot_reach_them():
    document = queryables_document(collection_doc(SUMMARIES), {})
    assert "raster:spatial_resolution" not in document["properties"]


def test_fields_every_item_carries_stay_queryable_when_too_many_values_leave_the_summaries():
    document = queryables_document(collection_doc({}), {})
    assert set(document["properties"]) == {"proj:code", "data_type"}
    only_gsd = queryables_document(collection_doc({}), {"summaries": ["gsd"]})
    assert set(only_gsd["properties"]) == set()


# -- PgSTAC and the API ----------------------------------------------------------------------


class Published:
    """Real rasters cataloged with the configured collection, published to PgSTAC."""

    def __init__(self, tmp_path: Path, cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.data = tmp_path / "data"
        self.catalog = CatalogSettings(root=tmp_path / "catalog", title="Test catalog")
        self.rules = Rules(collection_id=COLLECTION, root=self.data, collection=CONFIGURED)
        monkeypatch.setenv(PASSWORD_ENV, cluster.password)
        settings = PgstacSettings(
            dsn=SecretStr(f"postgresql://{cluster.user}@{cluster.host}:{cluster.port}/{cluster.dbname}"),
            password_env=PASSWORD_ENV,
            public_base_url="https://data.example.test/stac",
        )
        sink = PgstacSink(settings, self.catalog, collections={COLLECTION: CONFIGURED})
        self.writer = open_writer(self.catalog, {COLLECTION: CONFIGURED}, [sink], durability="none")
        self.publisher = SinkRunner(sink, self.writer.state.path)

    def add(self, *paths: Path) -> None:
        result = self.writer.apply([op_for(build(p, self.rules), self.rules) for p in paths])
        assert not result.rejections, result.rejections
        self.publisher.drain()

    def close(self) -> None:
        self.publisher.stop()
        self.writer.close()


@pytest.fixture
def published(tmp_path: Path, pgstac_db: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Published]:
    world = Published(tmp_path, pgstac_db, monkeypatch)
    yield world
    world.close()


def search(api: str, cql2: dict[str, Any]) -> list[str]:
    body = {"collections": [COLLECTION], "filter": cql2, "filter-lang": "cql2-json", "limit": 100}
    response = requests.post(f"{api}/search", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return sorted(feature["id"] for feature in response.json()["features"])


def prop(name: str) -> dict[str, str]:
    return {"property": name}


@pytest.mark.pg
def test_api_lists_the_queryables_and_cql2_filters_on_each_work(published, stac_api):
    published.add(
        testing.utm(published.data / "utm_20240517.tif"),
        testing.geographic(published.data / "geo_20240518.tif", dtype="int16"),
    )

    response = requests.get(f"{stac_api}/collections/{COLLECTION}/queryables", timeout=10)
    assert response.status_code == 200, response.text
    listed = response.json()["properties"]
    for name in ("proj:code", "gsd", "data_type", "platform", "constellation", "instruments"):
        assert name in listed, name
    assert listed["gsd"]["type"] == "number" and listed["instruments"]["type"] == "array"

    both = ["geo_20240518", "utm_20240517"]
    assert search(stac_api, {"op": "=", "args": [prop("proj:code"), "EPSG:32633"]}) == ["utm_20240517"]
    assert search(stac_api, {"op": "=", "args": [prop("data_type"), "int16"]}) == ["geo_20240518"]
    assert search(stac_api, {"op": ">=", "args": [prop("gsd"), 9.5]}) == both
    assert search(stac_api, {"op": "<", "args": [prop("gsd"), 9.5]}) == []
    assert search(stac_api, {"op": "=", "args": [prop("platform"), "sentinel-2a"]}) == both
    assert search(stac_api, {"op": "=", "args": [prop("constellation"), "sentinel-2"]}) == both
    assert search(stac_api, {"op": "a_contains", "args": [prop("instruments"), ["msi"]]}) == both
    assert search(stac_api, {"op": "a_contains", "args": [prop("instruments"), ["oli"]]}) == []


@pytest.mark.pg
def test_queryables_are_written_once_and_an_administrators_own_are_left_alone(published, pgstac_db):
    with pgstac_db.connect(admin=True) as conn:
        conn.execute("SELECT pgstac.upsert_queryable('platform', '{\"type\": \"string\"}'::jsonb)")
    published.add(testing.utm(published.data / "utm_20240517.tif"))

    def rows() -> list[tuple[Any, ...]]:
        with pgstac_db.connect() as conn:
            return conn.execute(
                "SELECT id, name, collection_ids, definition FROM pgstac.queryables "
                "WHERE name NOT IN ('id', 'geometry', 'datetime') ORDER BY name, id"
            ).fetchall()

    first = rows()
    ours = {name for _, name, ids, _ in first if ids == [COLLECTION]}
    assert ours == {"proj:code", "gsd", "data_type", "constellation", "instruments"}
    assert [(name, ids) for _, name, ids, _ in first if name == "platform"] == [("platform", None)]

    published.add(testing.utm(published.data / "later_20240601.tif", seed=3))
    assert rows() == first, "an unchanged collection rewrites no queryable"
