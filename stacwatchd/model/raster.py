"""Raster facts: open a file with rasterio and return plain values, nothing else.

This module knows nothing of STAC, catalogs, threads or configuration files, so that
every fact can be tested against the file alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import antimeridian
import numpy as np
import rasterio
import rasterio.errors
import rasterio.warp
import shapely
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.io import DatasetReader
from rasterio.transform import GCPTransformer
from shapely.affinity import translate
from shapely.geometry import MultiPolygon, Polygon, box, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from stacwatchd.errors import UnreadableRaster

__all__ = [
    "Band",
    "COG",
    "FootprintError",
    "GEOTIFF",
    "PLAIN_TIFF",
    "RasterFacts",
    "ReadOptions",
    "geometry_bbox",
    "read_facts",
    "render_thumbnail",
    "round_geometry",
    "simplified_geojson",
]

#: ``GDAL_DISABLE_READDIR_ON_OPEN``: listing a folder of 10,000 files on each open is what
#: this avoids. ``GTIFF_SRS_SOURCE=GEOKEYS``: a GeoTIFF's CRS is the one its keys define,
#: without GDAL also building the CRS of its EPSG code from the PROJ database to compare
#: the two (a third of each open). Where keys and code agree, as GDAL writes them, the
#: result is the same CRS, code included; where they disagree the code is dropped, and
#: the Item then carries the keys' CRS as WKT2 rather than a code that misdescribes it.
GDAL_OPEN_OPTIONS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GTIFF_SRS_SOURCE": "GEOKEYS"}

GEOTIFF = "image/tiff; application=geotiff"
COG = "image/tiff; application=geotiff; profile=cloud-optimized"
PLAIN_TIFF = "image/tiff"
_MEDIA_TYPES = {
    "JP2OpenJPEG": "image/jp2",
    "JPEG2000": "image/jp2",
    "JP2KAK": "image/jp2",
    "JP2ECW": "image/jp2",
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "netCDF": "application/netcdf",
    "HDF5": "application/x-hdf5",
    "HDF4": "application/x-hdf",
    "HDF4Image": "application/x-hdf",
    "GPKG": "application/geopackage+sqlite3",
    "VRT": "application/xml",
    "Zarr": "application/vnd+zarr",
}
_STAC_DTYPES = {
    "complex_int16": "cint16",
    "complex64": "cfloat32",
    "complex128": "cfloat64",
}
_WGS84 = CRS.from_epsg(4326)
# PROJ reports an impossible transformation (another planet, a broken definition)
# through GDAL's error classes, which are not all RasterioError subclasses.
_TRANSFORM_ERRORS = (rasterio.errors.RasterioError, CPLE_BaseError, ValueError)
_APPROX_STATS_SIZE = 1024

Statistics = Literal["off", "approx", "exact"]


@dataclass(frozen=True, slots=True)
class BandStatistics:
    minimum: float
    maximum: float
    mean: float
    stddev: float
    valid_percent: float


@dataclass(frozen=True, slots=True)
class Band:
    """One band as a loader needs it: type, nodata, scaling and meaning."""

    data_type: str
    nodata: float | None
    unit: str | None
    description: str | None
    scale: float
    offset: float
    color: str | None
    statistics: BandStatistics | None = None


@dataclass(frozen=True, slots=True)
class Grid:
    """The native pixel grid: what the projection extension describes."""

    code: str | None
    epsg: int | None
    wkt2: str
    shape: tuple[int, int]
    transform: tuple[float, float, float, float, float, float] | None
    bbox: tuple[float, float, float, float]
    resolution_m: float | None


@dataclass(frozen=True, slots=True)
class RasterFacts:
    """Everything stacwatchd needs to know about one file, as plain values."""

    path: Path
    size: int
    mtime_ns: int
    driver: str
    media_type: str
    width: int
    height: int
    bands: tuple[Band, ...]
    tags: Mapping[str, str]
    sampling: Literal["area", "point"] | None
    grid: Grid | None
    geometry: dict[str, Any] | None
    bbox: tuple[float, float, float, float] | None
    unlocated_reason: str | None = None
    checksum: str | None = field(default=None)

    @property
    def located(self) -> bool:
        return self.geometry is not None


@dataclass(frozen=True, slots=True)
class ReadOptions:
    precision: int = 7
    densify: int = 21
    statistics: Statistics = "off"
    checksum: bool = False


def read_facts(path: Path, options: ReadOptions = ReadOptions()) -> RasterFacts:
    """Open ``path`` and describe it; raises UnreadableRaster for anything GDAL refuses."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise UnreadableRaster(path, f"cannot stat: {exc.strerror}") from None
    if stat.st_size == 0:
        raise UnreadableRaster(path, "file is empty")
    _enter_thread_env()
    try:
        # DatasetReader itself rather than rasterio.open, which wraps every open in a
        # fresh GDAL environment of its own (~0.1 ms); this thread keeps one open.
        with DatasetReader(os.fspath(path)) as src:
            facts = _describe(src, path, stat, options)
        if not facts.located and facts.driver != "GTiff":
            # PNG, JPEG and others keep georeferencing in sidecars (.aux.xml, world
            # files), which GDAL only finds when it may look beside the file.
            with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="TRUE"), rasterio.open(path) as src:
                facts = _describe(src, path, stat, options)
    except UnreadableRaster:
        raise
    except (rasterio.errors.RasterioError, OSError, ValueError) as exc:
        raise UnreadableRaster(path, _gdal_reason(exc)) from None
    if options.checksum:
        facts = _with_checksum(facts)
    return facts


