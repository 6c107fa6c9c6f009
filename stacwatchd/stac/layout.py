"""Where each object of the static catalog lives, and the relative links between them.

Pure path arithmetic: no file is read or written here, so the writer, ``rebuild`` and
the ``item`` command all agree on every path and every href.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

Partitioning = Literal["none", "year", "year/month", "year/month/day"]

_PARTITION_DEPTH = {"none": 0, "year": 1, "year/month": 2, "year/month/day": 3}
_RESERVED_NAMES = {"catalog.json", "collection.json"}
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def partition_of(when: datetime, scheme: Partitioning) -> tuple[str, ...]:
    """Folder names of the time partition holding an Item (``("2024", "05")``)."""
    parts = (f"{when.year:04d}", f"{when.month:02d}", f"{when.day:02d}")
    return parts[: _PARTITION_DEPTH[scheme]]


def partition_depth(scheme: str | None) -> int:
    """How many partition folders a scheme puts between a collection and its Items."""
    return _PARTITION_DEPTH[scheme or "year/month"]  # type: ignore[index]


def partition_title(collection_title: str, parts: tuple[str, ...]) -> str:
    """Human title of a partition catalog, shown by browsers without opening it."""
    if len(parts) == 1:
        return f"{collection_title}: {parts[0]}"
    if len(parts) == 2:
        return f"{collection_title}: {_MONTHS[int(parts[1]) - 1]} {parts[0]}"
    return f"{collection_title}: {parts[0]}-{parts[1]}-{parts[2]}"


#: Longest Item folder/file stem, in bytes: ``<stem>.json`` and the writer's temp names
#: stay well inside the 255-byte limit of every common filesystem.
MAX_STEM_BYTES = 200


def item_file_stem(item_id: str) -> str:
    """The Item's folder and file name: its id, or for a very long id a stable shortening.

    The id itself is never changed; only its place on disk is, and the same id always
    maps to the same place (a prefix of the id plus a hash of the whole id).
    """
    if len(item_id.encode()) <= MAX_STEM_BYTES:
        return item_id
    digest = hashlib.sha256(item_id.encode()).hexdigest()[:16]
    prefix = item_id.encode()[: MAX_STEM_BYTES - len(digest) - 1].decode(errors="ignore")
    return f"{prefix}-{digest}"


def safe_name(name: str) -> bool:
    """Whether an id can be a folder name inside the catalog without escaping or clashing."""
    return bool(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name)) and name not in _RESERVED_NAMES


@dataclass(frozen=True, slots=True)
class Layout:
    """The catalog's folder tree under one root."""

    root: Path

    @property
    def root_catalog(self) -> Path:
        return self.root / "catalog.json"

    def collection_file(self, collection: str) -> Path:
        return self.root / collection / "collection.json"

    def partition_file(self, collection: str, parts: tuple[str, ...]) -> Path:
        """A partition catalog; with no parts this is the collection itself."""
        if not parts:
            return self.collection_file(collection)
        return self.root.joinpath(collection, *parts, "catalog.json")

    def item_file(self, collection: str, parts: tuple[str, ...], item_id: str) -> Path:
        name = item_file_stem(item_id)
        return self.root.joinpath(collection, *parts, name, f"{name}.json")

    def parent_of(self, collection: str, parts: tuple[str, ...]) -> Path:
        """The catalog that links to the partition ``parts`` (or to the collection)."""
        if not parts:
            return self.root_catalog
        return self.partition_file(collection, parts[:-1])


def relative_href(target: Path, from_file: Path) -> str:
    """Relative href from one JSON file to another file, ``./`` prefixed when beside it."""
    rel = os.path.relpath(target, from_file.parent)
    rel = PurePosixPath(*Path(rel).parts).as_posix()
    return rel if rel.startswith("../") else f"./{rel}"


def is_local_absolute(href: str) -> bool:
    """An absolute filesystem path (as the builder writes local asset hrefs)."""
    return href.startswith("/") and not href.startswith("//")


def localise_hrefs(item: dict[str, Any], item_file: Path) -> dict[str, Any]:
    """Turn absolute local asset and link hrefs into hrefs relative to the Item JSON.

    URLs (s3://, https://) are left alone: they already say where the data lives.
    """
    for asset in item.get("assets", {}).values():
        if is_local_absolute(asset["href"]):
            asset["href"] = relative_href(Path(asset["href"]), item_file)
    for link in item.get("links", []):
        if is_local_absolute(link["href"]) and not urlsplit(link["href"]).scheme:
            link["href"] = relative_href(Path(link["href"]), item_file)
    return item


def structural_link(rel: str, target: Path, from_file: Path, title: str, media_type: str = "application/json") -> dict[str, str]:
    """A relative structural link with the title the best practices ask for."""
    return {"rel": rel, "href": relative_href(target, from_file), "type": media_type, "title": title}
