"""Helpers for testing code that catalogs rasters, in the spirit of ``structlog.testing``.

Everything here writes *real* rasters with rasterio/GDAL rather than mocks, because
the interesting failures of a cataloguer (odd CRSs, GCPs, nodata NaN, COG layout,
half-written files) only show up when GDAL actually reads the bytes.  All samples are
small so that tests, demos and benchmarks stay fast.
"""

from __future__ import annotations

import math
import os
import secrets
import struct
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import rasterio
import rasterio.shutil
import structlog.testing
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

__all__ = [
    "BROKEN_SAMPLES",
    "CUSTOM_LAEA",
    "DTYPES",
    "GOOD_SAMPLES",
    "NODATA_VARIANTS",
    "SAMPLE_DATETIME",
    "SAMPLE_STAMPS",
    "TAGS_DATETIME",
    "antimeridian",
    "capture_logs",
    "cog",
    "crs_without_epsg",
    "every_dtype",
    "affine_gcps",
    "geographic",
    "many_cogs",
    "multiband_rgb",
    "no_crs",
    "nodata_variants",
    "pixels",
    "polar_stereographic",
    "random_bytes",
    "rotated",
    "sample_set",
    "slow_write",
    "slow_write_in_thread",
    "striped",
    "truncated",
    "utm",
    "wait_until",
    "web_mercator",
    "with_gcps",
    "write_raster",
    "write_then_rename",
    "zero_bytes",
]

T = TypeVar("T")

#: Acquisition time encoded in the file names of the good files of :func:`sample_set`.
SAMPLE_DATETIME = datetime(2024, 5, 17, 10, 30, 0, tzinfo=UTC)
#: The stamp formats :func:`sample_set` cycles through, all meaning :data:`SAMPLE_DATETIME`
#: (the date-only ones mean its date).
SAMPLE_STAMPS: tuple[str, ...] = (
    "20240517T103000",
    "20240517",
    "2024-05-17",
    "2024-05-17T10:30:00Z",
)
#: Time stored as ``TIFFTAG_DATETIME`` in the ``timestamp_in_tags`` sample.
TAGS_DATETIME = datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)
#: Keys of :func:`sample_set` whose files GDAL cannot open or read.
BROKEN_SAMPLES = frozenset({"truncated", "random_bytes", "zero_bytes"})
#: Every data type the GTiff driver here can store.
DTYPES: tuple[str, ...] = (
    "uint8",
    "int8",
    "uint16",
    "int16",
    "uint32",
    "int32",
    "uint64",
    "int64",
    "float32",
    "float64",
    "complex64",
    "complex128",
)

_GEOGRAPHIC_ORIGIN = Affine(0.001, 0.0, 10.0, 0.0, -0.001, 50.0)
_PROJECTED_ORIGIN = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)
_TIFFTAG_DATETIME = "2023:01:02 03:04:05"
_MODEL_TIEPOINT_TAG = 33922
_TIFF_DOUBLE = 12


# ---------------------------------------------------------------------------
# Pixel data
# ---------------------------------------------------------------------------


def _value_range(dtype: np.dtype[Any]) -> tuple[float, float]:
    """Valid-pixel range that stays clear of the usual nodata values (0, -9999, extremes)."""
    if dtype.kind == "u":
        return 1.0, float(min(np.iinfo(dtype).max - 1, 250 if dtype.itemsize == 1 else 10000))
    if dtype.kind == "i":
        return (-100.0, 100.0) if dtype.itemsize == 1 else (-5000.0, 5000.0)
    return 0.0, 1000.0


def _nodata_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A corner triangle plus scattered pixels, so footprints and masks are non-trivial."""
    rows, cols = np.mgrid[0:height, 0:width]
    corner = rows + cols < max(1, min(height, width) // 4)
    return corner | (rng.random((height, width)) < 0.02)


def _check_nodata(dtype: np.dtype[Any], nodata: float) -> None:
    """Refuse nodata values that the data type cannot hold, rather than writing garbage."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not math.isfinite(nodata) or nodata != int(nodata) or not info.min <= nodata <= info.max:
            raise ValueError(f"nodata {nodata!r} cannot be stored as {dtype}")


