"""Raster facts + rules → a STAC 1.1 Item (or a Rejection saying why not).

``build`` is what every worker runs: a pure function of the files on disk and the
rules, with no shared state, so it can run on any thread and be tested alone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from shapely.geometry import mapping, shape
from shapely.ops import unary_union

from stacwatchd import __version__
from stacwatchd.errors import BadId, NoDatetime, StacwatchdError, UnlocatedRaster, UnreadableRaster
from stacwatchd.model.datetimes import Timing, describe_rules, find_timing
from stacwatchd.model.raster import (
    Band,
    RasterFacts,
    ReadOptions,
    geometry_bbox,
    read_facts,
    render_thumbnail,
    round_geometry,
    simplified_geojson,
)
from stacwatchd.model.results import BuiltItem, Rejection, Rules, copy_item
from stacwatchd.model.sources import Sources, sidecar_media_type, signature_of, sources_for
from stacwatchd.stac.layout import path_to_href
from stacwatchd.stac.names import FILE_V2, PROJECTION_V1, PROJECTION_V2, RASTER_V1, RASTER_V2, STAC_VERSION, THUMBNAIL_FILE
from stacwatchd.stac.summaries import datetime_to_str

if TYPE_CHECKING:
    from stacwatchd.config import ItemRules

__all__ = ["BuiltItem", "Rejection", "Rules", "build", "build_from_sources", "item_to_dict", "sanitize_id"]

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def build(path: Path, rules: Rules, *, now: datetime | None = None) -> BuiltItem | Rejection:
    """The Item that ``path`` (and the files grouped with it) makes, or why there is none."""
    path = path.absolute()
    signature = signature_of(path)
    try:
        sources = sources_for(path, rules.items, rules.is_data)
        return build_from_sources(sources, rules, now=now or datetime.now(UTC))
    except StacwatchdError as error:
        return Rejection.from_error(error, path, signature)


def build_from_sources(sources: Sources, rules: Rules, *, now: datetime) -> BuiltItem:
    """Assemble an Item from already-grouped sources; raises StacwatchdError subclasses."""
    options = ReadOptions(
        precision=rules.items.precision,
        densify=rules.items.densify,
        statistics=rules.items.statistics,
        checksum=rules.items.checksum,
    )
    signatures = tuple((p, signature_of(p)) for p in sources.paths)
    facts = tuple(read_facts(p, options) for _, p in sources.data)
    primary = facts[0]
    located = _check_location(facts, rules)
    timing = find_timing(
        rules.items.datetime,
        relative_path=_relative(primary.path, rules.root),
        tags=primary.tags,
        mtime_ns=primary.mtime_ns,
    )
    if timing is None:
        raise NoDatetime(primary.path, f"no datetime rule matched; tried: {describe_rules(rules.items.datetime)}")
    item_id = make_id(sources, rules)
    geometry, bbox = _union_footprint(facts, rules.items.precision) if located else (None, None)
    properties = _properties(timing, rules, now)
    common = _common_projection(facts, rules.items.legacy_fields) if located else {}
    properties.update(common)
    properties.update(common_data_values(facts))
    properties["datetime"] = datetime_to_str(timing.datetime) if timing.datetime is not None else None
    assets = {key: _data_asset(fact, rules, located, exclude=common) for (key, _), fact in zip(sources.data, facts, strict=True)}
    for key, sidecar in sources.metadata:
        assets[key] = _metadata_asset(sidecar, rules)
    links: list[dict[str, Any]] = []
    thumbnail = None
    if rules.items.thumbnail:
        thumbnail = render_thumbnail(primary.path)
        assets["thumbnail"] = {"href": f"./{THUMBNAIL_FILE}", "type": "image/png", "title": "Thumbnail", "roles": ["thumbnail"]}
        links.append({"rel": "preview", "href": f"./{THUMBNAIL_FILE}", "type": "image/png", "title": "Thumbnail"})
    links.append(
        {
            "rel": "via",
            "href": asset_href(primary.path, rules),
            "type": primary.media_type,
            "title": f"Source file {primary.path.name}",
        }
    )
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": _extensions(rules.items, located, facts),
        "id": item_id,
        "geometry": geometry,
    }
    if geometry is not None:
        item["bbox"] = list(bbox)  # type: ignore[arg-type]
    item["properties"] = properties
    item["links"] = links
    item["assets"] = assets
    return BuiltItem(
        item=item,
        sources=sources,
        facts=facts,
        timing=timing,
        collection_id=rules.collection_id,
        signatures=tuple((p, sig) for p, sig in signatures if sig is not None),
        thumbnail=thumbnail,
    )


def _relative(path: Path, root: Path) -> PurePath:
    try:
        return path.relative_to(root)
    except ValueError:
        return PurePath(path.name)


def _check_location(facts: Sequence[RasterFacts], rules: Rules) -> bool:
    unlocated = [f for f in facts if not f.located]
    if not unlocated:
        return True
    if len(unlocated) < len(facts):
        raise UnlocatedRaster(unlocated[0].path, f"{unlocated[0].unlocated_reason}, while other files of its Item are located")
    if rules.items.unlocated == "reject":
        raise UnlocatedRaster(
            unlocated[0].path,
            f'{unlocated[0].unlocated_reason} (set unlocated = "null-geometry" to catalog it without a location)',
        )
    return False


def make_id(sources: Sources, rules: Rules) -> str:
    """Deterministic id from the configured template; unsafe characters become ``_``."""
    primary = sources.primary
    values = {
        "stem": sources.key,
        "name": primary.name,
        "parent": primary.parent.name,
        "collection": rules.collection_id,
        **dict(sources.groups),
    }
    try:
        raw = rules.items.id_template.format_map(values)
    except KeyError as exc:
        raise BadId(primary, f"id_template refers to {{{exc.args[0]}}}, which this file does not provide") from None
    item_id = sanitize_id(raw)
    if not item_id:
        raise BadId(primary, "the id template produced an empty id")
    return item_id


def sanitize_id(raw: str) -> str:
    """Characters other than ``A–Z a–z 0–9 _ - .`` become ``_``; no leading dot."""
    return re.sub(r"^\.+", "_", _ID_UNSAFE.sub("_", raw))


def asset_href(path: Path, rules: Rules) -> str:
    """A percent-encoded URL under ``asset_href_base``, else the absolute local path.

    Local paths are made relative (and percent-encoded) by the catalog writer, which is
    the only place that knows where the Item JSON lives.
    """
    base = rules.items.asset_href_base
    if base:
        return base.rstrip("/") + "/" + path_to_href(_relative(path, rules.root).as_posix())
    return path.as_posix()


def _properties(timing: Timing, rules: Rules, now: datetime) -> dict[str, Any]:
    props: dict[str, Any] = {}
    collection = rules.collection
    if collection.platform:
        props["platform"] = collection.platform
    if collection.constellation:
        props["constellation"] = collection.constellation
    if collection.instruments:
        props["instruments"] = list(collection.instruments)
    if collection.gsd is not None:
        props["gsd"] = collection.gsd
    if collection.keywords:
        props["keywords"] = list(collection.keywords)
    if collection.license and collection.license != "other":
        props["license"] = collection.license
    if collection.providers:
        props["providers"] = [_provider(p) for p in collection.providers]
    stamp = datetime_to_str(now.replace(microsecond=0))
    props["created"] = stamp
    props["updated"] = stamp
    if timing.source != "filename":
        props["stacwatchd:datetime_source"] = timing.source
    props["stacwatchd:version"] = __version__
    if timing.start is not None:
        props["start_datetime"] = datetime_to_str(timing.start)
    if timing.end is not None:
        props["end_datetime"] = datetime_to_str(timing.end)
    return props


def _provider(provider: Any) -> dict[str, Any]:
    """A provider as STAC JSON, from its configuration model or that model's plain form."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(provider).items() if v is not None}


