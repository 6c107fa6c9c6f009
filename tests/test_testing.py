"""The sample makers must produce exactly the rasters they claim, or other tests lie."""

from __future__ import annotations

import math
import re
import threading
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
import structlog
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioError
from rasterio.transform import from_gcps
from rasterio.warp import transform_bounds

from stacwatchd import testing


def layout(path: Path) -> str | None:
    with rasterio.open(path) as src:
        return src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT")


def is_tiled(src: rasterio.DatasetReader) -> bool:
    """GDAL reports a striped file's block as full-width rows."""
    return src.block_shapes[0][1] != src.width


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return testing.sample_set(tmp_path_factory.mktemp("samples"))


# --- write_raster -----------------------------------------------------------


def test_default_raster_is_small_striped_utm_with_10m_pixels(tmp_path: Path) -> None:
    path = testing.write_raster(tmp_path / "a.tif")
    with rasterio.open(path) as src:
        assert (src.width, src.height, src.count, src.dtypes[0]) == (64, 64, 1, "uint8")
        assert src.crs.to_epsg() == 32633
        assert src.transform == Affine(10, 0, 500000, 0, -10, 5000000)
        assert not is_tiled(src)
        assert src.overviews(1) == []
        assert src.nodata is None


def test_pixels_are_deterministic_per_seed() -> None:
    first = testing.pixels(2, 16, 16, "float32", seed=1)
    assert np.array_equal(first, testing.pixels(2, 16, 16, "float32", seed=1))
    assert not np.array_equal(first, testing.pixels(2, 16, 16, "float32", seed=2))


def test_valid_pixels_never_equal_nodata() -> None:
    inside_range = testing.pixels(1, 64, 64, "uint8", nodata=100)
    outside_range = testing.pixels(1, 64, 64, "uint8", nodata=0)
    assert np.array_equal(inside_range == 100, outside_range == 0)


def test_nodata_that_dtype_cannot_hold_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        testing.write_raster(tmp_path / "a.tif", dtype="uint8", nodata=math.nan)
    with pytest.raises(ValueError):
        testing.write_raster(tmp_path / "b.tif", dtype="uint8", nodata=-1)


def test_transform_and_bounds_together_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        testing.write_raster(tmp_path / "a.tif", transform=Affine.identity(), bounds=(0, 0, 1, 1))


def test_bounds_give_a_north_up_grid(tmp_path: Path) -> None:
    path = testing.write_raster(tmp_path / "a.tif", bounds=(0, 0, 640, 320), width=64, height=32)
    with rasterio.open(path) as src:
        assert tuple(src.bounds) == (0, 0, 640, 320)
        assert src.res == (10, 10)


def test_cog_flag_writes_cog_with_overview_even_at_default_size(tmp_path: Path) -> None:
    path = testing.write_raster(tmp_path / "a.tif", cog=True)
    with rasterio.open(path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.overviews(1) == [2]


def test_cog_without_overviews_on_request(tmp_path: Path) -> None:
    path = testing.write_raster(tmp_path / "a.tif", cog=True, overviews=False)
    with rasterio.open(path) as src:
        assert src.overviews(1) == []
        assert layout(path) == "COG"


def test_tiled_gtiff_with_overviews_is_not_a_cog(tmp_path: Path) -> None:
    path = testing.write_raster(tmp_path / "a.tif", tiled=True, overviews=True, width=128, height=128)
    with rasterio.open(path) as src:
        assert is_tiled(src)
        assert src.overviews(1) == [2]
    assert layout(path) is None


def test_metadata_survives_cog_conversion(tmp_path: Path) -> None:
    path = testing.write_raster(
        tmp_path / "a.tif",
        cog=True,
        count=2,
        tags={"MISSION": "test"},
        band_tags=[{"wavelength": "0.665"}, {"wavelength": "0.842"}],
        scales=[0.0001, 0.0001],
        offsets=[-0.1, -0.1],
        units=["m", "m"],
        descriptions=["red", "nir"],
        area_or_point="Point",
    )
    with rasterio.open(path) as src:
        assert src.tags()["MISSION"] == "test"
        assert src.tags()["AREA_OR_POINT"] == "Point"
        assert src.tags(2)["wavelength"] == "0.842"
        assert src.scales == (0.0001, 0.0001)
        assert src.offsets == (-0.1, -0.1)
        assert src.units == ("m", "m")
        assert src.descriptions == ("red", "nir")


@pytest.mark.parametrize(("driver", "suffix"), [("PNG", "png"), ("JPEG", "jpg"), ("JP2OpenJPEG", "jp2")])
def test_other_drivers_are_written_by_create_copy(tmp_path: Path, driver: str, suffix: str) -> None:
    with rasterio.Env() as env:
        if driver not in env.drivers():
            pytest.skip(f"GDAL here has no {driver}")
    path = testing.write_raster(tmp_path / f"a.{suffix}", driver=driver, count=3)
    # PNG/JPEG keep their CRS in an .aux.xml sidecar: let GDAL look beside the file
    # (stacwatchd.model.raster disables that by default for speed).
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="FALSE"), rasterio.open(path) as src:
        assert src.driver == driver
        assert src.crs.to_epsg() == 32633
        assert src.read().shape == (3, 64, 64)


