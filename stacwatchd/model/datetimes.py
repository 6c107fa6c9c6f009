"""Find an Item's time from its file name, its GDAL tags or (only when asked) its mtime.

Pure functions: name, tags and rules in, a ``Timing`` or ``None`` out. A rule that finds
nothing yields ``None`` so the next rule is tried; no rule ever falls back to "now".

A stamp that names a whole period means all of it when it bounds a range: an
``end_datetime`` of ``20240510`` is the end of that day (``2024-05-10T23:59:59Z``), a
``start_datetime``/``end_datetime`` of ``202401``/``202403`` runs from January 1st to the
last second of March, and date parts ``year`` + ``month`` without ``day`` (or ``year``
alone) make the Item cover that whole month (or year).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import PurePath
from typing import TYPE_CHECKING

from stacwatchd.defaults import DEFAULT_FILENAME_PATTERNS

if TYPE_CHECKING:
    from stacwatchd.config import DatetimeRule

__all__ = ["Timing", "describe_rules", "find_timing"]


@dataclass(frozen=True, slots=True)
class Timing:
    """A nominal datetime, or a range, and which rule produced it."""

    datetime: datetime | None
    start: datetime | None = None
    end: datetime | None = None
    source: str = "filename"

    @property
    def first(self) -> datetime:
        """The instant that places the Item in time partitions."""
        value = self.datetime or self.start
        assert value is not None
        return value

    @property
    def last(self) -> datetime:
        value = self.end or self.datetime
        assert value is not None
        return value


def find_timing(
    rules: Sequence[DatetimeRule],
    *,
    relative_path: PurePath,
    tags: Mapping[str, str],
    mtime_ns: int | None,
) -> Timing | None:
    """The first rule, in order, that yields a time."""
    for rule in rules:
        timing = _apply(rule, relative_path, tags, mtime_ns)
        if timing is not None:
            return timing
    return None


def _apply(rule: DatetimeRule, relative_path: PurePath, tags: Mapping[str, str], mtime_ns: int | None) -> Timing | None:
    if rule.source == "filename":
        assert rule.pattern is not None
        text = relative_path.name if rule.match == "name" else relative_path.as_posix()
        return from_name(_compiled(rule.pattern), text)
    if rule.source == "gdal":
        for tag in rule.tags:
            value = tags.get(tag)
            parsed = parse_timestamp(value) if value else None
            if parsed is not None:
                return Timing(parsed, source=f"gdal:{tag}")
        return None
    if mtime_ns is None:
        return None
    return Timing(datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC).replace(microsecond=0), source="mtime")


def describe_rules(rules: Sequence[DatetimeRule]) -> str:
    """The rules tried, in order, as a refusal names them (defaults by what they recognise)."""
    names: list[str] = []
    for rule in rules:
        if rule.source == "filename" and rule.pattern in DEFAULT_FILENAME_PATTERNS:
            name = "default date stamps in the name (e.g. 20240517, 2024-05-17T10:30:00Z)"
        elif rule.source == "filename":
            name = f"file {rule.match} pattern {rule.pattern!r}"
        elif rule.source == "gdal":
            name = f"GDAL tags {'/'.join(rule.tags)}"
        else:
            name = "file modification time"
        if name not in names:
            names.append(name)
    return "; ".join(names) or "no rules"


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def from_name(pattern: re.Pattern[str], text: str) -> Timing | None:
    """The first match of ``pattern`` in ``text`` that forms a valid date."""
    for match in pattern.finditer(text):
        groups = {k: v for k, v in match.groupdict().items() if v is not None}
        timing = _from_groups(groups)
        if timing is not None:
            return timing
    return None


def _from_groups(groups: Mapping[str, str]) -> Timing | None:
    if "datetime" in groups:
        value = parse_timestamp(groups["datetime"])
        return Timing(value) if value else None
    if "start_datetime" in groups and "end_datetime" in groups:
        first = parse_period(groups["start_datetime"])
        last = parse_period(groups["end_datetime"])
        if first is None or last is None or last[1] < first[0]:
            return None
        return Timing(None, start=first[0], end=last[1])
    return _from_parts(groups)


def _from_parts(groups: Mapping[str, str]) -> Timing | None:
    if "year" in groups and "day" not in groups and "doy" not in groups:
        return _whole_period(groups)
    try:
        year = int(groups["year"])
        if "doy" in groups:
            day = datetime(year, 1, 1, tzinfo=UTC) + timedelta(days=int(groups["doy"]) - 1)
            if day.year != year:
                return None
            month, dom = day.month, day.day
        else:
            month, dom = int(groups["month"]), int(groups["day"])
        value = datetime(
            year,
            month,
            dom,
            int(groups.get("hour", 0)),
            int(groups.get("minute", 0)),
            int(groups.get("second", 0)),
            tzinfo=UTC,
        )
    except (KeyError, ValueError):
        return None
    return Timing(value)


def _whole_period(groups: Mapping[str, str]) -> Timing | None:
    """``year`` (+ ``month``) without a day: the Item covers the whole month or year."""
    try:
        year = int(groups["year"])
        if "month" in groups:
            month = int(groups["month"])
            start = datetime(year, month, 1, tzinfo=UTC)
            following = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        else:
            start = datetime(year, 1, 1, tzinfo=UTC)
            following = datetime(year + 1, 1, 1, tzinfo=UTC)
    except (KeyError, ValueError, OverflowError):
        return None
    return Timing(None, start=start, end=following - _LAST_SECOND)


_LAST_SECOND = timedelta(seconds=1)
_YEAR_MONTH = re.compile(r"^(\d{4})(?:-?(\d{2}))?$")
_DATE_ONLY = re.compile(r"^\d{4}-?\d{2}-?\d{2}$")


def parse_period(text: str) -> tuple[datetime, datetime] | None:
    """First and last second of what a stamp names: an instant is both, a date is that
    day (``…T23:59:59Z`` at the end), ``YYYY-MM``/``YYYYMM`` a month, ``YYYY`` a year."""
    text = text.strip()
    coarse = _YEAR_MONTH.match(text)
    if coarse:
        parts = {"year": coarse.group(1)}
        if coarse.group(2):
            parts["month"] = coarse.group(2)
        timing = _whole_period(parts)
        return None if timing is None else (timing.first, timing.last)
    value = parse_timestamp(text)
    if value is None:
        return None
    if _DATE_ONLY.match(text):
        return value, value + timedelta(days=1) - _LAST_SECOND
    return value, value


_TIFF_DATETIME = re.compile(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})$")
_COMPACT = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})(?:T(\d{2}):?(\d{2}):?(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")


def parse_timestamp(text: str) -> datetime | None:
    """RFC 3339, compact ISO 8601, or TIFF ``YYYY:MM:DD HH:MM:SS``; UTC when no offset."""
    text = text.strip()
    tiff = _TIFF_DATETIME.match(text)
    if tiff:
        text = "{}-{}-{}T{}:{}:{}".format(*tiff.groups())
    match = _COMPACT.match(text)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        value = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int(float(fraction) * 1_000_000) if fraction else 0,
            tzinfo=UTC,
        )
    except ValueError:
        return None
    if offset and offset != "Z":
        sign = 1 if offset[0] == "+" else -1
        digits = offset[1:].replace(":", "")
        delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        value -= sign * delta
    return value