_THREAD = threading.local()


def _enter_thread_env() -> None:
    """One GDAL environment per thread, kept open: rasterio would otherwise set one up
    and tear it down around every single open."""
    if not getattr(_THREAD, "env", None):
        # stacwatchd reports missing georeferencing itself, as a fact or a refusal.
        warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)
        _THREAD.env = rasterio.Env(**GDAL_OPEN_OPTIONS)
        _THREAD.env.__enter__()


def _gdal_reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    prefix = "not recognized as being in a supported file format"
    if prefix in text:
        return "not a raster GDAL can read (" + prefix + ")"
    return text or type(exc).__name__


def _describe(src: rasterio.DatasetReader, path: Path, stat: os.stat_result, options: ReadOptions) -> RasterFacts:
    check_complete(src, path, stat.st_size)
    tags = dict(src.tags())
    located = _locate(src, options)
    bands = _bands(src, located[0], options.statistics)
    sampling = {"Area": "area", "Point": "point"}.get(tags.get("AREA_OR_POINT", ""))
    return RasterFacts(
        path=path,
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        driver=src.driver,
        media_type=media_type(src, georeferenced=located[0] is not None),
        width=src.width,
        height=src.height,
        bands=bands,
        tags=tags,
        sampling=sampling,  # type: ignore[arg-type]
        grid=located[0],
        geometry=located[1],
        bbox=located[2],
        unlocated_reason=located[3],
    )


def check_complete(src: rasterio.DatasetReader, path: Path, size: int) -> None:
    """Refuse a TIFF whose last image block lies beyond the end of the file.

    A truncated (or still growing) TIFF often opens fine because its header is
    intact; reading two block offsets catches it without touching pixels.
    """
    if src.driver != "GTiff":
        return
    block_h, block_w = src.block_shapes[0]
    last = f"{math.ceil(src.width / block_w) - 1}_{math.ceil(src.height / block_h) - 1}"
    for band in {1, src.count}:
        offset = src.get_tag_item(f"BLOCK_OFFSET_{last}", "TIFF", bidx=band)
        length = src.get_tag_item(f"BLOCK_SIZE_{last}", "TIFF", bidx=band)
        if offset and length and int(offset) + int(length) > size:
            raise UnreadableRaster(
                path,
                f"file is truncated: image data ends at byte {int(offset) + int(length)} but the file has {size} bytes",
            )


