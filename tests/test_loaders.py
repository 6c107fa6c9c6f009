"""Clients must load what we write: odc-stac reads every locatable Item pixel-equal to rasterio."""

from __future__ import annotations

import warnings

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine
from global_grids import GLOBAL_GRIDS, write_global

from stacwatchd import testing
from stacwatchd.config import ItemRules
from stacwatchd.model.items import Rules, build, item_to_dict

odc_stac = pytest.importorskip("odc.stac")
from odc.geo.geobox import GeoBox  # noqa: E402

# odc-stac 0.5.3 has no numpy equivalent for the STAC names of complex types
# (cint16, cfloat32, cfloat64); GCP files are checked separately below.
NOT_AFFINE_LOADABLE = {"no_crs", "with_gcps", "dtype_complex64", "dtype_complex128"}
LOADABLE = [k for k in testing.GOOD_SAMPLES if k not in NOT_AFFINE_LOADABLE]


def item_for(path, legacy: bool) -> dict:
    rules = Rules(collection_id="c", root=path.parent, items=ItemRules(legacy_fields=legacy))
    return item_to_dict(build(path, rules).item)


def native_geobox(item: dict) -> GeoBox:
    """The grid the Item declares, exactly as a user would rebuild it from STAC."""
    props = item["properties"]
    crs = props["proj:code"] or props["proj:wkt2"]
    return GeoBox(tuple(props["proj:shape"]), Affine(*props["proj:transform"]), crs)


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "modern"])
@pytest.mark.parametrize("kind", LOADABLE)
def test_odc_stac_loads_the_item_pixel_equal_to_rasterio(samples, kind, legacy):
    item = item_for(samples[kind], legacy)
    dataset = odc_stac.load([pystac.Item.from_dict(item)], geobox=native_geobox(item), resampling="nearest")
    loaded = np.stack([dataset[name].values[0] for name in dataset.data_vars])
    with rasterio.open(samples[kind]) as src:
        expected = src.read()
    assert loaded.dtype == expected.dtype
    np.testing.assert_array_equal(loaded, expected)


@pytest.mark.parametrize("name", list(GLOBAL_GRIDS))
def test_odc_stac_loads_global_grids_pixel_equal_to_rasterio(tmp_path, name):
    path = write_global(tmp_path, name)
    item = item_for(path, legacy=True)
    dataset = odc_stac.load([pystac.Item.from_dict(item)], geobox=native_geobox(item), resampling="nearest")
    with rasterio.open(path) as src:
        expected = src.read(1)
    np.testing.assert_array_equal(dataset["data"].values[0], expected)


def test_odc_stac_keeps_the_files_nodata_value(tmp_path):
    path = testing.utm(tmp_path / "dem_20240517.tif", dtype="int16", nodata=-32768)
    item = item_for(path, legacy=True)
    dataset = odc_stac.load([pystac.Item.from_dict(item)], geobox=native_geobox(item), resampling="nearest")
    with rasterio.open(path) as src:
        expected = src.read(1)
    assert (expected == -32768).any()
    np.testing.assert_array_equal(dataset["data"].values[0], expected)
    assert dataset["data"].attrs["nodata"] == -32768


def test_odc_stac_refuses_a_gcp_item_rather_than_loading_wrong_pixels(samples):
    item = item_for(samples["with_gcps"], legacy=True)
    assert "proj:transform" not in item["properties"]
    with warnings.catch_warnings(), pytest.raises(ValueError):
        warnings.simplefilter("ignore")
        odc_stac.load([pystac.Item.from_dict(item)], resolution=0.001)


def test_unlocated_item_carries_nothing_a_loader_would_trip_on(samples):
    rules = Rules(collection_id="c", root=samples["no_crs"].parent, items=ItemRules(unlocated="null-geometry"))
    item = pystac.Item.from_dict(item_to_dict(build(samples["no_crs"], rules).item))
    assert item.geometry is None
    assert not [k for k in item.properties if k.startswith("proj:")]
