"""Extents and summaries: which Item fields feed them, and how aggregates combine.

Pure functions. The state index stores the per-Item values these return and answers
MIN/MAX/DISTINCT over indexed columns; nothing here re-reads Item JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "DEFAULT_SUMMARIES",
    "ItemIndex",
    "MAX_DISTINCT",
    "RANGE_FIELDS",
    "SET_FIELDS",
    "aggregate",
    "datetime_to_str",
    "extent_document",
    "index_item",
    "summaries_document",
]

DEFAULT_SUMMARIES: tuple[str, ...] = (
    "proj:code",
    "gsd",
    "raster:spatial_resolution",
    "data_type",
    "platform",
    "constellation",
    "instruments",
)
SET_FIELDS = ("proj:code", "data_type", "platform", "constellation", "instruments")
RANGE_FIELDS = {"gsd": "gsd", "raster:spatial_resolution": "resolution"}
MAX_DISTINCT = 25


@dataclass(frozen=True, slots=True)
class ItemIndex:
    """The columns of one Item that extents and summaries are computed from."""

    xkind: str
    bbox: tuple[float, float, float, float] | None
    start_us: int
    end_us: int
    gsd: float | None
    resolution: float | None
    values: dict[str, list[str]]


def parse_datetime(value: str) -> datetime:
    """An RFC 3339 timestamp; the standard library's parser first, dateutil's (what
    pystac uses) for the spellings it does not know (more than six decimals)."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        import dateutil.parser

        return dateutil.parser.isoparse(value)


def datetime_to_str(moment: datetime) -> str:
    """RFC 3339 as STAC writes it (pystac's spelling): ``Z`` for UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    text = moment.isoformat()
    return f"{text[:-6]}Z" if text.endswith("+00:00") else text


def to_us(value: str) -> int:
    """Microseconds since the epoch: exact ordering whatever the RFC 3339 spelling."""
    parsed = parse_datetime(value)
    delta = parsed - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=value)
    return datetime_to_str(moment)


def index_item(doc: Mapping[str, Any]) -> ItemIndex:
    """What the state index keeps of an Item for extents and summaries."""
    props = doc["properties"]
    bbox = tuple(doc["bbox"][:4]) if doc.get("bbox") else None
    if bbox is None:
        xkind = "u"
    elif bbox[0] > bbox[2]:
        xkind = "c"
    else:
        xkind = "e" if (bbox[0] + bbox[2]) / 2 >= 0 else "w"
    start = props.get("start_datetime") or props["datetime"]
    end = props.get("end_datetime") or props["datetime"]
    data_assets = [a for a in doc.get("assets", {}).values() if "data" in a.get("roles", ())]
    codes = {props["proj:code"]} if props.get("proj:code") else set()
    codes |= {a["proj:code"] for a in data_assets if a.get("proj:code")}
    bands = [b for a in data_assets for b in a.get("bands", ())]
    legacy = [b for a in data_assets for b in a.get("raster:bands", ())]
    resolutions = [b["raster:spatial_resolution"] for b in bands if "raster:spatial_resolution" in b]
    resolutions += [b["spatial_resolution"] for b in legacy if "spatial_resolution" in b]
    values = {
        "proj:code": sorted(codes),
        "data_type": sorted({b["data_type"] for b in bands if "data_type" in b}),
        "platform": [props["platform"]] if props.get("platform") else [],
        "constellation": [props["constellation"]] if props.get("constellation") else [],
        "instruments": sorted(set(props.get("instruments") or ())),
    }
    return ItemIndex(
        xkind=xkind,
        bbox=bbox,  # type: ignore[arg-type]
        start_us=to_us(start),
        end_us=to_us(end),
        gsd=props.get("gsd"),
        resolution=min(resolutions) if resolutions else None,
        values={k: v for k, v in values.items() if v},
    )


def spatial_extent(agg: Mapping[str, Any]) -> list[float] | None:
    """One bbox containing every Item; west > east when the union crosses the antimeridian.

    Normal Items are split by which hemisphere their centre lies in, so that a
    collection straddling ±180° gets a narrow wrapped box instead of −180..180.
    """
    south, north = agg["south"], agg["north"]
    if south is None:
        return None
    normal_west = _pick(min, agg["e_west"], agg["w_west"])
    normal_east = _pick(max, agg["e_east"], agg["w_east"])
    if agg["c_west"] is None:
        return [normal_west, south, normal_east, north]
    west = _pick(min, agg["c_west"], agg["e_west"])
    east = _pick(max, agg["c_east"], agg["w_east"])
    if west <= east:
        return [-180.0, south, 180.0, north]
    return [west, south, east, north]


def _pick(fn: Callable[..., float], *values: float | None) -> float:
    present = [v for v in values if v is not None]
    return fn(present) if present else math.nan


def aggregate(indexes: list[ItemIndex]) -> dict[str, Any]:
    """The same aggregates the state index computes in SQL, from Items in memory."""

    def agg(fn: Callable[..., Any], values: list[Any]) -> Any:
        return fn(values) if values else None

    out: dict[str, Any] = {}
    for kind in ("e", "w", "c"):
        boxes = [i.bbox for i in indexes if i.xkind == kind and i.bbox]
        out[f"{kind}_west"] = agg(min, [b[0] for b in boxes])
        out[f"{kind}_east"] = agg(max, [b[2] for b in boxes])
    located = [i.bbox for i in indexes if i.bbox]
    out["south"] = agg(min, [b[1] for b in located])
    out["north"] = agg(max, [b[3] for b in located])
    out["start_us"] = agg(min, [i.start_us for i in indexes])
    out["end_us"] = agg(max, [i.end_us for i in indexes])
    return out


def extent_document(agg: Mapping[str, Any]) -> dict[str, Any]:
    """The STAC extent object; an all-unlocated collection says whole-world rather than lie."""
    bbox = spatial_extent(agg)
    return {
        "spatial": {"bbox": [bbox if bbox is not None else [-180.0, -90.0, 180.0, 90.0]]},
        "temporal": {"interval": [[from_us(agg["start_us"]), from_us(agg["end_us"])]]},
    }


def summaries_document(
    fields: tuple[str, ...],
    ranges: Mapping[str, tuple[float, float] | None],
    distinct: Mapping[str, list[str]],
) -> dict[str, Any]:
    """Ranges for numbers, sets for discrete values while they stay few (≤ 25)."""
    out: dict[str, Any] = {}
    for field in fields:
        if field in RANGE_FIELDS:
            found = ranges.get(field)
            if found is not None:
                out[field] = {"minimum": found[0], "maximum": found[1]}
        elif field in SET_FIELDS:
            values = distinct.get(field) or []
            if values and len(values) <= MAX_DISTINCT:
                out[field] = values
    return out
