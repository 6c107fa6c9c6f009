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
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote_to_bytes, urlsplit

from stacwatchd.stac.names import CATALOG_FILE, COLLECTION_FILE

__all__ = [
    "Layout",
    "Partitioning",
    "href_to_path",
    "item_file_stem",
    "localise_hrefs",
    "partition_depth",
    "partition_of",
    "partition_title",
    "path_to_href",
    "relative_href",
    "structural_link",
]

Partitioning = Literal["none", "year", "year/month", "year/month/day"]

_PARTITION_DEPTH = {"none": 0, "year": 1, "year/month": 2, "year/month/day": 3}
_RESERVED_NAMES = {CATALOG_FILE, COLLECTION_FILE}


def partition_of(when: datetime, scheme: Partitioning) -> tuple[str, ...]:
    """Folder names of the time partition holding an Item (``("2024", "05")``)."""
    parts = (f"{when.year:04d}", f"{when.month:02d}", f"{when.day:02d}")
    return parts[: _PARTITION_DEPTH[scheme]]


def partition_depth(scheme: str | None) -> int:
    """How many partition folders a scheme puts between a collection and its Items."""
    return _PARTITION_DEPTH[scheme or "year/month"]  # type: ignore[index]


def partition_title(collection_title: str, parts: tuple[str, ...]) -> str:
    """Human title of a partition catalog (``ndvi 2024-05``), shown by browsers without opening it.

    Numeric dates, so that clients sorting children by title sort them in time.
    """
    return f"{collection_title} {'-'.join(parts)}"


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
        return self.root / CATALOG_FILE

    def collection_file(self, collection: str) -> Path:
        return self.root / collection / COLLECTION_FILE

    def partition_file(self, collection: str, parts: tuple[str, ...]) -> Path:
        """A partition catalog; with no parts this is the collection itself."""
        if not parts:
            return self.collection_file(collection)
        return self.root.joinpath(collection, *parts, CATALOG_FILE)

    def item_file(self, collection: str, parts: tuple[str, ...], item_id: str) -> Path:
        name = item_file_stem(item_id)
        return self.root.joinpath(collection, *parts, name, f"{name}.json")

    def item_rel(self, collection: str, parts: tuple[str, ...], item_id: str) -> str | None:
        """``item_file`` relative to the root, as a string; None when a name could leave
        its folder (``..``, a slash), for the caller to resolve and refuse."""
        name = item_file_stem(item_id)
        names = (collection, *parts, name)
        if any(not n or n in (".", "..") or "/" in n for n in names):
            return None
        return "/".join((*names, f"{name}.json"))

    def parent_of(self, collection: str, parts: tuple[str, ...]) -> Path:
        """The catalog that links to the partition ``parts`` (or to the collection)."""
        if not parts:
            return self.root_catalog
        return self.partition_file(collection, parts[:-1])


def relative_href(target: str | Path, from_file: Path) -> str:
    """Relative href from one JSON file to another file, ``./`` prefixed when beside it.

    A percent-encoded URI reference (RFC 3986), like every href stacwatchd writes.
    """
    rel = _relpath(os.fspath(target), os.path.dirname(from_file))  # POSIX paths: already '/'-separated
    return path_to_href(rel if rel.startswith("../") else f"./{rel}")


def _relpath(target: str, start: str) -> str:
    """``os.path.relpath`` without its two ``abspath`` calls where both paths are absolute
    and normal already, as the layout makes them (five per Item, in the build processes)."""
    if not (_is_normal(target) and _is_normal(start)):
        return os.path.relpath(target, start)
    to, at = target.split("/"), start.split("/")
    common = 0
    for a, b in zip(to, at, strict=False):
        if a != b:
            break
        common += 1
    return "/".join([".."] * (len(at) - common) + to[common:]) or "."


def _is_normal(path: str) -> bool:
    """Absolute, with no empty, ``.`` or ``..`` segment (a hidden name also fails: it only
    takes the slower way)."""
    return path.startswith("/") and "//" not in path and "/." not in path and not path.endswith("/")


def path_to_href(path: str) -> str:
    """A POSIX path as the path of a URI: every byte but unreserved ones and ``/`` escaped.

    In a file name ``#``, ``?``, ``%``, spaces, quotes and newlines are characters of the
    name, never a fragment, a query or an escape. The file system's own bytes are encoded
    (NFC and NFD spellings of a name stay distinct, as they are on disk).
    """
    return quote(os.fsencode(path), safe="/")


def href_to_path(href: str) -> str:
    """The file a relative or ``file:`` href names: query and fragment dropped, escapes
    decoded to the file system's bytes (the inverse of :func:`path_to_href`)."""
    return os.fsdecode(unquote_to_bytes(urlsplit(href).path))


def is_local_absolute(href: str) -> bool:
    """An absolute filesystem path (as the builder writes local asset hrefs)."""
    return href.startswith("/") and not href.startswith("//")


def localise_hrefs(item: dict[str, Any], item_file: Path) -> dict[str, Any]:
    """Turn absolute local asset and link hrefs into hrefs relative to the Item JSON.

    The builder's local hrefs are plain paths; what comes out are percent-encoded URI
    references. URLs (s3://, https://) are left alone: they already say where the data
    lives, encoded by whoever made them.
    """
    for asset in item.get("assets", {}).values():
        if is_local_absolute(asset["href"]):
            asset["href"] = relative_href(asset["href"], item_file)
    for link in item.get("links", []):
        if is_local_absolute(link["href"]):  # a path: "/" comes before any ":"
            link["href"] = relative_href(link["href"], item_file)
    return item


def structural_link(rel: str, target: Path, from_file: Path, title: str, media_type: str = "application/json") -> dict[str, str]:
    """A relative structural link with the title the best practices ask for."""
    return {"rel": rel, "href": relative_href(target, from_file), "type": media_type, "title": title}