# --- named samples ----------------------------------------------------------


def test_cog_sample_is_cog_with_overviews(tmp_path: Path) -> None:
    path = testing.cog(tmp_path / "a.tif")
    with rasterio.open(path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.block_shapes[0] == (256, 256)
        assert src.overviews(1)


def test_striped_sample_is_not_tiled_nor_cog(tmp_path: Path) -> None:
    path = testing.striped(tmp_path / "a.tif", width=100, height=80)
    with rasterio.open(path) as src:
        assert not is_tiled(src)
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") is None


def test_every_dtype_round_trips_with_distinct_values(tmp_path: Path) -> None:
    written = testing.every_dtype(tmp_path)
    assert set(written) == set(testing.DTYPES)
    for dtype, path in written.items():
        with rasterio.open(path) as src:
            assert src.dtypes[0] == dtype
            assert len(np.unique(src.read(1))) > 10


def test_nodata_variants_preserve_special_values(tmp_path: Path) -> None:
    written = testing.nodata_variants(tmp_path)
    for key, (dtype, nodata) in testing.NODATA_VARIANTS.items():
        with rasterio.open(written[key]) as src:
            data = src.read(1)
            assert src.dtypes[0] == dtype
            if nodata is None:
                assert src.nodata is None
                assert np.isfinite(data).all()
            elif math.isnan(nodata):
                assert math.isnan(src.nodata)
                assert np.isnan(data).sum() > 0
            else:
                assert src.nodata == nodata
                assert (data == nodata).sum() > 0
                assert np.isfinite(data[data != nodata]).all()


def test_geographic_sample_has_small_degree_pixels_near_10e_50n(tmp_path: Path) -> None:
    with rasterio.open(testing.geographic(tmp_path / "a.tif")) as src:
        assert src.crs.to_epsg() == 4326
        assert src.res == pytest.approx((0.001, 0.001))
        assert (src.bounds.left, src.bounds.top) == (10.0, 50.0)


def test_utm_and_web_mercator_samples_have_their_epsg(tmp_path: Path) -> None:
    with rasterio.open(testing.utm(tmp_path / "u.tif")) as src:
        assert src.crs.to_epsg() == 32633
    with rasterio.open(testing.web_mercator(tmp_path / "w.tif")) as src:
        assert src.crs.to_epsg() == 3857
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        assert 9.9 < west < east < 10.1 and 49.9 < south < north < 50.1


def test_polar_sample_contains_the_pole(tmp_path: Path) -> None:
    with rasterio.open(testing.polar_stereographic(tmp_path / "a.tif")) as src:
        assert src.crs.to_epsg() == 3031
        col, row = ~src.transform @ (0.0, 0.0)
        assert 0 < col < src.width and 0 < row < src.height


def test_antimeridian_sample_footprint_crosses_180(tmp_path: Path) -> None:
    with rasterio.open(testing.antimeridian(tmp_path / "a.tif")) as src:
        west, _, east, _ = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    assert west > 179 and east < -179


def test_crs_without_epsg_matches_no_epsg_code(tmp_path: Path) -> None:
    with rasterio.open(testing.crs_without_epsg(tmp_path / "a.tif")) as src:
        assert src.crs.is_projected
        assert src.crs.to_epsg(confidence_threshold=100) is None


def test_rotated_sample_has_rotation_terms(tmp_path: Path) -> None:
    with rasterio.open(testing.rotated(tmp_path / "a.tif")) as src:
        assert src.transform.b != 0 and src.transform.d != 0
        assert src.crs.to_epsg() == 32633


def test_gcps_sample_has_gcps_that_an_affine_fit_reproduces(tmp_path: Path) -> None:
    with rasterio.open(testing.with_gcps(tmp_path / "a.tif")) as src:
        gcps, gcps_crs = src.gcps
        assert src.transform.is_identity
        assert src.crs is None
    assert len(gcps) == 9 and gcps_crs.to_epsg() == 4326
    fitted = from_gcps(gcps)
    for point in gcps:
        assert fitted @ (point.col, point.row) == pytest.approx((point.x, point.y), abs=1e-9)


def test_no_crs_sample_has_no_georeferencing(tmp_path: Path) -> None:
    with rasterio.open(testing.no_crs(tmp_path / "a.tif")) as src:
        assert src.crs is None
        assert src.transform.is_identity
        assert src.gcps == ([], None)


def test_multiband_rgb_sample_is_interpreted_as_rgb(tmp_path: Path) -> None:
    with rasterio.open(testing.multiband_rgb(tmp_path / "a.tif")) as src:
        assert src.count == 3
        assert src.colorinterp == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)