def pixels(
    count: int,
    height: int,
    width: int,
    dtype: str,
    *,
    seed: int = 0,
    nodata: float | None = None,
    noise: bool = True,
) -> np.ndarray:
    """Deterministic ``(count, height, width)`` data: a ramp plus seeded noise.

    The ramp gives thumbnails and overviews something to show; the noise makes the
    statistics non-trivial.  When ``nodata`` is given some pixels carry it (NaN and
    ±inf included) and no valid pixel accidentally equals it.
    """
    kind = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    ramp = (rows + cols) / max(height + width - 2, 1)
    lo, hi = _value_range(kind)
    bands = []
    for band in range(count):
        level = (ramp + band / max(count, 1)) % 1.0
        if noise:
            level = 0.8 * level + 0.2 * rng.random((height, width))
        bands.append(lo + level * (hi - lo))
    values = np.stack(bands)
    if kind.kind == "c":
        data = (values + 1j * values[:, ::-1, ::-1]).astype(kind)
    elif kind.kind in "iu":
        data = np.round(values).astype(kind)
    else:
        data = values.astype(kind)
    if nodata is not None:
        _check_nodata(kind, nodata)
        mask = np.broadcast_to(_nodata_mask(height, width, rng), data.shape)
        if not math.isnan(nodata):
            clash = (data == nodata) & ~mask
            data[clash] = lo if nodata != lo else hi
        data[mask] = nodata
    return data


# ---------------------------------------------------------------------------
# write_raster
# ---------------------------------------------------------------------------


def _blocksize(width: int, height: int) -> int:
    """Largest power-of-two tile (≤256, ≥16) that still leaves room for one overview."""
    size = 256
    while size > 16 and size >= max(width, height):
        size //= 2
    return size


def _georeferencing(
    crs: CRS | None,
    transform: Affine | None,
    bounds: tuple[float, float, float, float] | None,
    width: int,
    height: int,
) -> Affine | None:
    """Resolve transform/bounds/CRS into the geotransform to write (None: none at all)."""
    if transform is not None and bounds is not None:
        raise ValueError("give either transform or bounds, not both")
    if bounds is not None:
        west, south, east, north = bounds
        return Affine((east - west) / width, 0.0, west, 0.0, -(north - south) / height, north)
    if transform is not None:
        return transform
    if crs is None:
        return None
    return _GEOGRAPHIC_ORIGIN if crs.is_geographic else _PROJECTED_ORIGIN


def _color(value: ColorInterp | str) -> ColorInterp:
    return value if isinstance(value, ColorInterp) else ColorInterp[value.lower()]


def _decorate(
    ds: Any,
    *,
    tags: dict[str, str] | None,
    band_tags: Sequence[dict[str, str]] | None,
    scales: Sequence[float] | None,
    offsets: Sequence[float] | None,
    units: Sequence[str] | None,
    descriptions: Sequence[str] | None,
    colorinterp: Sequence[ColorInterp | str] | None,
    area_or_point: str | None,
    gcps: Sequence[GroundControlPoint] | None,
    gcps_crs: CRS | None,
) -> None:
    """Apply the optional metadata to an open writable dataset."""
    if gcps:
        ds.gcps = (list(gcps), gcps_crs)
    if tags:
        ds.update_tags(**tags)
    if area_or_point is not None:
        ds.update_tags(AREA_OR_POINT=area_or_point)
    for index, band in enumerate(band_tags or (), start=1):
        ds.update_tags(index, **band)
    if scales is not None:
        ds.scales = list(scales)
    if offsets is not None:
        ds.offsets = list(offsets)
    if units is not None:
        ds.units = list(units)
    if descriptions is not None:
        ds.descriptions = list(descriptions)
    if colorinterp is not None:
        ds.colorinterp = [_color(value) for value in colorinterp]


