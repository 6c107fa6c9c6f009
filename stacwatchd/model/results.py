"""What a build produces and what it needs: the rules, an Item, or why there is none.

Light on purpose: the engine, the writer and the daemon use these types without
loading GDAL, shapely or pystac, which only the build processes need
(``stacwatchd.model.items``).
"""

from __future__ import annotations

import functools
import marshal
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from fnmatch import translate
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from stacwatchd.defaults import DEFAULT_EXCLUDE, DEFAULT_INCLUDE
from stacwatchd.errors import StacwatchdError
from stacwatchd.model.datetimes import Timing
from stacwatchd.model.sources import Signature, Sources

if TYPE_CHECKING:
    from stacwatchd.config import CollectionSettings, ItemRules, WatchSettings
    from stacwatchd.model.raster import RasterFacts
    from stacwatchd.stac.placed import PlacedItem, Placement

__all__ = ["BuiltItem", "Rejection", "Rules", "copy_item", "plain"]


@dataclass(frozen=True, slots=True)
class Rules:
    """Everything the builder needs besides the file: one small typed object."""

    collection_id: str
    root: Path
    items: ItemRules = field(default_factory=lambda: _config().ItemRules())
    collection: CollectionSettings = field(default_factory=lambda: _config().CollectionSettings())
    include: tuple[str, ...] = DEFAULT_INCLUDE
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    #: How the catalog places this collection's Items, when known: builds then render
    #: the Item's final JSON themselves (see stacwatchd.stac.placed).
    placement: Placement | None = None

    @classmethod
    def from_watch(cls, watch: WatchSettings) -> Rules:
        return cls(
            collection_id=watch.collection_id,
            root=watch.path.resolve(),
            items=watch.items,
            collection=watch.collection,
            include=watch.include,
            exclude=watch.exclude,
        )

    @classmethod
    def for_folder(cls, folder: Path, collection_id: str | None = None) -> Rules:
        """Default rules for a folder nobody configured."""
        folder = folder.resolve()
        return cls(collection_id=collection_id or _config().collection_id_for(folder), root=folder)

    def portable(self) -> Rules:
        """These rules with the configuration's models turned into plain namespaces of the
        same fields: what a build process receives, so that it loads no pydantic."""
        return replace(self, items=plain(self.items), collection=plain(self.collection))

    def is_data(self, path: Path) -> bool:
        """Whether a file name is one this collection catalogs as data."""
        name = path.name
        return _matcher(self.exclude)(name) is None and _matcher(self.include)(name) is not None


@functools.lru_cache(maxsize=64)
def _matcher(patterns: tuple[str, ...]) -> Callable[[str], Any]:
    """One compiled, case-sensitive match for all of ``patterns`` (``fnmatchcase``'s
    rules): the walk asks it of every file, several times."""
    if not patterns:
        return lambda name: None
    return re.compile("|".join(f"(?:{translate(pattern)})" for pattern in patterns)).match


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a file cannot be cataloged; one clear line for the log and the CLI."""

    path: Path
    reason: str
    kind: str
    signature: Signature | None = None

    @classmethod
    def from_error(cls, error: StacwatchdError, fallback: Path, signature: Signature | None = None) -> Rejection:
        return cls(path=error.path or fallback, reason=error.reason, kind=error.kind, signature=signature)

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True, slots=True)
class BuiltItem:
    """An Item plus what the writer needs beside it (thumbnail bytes, the source files).

    The Item is plain JSON-ready data (``item_to_dict``'s form): it crosses from a build
    process to the writer cheaply, and the writer needs no pystac to use it.
    """

    item: dict[str, Any]
    sources: Sources
    facts: tuple[RasterFacts, ...]
    timing: Timing
    collection_id: str = ""
    signatures: tuple[tuple[Path, Signature], ...] = ()
    thumbnail: bytes | None = field(default=None, repr=False)
    #: The Item rendered for its rules' placement, by the build process.
    placed: PlacedItem | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.item["id"]


def plain(value: Any) -> Any:
    """A configuration model (and the models inside it) as ``SimpleNamespace`` objects
    with the same attributes; anything else as it is."""
    fields = getattr(type(value), "model_fields", None)
    if fields is not None:
        return SimpleNamespace(**{name: plain(getattr(value, name)) for name in fields})
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    return value


def _config() -> Any:
    """The configuration module, loaded only where rules are made (never in a build process)."""
    import stacwatchd.config

    return stacwatchd.config


def copy_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of an Item's plain JSON data (marshal does it in C, far faster than deepcopy)."""
    return marshal.loads(marshal.dumps(dict(item)))