# -- georeferencing -----------------------------------------------------------------


Located = tuple[Grid | None, dict[str, Any] | None, tuple[float, float, float, float] | None, str | None]


def _locate(src: rasterio.DatasetReader, options: ReadOptions) -> Located:
    """Grid, footprint and bbox, or the reason there are none."""
    gcps, gcp_crs = src.gcps
    crs, transform = src.crs, src.transform
    grid_transform: tuple[float, ...] | None = (transform.a, transform.b, transform.c, transform.d, transform.e, transform.f)
    if crs is not None and grid_transform != _IDENTITY:
        to_xy, to_pixel = _affine_mappers(transform)
    elif gcps and gcp_crs is not None:
        # No proj:transform for GCP files: loaders that honour it read the file's own
        # (absent) geotransform and return silently wrong pixels; without it they refuse.
        crs, (to_xy, to_pixel) = gcp_crs, _gcp_mappers(gcps)
        grid_transform = None
    elif crs is not None:
        return None, None, None, "the file has a CRS but no geotransform or GCPs"
    elif gcps:
        return None, None, None, "the file has GCPs without a CRS"
    else:
        return None, None, None, "the file has no CRS and no georeferencing"
    try:
        known = _crs_facts(crs.to_wkt(version="WKT2_2019"))
    except rasterio.errors.CRSError as exc:
        return None, None, None, f"the CRS cannot be interpreted: {exc}"
    points = max(options.densify, MIN_EDGE_POINTS)
    cols, rows = outline(src.width, src.height, points)
    xs, ys = to_xy(cols, rows)

    def poles() -> tuple[bool, bool]:
        return _poles_at(known.poles, to_pixel, src.width, src.height)

    def inner() -> tuple[np.ndarray, np.ndarray]:
        return to_xy(*inset_outline(src.width, src.height, points))

    try:
        geometry, bbox = footprint(known.crs, xs, ys, options.precision, poles=poles, inner=inner)
    except FootprintError as exc:
        return None, None, None, str(exc)
    grid = Grid(
        code=known.code,
        epsg=known.epsg,
        wkt2=known.wkt2,
        shape=(src.height, src.width),
        transform=grid_transform,  # type: ignore[arg-type]
        bbox=(float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())),
        resolution_m=math.hypot(transform.a, transform.d) * known.metres_per_unit
        if grid_transform is not None and known.metres_per_unit is not None
        else None,
    )
    return grid, geometry, bbox, None


#: The north and the south pole in a CRS's coordinates: (x_n, x_s), (y_n, y_s).
Poles = tuple[tuple[float, float], tuple[float, float]]
_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # GDAL's geotransform of a file that has none


@dataclass(frozen=True, slots=True)
class _CrsFacts:
    """What a CRS contributes to every Item in it, worked out once per CRS."""

    crs: CRS  # one object per CRS: GDAL transforms from it far faster than from a new one
    code: str | None
    epsg: int | None
    wkt2: str
    poles: Poles | None
    metres_per_unit: float | None  # of a projected CRS's first axis


@lru_cache(maxsize=256)
def _crs_facts(wkt2: str) -> _CrsFacts:
    """Keyed by the CRS's WKT2, the one export each file pays: an Item whose CRS has no
    code carries that WKT2 as it is."""
    crs = CRS.from_wkt(wkt2)
    code, epsg = _authority_code(crs)
    metres: float | None = None
    if crs.is_projected:
        with contextlib.suppress(rasterio.errors.CRSError):
            metres = float(crs.linear_units_factor[1])
    return _CrsFacts(crs=crs, code=code, epsg=epsg, wkt2=wkt2, poles=_poles_in(crs), metres_per_unit=metres)


