"""Default file patterns, shared by the configuration and the model.

Kept apart from ``stacwatchd.config`` so that the build processes, which need these
values but not the configuration's validation, load no pydantic.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_DATETIME_TAGS",
    "DEFAULT_EXCLUDE",
    "DEFAULT_FILENAME_PATTERNS",
    "DEFAULT_INCLUDE",
    "DEFAULT_SIDECARS",
]

# Date stamps commonly found in product file names, most specific first. Each is
# anchored so that it does not match inside a longer run of digits.
DEFAULT_FILENAME_PATTERNS: tuple[str, ...] = (
    r"(?<!\d)(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:?\d{2}:?\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)(?!\d)",
    r"(?<!\d)(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})T(?P<hour>\d{2})(?P<minute>\d{2})(?P<second>\d{2})(?:Z)?(?!\d)",
    r"(?<!\d)(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})(?!\d)",
    r"(?<!\d)(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})(?!\d)",
)
DEFAULT_DATETIME_TAGS: tuple[str, ...] = ("ACQUISITIONDATETIME", "TIFFTAG_DATETIME")
DEFAULT_INCLUDE: tuple[str, ...] = ("*.tif", "*.tiff", "*.TIF", "*.TIFF", "*.jp2", "*.JP2")
DEFAULT_EXCLUDE: tuple[str, ...] = (".*", "*.tmp", "*.part", "*.partial", "~*", ".~*", "*.aux.xml")
DEFAULT_SIDECARS: tuple[str, ...] = (
    "{stem}.xml",
    "{stem}.json",
    "{stem}.txt",
    "{stem}_MTL.txt",
    "{stem}.MTL",
)
