"""Rules → Item: ids, datetimes, assets, grouping, extensions, and schema validity."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import rasterio

from stacwatchd import testing
from stacwatchd.config import CollectionSettings, DatetimeRule, ItemRules, Provider
from stacwatchd.model.items import BuiltItem, Rejection, Rules, build, item_to_dict
from stacwatchd.stac.json import dumps
from stacwatchd.stac.names import FILE_V2, PROJECTION_V1, PROJECTION_V2, RASTER_V1, RASTER_V2

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
GOOD = [k for k in testing.GOOD_SAMPLES if k != "no_crs"]


def built(path: Path, rules: Rules | None = None, **item_rules) -> dict:
    rules = rules or Rules.for_folder(path.parent)
    if item_rules:
        rules = Rules(
            collection_id=rules.collection_id, root=rules.root, items=ItemRules(**item_rules), collection=rules.collection
        )
    result = build(path, rules, now=NOW)
    assert isinstance(result, BuiltItem), result
    return item_to_dict(result.item)


def rejected(path: Path, **item_rules) -> Rejection:
    rules = Rules(collection_id="c", root=path.parent, items=ItemRules(**item_rules))
    result = build(path, rules, now=NOW)
    assert isinstance(result, Rejection), "expected a rejection"
    return result


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "modern"])
@pytest.mark.parametrize("kind", GOOD)
def test_every_good_sample_becomes_a_valid_item(samples, kind, legacy, assert_valid):
    item = built(samples[kind], legacy_fields=legacy)
    assert_valid(item)
    dumps(item)  # no NaN or infinity anywhere


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "modern"])
@pytest.mark.parametrize("mode", ["approx", "exact"])
def test_items_with_statistics_validate(samples, mode, legacy, assert_valid):
    for key in testing.NODATA_VARIANTS:
        item = built(samples[f"nodata_{key}"], statistics=mode, legacy_fields=legacy)
        assert_valid(item)
        stats = item["assets"]["data"]["bands"][0]["statistics"]
        assert set(stats) >= {"minimum", "maximum", "mean", "stddev", "valid_percent"}


def test_unlocated_item_has_null_geometry_no_bbox_and_no_projection(samples, assert_valid):
    item = built(samples["no_crs"], unlocated="null-geometry")
    assert item["geometry"] is None
    assert "bbox" not in item
    assert not any(k.startswith("proj:") for k in item["properties"])
    assert not any(k.startswith("proj:") for k in item["assets"]["data"])
    assert not any("projection" in url for url in item["stac_extensions"])
    assert item["assets"]["data"]["type"] == "image/tiff"
    assert_valid(item)


def test_unlocated_file_is_rejected_by_default(samples):
    rejection = rejected(samples["no_crs"])
    assert rejection.kind == "unlocated_raster"
    assert "no CRS" in rejection.reason and "null-geometry" in rejection.reason


@pytest.mark.parametrize("kind", sorted(testing.BROKEN_SAMPLES))
def test_broken_files_are_rejected_with_a_reason(samples, kind):
    rejection = rejected(samples[kind])
    assert rejection.path == samples[kind]
    assert rejection.kind == "unreadable_raster"
    assert "\n" not in str(rejection)


@pytest.mark.parametrize(
    "stamp, expected",
    [
        ("20240517T103000", "2024-05-17T10:30:00Z"),
        ("20240517", "2024-05-17T00:00:00Z"),
        ("2024-05-17", "2024-05-17T00:00:00Z"),
        ("2024-05-17T10:30:00Z", "2024-05-17T10:30:00Z"),
        ("2024-05-17T12:30:00+02:00", "2024-05-17T10:30:00Z"),
    ],
)
def test_default_rules_read_common_date_stamps_in_file_names(tmp_path, stamp, expected):
    path = testing.utm(tmp_path / f"LC08_042034_{stamp}_x.tif")
    assert built(path)["properties"]["datetime"] == expected


def test_date_stamp_is_not_taken_from_a_longer_run_of_digits(tmp_path):
    path = testing.utm(tmp_path / "scene_1202405170.tif")
    assert rejected(path).kind == "no_datetime"


def test_invalid_calendar_date_in_a_name_is_skipped_for_the_next_match(tmp_path):
    path = testing.utm(tmp_path / "x_20241399_20240102.tif")
    assert built(path)["properties"]["datetime"] == "2024-01-02T00:00:00Z"


def test_gdal_datetime_tag_is_used_when_the_name_has_no_stamp(samples):
    item = built(samples["timestamp_in_tags"])
    assert item["properties"]["datetime"] == "2023-01-02T03:04:05Z"
    assert item["properties"]["stacwatchd:datetime_source"] == "gdal:TIFFTAG_DATETIME"


def test_acquisition_datetime_tag_wins_over_tiff_datetime(tmp_path):
    path = testing.utm(
        tmp_path / "tagged.tif",
        tags={"ACQUISITIONDATETIME": "2022-03-04T05:06:07Z", "TIFFTAG_DATETIME": "2023:01:02 03:04:05"},
    )
    assert built(path)["properties"]["datetime"] == "2022-03-04T05:06:07Z"


def test_no_datetime_is_a_rejection_never_now(samples):
    rejection = rejected(samples["no_date"])
    assert rejection.kind == "no_datetime"
    assert "no datetime rule matched" in rejection.reason


def test_mtime_is_used_only_when_enabled_and_recorded_as_such(samples, tmp_path):
    path = testing.utm(tmp_path / "undated.tif")
    os.utime(path, (1_700_000_000, 1_700_000_000))
    assert rejected(path).kind == "no_datetime"
    rules = (DatetimeRule(source="gdal"), DatetimeRule(source="mtime"))
    item = built(path, datetime=rules)
    assert item["properties"]["datetime"] == "2023-11-14T22:13:20Z"
    assert item["properties"]["stacwatchd:datetime_source"] == "mtime"


def test_filename_rule_with_start_and_end_dates_covers_the_last_day_whole(tmp_path):
    path = testing.utm(tmp_path / "mosaic_20240501_20240510.tif")
    pattern = r"(?P<start_datetime>\d{8})_(?P<end_datetime>\d{8})"
    item = built(path, datetime=(DatetimeRule(source="filename", pattern=pattern),))
    props = item["properties"]
    assert props["datetime"] is None
    assert (props["start_datetime"], props["end_datetime"]) == ("2024-05-01T00:00:00Z", "2024-05-10T23:59:59Z")


def test_range_within_one_day_is_that_whole_day(tmp_path):
    path = testing.utm(tmp_path / "daily_2024-05-10_2024-05-10.tif")
    pattern = r"(?P<start_datetime>[\d-]{10})_(?P<end_datetime>[\d-]{10})"
    props = built(path, datetime=(DatetimeRule(source="filename", pattern=pattern),))["properties"]
    assert (props["start_datetime"], props["end_datetime"]) == ("2024-05-10T00:00:00Z", "2024-05-10T23:59:59Z")


def test_end_stamp_with_a_time_is_taken_as_it_is(tmp_path):
    path = testing.utm(tmp_path / "pass_20240510T101500_20240510T102000.tif")
    pattern = r"(?P<start_datetime>\d{8}T\d{6})_(?P<end_datetime>\d{8}T\d{6})"
    props = built(path, datetime=(DatetimeRule(source="filename", pattern=pattern),))["properties"]
    assert (props["start_datetime"], props["end_datetime"]) == ("2024-05-10T10:15:00Z", "2024-05-10T10:20:00Z")


def test_month_stamps_bounding_a_range_cover_whole_months(tmp_path):
    path = testing.utm(tmp_path / "quarter_202401_202403.tif")
    pattern = r"(?P<start_datetime>\d{6})_(?P<end_datetime>\d{6})"
    props = built(path, datetime=(DatetimeRule(source="filename", pattern=pattern),))["properties"]
    assert (props["start_datetime"], props["end_datetime"]) == ("2024-01-01T00:00:00Z", "2024-03-31T23:59:59Z")


@pytest.mark.parametrize(
    "name, pattern, start, end",
    [
        ("ndvi_2024-02.tif", r"(?P<year>\d{4})-(?P<month>\d{2})", "2024-02-01T00:00:00Z", "2024-02-29T23:59:59Z"),
        ("ndvi_2023-12.tif", r"(?P<year>\d{4})-(?P<month>\d{2})", "2023-12-01T00:00:00Z", "2023-12-31T23:59:59Z"),
        ("landcover_2021.tif", r"_(?P<year>\d{4})\.", "2021-01-01T00:00:00Z", "2021-12-31T23:59:59Z"),
    ],
)
def test_year_and_month_patterns_without_a_day_cover_the_whole_period(tmp_path, name, pattern, start, end, assert_valid):
    path = testing.utm(tmp_path / name)
    item = built(path, datetime=(DatetimeRule(source="filename", pattern=pattern),))
    props = item["properties"]
    assert props["datetime"] is None
    assert (props["start_datetime"], props["end_datetime"]) == (start, end)
    assert_valid(item)


def test_date_part_pattern_with_a_day_but_no_month_is_refused_by_the_configuration():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="date parts"):
        DatetimeRule(source="filename", pattern=r"(?P<year>\d{4})_(?P<day>\d{2})")


def test_filename_rule_with_year_and_day_of_year(tmp_path):
    path = testing.utm(tmp_path / "MOD_A2024138.tif")
    pattern = r"A(?P<year>\d{4})(?P<doy>\d{3})"
    item = built(path, datetime=(DatetimeRule(source="filename", pattern=pattern),))
    assert item["properties"]["datetime"] == "2024-05-17T00:00:00Z"


def test_datetime_rule_can_match_the_folder_path(tmp_path):
    folder = tmp_path / "2024" / "05" / "17"
    folder.mkdir(parents=True)
    path = testing.utm(folder / "tile.tif")
    pattern = r"(?P<year>\d{4})/(?P<month>\d{2})/(?P<day>\d{2})/"
    rules = Rules(
        collection_id="c",
        root=tmp_path,
        items=ItemRules(datetime=(DatetimeRule(source="filename", pattern=pattern, match="path"),)),
    )
    assert built(path, rules)["properties"]["datetime"] == "2024-05-17T00:00:00Z"


def test_id_replaces_unsafe_characters_and_is_deterministic(tmp_path):
    path = testing.utm(tmp_path / "my scene (1)#ü_20240517.tif")
    first, second = built(path), built(path)
    assert first["id"] == "my_scene__1____20240517"
    assert first == second


def test_id_never_starts_with_a_dot(tmp_path):
    path = testing.utm(tmp_path / "..x_20240517.tif")
    assert built(path)["id"] == "_x_20240517"


def test_id_template_uses_parent_folder_and_group_fields(tmp_path):
    folder = tmp_path / "tile-33UVP"
    folder.mkdir()
    path = testing.utm(folder / "ndvi_20240517.tif")
    rules = Rules(collection_id="c", root=tmp_path, items=ItemRules(id_template="{parent}_{stem}"))
    assert built(path, rules)["id"] == "tile-33UVP_ndvi_20240517"


def test_data_asset_has_roles_size_type_and_absolute_local_href(samples):
    item = built(samples["cog"])
    asset = item["assets"]["data"]
    assert asset["roles"] == ["data"]
    assert asset["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
    assert asset["file:size"] == samples["cog"].stat().st_size
    assert asset["href"] == samples["cog"].as_posix()
    assert FILE_V2 in item["stac_extensions"]


def test_asset_href_base_maps_the_watched_root_to_urls(tmp_path):
    (tmp_path / "sub dir").mkdir()
    path = testing.utm(tmp_path / "sub dir" / "a_20240517.tif")
    rules = Rules(collection_id="c", root=tmp_path, items=ItemRules(asset_href_base="s3://bucket/prefix/"))
    item = built(path, rules)
    assert item["assets"]["data"]["href"] == "s3://bucket/prefix/sub%20dir/a_20240517.tif"
    via = [link for link in item["links"] if link["rel"] == "via"]
    assert via and via[0]["href"] == "s3://bucket/prefix/sub%20dir/a_20240517.tif"


def test_checksum_is_written_when_enabled(samples):
    asset = built(samples["utm"], checksum=True)["assets"]["data"]
    assert asset["file:checksum"].startswith("1220") and len(asset["file:checksum"]) == 68


def test_legacy_fields_sit_beside_the_modern_ones_by_default(samples):
    item = built(samples["utm"])
    props, asset = item["properties"], item["assets"]["data"]
    assert props["proj:code"] == "EPSG:32633" and props["proj:epsg"] == 32633
    assert PROJECTION_V1 in item["stac_extensions"] and RASTER_V1 in item["stac_extensions"]
    assert asset["raster:bands"][0]["data_type"] == "uint8"
    assert asset["bands"][0]["data_type"] == "uint8"
    assert asset["raster:bands"][0]["spatial_resolution"] == 10


def test_legacy_fields_off_gives_projection_and_raster_v2_only(samples):
    item = built(samples["utm"], legacy_fields=False)
    props, asset = item["properties"], item["assets"]["data"]
    assert "proj:epsg" not in props and "raster:bands" not in asset
    assert PROJECTION_V2 in item["stac_extensions"] and RASTER_V2 in item["stac_extensions"]
    assert asset["bands"][0]["raster:spatial_resolution"] == 10


def test_crs_without_code_writes_null_code_and_wkt2(samples):
    props = built(samples["crs_without_epsg"])["properties"]
    assert props["proj:code"] is None and props["proj:epsg"] is None
    assert props["proj:wkt2"].startswith("PROJCRS")


def test_projection_grid_fields_match_the_file(samples):
    props = built(samples["rotated"])["properties"]
    with rasterio.open(samples["rotated"]) as src:
        assert props["proj:shape"] == [src.height, src.width]
        assert props["proj:transform"] == pytest.approx(list(src.transform)[:6])


@pytest.mark.parametrize(
    "key, expected",
    [("none", None), ("zero", 0), ("nan", "nan"), ("minus_9999", -9999), ("pos_inf", "inf"), ("neg_inf", "-inf")],
)
def test_nodata_is_written_as_the_files_value_in_both_band_lists(samples, key, expected):
    asset = built(samples[f"nodata_{key}"])["assets"]["data"]
    for bands in (asset["bands"], asset["raster:bands"]):
        assert bands[0].get("nodata") == expected


def test_one_band_entry_per_band(samples):
    asset = built(samples["multiband_rgb"])["assets"]["data"]
    assert len(asset["bands"]) == 3 and len(asset["raster:bands"]) == 3


def test_scale_offset_unit_and_sampling_are_written_where_the_schemas_allow(tmp_path, assert_valid):
    path = testing.utm(
        tmp_path / "t_20240517.tif",
        dtype="int16",
        scales=[0.01],
        offsets=[-5.0],
        units=["K"],
        descriptions=["temperature"],
        area_or_point="Point",
    )
    legacy = built(path)["assets"]["data"]
    assert (
        legacy["raster:bands"][0] | {"scale": 0.01, "offset": -5, "unit": "K", "sampling": "point"} == legacy["raster:bands"][0]
    )
    assert legacy["bands"][0]["name"] == "temperature" and legacy["bands"][0]["unit"] == "K"
    modern_item = built(path, legacy_fields=False)
    band = modern_item["assets"]["data"]["bands"][0]
    assert (band["raster:scale"], band["raster:offset"], band["raster:sampling"]) == (0.01, -5, "point")
    assert_valid(modern_item)


def test_unit_scale_and_zero_offset_are_not_written(samples):
    band = built(samples["utm"], legacy_fields=False)["assets"]["data"]["bands"][0]
    assert "raster:scale" not in band and "raster:offset" not in band


def test_collection_properties_are_copied_and_identifiers_lower_cased(samples, assert_valid):
    collection = CollectionSettings(
        platform="Sentinel-2A",
        constellation="Sentinel 2",
        instruments=("MSI",),
        gsd=10,
        license="CC-BY-4.0",
        keywords=("optical",),
        providers=(Provider(name="ESA", roles=("producer",)),),
    )
    rules = Rules(collection_id="s2", root=samples["utm"].parent, collection=collection)
    item = built(samples["utm"], rules)
    props = item["properties"]
    assert (props["platform"], props["constellation"], props["instruments"]) == ("sentinel-2a", "sentinel-2", ["msi"])
    assert props["gsd"] == 10 and props["license"] == "CC-BY-4.0"
    assert_valid(item)


def test_created_and_updated_are_set_and_only_they_depend_on_time(samples):
    rules = Rules.for_folder(samples["utm"].parent)
    first = item_to_dict(build(samples["utm"], rules, now=NOW).item)
    later = item_to_dict(build(samples["utm"], rules, now=datetime(2027, 1, 1, tzinfo=UTC)).item)
    assert first["properties"]["created"] == "2026-01-02T03:04:05Z"
    for item in (first, later):
        item["properties"].pop("created"), item["properties"].pop("updated")
    assert dumps(first) == dumps(later)


def test_provenance_via_link_and_software_version(samples):
    item = built(samples["utm"])
    via = [link for link in item["links"] if link["rel"] == "via"]
    assert via[0]["href"] == samples["utm"].as_posix()
    assert item["properties"]["stacwatchd:version"]


def test_band_files_sharing_a_group_key_form_one_item_with_sidecars(tmp_path, assert_valid):
    stem = "LC08_L2SP_042034_20240517_02_T1"
    for band in ("B2", "B3", "B4"):
        testing.utm(tmp_path / f"{stem}_{band}.TIF", seed=hash(band) % 100)
    (tmp_path / f"{stem}_MTL.txt").write_text("GROUP = L1_METADATA_FILE\n")
    (tmp_path / f"{stem}_B2.xml").write_text("<x/>")
    (tmp_path / "unrelated_20240517_B2.TIF").write_bytes(b"")
    rules = Rules(
        collection_id="landsat",
        root=tmp_path,
        items=ItemRules(group_pattern=r"^(?P<item>.+)_(?P<asset>B\d+)\.TIF$"),
    )
    items = [item_to_dict(build(tmp_path / f"{stem}_{b}.TIF", rules, now=NOW).item) for b in ("B2", "B4")]
    assert items[0] == items[1], "any member of the group builds the same Item"
    item = items[0]
    assert item["id"] == stem
    assert sorted(k for k, a in item["assets"].items() if "data" in a["roles"]) == ["B2", "B3", "B4"]
    metadata = {k: a for k, a in item["assets"].items() if a["roles"] == ["metadata"]}
    assert {a["title"] for a in metadata.values()} == {f"{stem}_MTL.txt", f"{stem}_B2.xml"}
    assert {a["type"] for a in metadata.values()} == {"text/plain", "application/xml"}
    assert item["properties"]["proj:code"] == "EPSG:32633"
    assert_valid(item)


def test_group_geometry_covers_every_data_asset(tmp_path):
    pattern = r"^(?P<item>.+)_(?P<asset>B\d)\.tif$"
    testing.utm(tmp_path / "s_20240517_B1.tif", bounds=(500000, 5000000, 500640, 5000640))
    testing.utm(tmp_path / "s_20240517_B2.tif", bounds=(501000, 5000000, 501640, 5000640))
    rules = Rules(collection_id="c", root=tmp_path, items=ItemRules(group_pattern=pattern))
    item = built(tmp_path / "s_20240517_B1.tif", rules)
    from shapely.geometry import shape

    footprint = shape(item["geometry"])
    for name in ("s_20240517_B1.tif", "s_20240517_B2.tif"):
        own = built(tmp_path / name)["geometry"]
        assert footprint.buffer(1e-7).contains(shape(own))
    assert "proj:shape" in item["properties"] and "proj:transform" in item["assets"]["B1"]


def test_thumbnail_is_a_small_png_with_a_preview_link(samples):
    rules = Rules(collection_id="c", root=samples["cog"].parent, items=ItemRules(thumbnail=True))
    result = build(samples["multiband_rgb"], rules, now=NOW)
    assert isinstance(result, BuiltItem)
    assert result.thumbnail[:8] == b"\x89PNG\r\n\x1a\n"
    with rasterio.MemoryFile(result.thumbnail) as mem, mem.open() as png:
        assert max(png.width, png.height) <= 256 and png.count == 4
    item = item_to_dict(result.item)
    assert item["assets"]["thumbnail"]["roles"] == ["thumbnail"]
    assert any(link["rel"] == "preview" for link in item["links"])


def test_item_json_has_no_nan_and_round_trips(samples):
    item = built(samples["nodata_nan"], statistics="exact")
    assert json.loads(dumps(item)) == item


def test_data_type_shared_by_every_band_is_on_the_item(samples, assert_valid):
    item = built(samples["multiband_rgb"])
    assert item["properties"]["data_type"] == "uint8"
    assert_valid(item)


def test_data_type_is_left_to_the_bands_when_the_files_of_an_item_differ(tmp_path):
    pattern = r"^(?P<item>.+)_(?P<asset>B\d)\.tif$"
    testing.utm(tmp_path / "s_20240517_B1.tif", dtype="uint8")
    testing.utm(tmp_path / "s_20240517_B2.tif", dtype="int16")
    rules = Rules(collection_id="c", root=tmp_path, items=ItemRules(group_pattern=pattern))
    item = built(tmp_path / "s_20240517_B1.tif", rules)
    assert "data_type" not in item["properties"]
    assert {item["assets"][k]["bands"][0]["data_type"] for k in ("B1", "B2")} == {"uint8", "int16"}
