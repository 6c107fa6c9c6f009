"""Tests for stacwatchd.validate.schemas against the official STAC schemas.

The STAC 1.1 core schemas come bundled with pystac; tests that need extension schemas
take them from the folder conftest finds (and skip with its one reason where none is).
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import require_schemas

from stacwatchd.validate.schemas import (
    CatalogNotFoundError,
    CatalogReport,
    InvalidJSONError,
    Problem,
    SchemaStore,
    SchemaUnavailableError,
    load_json,
    validate_catalog,
    validate_object,
)

PROJ_V2 = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
PROJ_V1_1 = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"
PROJ_V1_2 = "https://stac-extensions.github.io/projection/v1.2.0/schema.json"
RASTER_V2 = "https://stac-extensions.github.io/raster/v2.0.0/schema.json"
FILE_V2_1 = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
UNKNOWN_EXT = "https://stac-extensions.example.org/unknown/v9.9.9/schema.json"
ITEM_V1_1 = "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json"

HAS_RS = importlib.util.find_spec("jsonschema_rs") is not None
ENGINES = [pytest.param(False, id="jsonschema")] + ([pytest.param(True, id="rs")] if HAS_RS else [])


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def schema_dir() -> Path:
    return require_schemas()


@pytest.fixture(scope="module", params=ENGINES)
def store(request: pytest.FixtureRequest, schema_dir: Path) -> SchemaStore:
    """The optional fast path must never change a verdict, so object tests run on each engine."""
    return SchemaStore(schema_dir, accelerate=request.param)


@pytest.fixture(scope="module")
def plain_store(schema_dir: Path) -> SchemaStore:
    """The authoritative engine alone, for tests about files and links."""
    return SchemaStore(schema_dir, accelerate=False)


# --------------------------------------------------------------------------- STAC objects


def square(x: float = 10.0, y: float = 45.0) -> dict[str, Any]:
    return {
        "type": "Polygon",
        "coordinates": [[[x, y], [x + 1, y], [x + 1, y + 1], [x, y + 1], [x, y]]],
    }


def item_v1_1(item_id: str = "scene-1", collection: str | None = None) -> dict[str, Any]:
    """A minimal valid STAC 1.1.0 Item using projection 2.0, raster 2.0 and file 2.1."""
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [PROJ_V2, RASTER_V2, FILE_V2_1],
        "id": item_id,
        "geometry": square(),
        "bbox": [10.0, 45.0, 11.0, 46.0],
        "properties": {
            "datetime": "2024-05-01T10:30:00Z",
            "proj:code": "EPSG:32632",
            "proj:shape": [512, 512],
            "proj:transform": [10.0, 0.0, 600000.0, 0.0, -10.0, 5000000.0],
        },
        "links": [],
        "assets": {
            "data": {
                "href": f"./{item_id}.tif",
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"],
                "bands": [{"name": "b1", "data_type": "uint16", "nodata": 0}],
                "raster:spatial_resolution": 10.0,
                "file:size": 524288,
                "file:checksum": "1220" + "ab" * 32,
            }
        },
    }
    if collection is not None:
        item["collection"] = collection
    return item


def item_v1_0(item_id: str = "old-scene") -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [PROJ_V1_2],
        "id": item_id,
        "geometry": square(),
        "bbox": [10.0, 45.0, 11.0, 46.0],
        "properties": {"datetime": "2021-01-01T00:00:00Z", "proj:epsg": 4326},
        "links": [],
        "assets": {"data": {"href": "./old.tif", "roles": ["data"]}},
    }


def collection_v1_1(collection_id: str = "sentinel") -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "stac_extensions": [],
        "id": collection_id,
        "description": "Test rasters",
        "license": "CC-BY-4.0",
        "extent": {
            "spatial": {"bbox": [[10.0, 45.0, 11.0, 46.0]]},
            "temporal": {"interval": [["2024-01-01T00:00:00Z", None]]},
        },
        "links": [],
    }


def catalog_v1_1(catalog_id: str = "root", description: str = "Root catalog") -> dict[str, Any]:
    return {
        "type": "Catalog",
        "stac_version": "1.1.0",
        "id": catalog_id,
        "description": description,
        "links": [],
    }


def link(rel: str, href: str) -> dict[str, str]:
    kind = "application/geo+json" if rel == "item" else "application/json"
    return {"rel": rel, "href": href, "type": kind}


# --------------------------------------------------------------------------- catalogs on disk


def write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2), encoding="utf-8")
    return path


def edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    write_json(path, data)


def build_catalog(root: Path, partitions: tuple[str, ...] = ("2024", "2025"), per_partition: int = 2) -> dict[str, Path]:
    """catalog.json -> sentinel/collection.json -> sentinel/<year>/catalog.json -> items.

    Returns the written files by role: "root", "collection", "part:<year>",
    "item:<id>", so tests can damage one file precisely.
    """
    files = {"root": root / "catalog.json", "collection": root / "sentinel" / "collection.json"}
    catalog = catalog_v1_1()
    catalog["links"] = [link("root", "./catalog.json"), link("child", "./sentinel/collection.json")]
    collection = collection_v1_1()
    collection["links"] = [link("root", "../catalog.json"), link("parent", "../catalog.json")]
    for year in partitions:
        collection["links"].append(link("child", f"./{year}/catalog.json"))
        part = catalog_v1_1(f"sentinel-{year}", f"Items of {year}")
        part["links"] = [link("root", "../../catalog.json"), link("parent", "../collection.json")]
        for n in range(per_partition):
            item_id = f"scene-{year}-{n}"
            part["links"].append(link("item", f"./{item_id}/{item_id}.json"))
            item = item_v1_1(item_id, collection="sentinel")
            item["links"] = [
                link("root", "../../../catalog.json"),
                link("parent", "../catalog.json"),
                link("collection", "../../collection.json"),
            ]
            item_path = root / "sentinel" / year / item_id / f"{item_id}.json"
            files[f"item:{item_id}"] = write_json(item_path, item)
        files[f"part:{year}"] = write_json(root / "sentinel" / year / "catalog.json", part)
    write_json(files["root"], catalog)
    write_json(files["collection"], collection)
    return files


def messages(report: CatalogReport) -> list[str]:
    return [str(p) for p in report.problems]


def only_problem(report: CatalogReport) -> Problem:
    assert len(report.problems) == 1, messages(report)
    return report.problems[0]


@pytest.fixture
def catalog(tmp_path: Path) -> dict[str, Path]:
    return build_catalog(tmp_path / "stac")


# --------------------------------------------------------------------------- objects


def test_valid_item_1_1_with_projection_raster_file_passes(store: SchemaStore) -> None:
    report = validate_object(item_v1_1(), store)
    assert report.ok, [str(p) for p in report]
    assert report.unchecked == ()


def test_valid_item_1_0_passes(store: SchemaStore) -> None:
    report = validate_object(item_v1_0(), store)
    assert report.ok, [str(p) for p in report]


def test_valid_collection_and_catalog_pass(store: SchemaStore) -> None:
    for obj in (collection_v1_1(), catalog_v1_1()):
        report = validate_object(obj, store)
        assert report.ok, [str(p) for p in report]


def test_missing_required_field_is_reported_with_pointer(store: SchemaStore) -> None:
    item = item_v1_1()
    del item["properties"]["datetime"]
    problems = list(validate_object(item, store))
    assert [(p.pointer, p.schema) for p in problems] == [("/properties", ITEM_V1_1)]
    assert "datetime" in problems[0].message


def test_missing_top_level_field_points_at_root(store: SchemaStore) -> None:
    item = item_v1_1()
    del item["id"]
    problems = list(validate_object(item, store))
    assert [(p.pointer, p.message) for p in problems] == [("", "'id' is a required property")]


def test_extension_field_of_wrong_type_is_reported(store: SchemaStore) -> None:
    item = item_v1_1()
    item["properties"]["proj:shape"] = "x"
    problems = list(validate_object(item, store))
    assert [(p.schema, p.pointer) for p in problems] == [(PROJ_V2, "/properties/proj:shape")]
    assert "not of type 'array'" in problems[0].message


def test_proj_epsg_is_rejected_by_projection_v2(store: SchemaStore) -> None:
    item = item_v1_1()
    item["properties"]["proj:epsg"] = 32632
    problems = list(validate_object(item, store))
    assert len(problems) == 1
    assert problems[0].schema == PROJ_V2
    assert "proj:epsg" in problems[0].message


def test_proj_epsg_is_accepted_by_projection_v1_2(store: SchemaStore) -> None:
    item = item_v1_1()
    item["stac_extensions"][0] = PROJ_V1_2
    item["properties"]["proj:epsg"] = 32632
    del item["properties"]["proj:code"]
    assert validate_object(item, store).ok


def test_invalid_datetime_is_reported(store: SchemaStore) -> None:
    item = item_v1_1()
    item["properties"]["datetime"] = "2024-02-30T00:00:00Z"
    problems = list(validate_object(item, store))
    assert [p.pointer for p in problems] == ["/properties/datetime"]
    assert "date-time" in problems[0].message


def test_raster_extension_without_raster_fields_is_reported(store: SchemaStore) -> None:
    item = item_v1_1()
    del item["assets"]["data"]["raster:spatial_resolution"]
    problems = list(validate_object(item, store))
    assert [p.schema for p in problems] == [RASTER_V2]


def test_unknown_extension_is_a_problem_in_strict_mode(store: SchemaStore) -> None:
    item = item_v1_1()
    item["stac_extensions"].append(UNKNOWN_EXT)
    report = validate_object(item, store, strict=True)
    assert [(p.schema, p.message) for p in report] == [(UNKNOWN_EXT, f"schema unavailable: {UNKNOWN_EXT}")]
    assert not report.ok


def test_unknown_extension_is_listed_unchecked_in_lenient_mode(store: SchemaStore) -> None:
    item = item_v1_1()
    item["stac_extensions"].append(UNKNOWN_EXT)
    report = validate_object(item, store, strict=False)
    assert report.ok
    assert report.unchecked == (UNKNOWN_EXT,)


def test_unavailable_referenced_schema_is_reported(store: SchemaStore) -> None:
    projjson_v05 = "https://proj.org/schemas/v0.5/projjson.schema.json"
    item = item_v1_1()
    item["stac_extensions"][0] = PROJ_V1_1
    item["properties"] = {"datetime": "2024-05-01T10:30:00Z", "proj:projjson": {"type": "GeographicCRS"}}
    strict = list(validate_object(item, store))
    assert [(p.schema, p.message) for p in strict] == [(PROJ_V1_1, f"schema unavailable: {projjson_v05}")]
    assert validate_object(item, store, strict=False).unchecked == (projjson_v05,)


@pytest.mark.parametrize(
    ("change", "pointer"),
    [
        ({"type": "FeatureCollection"}, "/type"),
        ({"stac_version": "one"}, "/stac_version"),
        ({"stac_version": None}, "/stac_version"),
    ],
)
def test_object_without_usable_type_or_version_is_reported(
    plain_store: SchemaStore, change: dict[str, Any], pointer: str
) -> None:
    problems = list(validate_object({**item_v1_1(), **change}, plain_store))
    assert [p.pointer for p in problems] == [pointer]


def test_unpublished_stac_version_is_unavailable_not_passed(plain_store: SchemaStore) -> None:
    report = validate_object({**catalog_v1_1(), "stac_version": "0.9.0"}, plain_store)
    assert [p.message for p in report] == [
        "schema unavailable: https://schemas.stacspec.org/v0.9.0/catalog-spec/json-schema/catalog.json"
    ]


def test_problem_renders_as_one_line_with_path_pointer_and_schema(plain_store: SchemaStore) -> None:
    item = item_v1_1()
    item["properties"]["proj:shape"] = "x"
    (problem,) = validate_object(item, plain_store, path=Path("/cat/a/a.json"))
    assert str(problem) == f"/cat/a/a.json: [/properties/proj:shape] 'x' is not of type 'array' ({PROJ_V2})"
    assert str(Problem(None, None, "", "bad")) == "<object>: [/] bad"


def test_long_values_are_not_dumped_into_messages(plain_store: SchemaStore) -> None:
    item = item_v1_1()
    item["geometry"] = {"type": "Polygon", "coordinates": [[[float(i), 0.0] for i in range(500)]]}
    for problem in validate_object(item, plain_store):
        assert "\n" not in str(problem)
        assert len(problem.message) <= 300


# --------------------------------------------------------------------------- schema store


def test_core_relative_refs_resolve_through_the_store(plain_store: SchemaStore) -> None:
    plain_store.validator(ITEM_V1_1)
    for name in ("basics", "common", "datetime", "bands"):
        url = f"https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/{name}.json"
        assert url in plain_store.registry


@pytest.mark.parametrize(
    "dialect",
    ["https://json-schema.org/draft/2020-12/schema", "https://json-schema.org/draft/2019-09/schema"],
)
def test_newer_dialect_extension_with_relative_ref_to_draft7_schema(tmp_path: Path, schema_dir: Path, dialect: str) -> None:
    ext_url = "https://schemas.example.org/count/v1.0.0/schema.json"
    write_json(
        tmp_path / "schemas.example.org/count/v1.0.0/schema.json",
        {
            "$schema": dialect,
            "$id": ext_url,
            "type": "object",
            "properties": {"properties": {"$ref": "fields.json#/definitions/fields"}},
        },
    )
    write_json(
        tmp_path / "schemas.example.org/count/v1.0.0/fields.json",
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "$id": "https://schemas.example.org/count/v1.0.0/fields.json#",
            "definitions": {"fields": {"properties": {"count:n": {"type": "integer"}}}},
        },
    )
    store = SchemaStore(schema_dir, cache_dir=tmp_path, accelerate=False)
    item = item_v1_1()
    item["stac_extensions"].append(ext_url)
    assert validate_object(item, store).ok
    item["properties"]["count:n"] = "many"
    assert [(p.schema, p.pointer) for p in validate_object(item, store)] == [(ext_url, "/properties/count:n")]


def test_validators_are_compiled_once_per_url(plain_store: SchemaStore) -> None:
    assert plain_store.compiled(PROJ_V2) is plain_store.compiled(PROJ_V2 + "#")


def test_unavailable_schema_raises_with_url(tmp_path: Path) -> None:
    store = SchemaStore(tmp_path)
    with pytest.raises(SchemaUnavailableError) as caught:
        store.contents(PROJ_V2)
    assert caught.value.url == PROJ_V2


def test_cache_dir_is_used_when_mirror_lacks_schema(tmp_path: Path, schema_dir: Path) -> None:
    relative = Path("stac-extensions.github.io/projection/v2.0.0/schema.json")
    cached = tmp_path / "cache" / relative
    cached.parent.mkdir(parents=True)
    shutil.copyfile(schema_dir / relative, cached)
    store = SchemaStore(tmp_path / "empty-mirror", cache_dir=tmp_path / "cache")
    assert store.contents(PROJ_V2)["$id"] == PROJ_V2


def test_network_is_not_used_unless_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network used")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    report = validate_object(item_v1_1(), SchemaStore(cache_dir=tmp_path), strict=False)
    assert set(report.unchecked) == {PROJ_V2, RASTER_V2, FILE_V2_1}
    report = validate_object(item_v1_1(), SchemaStore(cache_dir=tmp_path, bundled=False), strict=False)
    assert set(report.unchecked) == {ITEM_V1_1, PROJ_V2, RASTER_V2, FILE_V2_1}


def test_downloaded_schema_is_saved_in_cache(tmp_path: Path, schema_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = (schema_dir / "stac-extensions.github.io/file/v2.1.0/schema.json").read_bytes()
    fetched: list[str] = []

    def fake_urlopen(request: urllib.request.Request, timeout: float) -> io.BytesIO:
        fetched.append(request.full_url)
        return io.BytesIO(body)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    SchemaStore(cache_dir=tmp_path, allow_network=True).contents(FILE_V2_1)
    assert fetched == [FILE_V2_1]
    saved = tmp_path / "stac-extensions.github.io/file/v2.1.0/schema.json"
    assert saved.read_bytes() == body
    assert not list(saved.parent.glob(".*.tmp"))


def test_failed_download_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(request: urllib.request.Request, timeout: float) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    store = SchemaStore(cache_dir=tmp_path, allow_network=True)
    with pytest.raises(SchemaUnavailableError, match="network unreachable"):
        store.contents(FILE_V2_1)


# --------------------------------------------------------------------------- JSON parsing


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_load_json_rejects_non_finite_literals(tmp_path: Path, literal: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(f'{{"a": {literal}}}', encoding="utf-8")
    with pytest.raises(InvalidJSONError) as caught:
        load_json(path)
    assert caught.value.path == path


def test_load_json_rejects_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_bytes('{"a": "é"}'.encode("latin-1"))
    with pytest.raises(InvalidJSONError, match="not UTF-8"):
        load_json(path)


# --------------------------------------------------------------------------- catalogs


def test_correct_three_level_catalog_passes(catalog: dict[str, Path], store: SchemaStore) -> None:
    report = validate_catalog(catalog["root"].parent, store)
    assert report.ok, messages(report)
    assert (report.catalogs, report.collections, report.items) == (3, 1, 4)


def test_catalog_can_be_given_as_its_catalog_json(catalog: dict[str, Path], plain_store: SchemaStore) -> None:
    assert validate_catalog(catalog["root"], plain_store).ok


def test_missing_root_catalog_raises_with_path(tmp_path: Path, plain_store: SchemaStore) -> None:
    with pytest.raises(CatalogNotFoundError) as caught:
        validate_catalog(tmp_path, plain_store)
    assert caught.value.path == tmp_path


def test_dangling_child_link_is_reported(catalog: dict[str, Path], plain_store: SchemaStore) -> None:
    edit_json(catalog["collection"], lambda c: c["links"].append(link("child", "./2026/catalog.json")))
    problem = only_problem(validate_catalog(catalog["root"], plain_store))
    assert problem.path == catalog["collection"].resolve()
    assert problem.pointer == "/links/4/href"
    assert problem.message == "link target not found: ./2026/catalog.json"


def test_item_linked_twice_is_reported(catalog: dict[str, Path], plain_store: SchemaStore) -> None:
    again = link("item", "../2024/scene-2024-0/scene-2024-0.json")
    edit_json(catalog["part:2025"], lambda c: c["links"].append(again))
    report = validate_catalog(catalog["root"], plain_store)
    twice = [p for p in report.problems if "linked more than once" in p.message]
    assert [p.path for p in twice] == [catalog["item:scene-2024-0"].resolve()]
    assert twice[0].message == "linked more than once (again from sentinel/2025/catalog.json)"


def test_orphan_item_file_is_reported(catalog: dict[str, Path], plain_store: SchemaStore) -> None:
    orphan = catalog["item:scene-2024-1"]
    edit_json(catalog["part:2024"], lambda c: c["links"].pop())
    problem = only_problem(validate_catalog(catalog["root"], plain_store))
    assert problem.path == orphan.resolve()
    assert problem.message.startswith("orphan Item")


def test_leftover_temp_file_is_reported(catalog: dict[str, Path], plain_store: SchemaStore) -> None:
    temp = catalog["item:scene-2024-0"].parent / ".x.json.abc.tmp"
    temp.write_text("{", encoding="utf-8")
    problem = only_problem(validate_catalog(catalog["root"], plain_store))
    assert problem.path == temp.resolve()
    assert "temporary file" in problem.message


def test_wrong_parent_link_is_reported(catalog: dict[str, Path], plain_store: SchemaStore) -> None:
    def point_parent_at_other_partition(item: dict[str, Any]) -> None:
        item["links"][1]["href"] = "../../2025/catalog.json"

    edit_json(catalog["item:scene-2024-0"], point_parent_at_other_partition)
    problem = only_problem(validate_catalog(catalog["root"], plain_store))
    assert problem.path == catalog["item:scene-2024-0"].resolve()
    assert problem.pointer == "/links/1/href"
    assert problem.message == ("parent link points at sentinel/2025/catalog.json, but sentinel/2024/catalog.json lists it")


def test_missing_parent_link_is_reported(catalog: dict[str, Path], plain_store: SchemaStore) -> None:
    edit_json(catalog["part:2025"], lambda c: c["links"].pop(1))
    problem = only_problem(validate_catalog(catalog["root"], plain_store))
    assert problem.path == catalog["part:2025"].resolve()
    assert problem.message.startswith("missing parent link")


def test_nan_literal_in_a_file_is_reported(catalog: dict[str, Path], plain_store: SchemaStore) -> None:
    path = catalog["item:scene-2025-1"]
    path.write_text(path.read_text(encoding="utf-8").replace("10.0,", "NaN,", 1), encoding="utf-8")
    report = validate_catalog(catalog["root"], plain_store)
    problem = only_problem(report)
    assert problem.path == path.resolve()
    assert "NaN" in problem.message
    assert report.items == 3


def test_root_link_elsewhere_is_reported(catalog: dict[str, Path], plain_store: SchemaStore) -> None:
    edit_json(catalog["part:2024"], lambda c: c["links"][0].update(href="../collection.json"))
    problem = only_problem(validate_catalog(catalog["root"], plain_store))
    assert problem.message == "root link does not point at the root catalog: ../collection.json"


def test_item_collection_field_must_match_enclosing_collection(catalog: dict[str, Path], plain_store: SchemaStore) -> None:
    edit_json(catalog["item:scene-2024-0"], lambda i: i.update(collection="landsat"))
    problem = only_problem(validate_catalog(catalog["root"], plain_store))
    assert problem.pointer == "/collection"
    assert "'landsat'" in problem.message and "'sentinel'" in problem.message


def test_item_collection_link_must_point_at_enclosing_collection(catalog: dict[str, Path], plain_store: SchemaStore) -> None:
    edit_json(catalog["item:scene-2024-0"], lambda i: i["links"][2].update(href="../catalog.json"))
    problem = only_problem(validate_catalog(catalog["root"], plain_store))
    assert problem.pointer == "/links/2/href"
    assert "collection link points at" in problem.message


def test_item_link_to_a_catalog_is_reported(catalog: dict[str, Path], plain_store: SchemaStore) -> None:
    edit_json(catalog["collection"], lambda c: c["links"][2].update(rel="item"))
    problem = only_problem(validate_catalog(catalog["root"], plain_store))
    assert problem.message.startswith("'item' link points at a Catalog")


def test_link_outside_the_root_is_reported(catalog: dict[str, Path], plain_store: SchemaStore) -> None:
    write_json(catalog["root"].parent.parent / "elsewhere.json", catalog_v1_1("elsewhere"))
    edit_json(catalog["root"], lambda c: c["links"].append(link("child", "../elsewhere.json")))
    problem = only_problem(validate_catalog(catalog["root"], plain_store))
    assert problem.message == "link points outside the catalog root: ../elsewhere.json"


def test_absolute_structural_href_is_reported_except_root_self(catalog: dict[str, Path], plain_store: SchemaStore) -> None:
    root_self = link("self", "https://example.org/stac/catalog.json")
    edit_json(catalog["root"], lambda c: c["links"].append(root_self))
    assert validate_catalog(catalog["root"], plain_store).ok
    collection_self = link("self", "s3://bucket/sentinel/collection.json")
    edit_json(catalog["collection"], lambda c: c["links"].append(collection_self))
    problem = only_problem(validate_catalog(catalog["root"], plain_store))
    assert problem.path == catalog["collection"].resolve()
    assert problem.message == "absolute href in structural 'self' link: s3://bucket/sentinel/collection.json"


def test_state_folder_and_hidden_directories_are_ignored(catalog: dict[str, Path], plain_store: SchemaStore) -> None:
    state = catalog["root"].parent / ".stacwatchd"
    write_json(state / "orphan.json", item_v1_1("ghost"))
    (state / "broken.json").write_text("{NaN", encoding="utf-8")
    (state / ".state.json.x1.tmp").write_text("", encoding="utf-8")
    write_json(catalog["collection"].parent / ".hidden" / "also.json", {"not": "stac"})
    assert validate_catalog(catalog["root"], plain_store).ok


def test_non_stac_json_is_reported_unless_it_is_an_asset(catalog: dict[str, Path], plain_store: SchemaStore) -> None:
    folder = catalog["item:scene-2024-0"].parent
    write_json(folder / "metadata.json", {"sensor": "x"})
    write_json(folder / "stray.json", {"sensor": "y"})
    edit_json(catalog["item:scene-2024-0"], lambda i: i["assets"].update(meta={"href": "./metadata.json"}))
    problem = only_problem(validate_catalog(catalog["root"], plain_store))
    assert problem.path == (folder / "stray.json").resolve()


def test_missing_asset_is_reported_only_when_checking_assets(catalog: dict[str, Path], plain_store: SchemaStore) -> None:
    item = catalog["item:scene-2024-0"]
    assert validate_catalog(catalog["root"], plain_store).ok
    report = validate_catalog(catalog["root"], plain_store, check_assets=True)
    missing = [p for p in report.problems if p.message.startswith("asset file not found")]
    assert len(missing) == 4
    (item.parent / "scene-2024-0.tif").write_bytes(b"II*\x00")
    report = validate_catalog(catalog["root"], plain_store, check_assets=True)
    assert item.resolve() not in {p.path for p in report.problems}
    assert len(report.problems) == 3


def test_schema_problems_in_catalog_files_carry_the_file_path(catalog: dict[str, Path], plain_store: SchemaStore) -> None:
    edit_json(catalog["item:scene-2025-0"], lambda i: i["properties"].update({"proj:shape": "x"}))
    problem = only_problem(validate_catalog(catalog["root"], plain_store))
    assert (problem.path, problem.schema, problem.pointer) == (
        catalog["item:scene-2025-0"].resolve(),
        PROJ_V2,
        "/properties/proj:shape",
    )


def test_unknown_extension_in_catalog_is_never_silent(catalog: dict[str, Path], plain_store: SchemaStore) -> None:
    edit_json(catalog["item:scene-2025-0"], lambda i: i["stac_extensions"].append(UNKNOWN_EXT))
    strict = validate_catalog(catalog["root"], plain_store)
    assert [p.message for p in strict.problems] == [f"schema unavailable: {UNKNOWN_EXT}"]
    lenient = validate_catalog(catalog["root"], plain_store, strict=False)
    assert lenient.ok
    assert lenient.unchecked == [UNKNOWN_EXT]


def test_problems_are_listed_in_a_stable_order(catalog: dict[str, Path], plain_store: SchemaStore) -> None:
    edit_json(catalog["part:2024"], lambda c: c["links"].pop())
    (catalog["root"].parent / ".a.json.1.tmp").write_text("", encoding="utf-8")
    first = messages(validate_catalog(catalog["root"], plain_store))
    assert first == messages(validate_catalog(catalog["root"], plain_store))
    assert first == sorted(first, key=lambda m: m.split(": [")[0])


def test_hundreds_of_items_validate_in_one_pass(tmp_path: Path, plain_store: SchemaStore) -> None:
    files = build_catalog(tmp_path / "big", partitions=("2023", "2024", "2025"), per_partition=40)
    report = validate_catalog(files["root"], plain_store)
    assert report.ok, messages(report)[:5]
    assert report.items == 120


def test_validation_leaves_the_object_unchanged(plain_store: SchemaStore) -> None:
    item = item_v1_1()
    before = copy.deepcopy(item)
    validate_object(item, plain_store)
    assert item == before
