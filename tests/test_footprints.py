"""Footprints of global grids, overshooting grids, and footprints without needless vertices."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from global_grids import GLOBAL_GRIDS, reference_bbox, reference_outline, write_global
from shapely.geometry import MultiPoint, Polygon, shape

from stacwatchd import testing
from stacwatchd.config import ItemRules
from stacwatchd.model.items import BuiltItem, Rules, build, item_to_dict
from stacwatchd.model.raster import ReadOptions, read_facts


def item_of(path, **item_rules) -> dict:
    rules = Rules(collection_id="c", root=path.parent, items=ItemRules(**item_rules))
    result = build(path, rules)
    assert isinstance(result, BuiltItem), result
    return item_to_dict(result.item)


@pytest.fixture(scope="module")
def global_files(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("global")
    return {name: write_global(folder, name) for name in GLOBAL_GRIDS}


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "modern"])
@pytest.mark.parametrize("name", list(GLOBAL_GRIDS))
def test_global_grid_gives_a_valid_item_whose_bbox_is_the_true_outlines(global_files, name, legacy, assert_valid):
    item = item_of(global_files[name], legacy_fields=legacy)
    assert_valid(item)
    assert item["geometry"]["type"] == "Polygon"
    assert shape(item["geometry"]).is_valid
    assert item["bbox"] == pytest.approx(reference_bbox(global_files[name]), abs=1e-6)
    west, _, east, _ = item["bbox"]
    assert (west, east) == (-180.0, 180.0)


@pytest.mark.parametrize("name", list(GLOBAL_GRIDS))
def test_global_footprint_covers_every_point_of_the_true_outline(global_files, name):
    facts = read_facts(global_files[name])
    lons, lats = reference_outline(global_files[name])
    on_earth = np.column_stack(((lons + 180) % 360 - 180, lats))
    on_earth[:, 0] = np.where(np.isclose(lons, 180), 180, on_earth[:, 0])
    footprint = shape(facts.geometry)
    assert footprint.buffer(1e-6).contains(MultiPoint(on_earth))


def test_whole_world_grid_is_the_whole_world_in_five_positions(global_files):
    for name in ("world_1deg", "world_quarter_deg", "world_0_360", "cell_centred"):
        geometry = read_facts(global_files[name]).geometry
        ring = geometry["coordinates"][0]
        assert len(ring) == 5, name
        assert shape(geometry).equals(Polygon([(-180, -90), (180, -90), (180, 90), (-180, 90)])), name
        assert Polygon(ring).exterior.is_ccw, "RFC 7946: exterior rings are counter-clockwise"


def test_full_longitude_band_reaches_the_pole_it_contains(global_files):
    facts = read_facts(global_files["northern_band"])
    assert facts.bbox == (-180.0, 0.0, 180.0, 90.0)
    assert shape(facts.geometry).equals(Polygon([(-180, 0), (180, 0), (180, 90), (-180, 90)]))


def test_global_web_mercator_stops_where_mercator_does(global_files):
    west, south, east, north = read_facts(global_files["web_mercator_world"]).bbox
    assert (west, east) == (-180.0, 180.0)
    assert south == pytest.approx(-85.0511288, abs=1e-7) and north == pytest.approx(85.0511288, abs=1e-7)


def test_overshoot_of_more_than_one_pixel_beyond_a_pole_is_refused(tmp_path):
    path = testing.write_raster(
        tmp_path / "tall.tif", crs="EPSG:4326", transform=Affine(1, 0, -180, 0, -1, 92), width=360, height=184
    )
    facts = read_facts(path)
    assert facts.geometry is None
    assert "beyond the poles" in facts.unlocated_reason


def test_grid_wrapping_more_than_one_pixel_past_a_full_turn_is_refused(tmp_path):
    path = testing.write_raster(
        tmp_path / "wide.tif", crs="EPSG:4326", transform=Affine(1, 0, -182, 0, -1, 90), width=364, height=180
    )
    facts = read_facts(path)
    assert facts.geometry is None
    assert "360°" in facts.unlocated_reason


def test_half_pixel_overshoot_of_a_regional_grid_is_clamped_at_the_pole(tmp_path):
    path = testing.write_raster(
        tmp_path / "arctic_tile.tif", crs="EPSG:4326", transform=Affine(1, 0, 0, 0, -1, 90.5), width=10, height=11
    )
    facts = read_facts(path)
    assert facts.bbox == (0.0, 80.0 - 0.5, 10.0, 90.0)
    assert len(facts.geometry["coordinates"][0]) == 5
    assert max(lat for _, lat in facts.geometry["coordinates"][0]) == 90.0


def test_regional_grid_reaching_pixels_beyond_a_pole_is_refused(tmp_path):
    path = testing.write_raster(
        tmp_path / "past_the_pole.tif", crs="EPSG:4326", transform=Affine(1, 0, 0, 0, -1, 93), width=10, height=13
    )
    facts = read_facts(path)
    assert facts.geometry is None
    assert "beyond the poles" in facts.unlocated_reason


def test_geographic_tile_touching_the_pole_is_a_rectangle_not_a_polar_cap(tmp_path):
    path = testing.write_raster(tmp_path / "cap.tif", crs="EPSG:4326", bounds=(0, 80, 10, 90), width=10, height=10)
    facts = read_facts(path)
    assert facts.bbox == (0.0, 80.0, 10.0, 90.0)
    assert shape(facts.geometry).equals(Polygon([(0, 80), (10, 80), (10, 90), (0, 90)]))


# -- simplification ---------------------------------------------------------------------


def test_axis_aligned_geographic_grid_has_five_positions(samples):
    ring = read_facts(samples["geographic"]).geometry["coordinates"][0]
    assert len(ring) == 5 and ring[0] == ring[-1]


def test_rotated_geographic_grid_keeps_only_its_corners(tmp_path):
    transform = Affine.translation(10, 50) * Affine.rotation(20) * Affine.scale(0.01, -0.01)
    path = testing.write_raster(tmp_path / "tilted.tif", crs="EPSG:4326", transform=transform)
    assert len(read_facts(path).geometry["coordinates"][0]) == 5


def test_large_utm_tile_keeps_the_curvature_of_its_edges_and_nothing_else(tmp_path):
    # Its western edge runs along the central meridian (15°E), the one straight line of
    # the zone in lon/lat; the other three edges curve.
    path = testing.write_raster(
        tmp_path / "big_utm.tif", crs="EPSG:32633", bounds=(500_000, 5_000_000, 600_000, 5_100_000), width=100, height=100
    )
    facts = read_facts(path, ReadOptions(densify=50))
    ring = facts.geometry["coordinates"][0]
    on_meridian = {(lon, lat) for lon, lat in ring if lon == 15.0}
    assert len(on_meridian) == 2, "the straight edge keeps its two ends only"
    assert len(ring) == 4 * 49 + 1 - 48, "every vertex of the curved edges is kept"
    lons, lats = reference_outline(path, per_edge=200)
    assert shape(facts.geometry).boundary.hausdorff_distance(Polygon(zip(lons, lats, strict=True)).boundary) < 1e-6


@pytest.mark.parametrize("kind", ["utm", "rotated", "crs_without_epsg", "web_mercator", "cog"])
def test_simplified_footprint_stays_within_the_precision_of_the_true_outline(samples, kind):
    facts = read_facts(samples[kind])
    lons, lats = reference_outline(samples[kind], per_edge=200)
    truth = Polygon(zip(lons, lats, strict=True))
    ours = shape(facts.geometry)
    assert ours.is_valid
    assert ours.boundary.hausdorff_distance(truth.boundary) < 2e-7
    west, south, east, north = facts.bbox
    minx, miny, maxx, maxy = truth.bounds
    for ours_edge, true_edge in zip(facts.bbox, truth.bounds, strict=True):
        assert ours_edge == pytest.approx(true_edge, abs=1e-7 + 1e-9)
    assert west <= minx and south <= miny and east >= maxx and north >= maxy


def test_precision_sets_what_counts_as_straight(samples):
    fine = read_facts(samples["utm"], ReadOptions(precision=9)).geometry["coordinates"][0]
    coarse = read_facts(samples["utm"], ReadOptions(precision=5)).geometry["coordinates"][0]
    assert len(coarse) == 5
    assert len(fine) > len(coarse)
