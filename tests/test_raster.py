"""Raster facts: footprints, projection, bands and media types read from real files."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.transform import GCPTransformer
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.ops import unary_union

from stacwatchd import testing
from stacwatchd.errors import UnreadableRaster
from stacwatchd.model.raster import COG, GEOTIFF, PLAIN_TIFF, ReadOptions, read_facts

LOCATED = [
    "cog",
    "striped",
    "geographic",
    "utm",
    "web_mercator",
    "crs_without_epsg",
    "rotated",
    "with_gcps",
    "multiband_rgb",
]


def independent_outline(path: Path, per_edge: int = 50) -> Polygon:
    """The pixel outline transformed with pyproj, densified more finely than stacwatchd does."""
    with rasterio.open(path) as src:
        width, height = src.width, src.height
        t = np.linspace(0, 1, per_edge, endpoint=False)
        cols = np.concatenate([t * width, np.full_like(t, width), (1 - t) * width, np.zeros_like(t)])
        rows = np.concatenate([np.zeros_like(t), t * height, np.full_like(t, height), (1 - t) * height])
        gcps, gcp_crs = src.gcps
        if gcps:
            xs, ys = GCPTransformer(gcps).xy(rows, cols, offset="ul")
            crs = gcp_crs
        else:
            xs, ys = src.transform @ (cols, rows)
            crs = src.crs
    transformer = Transformer.from_crs(crs.to_wkt(), "EPSG:4326", always_xy=True)
    lons, lats = transformer.transform(np.asarray(xs), np.asarray(ys))
    return Polygon(zip(lons, lats, strict=True))


def unwrap(geometry: dict) -> Polygon | MultiPolygon:
    """Shift the western half of an antimeridian split to > 180° and merge it back."""
    geom = shape(geometry)
    parts = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
    shifted = []
    for part in parts:
        if part.bounds[2] <= 0:
            part = Polygon([(x + 360, y) for x, y in part.exterior.coords])
        shifted.append(part)
    return unary_union(shifted)


@pytest.mark.parametrize("kind", LOCATED)
def test_footprint_matches_an_independent_transform_of_the_pixel_outline(samples, kind):
    facts = read_facts(samples[kind])
    ours = shape(facts.geometry)
    theirs = independent_outline(samples[kind])
    assert ours.is_valid
    assert ours.symmetric_difference(theirs).area / theirs.area < 1e-4
    west, south, east, north = facts.bbox
    minx, miny, maxx, maxy = theirs.bounds
    tolerance = 1e-6
    assert west <= minx + tolerance and east >= maxx - tolerance
    assert south <= miny + tolerance and north >= maxy - tolerance


def test_footprint_of_curved_edges_is_densified_to_21_points_per_edge(tmp_path):
    path = testing.write_raster(
        tmp_path / "wide_utm.tif", crs="EPSG:32633", bounds=(300_000, 5_000_000, 400_000, 5_100_000), width=100, height=100
    )
    ring = read_facts(path).geometry["coordinates"][0]
    assert len(ring) == 4 * 20 + 1
    assert ring[0] == ring[-1]


def test_coordinates_are_rounded_to_the_configured_precision(samples):
    facts = read_facts(samples["utm"], ReadOptions(precision=3))
    for x, y in facts.geometry["coordinates"][0]:
        assert round(x, 3) == x and round(y, 3) == y


def test_antimeridian_footprint_is_split_and_its_bbox_wraps(samples):
    facts = read_facts(samples["antimeridian"])
    assert facts.geometry["type"] == "MultiPolygon"
    west, _, east, _ = facts.bbox
    assert west > east, "RFC 7946: a bbox crossing the antimeridian has west > east"
    assert (west, east) != (-180, 180)
    for polygon in facts.geometry["coordinates"]:
        for x, _ in polygon[0]:
            assert -180 <= x <= 180
    theirs = independent_outline(samples["antimeridian"])
    theirs = Polygon([(x + 360 if x < 0 else x, y) for x, y in theirs.exterior.coords])
    assert unwrap(facts.geometry).symmetric_difference(theirs).area / theirs.area < 1e-4


def test_footprint_around_a_pole_reaches_the_pole_across_all_longitudes(samples):
    facts = read_facts(samples["polar_stereographic"])
    assert facts.geometry["type"] == "Polygon"
    west, south, east, north = facts.bbox
    assert (west, east) == (-180.0, 180.0)
    assert south == -90.0
    assert -80 < north < -70
    assert shape(facts.geometry).is_valid


def test_north_polar_grid_closes_over_the_north_pole(tmp_path):
    path = testing.write_raster(tmp_path / "arctic.tif", crs="EPSG:3413", bounds=(-500_000, -500_000, 500_000, 500_000))
    facts = read_facts(path)
    assert facts.bbox[3] == 90.0 and facts.bbox[1] > 80
    assert (facts.bbox[0], facts.bbox[2]) == (-180.0, 180.0)


def test_grid_near_a_pole_but_not_covering_it_is_not_closed_over_it(tmp_path):
    path = testing.write_raster(tmp_path / "offpole.tif", crs="EPSG:3031", bounds=(500_000, 500_000, 700_000, 700_000))
    facts = read_facts(path)
    assert facts.bbox[1] > -90 and facts.bbox[2] - facts.bbox[0] < 90


def test_rotated_grid_footprint_is_the_rotated_outline_not_its_bounds(samples):
    facts = read_facts(samples["rotated"])
    ours = shape(facts.geometry)
    assert ours.area < 0.9 * ours.envelope.area
    with rasterio.open(samples["rotated"]) as src:
        assert facts.grid.transform == tuple(src.transform)[:6]


def test_gcp_georeferenced_file_uses_its_gcps_and_declares_no_geotransform(samples):
    facts = read_facts(samples["with_gcps"])
    assert facts.grid.code == "EPSG:4326"
    assert facts.grid.transform is None
    with rasterio.open(samples["with_gcps"]) as src:
        gcps, _ = src.gcps
    lons = [g.x for g in gcps]
    lats = [g.y for g in gcps]
    west, south, east, north = facts.bbox
    assert west <= min(lons) and east >= max(lons) and south <= min(lats) and north >= max(lats)


def test_file_without_crs_is_unlocated_with_a_reason(samples):
    facts = read_facts(samples["no_crs"])
    assert facts.geometry is None and facts.bbox is None and facts.grid is None
    assert "no CRS" in facts.unlocated_reason
    assert facts.media_type == PLAIN_TIFF


def test_crs_of_another_planet_is_unlocated_never_a_whole_world_bbox(tmp_path):
    mars = CRS.from_user_input("IAU_2015:49900")
    path = testing.write_raster(tmp_path / "mars.tif", crs=mars, bounds=(10, 10, 11, 11))
    facts = read_facts(path)
    assert facts.geometry is None and facts.bbox is None
    assert "WGS84" in facts.unlocated_reason


def test_proj_code_only_for_an_exact_authority_match(samples):
    assert read_facts(samples["utm"]).grid.code == "EPSG:32633"
    assert read_facts(samples["utm"]).grid.epsg == 32633
    custom = read_facts(samples["crs_without_epsg"]).grid
    assert custom.code is None and custom.epsg is None
    assert custom.wkt2.startswith("PROJCRS")


def test_crs_resembling_an_epsg_code_is_not_labelled_with_it(tmp_path, samples):
    utm_like = CRS.from_proj4("+proj=utm +zone=33 +ellps=WGS84 +units=m +x_0=500001 +no_defs")
    path = testing.write_raster(tmp_path / "utm_like.tif", crs=utm_like, bounds=(500_001, 4_999_900, 500_101, 5_000_000))
    grid = read_facts(path).grid
    assert (grid.code, grid.epsg) == (None, None)
    grid = read_facts(samples["web_mercator"]).grid
    assert (grid.code, grid.epsg) == ("EPSG:3857", 3857)


def test_geotiff_whose_code_disagrees_with_its_keys_is_placed_by_its_keys_without_the_code(tmp_path):
    """A writer that stores EPSG:32633 beside the parameters of another false easting: the
    keys decide where the pixels are, and the code, which misdescribes them, is dropped."""
    shifted = CRS.from_proj4("+proj=tmerc +lat_0=0 +lon_0=15 +k=0.9996 +x_0=400000 +y_0=0 +datum=WGS84 +units=m +no_defs")
    path = testing.write_raster(tmp_path / "shifted.tif", crs=shifted, bounds=(400_000, 4_999_900, 400_100, 5_000_000))
    data = bytearray(path.read_bytes())
    user_defined = struct.pack("<4H", 3072, 0, 1, 32767)  # ProjectedCSTypeGeoKey = user-defined
    assert data.count(user_defined) == 1
    at = data.index(user_defined)
    data[at : at + 8] = struct.pack("<4H", 3072, 0, 1, 32633)
    path.write_bytes(bytes(data))

    grid = read_facts(path).grid
    assert grid.code is None and grid.epsg is None
    assert 'PARAMETER["False easting",400000' in grid.wkt2
    west, south, east, north = read_facts(path).bbox
    # x = 400,000 on a false easting of 400,000 is the central meridian, 15° E.
    assert west == pytest.approx(15.0, abs=1e-3) and east > west


def test_projection_grid_facts_describe_the_native_grid(samples):
    facts = read_facts(samples["utm"])
    with rasterio.open(samples["utm"]) as src:
        assert facts.grid.shape == (src.height, src.width)
        assert facts.grid.bbox == pytest.approx(tuple(src.bounds))
        assert facts.grid.resolution_m == pytest.approx(abs(src.transform.a))


@pytest.mark.parametrize("dtype", testing.DTYPES)
def test_every_dtype_is_reported_with_its_stac_name(samples, dtype):
    facts = read_facts(samples[f"dtype_{dtype}"])
    expected = {"complex64": "cfloat32", "complex128": "cfloat64"}.get(dtype, dtype)
    assert facts.bands[0].data_type == expected


@pytest.mark.parametrize("key", list(testing.NODATA_VARIANTS))
def test_nodata_is_the_files_own_value(samples, key):
    facts = read_facts(samples[f"nodata_{key}"])
    _, expected = testing.NODATA_VARIANTS[key]
    value = facts.bands[0].nodata
    if expected is None:
        assert value is None
    elif math.isnan(expected):
        assert math.isnan(value)
    else:
        assert value == expected


def test_cog_media_type_only_for_a_real_cog(samples):
    assert read_facts(samples["cog"]).media_type == COG
    assert read_facts(samples["striped"]).media_type == GEOTIFF


def test_tiled_tiff_with_overviews_but_not_cog_layout_is_not_called_a_cog(tmp_path):
    path = testing.write_raster(tmp_path / "tiled.tif", width=512, height=512, tiled=True, overviews=True)
    with rasterio.open(path) as src:
        assert src.profile["tiled"] and src.overviews(1)
    assert read_facts(path).media_type == GEOTIFF


def test_area_or_point_becomes_sampling(tmp_path):
    point = testing.write_raster(tmp_path / "p.tif", area_or_point="Point")
    assert read_facts(point).sampling == "point"


def test_scale_offset_unit_and_description_are_read(tmp_path):
    path = testing.write_raster(
        tmp_path / "scaled.tif", dtype="int16", scales=[0.01], offsets=[-5.0], units=["K"], descriptions=["temperature"]
    )
    band = read_facts(path).bands[0]
    assert (band.scale, band.offset, band.unit, band.description) == (0.01, -5.0, "K", "temperature")


@pytest.mark.parametrize("mode", ["approx", "exact"])
def test_statistics_are_finite_and_ignore_nodata_and_infinities(samples, mode):
    for key in ["nodata_nan", "nodata_pos_inf", "nodata_neg_inf", "nodata_minus_9999"]:
        stats = read_facts(samples[key], ReadOptions(statistics=mode)).bands[0].statistics
        assert stats is not None
        values = [stats.minimum, stats.maximum, stats.mean, stats.stddev, stats.valid_percent]
        assert all(math.isfinite(v) for v in values)
        assert 0 < stats.valid_percent < 100
        assert stats.minimum != -9999


def test_approx_statistics_read_a_decimated_grid_close_to_exact(tmp_path):
    path = testing.cog(tmp_path / "big.tif", width=2048, height=2048, dtype="float32")
    approx = read_facts(path, ReadOptions(statistics="approx")).bands[0].statistics
    exact = read_facts(path, ReadOptions(statistics="exact")).bands[0].statistics
    assert approx.mean == pytest.approx(exact.mean, rel=0.05)


def test_statistics_are_off_by_default(samples):
    assert read_facts(samples["utm"]).bands[0].statistics is None


@pytest.mark.parametrize("kind", sorted(testing.BROKEN_SAMPLES))
def test_broken_files_raise_unreadable_raster_with_the_path(samples, kind):
    with pytest.raises(UnreadableRaster) as caught:
        read_facts(samples[kind])
    assert caught.value.path == samples[kind]
    assert caught.value.reason
    assert "Traceback" not in str(caught.value)


def test_missing_file_raises_unreadable_raster(tmp_path):
    with pytest.raises(UnreadableRaster, match="cannot stat"):
        read_facts(tmp_path / "absent.tif")


def test_checksum_is_a_sha2_256_multihash(samples):
    import hashlib

    facts = read_facts(samples["utm"], ReadOptions(checksum=True))
    assert facts.checksum == "1220" + hashlib.sha256(samples["utm"].read_bytes()).hexdigest()


def test_png_with_georeferencing_in_an_aux_xml_sidecar_is_located(tmp_path):
    path = testing.write_raster(tmp_path / "scan_20240517.png", driver="PNG", count=3)
    assert path.with_name(path.name + ".aux.xml").exists()
    facts = read_facts(path)
    assert facts.media_type == "image/png"
    assert facts.grid.code == "EPSG:32633" and facts.geometry is not None
