"""Global and near-global grids as real products write them, and an independent outline.

Shared by the footprint tests and the loader tests: each entry is the ``write_raster``
arguments of one grid; ``reference_outline`` transforms its pixel outline with pyproj,
densified far more finely than stacwatchd does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer

from stacwatchd import testing

MERCATOR_EDGE = 20037508.342789244

GLOBAL_GRIDS: dict[str, dict[str, Any]] = {
    # Whole world, -180..180, edges on the poles and the antimeridian (land cover, reanalyses).
    "world_1deg": {"crs": "EPSG:4326", "bounds": (-180, -90, 180, 90), "width": 360, "height": 180},
    "world_quarter_deg": {"crs": "EPSG:4326", "bounds": (-180, -90, 180, 90), "width": 1440, "height": 720},
    # Climate-model convention: longitudes 0..360.
    "world_0_360": {"crs": "EPSG:4326", "bounds": (0, -90, 360, 90), "width": 360, "height": 180},
    # All longitudes, one hemisphere.
    "northern_band": {"crs": "EPSG:4326", "bounds": (-180, 0, 180, 90), "width": 360, "height": 90},
    # Cell-centred registration: the first pixel centre on -180 / 90, so the pixel edges
    # overshoot ±180 and ±90 by half a pixel (361 x 181 centres, every meridian 1° apart).
    "cell_centred": {"crs": "EPSG:4326", "transform": Affine(1, 0, -180.5, 0, -1, 90.5), "width": 361, "height": 181},
    # The usual web-map grid, the whole square of Web Mercator.
    "web_mercator_world": {
        "crs": "EPSG:3857",
        "bounds": (-MERCATOR_EDGE, -MERCATOR_EDGE, MERCATOR_EDGE, MERCATOR_EDGE),
        "width": 256,
        "height": 256,
    },
}


def write_global(directory: Path, name: str, stamp: str = "20240517") -> Path:
    """The grid ``name`` as a real GeoTIFF named ``<name>_<stamp>.tif``."""
    return testing.write_raster(directory / f"{name}_{stamp}.tif", **GLOBAL_GRIDS[name])


def reference_outline(path: Path, per_edge: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Lon/lat of the pixel outline, ``per_edge`` points per edge, latitudes clamped to ±90."""
    with rasterio.open(path) as src:
        width, height, transform, crs = src.width, src.height, src.transform, src.crs
    t = np.linspace(0, 1, per_edge, endpoint=False)
    cols = np.concatenate([t * width, np.full_like(t, width), (1 - t) * width, np.zeros_like(t)])
    rows = np.concatenate([np.zeros_like(t), t * height, np.full_like(t, height), (1 - t) * height])
    xs, ys = transform * (cols, rows)
    to_wgs84 = Transformer.from_crs(crs.to_wkt(), "EPSG:4326", always_xy=True)
    lons, lats = to_wgs84.transform(np.asarray(xs), np.asarray(ys))
    return np.asarray(lons), np.clip(np.asarray(lats), -90, 90)


def reference_bbox(path: Path) -> tuple[float, float, float, float]:
    """The bbox of the reference outline; -180..180 when it spans every longitude."""
    lons, lats = reference_outline(path)
    if lons.max() - lons.min() >= 360:
        west, east = -180.0, 180.0
    else:
        wrapped = (lons + 180) % 360 - 180
        west, east = float(wrapped.min()), float(wrapped.max())
    return west, float(lats.min()), east, float(lats.max())