def _authority_code(crs: CRS) -> tuple[str | None, int | None]:
    """``("EPSG:32633", 32633)`` only when the CRS is exactly that code, else ``(None, None)``.

    A CRS that merely resembles a registered one (another false easting, a custom
    datum) must not be labelled with its code: loaders would reproject it wrongly.
    """
    found = crs.to_authority(confidence_threshold=100)
    if found is None:
        return None, None
    name, code = found
    try:
        registered = CRS.from_user_input(f"{name}:{code}")
    except rasterio.errors.CRSError:
        return None, None
    if registered != crs:
        return None, None
    epsg = int(code) if name.upper() == "EPSG" and code.isdigit() else None
    return f"{name.upper()}:{code}", epsg


@lru_cache(maxsize=64)
def outline(width: int, height: int, points_per_edge: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-space ring around the whole grid, ``points_per_edge`` points on every edge.

    Cached (a folder's files usually share one size); callers must not modify it.
    """
    t = np.linspace(0.0, 1.0, points_per_edge)[:-1]
    cols = np.concatenate([t * width, np.full_like(t, width), (1 - t) * width, np.zeros_like(t)])
    rows = np.concatenate([np.zeros_like(t), t * height, np.full_like(t, height), (1 - t) * height])
    return np.append(cols, cols[0]), np.append(rows, rows[0])


def inset_outline(width: int, height: int, points_per_edge: int) -> tuple[np.ndarray, np.ndarray]:
    """The ring one pixel inside the grid's outline (the middle line of a grid one or two
    pixels wide): what must still lie on Earth when the outer edge overshoots it."""
    dx, dy = min(1.0, width / 2), min(1.0, height / 2)
    cols, rows = outline(width, height, points_per_edge)
    return dx + cols * (width - 2 * dx) / width, dy + rows * (height - 2 * dy) / height


Mapper = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _affine_mappers(transform: Affine) -> tuple[Mapper, Mapper]:
    """Pixel → CRS and CRS → pixel for a geotransform."""
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f

    def to_xy(cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return a * cols + b * rows + c, d * cols + e * rows + f

    def to_pixel(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        det = a * e - b * d
        dx, dy = xs - c, ys - f
        return (e * dx - b * dy) / det, (a * dy - d * dx) / det

    return to_xy, to_pixel


def _gcp_mappers(gcps: Sequence[Any]) -> tuple[Mapper, Mapper]:
    """Pixel → CRS and CRS → pixel through GDAL's GCP transformer."""
    transformer = GCPTransformer(gcps)

    def to_xy(cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = transformer.xy(rows, cols, offset="ul")
        return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)

    def to_pixel(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = transformer.rowcol(xs, ys, op=lambda v: v)
        return np.asarray(cols, dtype=float), np.asarray(rows, dtype=float)

    return to_xy, to_pixel


def _poles_at(poles: Poles | None, to_pixel: Mapper, width: int, height: int) -> tuple[bool, bool]:
    """Whether the grid covers the north and the south pole."""
    if poles is None:
        return False, False
    cols, rows = to_pixel(np.asarray(poles[0]), np.asarray(poles[1]))
    inside = [
        bool(np.isfinite(c) and np.isfinite(r) and 0 <= c <= width and 0 <= r <= height) for c, r in zip(cols, rows, strict=True)
    ]
    return inside[0], inside[1]


def _poles_in(crs: CRS) -> Poles | None:
    """The two poles in a CRS's coordinates, or None if not expressible."""
    try:
        xs, ys = rasterio.warp.transform(_WGS84, crs, [0.0, 0.0], [90.0, -90.0])
    except _TRANSFORM_ERRORS:
        return None
    return (float(xs[0]), float(xs[1])), (float(ys[0]), float(ys[1]))


class FootprintError(ValueError):
    """The outline cannot be expressed in WGS84."""


#: Fewest outline points per edge: an edge spanning all 360° of longitude must be
#: sampled finely enough (here 90° apart) to be followed around the globe.
MIN_EDGE_POINTS = 5
_WORLD = box(-180.0, -90.0, 180.0, 90.0)
_ON_EARTH = 1e-9  # degrees of arithmetic noise tolerated at ±90° and around 360°

InnerRing = Callable[[], tuple[np.ndarray, np.ndarray]]
PolesInside = Callable[[], tuple[bool, bool]]


def footprint(
    crs: CRS,
    xs: np.ndarray,
    ys: np.ndarray,
    precision: int,
    poles: PolesInside | None = None,
    inner: InnerRing | None = None,
) -> tuple[dict[str, Any], tuple[float, float, float, float]]:
    """GeoJSON footprint in EPSG:4326 and its RFC 7946 bbox.

    ``xs, ys`` is the grid's outline ring in ``crs``; ``inner`` gives the ring one pixel
    inside it, ``poles`` whether the grid covers the north and the south pole (both
    asked only for the rare outlines that need them). Crossing the antimeridian gives a
    MultiPolygon split at ±180 and a bbox with west > east; a ring around a pole is
    closed over the pole; a grid covering all longitudes (in either convention, -180..180
    or 0..360) is a band from -180 to 180. An outer edge beyond ±90° or beyond a full
    turn is clamped when it overshoots by less than a pixel (cell-centred global grids),
    refused otherwise. Vertices that lie within half a unit of ``precision`` of the line
    through their neighbours are dropped.
    """
    # Each test below runs once per file, on arrays of ~80 values: every extreme and step
    # is computed once and reused, so that the common ring costs a handful of operations.
    lons, lats = _to_wgs84(crs, xs, ys)
    if max(float(lats.max()), -float(lats.min())) > 90 + _ON_EARTH:
        if inner is None or (np.abs(_to_wgs84(crs, *inner())[1]) > 90 + _ON_EARTH).any():
            raise FootprintError("the footprint reaches beyond the poles: not an Earth CRS")
        lats = np.clip(lats, -90.0, 90.0)
    longest = float(np.abs(np.diff(lons)).max(initial=0.0))
    unwrapped = lons if longest <= 180 else unwrap_longitudes(lons)
    turns = round(float(unwrapped[-1] - unwrapped[0]) / 360)
    west, east = float(unwrapped.min()), float(unwrapped.max())
    span = east - west
    if turns == 0 and span >= 360 - _ON_EARTH:
        if span > 360 + _ON_EARTH and (inner is None or _span(_to_wgs84(crs, *inner())[0]) > 360 + _ON_EARTH):
            raise FootprintError("the grid spans more than 360° of longitude, by more than a pixel")
        return _band_footprint(unwrapped, lats, precision)
    if unwrapped is not lons or west < -180 or east > 180:  # else nothing to fold: same steps
        lons = np.where((lons > 180) | (lons < -180), (lons + 180) % 360 - 180, lons)
        longest = float(np.abs(np.diff(lons)).max(initial=0.0))
    if turns == 0 and longest < 180:
        return _simple_footprint(lons, lats, precision)
    # Only a ring that turns around the Earth encloses a pole; one that merely touches
    # ±90° (a geographic grid's top row) does not, whatever the pole's pixel position.
    north, south = poles() if turns != 0 and poles is not None else (False, False)
    ring = Polygon(zip(lons.tolist(), lats.tolist(), strict=True))
    fixed = antimeridian.fix_polygon(
        ring,
        force_north_pole=north,
        force_south_pole=south,
        fix_winding=True,
        great_circle=False,
    )
    west, south, east, north = antimeridian.bbox(fixed)
    return simplified_geojson(fixed, precision), _outward(west, south, east, north, precision)


def _to_wgs84(crs: CRS, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    try:
        lons, lats = rasterio.warp.transform(crs, _WGS84, xs.tolist(), ys.tolist())
    except _TRANSFORM_ERRORS as exc:
        raise FootprintError(f"the CRS cannot be transformed to WGS84: {_gdal_reason(exc)}") from None
    lons_a, lats_a = np.asarray(lons, dtype=float), np.asarray(lats, dtype=float)
    if not (np.isfinite(lons_a).all() and np.isfinite(lats_a).all()):
        raise FootprintError("the CRS cannot be transformed to WGS84 (non-finite coordinates)")
    return lons_a, lats_a


def unwrap_longitudes(lons: np.ndarray) -> np.ndarray:
    """Longitudes along a ring without jumps of 360°: each step is taken the short way.

    A ring that returns to its start unwrapped spans the longitudes it covers; one that
    ends a whole turn away goes around a pole.
    """
    steps = np.diff(lons)
    if np.abs(steps).max(initial=0.0) <= 180.0:
        return lons
    turns = np.round((((steps + 180.0) % 360.0 - 180.0) - steps) / 360.0)
    # Whole turns added to the original values, so coordinates that need none stay exact.
    return lons + 360.0 * np.concatenate(([0.0], np.cumsum(turns)))


def _span(lons: np.ndarray) -> float:
    unwrapped = unwrap_longitudes(lons)
    return float(unwrapped.max() - unwrapped.min())


def _band_footprint(
    lons: np.ndarray, lats: np.ndarray, precision: int
) -> tuple[dict[str, Any], tuple[float, float, float, float]]:
    """A grid covering every longitude: its unwrapped outline folded into -180..180."""
    outline_polygon = Polygon(zip(lons.tolist(), lats.tolist(), strict=True))
    if not outline_polygon.is_valid:
        outline_polygon = shapely.make_valid(outline_polygon)
    first = math.floor((float(lons.min()) + 180.0) / 360.0)
    last = math.floor((float(lons.max()) + 180.0) / 360.0)
    pieces = [
        part
        for turn in range(first, last + 1)
        for part in shapely.get_parts(shapely.intersection(translate(outline_polygon, xoff=-360.0 * turn), _WORLD))
        if part.geom_type == "Polygon" and part.area > 0
    ]
    merged = shapely.union_all(pieces)
    parts = [orient(part, 1.0) for part in shapely.get_parts(merged)]
    merged = parts[0] if len(parts) == 1 else MultiPolygon(parts)
    bbox = _outward(-180.0, float(lats.min()), 180.0, float(lats.max()), precision)
    return simplified_geojson(merged, precision), bbox


def _simple_footprint(
    lons: np.ndarray, lats: np.ndarray, precision: int
) -> tuple[dict[str, Any], tuple[float, float, float, float]]:
    """The common case: no antimeridian crossing, no pole. A counter-clockwise ring
    (RFC 7946) and its min/max bbox; this runs once per file."""
    signed_area = float(np.dot(lons[:-1], lats[1:]) - np.dot(lons[1:], lats[:-1]))
    if signed_area < 0:
        lons, lats = lons[::-1], lats[::-1]
    ring = np.column_stack((lons, lats))
    coords = shapely.get_coordinates(_simplify(shapely.polygons(ring), precision))
    if len(coords) < 4:  # a degenerate outline (a single row of pixels at a pole): keep it as it is
        coords = ring
    bbox = _outward(float(lons.min()), float(lats.min()), float(lons.max()), float(lats.max()), precision)
    return {"type": "Polygon", "coordinates": [(np.round(coords, precision) + 0.0).tolist()]}, bbox


def _tolerance(precision: int) -> float:
    """How far a dropped vertex may lie from the simplified outline: what rounding moves it."""
    return 0.5 * 10.0**-precision


def _simplify(geometry: BaseGeometry, precision: int) -> BaseGeometry:
    """Plain Douglas-Peucker, which is cheap; the topology-preserving variant only where
    the plain one broke a ring (outlines thinner than the tolerance)."""
    tolerance = _tolerance(precision)
    simple = shapely.simplify(geometry, tolerance, preserve_topology=False)
    if shapely.is_valid(simple) and not simple.is_empty:
        return simple
    return shapely.simplify(geometry, tolerance, preserve_topology=True)


def simplified_geojson(geometry: BaseGeometry, precision: int) -> dict[str, Any]:
    """GeoJSON of a lon/lat footprint without the vertices that add nothing, rounded.

    Douglas-Peucker before rounding: every dropped vertex lies within
    half a unit of ``precision`` of the simplified outline, which is what rounding moves a
    coordinate anyway. An axis-aligned geographic grid keeps its four corners; a projected
    one keeps the curvature its edges have in lon/lat.
    """
    simple = _simplify(geometry, precision)
    if simple.is_empty or simple.geom_type not in ("Polygon", "MultiPolygon"):
        simple = geometry
    return round_geometry(mapping(simple), precision)


def geometry_bbox(geometry: dict[str, Any], precision: int) -> tuple[float, float, float, float]:
    """RFC 7946 bbox (west > east across the antimeridian), rounded outward."""
    west, south, east, north = antimeridian.bbox(shape(geometry))
    return _outward(west, south, east, north, precision)


def round_geometry(geometry: dict[str, Any], precision: int) -> dict[str, Any]:
    def ring(coords: Sequence[Sequence[float]]) -> list[list[float]]:
        return [[round(x, precision) + 0.0, round(y, precision) + 0.0] for x, y, *_ in coords]

    if geometry["type"] == "Polygon":
        return {"type": "Polygon", "coordinates": [ring(r) for r in geometry["coordinates"]]}
    return {
        "type": "MultiPolygon",
        "coordinates": [[ring(r) for r in poly] for poly in geometry["coordinates"]],
    }


def _outward(west: float, south: float, east: float, north: float, precision: int) -> tuple[float, float, float, float]:
    """Round a bbox outward so it always contains the footprint."""
    f = 10.0**precision
    return (
        max(-180.0, math.floor(west * f) / f),
        max(-90.0, math.floor(south * f) / f),
        min(180.0, math.ceil(east * f) / f),
        min(90.0, math.ceil(north * f) / f),
    )


# -- bands ---------------------------------------------------------------------------


def _bands(src: rasterio.DatasetReader, grid: Grid | None, statistics: Statistics) -> tuple[Band, ...]:
    stats = band_statistics(src, statistics) if statistics != "off" else [None] * src.count
    colors = src.colorinterp
    out = []
    for i in range(src.count):
        color = colors[i] if i < len(colors) else None
        out.append(
            Band(
                data_type=_STAC_DTYPES.get(src.dtypes[i], src.dtypes[i]),
                nodata=src.nodatavals[i],
                unit=src.units[i] or None,
                description=src.descriptions[i] or None,
                scale=float(src.scales[i]) if src.scales[i] is not None else 1.0,
                offset=float(src.offsets[i]) if src.offsets[i] is not None else 0.0,
                color=color.name if color not in (None, ColorInterp.undefined) else None,
                statistics=stats[i],
            )
        )
    return tuple(out)


def band_statistics(src: rasterio.DatasetReader, mode: Statistics) -> list[BandStatistics | None]:
    """Finite statistics per band; approx reads an overview-sized decimation of the file."""
    out_shape = None
    if mode == "approx":
        longest = max(src.width, src.height)
        if longest > _APPROX_STATS_SIZE:
            factor = longest / _APPROX_STATS_SIZE
            out_shape = (src.count, max(1, round(src.height / factor)), max(1, round(src.width / factor)))
    data = src.read(masked=True, out_shape=out_shape, resampling=Resampling.nearest)
    result: list[BandStatistics | None] = []
    for band in data:
        values = np.ma.masked_invalid(band.astype("float64")) if band.dtype.kind in "fc" else band
        valid = values.compressed().astype("float64")
        total = band.size or 1
        if valid.size == 0:
            result.append(None)
            continue
        result.append(
            BandStatistics(
                minimum=float(valid.min()),
                maximum=float(valid.max()),
                mean=float(valid.mean()),
                stddev=float(valid.std()),
                valid_percent=round(100.0 * valid.size / total, 4),
            )
        )
    return result


# -- media type ----------------------------------------------------------------------


def media_type(src: rasterio.DatasetReader, *, georeferenced: bool) -> str:
    """The most specific registered media type; COG only when the layout really is one."""
    if src.driver == "GTiff":
        if not georeferenced:
            return PLAIN_TIFF
        return COG if is_cog(src) else GEOTIFF
    return _MEDIA_TYPES.get(src.driver, "application/octet-stream")


def is_cog(src: rasterio.DatasetReader) -> bool:
    """COG layout (which GDAL only writes tiled), with overviews wherever the image is
    larger than one block. Avoids ``src.profile``, which costs more than the open."""
    if src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT", "").upper() != "COG":
        return False
    block_h, block_w = src.block_shapes[0]
    if block_w >= src.width and src.height > block_h:
        return False  # striped
    needs_overviews = src.width > block_w or src.height > block_h
    return not needs_overviews or bool(src.overviews(1))


# -- thumbnails and checksums --------------------------------------------------------


def render_thumbnail(path: Path, max_size: int = 256) -> bytes:
    """A PNG no larger than ``max_size`` px, true colour when there are three or more bands."""
    from rasterio.io import MemoryFile

    try:
        with rasterio.Env(**GDAL_OPEN_OPTIONS), rasterio.open(path) as src:
            scale = max(src.width, src.height) / max_size
            height = max(1, round(src.height / scale)) if scale > 1 else src.height
            width = max(1, round(src.width / scale)) if scale > 1 else src.width
            indexes = _display_bands(src)
            data = src.read(indexes, out_shape=(len(indexes), height, width), masked=True)
    except (rasterio.errors.RasterioError, OSError) as exc:
        raise UnreadableRaster(path, _gdal_reason(exc)) from None
    rgb, alpha = _stretch(data)
    with MemoryFile() as mem:
        with mem.open(driver="PNG", width=width, height=height, count=rgb.shape[0] + 1, dtype="uint8") as dst:
            dst.write(rgb, indexes=list(range(1, rgb.shape[0] + 1)))
            dst.write(alpha, indexes=rgb.shape[0] + 1)
        return mem.read()


def _display_bands(src: rasterio.DatasetReader) -> list[int]:
    if src.count < 3:
        return [1]
    order = {ColorInterp.red: 0, ColorInterp.green: 1, ColorInterp.blue: 2}
    found = {order[c]: i + 1 for i, c in enumerate(src.colorinterp) if c in order}
    if len(found) == 3:
        return [found[0], found[1], found[2]]
    return [1, 2, 3]


def _stretch(data: np.ma.MaskedArray) -> tuple[np.ndarray, np.ndarray]:
    """2–98 % stretch to 8 bits, with an alpha band where any band is nodata."""
    values = np.ma.masked_invalid(data.astype("float64"))
    mask = np.ma.getmaskarray(values).any(axis=0)
    out = np.zeros(values.shape, dtype="uint8")
    for i, band in enumerate(values):
        valid = band.compressed()
        if valid.size == 0:
            continue
        low, high = np.percentile(valid, [2, 98])
        span = (high - low) or 1.0
        out[i] = np.clip((band.filled(low) - low) / span * 255, 0, 255).astype("uint8")
    alpha = np.where(mask, 0, 255).astype("uint8")
    return out, alpha


def file_checksum(path: Path) -> str:
    """Multihash (sha2-256) of the file, as the file extension expects."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "1220" + digest.hexdigest()


def _with_checksum(facts: RasterFacts) -> RasterFacts:
    from dataclasses import replace

    try:
        return replace(facts, checksum=file_checksum(facts.path))
    except OSError as exc:
        raise UnreadableRaster(facts.path, f"cannot read for checksum: {exc.strerror}") from None
