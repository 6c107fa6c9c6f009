"""The incremental catalog: scan, the writer's rewrites, extents, summaries, rebuild, validate."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pystac
import pytest
from conftest import schema_option
from shapely.geometry import box, shape

from stacwatchd import testing
from stacwatchd.config import CatalogSettings, CollectionSettings, ItemRules
from stacwatchd.engine.writer import CatalogWriter, Remove, RemoveTree, op_for
from stacwatchd.model.items import Rules, build
from stacwatchd.model.results import copy_item
from stacwatchd.stac.placed import place
from stacwatchd.stac.summaries import aggregate, extent_document, index_item
from stacwatchd.validate.schemas import validate_catalog


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stacwatchd.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every catalog file (hidden state excluded) and its bytes."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            out[str(rel)] = path.read_bytes()
    return out


def item_docs(root: Path) -> list[dict]:
    return [
        json.loads(data)
        for rel, data in snapshot(root).items()
        if rel.endswith(".json") and json.loads(data).get("type") == "Feature"
    ]


def assert_catalog_ok(root: Path, schema_store) -> None:
    report = validate_catalog(root, schema_store)
    assert report.ok, "\n".join(str(p) for p in report.problems)


def assert_extents_match_recomputation(root: Path) -> None:
    """Extent and summaries written incrementally equal a from-scratch computation."""
    by_collection: dict[str, list[dict]] = {}
    for doc in item_docs(root):
        by_collection.setdefault(doc["collection"], []).append(doc)
    for collection, docs in by_collection.items():
        written = json.loads((root / collection / "collection.json").read_text())
        expected = extent_document(aggregate([index_item(d) for d in docs]))
        assert written["extent"] == expected
        codes = sorted({d["properties"].get("proj:code") for d in docs} - {None})
        assert written["summaries"].get("proj:code", []) == codes


def writer_for(tmp_path: Path, **collection) -> CatalogWriter:
    settings = CatalogSettings(root=tmp_path / "catalog", title="Test catalog")
    return CatalogWriter(settings, {"c": CollectionSettings(id="c", title="Scenes", **collection)})


def add(writer: CatalogWriter, rules: Rules, *paths: Path):
    return writer.apply([op_for(build(p, rules), rules) for p in paths])


def scene(folder: Path, name: str, x: float = 500_000, y: float = 5_000_000, **kw) -> Path:
    return testing.utm(folder / name, bounds=(x, y, x + 640, y + 640), **kw)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


@pytest.fixture
def rules(data: Path) -> Rules:
    return Rules(collection_id="c", root=data, collection=CollectionSettings(id="c", title="Scenes"))


# -- scan ----------------------------------------------------------------------------------


def test_scan_catalogs_good_files_lists_bad_ones_and_exits_non_zero(tmp_path, samples, schema_store):
    catalog = tmp_path / "catalog"
    result = cli("--log-format", "json", "scan", str(samples["cog"].parent), "--catalog", str(catalog))
    assert result.returncode == 1, result.stderr
    assert "added 30" in result.stdout and "rejected 5" in result.stdout
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    rejected = {e["path"] for e in events if e["event"] == "item_rejected"}
    assert rejected == {str(samples[k]) for k in ("no_crs", "no_date", *testing.BROKEN_SAMPLES)}
    assert all(e["reason"] for e in events if e["event"] == "item_rejected")
    assert_catalog_ok(catalog, schema_store)
    assert len(item_docs(catalog)) == 30


def test_scan_again_on_unchanged_folders_writes_nothing_and_says_so(tmp_path, data):
    for i in range(3):
        scene(data, f"s{i}_20240517.tif", x=500_000 + i * 1000)
    catalog = tmp_path / "catalog"
    assert cli("scan", str(data), "--catalog", str(catalog)).returncode == 0
    before = {p: p.stat().st_mtime_ns for p in catalog.rglob("*.json")}
    again = cli("scan", str(data), "--catalog", str(catalog))
    assert again.returncode == 0
    assert "nothing changed, no file written" in again.stdout and "unchanged 3" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in catalog.rglob("*.json")} == before


def test_scan_picks_up_additions_changes_and_removals(tmp_path, data, schema_store):
    keep = scene(data, "keep_20240517.tif")
    gone = scene(data, "gone_20240517.tif", x=510_000)
    change = scene(data, "change_20240517.tif", x=520_000)
    catalog = tmp_path / "catalog"
    cli("scan", str(data), "--catalog", str(catalog))
    gone.unlink()
    scene(data, "change_20240517.tif", x=530_000, seed=7)
    scene(data, "new_20240601.tif", x=540_000)
    result = cli("scan", str(data), "--catalog", str(catalog))
    assert "added 1, updated 1, removed 1, unchanged 1" in result.stdout, result.stdout
    ids = {d["id"] for d in item_docs(catalog)}
    assert ids == {keep.stem, change.stem, "new_20240601"}
    assert_catalog_ok(catalog, schema_store)


def test_scan_builds_a_group_of_band_files_once_as_one_item(tmp_path, data):
    from stacwatchd.config import WatchSettings
    from stacwatchd.engine.scan import scan

    stem = "LC08_L2SP_042034_20240517_02_T1"
    for band in ("B2", "B3", "B4"):
        scene(data, f"{stem}_{band}.TIF")
    scene(data, "other_20240517_B2.TIF", x=510_000)
    watch = WatchSettings(
        path=data, collection=CollectionSettings(id="c"), items=ItemRules(group_pattern=r"^(?P<item>.+)_(?P<asset>B\d+)\.TIF$")
    )
    built: list[str] = []

    def counting_build(path: Path, rules: Rules):
        built.append(path.name)
        return build(path, rules)

    catalog = tmp_path / "catalog"
    summary = scan(CatalogSettings(root=catalog), [watch], workers=1, progress=None, build=counting_build)
    assert (summary.added, summary.rejected) == (2, 0)
    assert len(built) == 2, f"each Item is built once, not once per file: {built}"
    docs = {d["id"]: d for d in item_docs(catalog)}
    assert set(docs) == {stem, "other_20240517"}
    assert sorted(docs[stem]["assets"]) == ["B2", "B3", "B4"]


def test_scan_rebuilds_the_item_whose_sidecar_changed_and_only_that_one(tmp_path, data):
    from stacwatchd.config import WatchSettings
    from stacwatchd.engine.scan import scan

    for name in ("a_20240517", "b_20240517"):
        scene(data, f"{name}.tif", x=500_000 if name[0] == "a" else 510_000)
        (data / f"{name}.xml").write_text("<metadata/>")
    watch = WatchSettings(path=data, collection=CollectionSettings(id="c"))
    catalog = tmp_path / "catalog"
    first = scan(CatalogSettings(root=catalog), [watch], workers=1, progress=None, build_mode="thread")
    assert first.added == 2
    untouched = (catalog / "c").rglob("b_20240517.json")
    before = {p: p.read_bytes() for p in untouched}
    (data / "a_20240517.xml").write_text("<metadata><changed/></metadata>")
    again = scan(CatalogSettings(root=catalog), [watch], workers=1, progress=None, build_mode="thread")
    # Unchanged files: both rasters and b's sidecar; a's Item is rebuilt for its sidecar.
    assert (again.added, again.updated, again.unchanged) == (0, 1, 3), again
    assert before and {p: p.read_bytes() for p in before} == before


def test_scan_without_config_names_the_collection_after_the_folder(tmp_path, data):
    scene(data, "a_20240517.tif")
    cli("scan", str(data), "--catalog", str(tmp_path / "catalog"))
    assert (tmp_path / "catalog" / "data" / "collection.json").exists()
    assert (tmp_path / "catalog" / ".stacwatchd" / "state.db").exists()


def test_pystac_reads_the_catalog_and_finds_every_item(tmp_path, samples, pystac_local_schemas):
    catalog = tmp_path / "catalog"
    cli("scan", str(samples["cog"].parent), "--catalog", str(catalog))
    root = pystac.Catalog.from_file(str(catalog / "catalog.json"))
    items = list(root.get_items(recursive=True))
    assert len(items) == 30
    assert len({i.id for i in items}) == 30
    for item in items:
        assert item.get_collection().id == samples["cog"].parent.name
    assert root.validate_all() == 30  # raises on any invalid catalog, collection or Item


# -- the writer's rewrites --------------------------------------------------------------------


def test_one_new_item_rewrites_its_json_its_partition_and_only_changed_ancestors(tmp_path, data, rules):
    writer = writer_for(tmp_path)
    add(writer, rules, *[scene(data, f"s{i:03}_20240517.tif", x=500_000 + i * 100) for i in range(50)])
    result = add(writer, rules, scene(data, "inside_20240517.tif", x=500_100))
    assert sorted(result.written) == sorted(["c/2024/05/inside_20240517/inside_20240517.json", "c/2024/05/catalog.json"])
    grown = add(writer, rules, scene(data, "far_20240518.tif", x=600_000))
    assert "c/collection.json" in grown.written and "catalog.json" not in grown.written
    assert len(grown.written) <= 4


def test_a_burst_into_one_partition_rewrites_that_partition_once(tmp_path, data, rules):
    writer = writer_for(tmp_path)
    paths = [scene(data, f"b{i:03}_20240517.tif", x=500_000 + i * 10) for i in range(40)]
    result = add(writer, rules, *paths)
    assert result.written.count("c/2024/05/catalog.json") == 1
    assert result.added == 40


def test_reprocessing_the_same_bytes_rewrites_nothing(tmp_path, data, rules):
    writer = writer_for(tmp_path)
    path = scene(data, "a_20240517.tif")
    add(writer, rules, path)
    again = add(writer, rules, path)
    assert again.written == [] and again.unchanged == 1


def test_overwrite_updates_the_item_keeping_created(tmp_path, data, rules):
    writer = writer_for(tmp_path)
    path = scene(data, "a_20240517.tif")
    add(writer, rules, path)
    first = item_docs(writer.root)[0]
    scene(data, "a_20240517.tif", x=501_000, seed=3)
    rules_later = rules
    result = writer.apply([op_for(build(path, rules_later, now=datetime(2030, 1, 1, tzinfo=UTC)), rules)])
    assert result.updated == 1
    second = item_docs(writer.root)[0]
    assert second["properties"]["created"] == first["properties"]["created"]
    assert second["properties"]["updated"] == "2030-01-01T00:00:00Z"
    assert second["bbox"] != first["bbox"]


def test_item_whose_date_changes_moves_partition_and_empty_partitions_vanish(tmp_path, data, rules, schema_store):
    writer = writer_for(tmp_path)
    path = scene(data, "a.tif", tags={"TIFFTAG_DATETIME": "2024:05:17 00:00:00"})
    add(writer, rules, path)
    assert (writer.root / "c" / "2024" / "05" / "catalog.json").exists()
    scene(data, "a.tif", tags={"TIFFTAG_DATETIME": "2025:02:01 00:00:00"})
    add(writer, rules, path)
    assert not (writer.root / "c" / "2024").exists()
    assert (writer.root / "c" / "2025" / "02" / "a" / "a.json").exists()
    assert_catalog_ok(writer.root, schema_store)


def test_removing_the_last_item_removes_the_collection_and_its_folders(tmp_path, data, rules, schema_store):
    writer = writer_for(tmp_path)
    path = scene(data, "a_20240517.tif")
    add(writer, rules, path)
    path.unlink()
    result = writer.apply([Remove(path)])
    assert result.removed == 1
    assert not (writer.root / "c").exists()
    root = json.loads((writer.root / "catalog.json").read_text())
    assert [link["rel"] for link in root["links"]] == ["root"]
    assert_catalog_ok(writer.root, schema_store)


def test_removing_a_folder_removes_every_item_under_it(tmp_path, data, rules):
    writer = writer_for(tmp_path)
    sub = data / "sub"
    sub.mkdir()
    add(writer, rules, scene(sub, "a_20240517.tif"), scene(sub, "b_20240517.tif"), scene(data, "c_20240517.tif"))
    shutil.rmtree(sub)
    result = writer.apply([RemoveTree(sub)])
    assert result.removed == 2
    assert [d["id"] for d in item_docs(writer.root)] == ["c_20240517"]


def test_extent_shrinks_when_the_item_holding_the_extreme_bbox_is_removed(tmp_path, data, rules):
    writer = writer_for(tmp_path)
    near = [scene(data, f"n{i}_20240517.tif", x=500_000 + i * 1000) for i in range(3)]
    far = scene(data, "far_20240517.tif", x=700_000, y=5_200_000)
    add(writer, rules, *near, far)
    wide = json.loads((writer.root / "c" / "collection.json").read_text())["extent"]["spatial"]["bbox"][0]
    far.unlink()
    writer.apply([Remove(far)])
    narrow = json.loads((writer.root / "c" / "collection.json").read_text())["extent"]["spatial"]["bbox"][0]
    assert narrow[2] < wide[2] and narrow[3] < wide[3]
    assert_extents_match_recomputation(writer.root)


def test_collection_extent_across_the_antimeridian_wraps_instead_of_spanning_the_world(tmp_path, data, rules):
    writer = writer_for(tmp_path)
    crossing = testing.antimeridian(data / "x_20240517.tif")
    east = testing.geographic(data / "e_20240517.tif", bounds=(175.0, 50.0, 176.0, 51.0))
    west = testing.geographic(data / "w_20240517.tif", bounds=(-172.0, 52.0, -171.0, 53.0))
    add(writer, rules, crossing, east, west)
    bbox = json.loads((writer.root / "c" / "collection.json").read_text())["extent"]["spatial"]["bbox"][0]
    assert bbox[0] == pytest.approx(175.0) and bbox[2] == pytest.approx(-171.0)
    assert_extents_match_recomputation(writer.root)


def test_summaries_are_ranges_and_small_sets_kept_current_on_remove(tmp_path, data, rules):
    writer = writer_for(tmp_path)
    utm = scene(data, "u_20240517.tif", dtype="int16")
    merc = testing.web_mercator(data / "m_20240517.tif")
    add(writer, rules, utm, merc)
    summaries = json.loads((writer.root / "c" / "collection.json").read_text())["summaries"]
    assert summaries["proj:code"] == ["EPSG:32633", "EPSG:3857"]
    assert summaries["data_type"] == ["int16", "uint8"]
    assert summaries["raster:spatial_resolution"] == {"minimum": 10, "maximum": 10}
    merc.unlink()
    writer.apply([Remove(merc)])
    summaries = json.loads((writer.root / "c" / "collection.json").read_text())["summaries"]
    assert summaries["proj:code"] == ["EPSG:32633"] and summaries["data_type"] == ["int16"]


def test_discrete_summary_is_dropped_beyond_25_values(tmp_path, data, rules):
    writer = writer_for(tmp_path)
    paths = [
        testing.write_raster(
            data / f"z{zone}_20240517.tif", crs=f"EPSG:{32600 + zone}", bounds=(500_000, 5_000_000, 500_640, 5_000_640)
        )
        for zone in range(1, 27)
    ]
    add(writer, rules, *paths[:25])
    assert len(json.loads((writer.root / "c" / "collection.json").read_text())["summaries"]["proj:code"]) == 25
    add(writer, rules, paths[25])
    assert "proj:code" not in json.loads((writer.root / "c" / "collection.json").read_text())["summaries"]


def test_collection_metadata_comes_from_config(tmp_path, data):
    settings = CollectionSettings(id="c", title="Scenes", description="Pipeline output", license="CC-BY-4.0", keywords=("ndvi",))
    writer = CatalogWriter(
        CatalogSettings(root=tmp_path / "catalog", title="Root", self_href="https://example.org/stac/catalog.json"),
        {"c": settings},
    )
    rules = Rules(collection_id="c", root=data, collection=settings)
    add(writer, rules, scene(data, "a_20240517.tif"))
    collection = json.loads((writer.root / "c" / "collection.json").read_text())
    assert (collection["title"], collection["description"], collection["license"], collection["keywords"]) == (
        "Scenes",
        "Pipeline output",
        "CC-BY-4.0",
        ["ndvi"],
    )
    root = json.loads((writer.root / "catalog.json").read_text())
    assert {"rel": "self", "href": "https://example.org/stac/catalog.json", "type": "application/json", "title": "Root"} in root[
        "links"
    ]
    assert all(link.get("title") for link in root["links"] + collection["links"])


@pytest.mark.parametrize(
    "partition, item_path",
    [
        ("none", "c/a_20240517/a_20240517.json"),
        ("year", "c/2024/a_20240517/a_20240517.json"),
        ("year/month/day", "c/2024/05/17/a_20240517/a_20240517.json"),
    ],
)
def test_partitioning_schemes(tmp_path, data, partition, item_path, schema_store):
    writer = writer_for(tmp_path, partition=partition)
    rules = Rules(collection_id="c", root=data, collection=CollectionSettings(id="c", partition=partition))
    add(writer, rules, scene(data, "a_20240517.tif"))
    assert (writer.root / item_path).exists()
    assert_catalog_ok(writer.root, schema_store)


def one_id_twice(data: Path) -> tuple[Path, Path]:
    """Two rasters of one name, so one Item id, in sibling folders x/ and y/."""
    (data / "x").mkdir()
    (data / "y").mkdir()
    return scene(data / "x", "dup_20240517.tif"), scene(data / "y", "dup_20240517.tif", x=510_000)


def test_two_files_with_the_same_id_is_a_rejection_naming_both(tmp_path, data, rules):
    writer = writer_for(tmp_path)
    first, second = one_id_twice(data)
    add(writer, rules, first)
    result = add(writer, rules, second)
    assert result.rejected == 1 and result.rejections[0].kind == "id_clash"
    assert str(first) in result.rejections[0].reason and result.rejections[0].path == second
    assert item_docs(writer.root)[0]["assets"]["data"]["href"].endswith("x/dup_20240517.tif")


def test_two_new_files_with_the_same_id_in_one_batch_clash_too(tmp_path, data, rules):
    """Both are new when the batch begins: the first one written makes the id taken."""
    writer = writer_for(tmp_path)
    first, second = one_id_twice(data)
    result = add(writer, rules, first, second)
    assert result.added == 1 and result.rejected == 1 and result.rejections[0].kind == "id_clash"
    assert result.rejections[0].path == second and str(first) in result.rejections[0].reason
    assert item_docs(writer.root)[0]["assets"]["data"]["href"].endswith("x/dup_20240517.tif")
    again = add(writer, rules, first)  # the same file again in a later batch: an update, no clash
    assert again.rejected == 0 and again.added == 0


def test_id_freed_by_a_deleted_file_can_be_taken_by_another(tmp_path, data, rules):
    writer = writer_for(tmp_path)
    first, second = one_id_twice(data)
    add(writer, rules, first)
    first.unlink()
    result = add(writer, rules, second)
    assert result.added == 1 and result.rejected == 0


def test_a_file_overwritten_with_garbage_is_rejected_and_its_item_removed(tmp_path, data, rules, schema_store):
    writer = writer_for(tmp_path)
    path = scene(data, "a_20240517.tif")
    keep = scene(data, "b_20240517.tif", x=510_000)
    add(writer, rules, path, keep)
    path.write_bytes(b"garbage")
    result = add(writer, rules, path)
    assert result.rejected == 1
    assert [d["id"] for d in item_docs(writer.root)] == [keep.stem]
    assert_catalog_ok(writer.root, schema_store)


def test_removing_one_band_file_of_a_group_asks_for_the_group_to_be_rebuilt(tmp_path, data):
    rules = Rules(collection_id="c", root=data, items=ItemRules(group_pattern=r"^(?P<item>.+)_(?P<asset>B\d)\.tif$"))
    writer = writer_for(tmp_path)
    b1, b2 = scene(data, "s_20240517_B1.tif"), scene(data, "s_20240517_B2.tif")
    add(writer, rules, b1)
    b2.unlink()
    result = writer.apply([Remove(b2)])
    assert result.requeue == [b1] and result.removed == 0
    add(writer, rules, *result.requeue)
    assert list(item_docs(writer.root)[0]["assets"]) == ["B1"]


def test_nothing_is_written_outside_the_catalog_root(tmp_path, data, rules):
    writer = writer_for(tmp_path)
    odd = scene(data, "..%2F..%2Fescape ../x_20240517.tif".replace("/", "_"))
    add(writer, rules, odd)
    outside = {p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(writer.root) and not p.is_relative_to(data)}
    assert outside == set()


def test_rebuild_is_byte_identical_to_incremental_operation(tmp_path, data, rules):
    writer = writer_for(tmp_path)
    paths = [scene(data, f"s{i}_2024{1 + i % 12:02}01.tif", x=500_000 + i * 700) for i in range(24)]
    add(writer, rules, *paths[:12])
    add(writer, rules, *paths[12:])
    writer.apply([Remove(paths[3])])
    paths[3].unlink()
    before = snapshot(writer.root)
    for rel in before:
        (writer.root / rel).unlink()
    writer.rebuild()
    assert snapshot(writer.root) == before
    writer.close()
    config = tmp_path / "config.toml"
    config.write_text(f'[catalog]\nroot = "{writer.root}"\ntitle = "Test catalog"\n')
    assert cli("rebuild", "--config", str(config)).returncode == 0
    assert snapshot(writer.root) == before


def test_rebuild_takes_new_titles_from_the_configuration(tmp_path, data, rules):
    writer = writer_for(tmp_path)
    add(writer, rules, scene(data, "a_20240517.tif"))
    writer.close()
    assert cli("rebuild", "--catalog", str(writer.root)).returncode == 0
    item = item_docs(writer.root)[0]
    assert item["links"][0] == {
        "rel": "root",
        "href": "../../../../catalog.json",
        "type": "application/json",
        "title": "stacwatchd",
    }


def test_validate_command_reports_a_broken_catalog(tmp_path, data, rules):
    writer = writer_for(tmp_path)
    add(writer, rules, scene(data, "a_20240517.tif"), scene(data, "b_20240517.tif", x=510_000))
    ok = cli("validate", str(writer.root), *schema_option())
    assert ok.returncode == 0 and "valid" in ok.stdout
    (writer.root / "c" / "2024" / "05" / "a_20240517" / "a_20240517.json").unlink()
    (writer.root / "c" / "2024" / "05" / ".catalog.json.x1.tmp").write_text("{}")
    (writer.root / "stray.json").write_text(json.dumps({"type": "Feature"}))
    bad = cli("validate", str(writer.root), *schema_option())
    assert bad.returncode == 1
    assert "a_20240517.json" in bad.stderr and ".catalog.json.x1.tmp" in bad.stderr


def test_validate_ignores_the_state_folder(tmp_path, data, rules, schema_store):
    writer = writer_for(tmp_path)
    add(writer, rules, scene(data, "a_20240517.tif"))
    assert (writer.root / ".stacwatchd" / "state.db").exists()
    assert_catalog_ok(writer.root, schema_store)


def test_status_reports_counts_and_recent_failures(tmp_path, samples):
    catalog = tmp_path / "catalog"
    cli("scan", str(samples["cog"].parent), "--catalog", str(catalog))
    result = cli("status", "--catalog", str(catalog), "--json")
    report = json.loads(result.stdout)
    assert report["items"] == 30 and report["failed_files"] == 5
    assert any("truncated" in line for line in report["recent_failures"])


def test_footprints_written_cover_the_files(tmp_path, data, rules):
    writer = writer_for(tmp_path)
    add(writer, rules, scene(data, "a_20240517.tif"))
    doc = item_docs(writer.root)[0]
    assert shape(doc["geometry"]).within(box(*doc["bbox"]).buffer(1e-9))


def test_state_survives_a_writer_restart(tmp_path, data, rules):
    writer = writer_for(tmp_path)
    add(writer, rules, scene(data, "a_20240517.tif"))
    writer.close()
    again = writer_for(tmp_path)
    result = add(again, rules, scene(data, "b_20240517.tif", x=510_000))
    assert result.added == 1
    assert len(item_docs(again.root)) == 2
    os.environ.pop("STACWATCHD_DUMMY", None)


def test_scan_of_a_vanished_folder_removes_nothing(tmp_path, data):
    scene(data, "a_20240517.tif")
    catalog = tmp_path / "catalog"
    cli("scan", str(data), "--catalog", str(catalog))
    config = tmp_path / "c.toml"
    config.write_text(f'[catalog]\nroot = "{catalog}"\n[[watch]]\npath = "{data}"\n')
    data.rename(tmp_path / "unmounted")
    result = cli("--log-format", "json", "scan", "--config", str(config))
    assert "removed 0" in result.stdout
    assert "scan_incomplete" in result.stderr
    assert len(item_docs(catalog)) == 1


def test_a_file_the_filesystem_refuses_for_its_name_refuses_its_item_alone(tmp_path, data, rules, schema_store, monkeypatch):
    """ENAMETOOLONG cannot be produced for real any more (long ids get short folders), so it
    is injected: the one Item whose file is refused goes, the rest of the batch lands."""
    writer = writer_for(tmp_path)
    real_replace = os.replace

    def refusing(src, dst, *args, **kwargs):
        if str(dst).endswith("/poison_20240517.json"):
            raise OSError(errno.ENAMETOOLONG, "File name too long", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", refusing)
    paths = [scene(data, "good_20240517.tif"), scene(data, "poison_20240517.tif", x=501_000), scene(data, "fine_20240518.tif")]
    result = add(writer, rules, *paths)
    monkeypatch.setattr(os, "replace", real_replace)
    assert [r.kind for r in result.rejections] == ["unwritable"]
    assert "File name too long" in result.rejections[0].reason
    assert {d["id"] for d in item_docs(writer.root)} == {"good_20240517", "fine_20240518"}
    assert writer.pending() == 0 and writer.state.source(str(paths[1])).status == "rejected"
    assert not list(writer.root.rglob(".*.tmp"))
    assert_catalog_ok(writer.root, schema_store)


def test_an_item_rendered_by_its_build_is_byte_for_byte_the_one_the_writer_renders(tmp_path, data, rules):
    """Builds render new Items for the collection's placement; the writer stores those
    bytes while the placement holds, and renders the Item itself once it does not."""
    path = scene(data, "a_20240517.tif")
    built = build(path, rules)
    by_writer = writer_for(tmp_path / "w")
    by_writer.apply([op_for(built, rules)])
    expected = item_docs_bytes(by_writer.root)

    by_build = writer_for(tmp_path / "b")
    placement = by_build.placement("c")
    assert placement.collection_title == "Scenes" and placement.partition == "year/month"
    placed = place(copy_item(built.item), collection_id="c", first=built.timing.first, placement=placement)
    assert placed.data == expected
    by_build.apply([op_for(replace(built, placed=placed), rules)])
    assert item_docs_bytes(by_build.root) == expected
    assert snapshot(by_build.root).keys() == snapshot(by_writer.root).keys()

    stale = writer_for(tmp_path / "s")
    old = replace(placement, collection_title="An older title", root=stale.root)
    wrong = place(copy_item(built.item), collection_id="c", first=built.timing.first, placement=old)
    stale.apply([op_for(replace(built, placed=wrong), rules)])
    assert b"An older title" in wrong.data
    assert b"An older title" not in item_docs_bytes(stale.root)
    assert json.loads(item_docs_bytes(stale.root)) == json.loads(expected)


def item_docs_bytes(root: Path) -> bytes:
    (found,) = [p for p in root.rglob("*.json") if p.name not in ("catalog.json", "collection.json")]
    return found.read_bytes()


def test_an_operation_its_own_content_breaks_is_refused_alone_and_the_batch_lands(tmp_path, data, rules, schema_store):
    """The batch commits without savepoints; when one operation fails, the transaction is
    undone and run again with that operation isolated."""
    writer = writer_for(tmp_path)
    paths = [scene(data, "good_20240517.tif"), scene(data, "nan_20240517.tif", x=501_000), scene(data, "fine_20240518.tif")]
    built = [build(p, rules) for p in paths]
    poisoned = copy_item(built[1].item)
    poisoned["properties"]["gsd"] = float("nan")  # JSON cannot carry it: the Item's own content
    built[1] = replace(built[1], item=poisoned)
    result = writer.apply([op_for(b, rules) for b in built])
    assert [(r.path, r.kind) for r in result.rejections] == [(paths[1], "unwritable")]
    assert "cannot catalog it" in result.rejections[0].reason
    assert result.added == 2
    assert {d["id"] for d in item_docs(writer.root)} == {"good_20240517", "fine_20240518"}
    assert writer.state.source(str(paths[1])).status == "rejected"
    assert writer.pending() == 0
    assert_catalog_ok(writer.root, schema_store)


def test_a_collection_with_items_keeps_its_partitioning_and_builds_are_told_so(tmp_path, data, rules):
    first = writer_for(tmp_path)
    add(first, rules, scene(data, "a_20240517.tif"))
    first.close()
    again = writer_for(tmp_path, partition="year")  # configured differently once Items exist
    assert again.placement("c").partition == "year/month"
    add(again, rules, scene(data, "b_20240518.tif", x=501_000))
    assert (again.root / "c" / "2024" / "05" / "b_20240518" / "b_20240518.json").is_file()
    assert again.collection_meta("c")["partition"] == "year/month"
