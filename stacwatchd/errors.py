"""Exception types. Each carries the path it is about, so a log line can name it."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BadId",
    "ConfigError",
    "IdClash",
    "NoDatetime",
    "RasterError",
    "StacwatchdError",
    "UnlocatedRaster",
    "UnreadableRaster",
]


class StacwatchdError(Exception):
    """Base of every error stacwatchd raises on purpose."""

    def __init__(self, path: Path | str | None, reason: str) -> None:
        self.path = Path(path) if path is not None else None
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path is not None else reason)

    @property
    def kind(self) -> str:
        """A stable, machine-readable name for logs and the state index."""
        name = type(self).__name__
        return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


class ConfigError(StacwatchdError):
    """The configuration file or environment is invalid."""


class RasterError(StacwatchdError):
    """A file could not be turned into raster facts."""


class UnreadableRaster(RasterError):
    """GDAL cannot open or read the file (corrupt, truncated, not a raster, no permission)."""


class UnlocatedRaster(RasterError):
    """The file has no usable georeferencing and the rules refuse unlocated Items."""


class BadId(StacwatchdError):
    """The id template cannot make a usable id for this file."""


class NoDatetime(StacwatchdError):
    """No datetime rule matched the file."""


class IdClash(StacwatchdError):
    """Two different source files map to the same Item id in one collection."""

    def __init__(self, path: Path | str, other: Path | str, item_id: str, collection: str) -> None:
        self.other = Path(other)
        self.item_id = item_id
        self.collection = collection
        super().__init__(path, f"item id {item_id!r} in collection {collection!r} is already taken by {other}")