def read_all(path: Path) -> None:
    with rasterio.open(path) as src:
        src.read()


@pytest.mark.parametrize("maker", [testing.truncated, testing.random_bytes, testing.zero_bytes])
def test_broken_samples_fail_with_rasterio_errors(tmp_path: Path, maker) -> None:
    path = maker(tmp_path / "broken.tif")
    with pytest.raises(RasterioError):
        read_all(path)


def test_truncated_sample_still_looks_like_a_tiff(tmp_path: Path) -> None:
    path = testing.truncated(tmp_path / "a.tif")
    assert path.read_bytes()[:4] == b"II*\x00"


# --- sample_set -------------------------------------------------------------


def test_sample_set_covers_every_kind(samples: dict[str, Path]) -> None:
    expected = {
        "cog",
        "striped",
        "geographic",
        "utm",
        "web_mercator",
        "polar_stereographic",
        "crs_without_epsg",
        "rotated",
        "with_gcps",
        "antimeridian",
        "no_crs",
        "multiband_rgb",
        "timestamp_in_tags",
        "no_date",
        *testing.BROKEN_SAMPLES,
    }
    expected |= {f"dtype_{dtype}" for dtype in testing.DTYPES}
    expected |= {f"nodata_{key}" for key in testing.NODATA_VARIANTS}
    assert set(samples) == expected
    assert all(path.exists() for path in samples.values())


def test_sample_set_good_names_carry_every_stamp_format(samples: dict[str, Path]) -> None:
    undated = {"timestamp_in_tags", "no_date", *testing.BROKEN_SAMPLES}
    longest_first = sorted(testing.SAMPLE_STAMPS, key=len, reverse=True)
    stamps = re.compile("|".join(re.escape(stamp) for stamp in longest_first))
    used = set()
    for kind, path in samples.items():
        found = stamps.findall(path.name)
        assert bool(found) == (kind not in undated), path.name
        used.update(found)
    assert used == set(testing.SAMPLE_STAMPS)


def test_sample_set_good_files_open_and_broken_ones_do_not(samples: dict[str, Path]) -> None:
    for kind, path in samples.items():
        if kind in testing.BROKEN_SAMPLES:
            with pytest.raises(RasterioError):
                read_all(path)
        else:
            read_all(path)