def _overview_factors(width: int, height: int, blocksize: int) -> list[int]:
    """Power-of-two factors down to about one block, like GDAL's COG driver does."""
    factors = [2]
    while max(width, height) / factors[-1] > blocksize:
        factors.append(factors[-1] * 2)
    return factors


def write_raster(
    path: Path | str,
    *,
    width: int = 64,
    height: int = 64,
    count: int = 1,
    dtype: str = "uint8",
    crs: str | CRS | None = "EPSG:32633",
    transform: Affine | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    nodata: float | None = None,
    cog: bool = False,
    tiled: bool | None = None,
    gcps: Sequence[GroundControlPoint] | None = None,
    gcps_crs: str | CRS | None = None,
    tags: dict[str, str] | None = None,
    band_tags: Sequence[dict[str, str]] | None = None,
    scales: Sequence[float] | None = None,
    offsets: Sequence[float] | None = None,
    units: Sequence[str] | None = None,
    descriptions: Sequence[str] | None = None,
    colorinterp: Sequence[ColorInterp | str] | None = None,
    area_or_point: str | None = None,
    driver: str = "GTiff",
    seed: int = 0,
    overviews: bool | None = None,
    compress: str | None = None,
    blocksize: int | None = None,
) -> Path:
    """Write a small, deterministic, real raster and return its path.

    Defaults give a 64×64 striped uncompressed GeoTIFF in UTM 33N with 10 m pixels.
    ``bounds`` is a north-up alternative to ``transform``; with ``crs=None`` and no
    transform, bounds or GCPs the file carries no georeferencing at all.  ``gcps``
    replace the geotransform and are tagged with ``gcps_crs`` (default: ``crs``).
    ``cog=True`` goes through GDAL's COG driver, with a tile size chosen so that at
    least one overview exists; ``overviews=True`` adds internal overviews to a GTiff.
    Other drivers (PNG, JPEG, JP2OpenJPEG...) are written by CreateCopy from a GTiff,
    since most of them cannot create files directly.
    """
    path = Path(path)
    cog = cog or driver == "COG"
    if cog and driver not in ("GTiff", "COG"):
        raise ValueError(f"cog=True contradicts driver={driver!r}")
    if cog and tiled is False:
        raise ValueError("a COG is always tiled")
    if gcps and (transform is not None or bounds is not None):
        raise ValueError("GCPs replace the geotransform: give one or the other")
    crs_obj = CRS.from_user_input(crs) if crs is not None else None
    geotransform = None if gcps else _georeferencing(crs_obj, transform, bounds, width, height)
    tile = blocksize or _blocksize(width, height)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": dtype,
        "nodata": nodata,
        "crs": None if gcps else crs_obj,
        "transform": geotransform,
    }
    direct = driver == "GTiff" and not cog
    if direct and tiled:
        profile.update(tiled=True, blockxsize=tile, blockysize=tile)
    if direct and compress:
        profile["compress"] = compress
    if overviews and not (direct or cog):
        raise ValueError(f"overviews are only supported for GTiff and COG, not {driver!r}")
    data = pixels(count, height, width, dtype, seed=seed, nodata=nodata)
    extras = {
        "tags": tags,
        "band_tags": band_tags,
        "scales": scales,
        "offsets": offsets,
        "units": units,
        "descriptions": descriptions,
        "colorinterp": colorinterp,
        "area_or_point": area_or_point,
        "gcps": gcps,
        "gcps_crs": CRS.from_user_input(gcps_crs) if gcps_crs is not None else crs_obj,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        if direct:
            with rasterio.open(path, "w", **profile) as ds:
                ds.write(data)
                _decorate(ds, **extras)
                if overviews:
                    ds.build_overviews(_overview_factors(width, height, tile), Resampling.average)
            return path
        options: dict[str, Any] = {}
        if cog:
            options["blocksize"] = tile
            options["overviews"] = "NONE" if overviews is False else "AUTO"
            if compress:
                options["compress"] = compress
        with MemoryFile() as memory:
            with memory.open(**profile) as ds:
                ds.write(data)
                _decorate(ds, **extras)
            with memory.open() as src:
                rasterio.shutil.copy(src, path, driver="COG" if cog else driver, **options)
    return path


# ---------------------------------------------------------------------------
# Named samples
# ---------------------------------------------------------------------------


def cog(path: Path | str, **kw: Any) -> Path:
    """A 512×512 Cloud-Optimized GeoTIFF with 256-pixel tiles and one overview level."""
    kw = {"width": 512, "height": 512, "blocksize": 256, **kw}
    return write_raster(path, cog=True, **kw)


def striped(path: Path | str, **kw: Any) -> Path:
    """A plain striped (untiled), uncompressed GeoTIFF: the non-cloud-optimized case."""
    return write_raster(path, cog=False, tiled=False, **kw)


def geographic(path: Path | str, **kw: Any) -> Path:
    """EPSG:4326 with 0.001° pixels near 10°E 50°N: degrees instead of metres."""
    return write_raster(path, **{"crs": "EPSG:4326", **kw})


def utm(path: Path | str, **kw: Any) -> Path:
    """EPSG:32633 (UTM 33N) with 10 m pixels: the most ordinary projected case."""
    return write_raster(path, **{"crs": "EPSG:32633", **kw})


def web_mercator(path: Path | str, **kw: Any) -> Path:
    """EPSG:3857 with 10 m pixels near 10°E 50°N: the usual web-map projection."""
    x, y = 1113194.9, 6446275.8
    bounds = (x, y - 640.0, x + 640.0, y)
    return write_raster(path, **{"crs": "EPSG:3857", "bounds": bounds, **kw})


def polar_stereographic(path: Path | str, **kw: Any) -> Path:
    """EPSG:3031 covering the South Pole (±1,000 km), whose lon/lat footprint is degenerate."""
    bounds = (-1_000_000.0, -1_000_000.0, 1_000_000.0, 1_000_000.0)
    return write_raster(path, **{"crs": "EPSG:3031", "bounds": bounds, **kw})


#: A Lambert azimuthal equal-area CRS close to, but not equal to, EPSG:3035.
CUSTOM_LAEA = "+proj=laea +lat_0=52 +lon_0=10.5 +x_0=4321001 +y_0=3210001 +ellps=GRS80 +units=m +no_defs"


def crs_without_epsg(path: Path | str, **kw: Any) -> Path:
    """A custom LAEA CRS that no EPSG code matches, so code must cope with WKT/PROJJSON only."""
    transform = Affine(10.0, 0.0, 4321001.0, 0.0, -10.0, 3210001.0)
    return write_raster(path, **{"crs": CUSTOM_LAEA, "transform": transform, **kw})


def rotated(path: Path | str, **kw: Any) -> Path:
    """UTM 33N with a 15° rotated geotransform (non-zero b and d), so bbox != pixel grid."""
    transform = Affine.translation(500000.0, 5000000.0) @ Affine.rotation(15.0) @ Affine.scale(10.0, -10.0)
    return write_raster(path, **{"transform": transform, **kw})


def affine_gcps(transform: Affine, width: int, height: int, *, per_side: int = 3) -> list[GroundControlPoint]:
    """GCPs on a regular grid, lying exactly on ``transform``, so a fitted affine reproduces them."""
    points = []
    for i in range(per_side):
        for j in range(per_side):
            row = height * i / (per_side - 1)
            col = width * j / (per_side - 1)
            x, y = transform @ (col, row)
            points.append(GroundControlPoint(row=row, col=col, x=x, y=y, z=0.0, id=str(len(points) + 1)))
    return points


def with_gcps(path: Path | str, **kw: Any) -> Path:
    """Georeferenced only by nine lon/lat GCPs (no geotransform), like many SAR products."""
    width, height = kw.get("width", 64), kw.get("height", 64)
    gcps = affine_gcps(_GEOGRAPHIC_ORIGIN, width, height)
    return write_raster(path, **{"crs": None, "gcps": gcps, "gcps_crs": "EPSG:4326", **kw})


def antimeridian(path: Path | str, **kw: Any) -> Path:
    """UTM 60N over the Bering Sea: its lon/lat footprint crosses ±180° (lon ≈ 179.6..-179.3)."""
    bounds = (680_000.0, 5_760_000.0, 760_000.0, 5_840_000.0)
    return write_raster(path, **{"crs": "EPSG:32660", "bounds": bounds, **kw})


def no_crs(path: Path | str, **kw: Any) -> Path:
    """No CRS, no geotransform, no GCPs: a plain image that happens to be a TIFF."""
    return write_raster(path, **{"crs": None, **kw})


def multiband_rgb(path: Path | str, **kw: Any) -> Path:
    """Three uint8 bands interpreted as red, green, blue: the thumbnail-friendly case."""
    colors = ["red", "green", "blue"]
    return write_raster(path, **{"count": 3, "dtype": "uint8", "colorinterp": colors, **kw})


def _dtype_sample(path: Path, dtype: str) -> Path:
    return write_raster(path, dtype=dtype)


def every_dtype(directory: Path | str, *, suffix: str = "") -> dict[str, Path]:
    """One file per entry of :data:`DTYPES`, named ``dtype_<name><suffix>.tif``."""
    directory = Path(directory)
    return {dtype: _dtype_sample(directory / f"dtype_{dtype}{suffix}.tif", dtype) for dtype in DTYPES}


#: ``nodata_variants`` keys → (dtype, nodata).
NODATA_VARIANTS: dict[str, tuple[str, float | None]] = {
    "none": ("uint8", None),
    "zero": ("uint8", 0.0),
    "nan": ("float32", math.nan),
    "minus_9999": ("float32", -9999.0),
    "pos_inf": ("float32", math.inf),
    "neg_inf": ("float32", -math.inf),
}


def nodata_variants(directory: Path | str, *, suffix: str = "") -> dict[str, Path]:
    """One file per entry of :data:`NODATA_VARIANTS`, named ``nodata_<key><suffix>.tif``."""
    directory = Path(directory)
    return {
        key: write_raster(directory / f"nodata_{key}{suffix}.tif", dtype=dtype, nodata=nodata)
        for key, (dtype, nodata) in NODATA_VARIANTS.items()
    }


def truncated(path: Path | str) -> Path:
    """A valid 256×256 GeoTIFF cut in half: opens (header intact) but fails to read."""
    path = Path(path)
    write_raster(path, width=256, height=256)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    return path


def random_bytes(path: Path | str, size: int = 4096, seed: int = 0) -> Path:
    """Deterministic noise with a .tif name: GDAL recognizes no format in it."""
    path = Path(path)
    blob = bytearray(np.random.default_rng(seed).bytes(size))
    blob[:4] = b"junk"[: min(4, size)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(blob))
    return path


def zero_bytes(path: Path | str) -> Path:
    """An empty file, as left behind by a writer that created but never wrote it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


# ---------------------------------------------------------------------------
# sample_set
# ---------------------------------------------------------------------------

_GOOD_MAKERS: dict[str, Callable[[Path], Path]] = {
    "cog": cog,
    "striped": striped,
    "geographic": geographic,
    "utm": utm,
    "web_mercator": web_mercator,
    "polar_stereographic": polar_stereographic,
    "crs_without_epsg": crs_without_epsg,
    "rotated": rotated,
    "with_gcps": with_gcps,
    "antimeridian": antimeridian,
    "no_crs": no_crs,
    "multiband_rgb": multiband_rgb,
}


def too_deep_folder(parent: Path | str) -> Path:
    """A folder below ``parent`` whose path is longer than the system allows: nobody, root
    included, can open it by that path (made one level at a time, by descriptor)."""
    limit = os.pathconf(parent, "PC_PATH_MAX")
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    path = Path(parent)
    try:
        while len(os.fsencode(path)) <= limit:
            name = "d" * 250
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd, path = child, path / name
    finally:
        os.close(fd)
    return path


def _good_samples() -> dict[str, Callable[[Path], Path]]:
    """Every good sample keyed by name, dtype and nodata variants included."""
    makers = dict(_GOOD_MAKERS)
    for dtype in DTYPES:
        makers[f"dtype_{dtype}"] = lambda p, d=dtype: _dtype_sample(p, d)
    for key, (dtype, nodata) in NODATA_VARIANTS.items():
        makers[f"nodata_{key}"] = lambda p, d=dtype, n=nodata: write_raster(p, dtype=d, nodata=n)
    return makers


#: The kinds of the good files ``sample_set`` writes (readable, georeferenced or not).
GOOD_SAMPLES: tuple[str, ...] = tuple(_good_samples())


def sample_set(directory: Path | str) -> dict[str, Path]:
    """Write one file of every kind above into ``directory``, keyed by kind.

    Good files are named ``<kind>_<stamp>.tif`` with the stamp cycling through
    :data:`SAMPLE_STAMPS` (all meaning :data:`SAMPLE_DATETIME`);
    ``timestamp_in_tags.tif`` has only a ``TIFFTAG_DATETIME`` (:data:`TAGS_DATETIME`),
    ``no_date.tif`` has no date anywhere, and the :data:`BROKEN_SAMPLES` are
    ``truncated.tif``, ``random_bytes.tif`` and ``zero_bytes.tif``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for index, (kind, maker) in enumerate(_good_samples().items()):
        stamp = SAMPLE_STAMPS[index % len(SAMPLE_STAMPS)]
        written[kind] = maker(directory / f"{kind}_{stamp}.tif")
    written["timestamp_in_tags"] = write_raster(directory / "timestamp_in_tags.tif", tags={"TIFFTAG_DATETIME": _TIFFTAG_DATETIME})
    written["no_date"] = write_raster(directory / "no_date.tif")
    written["truncated"] = truncated(directory / "truncated.tif")
    written["random_bytes"] = random_bytes(directory / "random_bytes.tif")
    written["zero_bytes"] = zero_bytes(directory / "zero_bytes.tif")
    return written


# ---------------------------------------------------------------------------
# many_cogs
# ---------------------------------------------------------------------------


def _tiepoint_offset(blob: bytes) -> tuple[int, str]:
    """Byte offset of the ModelTiepoint doubles in a classic TIFF's first IFD, and byte order."""
    order = {b"II": "<", b"MM": ">"}[bytes(blob[:2])]
    if struct.unpack_from(order + "H", blob, 2)[0] != 42:
        raise ValueError("only classic (non-Big) TIFF is supported")
    (ifd,) = struct.unpack_from(order + "I", blob, 4)
    (entries,) = struct.unpack_from(order + "H", blob, ifd)
    for i in range(entries):
        tag, kind, count, value = struct.unpack_from(order + "HHII", blob, ifd + 2 + 12 * i)
        if tag == _MODEL_TIEPOINT_TAG and kind == _TIFF_DOUBLE and count == 6:
            return value, order
    raise ValueError("no single ModelTiepoint in the first IFD")


def _cog_template(size: int, dtype: str, crs: str | CRS, pixel_size: float) -> bytes:
    """One smooth (well-compressing) COG whose tiepoint will be patched per copy."""
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 1,
        "dtype": dtype,
        "crs": CRS.from_user_input(crs),
        "transform": Affine(pixel_size, 0.0, 0.0, 0.0, -pixel_size, 0.0),
    }
    with MemoryFile() as memory:
        with memory.open(**profile) as ds:
            ds.write(pixels(1, size, size, dtype, noise=False))
        with memory.open() as src, MemoryFile() as out:
            rasterio.shutil.copy(src, out.name, driver="COG", blocksize=_blocksize(size, size))
            return bytes(out.getbuffer())