def _extensions(rules: ItemRules, located: bool, facts: Sequence[RasterFacts]) -> list[str]:
    out: list[str] = []
    if located:
        out.append(PROJECTION_V1 if rules.legacy_fields else PROJECTION_V2)
    if rules.legacy_fields:
        out.append(RASTER_V1)
    elif any(_raster_fields(b, f) for f in facts for b in f.bands):
        out.append(RASTER_V2)
    out.append(FILE_V2)
    return out


def projection_fields(fact: RasterFacts, legacy: bool) -> dict[str, Any]:
    """Projection extension fields of one file; ``proj:code`` only for an exact match."""
    grid = fact.grid
    assert grid is not None
    fields: dict[str, Any] = {"proj:code": grid.code}
    if legacy:
        fields["proj:epsg"] = grid.epsg
    if grid.code is None:
        fields["proj:wkt2"] = grid.wkt2
    fields["proj:bbox"] = [_num(v) for v in grid.bbox]
    fields["proj:shape"] = list(grid.shape)
    if grid.transform is not None:
        fields["proj:transform"] = [_num(v) for v in grid.transform]
    return fields


def _common_projection(facts: Sequence[RasterFacts], legacy: bool) -> dict[str, Any]:
    """Projection fields that every data asset shares belong on the Item."""
    per_asset = [projection_fields(f, legacy) for f in facts]
    first = per_asset[0]
    return {k: v for k, v in first.items() if all(k in other and other[k] == v for other in per_asset[1:])}