def test_sample_set_dates_only_in_tags_file(samples: dict[str, Path]) -> None:
    with rasterio.open(samples["timestamp_in_tags"]) as src:
        stamp = src.tags()["TIFFTAG_DATETIME"]
    assert datetime.strptime(stamp, "%Y:%m:%d %H:%M:%S") == testing.TAGS_DATETIME.replace(tzinfo=None)
    with rasterio.open(samples["no_date"]) as src:
        assert "TIFFTAG_DATETIME" not in src.tags()
    with rasterio.open(samples["cog"]) as src:
        assert "TIFFTAG_DATETIME" not in src.tags()


# --- many_cogs --------------------------------------------------------------


def test_many_cogs_gives_distinct_dated_cogs(tmp_path: Path) -> None:
    paths = testing.many_cogs(tmp_path, 20)
    assert len(paths) == 20
    bounds, dates = set(), set()
    for path in paths:
        match = re.fullmatch(r"scene_\d{6}_(\d{8}T\d{6})\.tif", path.name)
        assert match, path.name
        dates.add(datetime.strptime(match[1], "%Y%m%dT%H%M%S"))
        with rasterio.open(path) as src:
            assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert src.overviews(1)
            assert src.crs.to_epsg() == 32633
            bounds.add(tuple(src.bounds))
            src.read(1)
    assert len(bounds) == 20 and len(dates) == 20
    assert (max(dates) - min(dates)).days > 365


def test_many_cogs_tiles_do_not_overlap(tmp_path: Path) -> None:
    first, second = testing.many_cogs(tmp_path, 2, size=64)
    with rasterio.open(first) as a, rasterio.open(second) as b:
        assert a.bounds.right == b.bounds.left
        assert a.res == b.res == (10, 10)


# --- waiting, logs, writers -------------------------------------------------


def test_wait_until_returns_the_truthy_value() -> None:
    calls = iter([0, None, "ready"])
    assert testing.wait_until(lambda: next(calls), timeout=1, interval=0) == "ready"


def test_wait_until_times_out_with_message() -> None:
    with pytest.raises(TimeoutError, match="never"):
        testing.wait_until(lambda: False, timeout=0.05, interval=0.01, message="never")


def test_wait_until_can_treat_exceptions_as_not_yet(tmp_path: Path) -> None:
    target = tmp_path / "late"
    threading.Timer(0.05, target.write_text, args=("x",)).start()
    assert testing.wait_until(target.read_text, timeout=2, ignore=(FileNotFoundError,)) == "x"


def test_capture_logs_collects_structlog_events() -> None:
    with testing.capture_logs() as logs:
        structlog.get_logger().info("indexed", path="a.tif")
    assert logs == [{"event": "indexed", "path": "a.tif", "log_level": "info"}]


def test_slow_write_grows_the_file_until_complete(tmp_path: Path) -> None:
    source = testing.write_raster(tmp_path / "src.tif")
    target = tmp_path / "dst.tif"
    total = source.stat().st_size
    thread = testing.slow_write_in_thread(source, target, chunks=4, pause=0.1)
    testing.wait_until(lambda: 0 < target.stat().st_size < total, ignore=(FileNotFoundError,))
    thread.join(timeout=5)
    assert target.read_bytes() == source.read_bytes()


def test_write_then_rename_leaves_only_the_final_file(tmp_path: Path) -> None:
    source = testing.write_raster(tmp_path / "src" / "a.tif")
    out = tmp_path / "out"
    out.mkdir()
    testing.write_then_rename(source, out / "a.tif")
    testing.write_then_rename(b"bytes", out / "b.bin")
    assert sorted(p.name for p in out.iterdir()) == ["a.tif", "b.bin"]
    assert (out / "a.tif").read_bytes() == source.read_bytes()
    assert (out / "b.bin").read_bytes() == b"bytes"


def test_custom_crs_string_is_accepted(tmp_path: Path) -> None:
    path = testing.write_raster(tmp_path / "a.tif", crs=CRS.from_epsg(3035))
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 3035