def many_cogs(
    directory: Path | str,
    n: int,
    *,
    size: int = 256,
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC),
    span: timedelta = timedelta(days=1096),
    crs: str | CRS = "EPSG:32633",
    origin: tuple[float, float] = (500000.0, 5000000.0),
    pixel_size: float = 10.0,
    dtype: str = "uint8",
    prefix: str = "scene",
) -> list[Path]:
    """Write ``n`` genuine COGs fast, for benchmarks: ``<prefix>_000123_20240101T000000.tif``.

    GDAL builds a single template COG; each file is that template with its GeoTIFF
    tiepoint rewritten in place, which keeps the COG byte layout intact while giving
    every file its own tile on a non-overlapping grid east and south of ``origin``.
    Dates are spread evenly (whole seconds) over ``span`` from ``start``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    template = bytearray(_cog_template(size, dtype, crs, pixel_size))
    offset, order = _tiepoint_offset(template)
    pack = struct.Struct(order + "dd")
    columns = max(1, math.ceil(math.sqrt(n)))
    tile = size * pixel_size
    step = max(span / max(n, 1), timedelta(seconds=1))
    width = max(6, len(str(n - 1)))
    paths = []
    for i in range(n):
        x = origin[0] + (i % columns) * tile
        y = origin[1] - (i // columns) * tile
        pack.pack_into(template, offset + 24, x, y)
        when = (start + i * step).replace(microsecond=0)
        path = directory / f"{prefix}_{i:0{width}d}_{when:%Y%m%dT%H%M%S}.tif"
        path.write_bytes(template)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------
# Logs, waiting and writers
# ---------------------------------------------------------------------------


@contextmanager
def capture_logs(processors: Sequence[Any] = ()) -> Iterator[list[dict[str, Any]]]:
    """structlog's ``capture_logs``: yields the list that collects every event dict.

    Like the original it only sees loggers that are not cached, so configure
    ``cache_logger_on_first_use=False`` in tests.
    """
    with structlog.testing.capture_logs(processors=processors) as logs:
        yield logs


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "",
    *,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that.

    Tests of an asynchronous daemon should wait for an observable condition instead of
    sleeping a guessed amount.  Exceptions listed in ``ignore`` count as "not yet".
    Raises :class:`TimeoutError` (with ``message``) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = predicate()
        except ignore:
            pass
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            raise TimeoutError(message or f"condition not met within {timeout} s")
        time.sleep(interval)


def slow_write(src: Path | str, dst: Path | str, chunks: int, pause: float) -> Path:
    """Append ``src``'s bytes to ``dst`` in ``chunks`` flushed pieces, pausing in between.

    Simulates a slow pipeline writer so that a watcher sees a file that exists, grows
    and is not yet valid.  Run it in a thread to observe the daemon meanwhile.
    """
    blob = Path(src).read_bytes()
    dst = Path(dst)
    pieces = max(1, chunks)
    bounds = [len(blob) * i // pieces for i in range(pieces + 1)]
    with dst.open("ab") as out:
        for i in range(pieces):
            if i:
                time.sleep(pause)
            out.write(blob[bounds[i] : bounds[i + 1]])
            out.flush()
    return dst


def slow_write_in_thread(src: Path | str, dst: Path | str, chunks: int, pause: float) -> threading.Thread:
    """Start :func:`slow_write` in a daemon thread and return it (``join()`` to finish)."""
    thread = threading.Thread(target=slow_write, args=(src, dst, chunks, pause), daemon=True)
    thread.start()
    return thread


def write_then_rename(src: bytes | Path | str, dst: Path | str) -> Path:
    """Write to a hidden temp name beside ``dst``, then ``os.rename`` onto it.

    This is how rsync and careful pipelines publish files atomically: the watcher
    should see one complete file appear, never a partial one.
    """
    dst = Path(dst)
    blob = src if isinstance(src, bytes) else Path(src).read_bytes()
    temp = dst.with_name(f".{dst.name}.{secrets.token_hex(3)}")
    with temp.open("wb") as out:
        out.write(blob)
        out.flush()
        os.fsync(out.fileno())
    os.rename(temp, dst)
    return dst