def common_data_values(facts: Sequence[RasterFacts]) -> dict[str, Any]:
    """``data_type`` on the Item when every band of every data file has the same one.

    STAC 1.1 allows it there; PgSTAC filters only read Item properties, so this is what
    makes ``data_type`` queryable.
    """
    types = {band.data_type for fact in facts for band in fact.bands}
    return {"data_type": types.pop()} if len(types) == 1 else {}


def _data_asset(fact: RasterFacts, rules: Rules, located: bool, exclude: Mapping[str, Any]) -> dict[str, Any]:
    asset: dict[str, Any] = {
        "href": asset_href(fact.path, rules),
        "type": fact.media_type,
        "title": fact.path.name,
        "file:size": fact.size,
    }
    if fact.checksum:
        asset["file:checksum"] = fact.checksum
    if located:
        asset.update({k: v for k, v in projection_fields(fact, rules.items.legacy_fields).items() if k not in exclude})
    legacy = rules.items.legacy_fields
    asset["bands"] = [_band(b, fact, legacy) for b in fact.bands]
    if legacy:
        asset["raster:bands"] = [_legacy_band(b, fact) for b in fact.bands]
    asset["roles"] = ["data"]
    return asset


def _metadata_asset(path: Path, rules: Rules) -> dict[str, Any]:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UnreadableRaster(path, f"cannot stat sidecar: {exc.strerror}") from None
    return {
        "href": asset_href(path, rules),
        "type": sidecar_media_type(path),
        "title": path.name,
        "file:size": size,
        "roles": ["metadata"],
    }


def nodata_value(value: float | None) -> float | int | str | None:
    """JSON form of a nodata value: NaN and infinities as the strings STAC defines."""
    if value is None:
        return None
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return _num(value)


def _num(value: float) -> float | int:
    """Integers stay integers in JSON (``0`` not ``0.0``) so readers see the file's value."""
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)


def _statistics(band: Band) -> dict[str, float] | None:
    stats = band.statistics
    if stats is None:
        return None
    values = {
        "minimum": stats.minimum,
        "maximum": stats.maximum,
        "mean": stats.mean,
        "stddev": stats.stddev,
        "valid_percent": stats.valid_percent,
    }
    return {k: _num(v) for k, v in values.items() if math.isfinite(v)}


def _raster_fields(band: Band, fact: RasterFacts) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if band.scale != 1.0:
        fields["scale"] = _num(band.scale)
    if band.offset != 0.0:
        fields["offset"] = _num(band.offset)
    if fact.grid is not None and fact.grid.resolution_m:
        fields["spatial_resolution"] = _num(round(fact.grid.resolution_m, 6))
    if fact.sampling:
        fields["sampling"] = fact.sampling
    return fields


def _band(band: Band, fact: RasterFacts, legacy: bool) -> dict[str, Any]:
    """A STAC 1.1 band; raster:* fields join it only where raster v2 is declared."""
    out: dict[str, Any] = {}
    if band.description:
        out["name"] = band.description
        out["description"] = band.description
    out["data_type"] = band.data_type
    if band.nodata is not None:
        out["nodata"] = nodata_value(band.nodata)
    if band.unit:
        out["unit"] = band.unit
    stats = _statistics(band)
    if stats:
        out["statistics"] = stats
    if not legacy:
        out.update({f"raster:{k}": v for k, v in _raster_fields(band, fact).items()})
    return out


def _legacy_band(band: Band, fact: RasterFacts) -> dict[str, Any]:
    """The raster v1.1 band that older loaders (odc-stac ≤ 0.5.2, stackstac) read."""
    out: dict[str, Any] = {"data_type": band.data_type}
    if band.nodata is not None:
        out["nodata"] = nodata_value(band.nodata)
    if band.unit:
        out["unit"] = band.unit
    out.update(_raster_fields(band, fact))
    stats = _statistics(band)
    if stats:
        out["statistics"] = stats
    return out


def _union_footprint(facts: Iterable[RasterFacts], precision: int) -> tuple[dict[str, Any], tuple[float, float, float, float]]:
    """One footprint covering every data asset (they usually coincide)."""
    located = [f for f in facts if f.geometry is not None and f.bbox is not None]
    if all(f.geometry == located[0].geometry for f in located):
        return located[0].geometry, located[0].bbox  # type: ignore[return-value]
    union = unary_union([shape(f.geometry) for f in located])
    return simplified_geojson(union, precision), geometry_bbox(round_geometry(mapping(union), precision), precision)


def item_to_dict(item: Mapping[str, Any]) -> dict[str, Any]:
    """The Item as JSON-ready data, hrefs exactly as built: a fresh copy the caller may change."""
    return copy_item(item)
