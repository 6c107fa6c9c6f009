"""Where schemas come from by default, and a truthful account of what was checked.

A fresh machine has only the STAC core schemas bundled with pystac. Extension
schemas come from a mirror (``--schemas`` or ``STAC_SCHEMA_ROOT``), from the user's
cache, which ``stacwatchd validate --network`` fills, or from the network when
allowed. Whatever could not be obtained is said once, by name, never passed over.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from stacwatchd.validate.schemas import SchemaStore

__all__ = [
    "SCHEMA_ROOT_ENV",
    "Coverage",
    "coverage",
    "default_cache_dir",
    "default_store",
    "schema_name",
]

#: A folder of schemas laid out by URL (``<host>/<path>``), used before anything else.
SCHEMA_ROOT_ENV = "STAC_SCHEMA_ROOT"

_CORE_RE = re.compile(r"schemas\.stacspec\.org/v(?P<version>[^/]+)/(?:\w+-spec)/json-schema/(?P<name>[\w-]+)\.json$")
_EXTENSION_RE = re.compile(r"stac-extensions\.github\.io/(?P<name>[\w-]+)/v(?P<version>[^/]+)/schema\.json$")


def default_cache_dir() -> Path:
    """The user's schema cache: ``$XDG_CACHE_HOME/stacwatchd/schemas`` (``~/.cache`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stacwatchd" / "schemas"


def default_store(schemas: Path | None = None, cache_dir: Path | None = None, *, network: bool = False) -> SchemaStore:
    """The store ``validate`` and the demo use: mirror (flag or environment), bundled core, cache."""
    if schemas is None and os.environ.get(SCHEMA_ROOT_ENV):
        schemas = Path(os.environ[SCHEMA_ROOT_ENV])
    return SchemaStore(directory=schemas, cache_dir=cache_dir or default_cache_dir(), allow_network=network)


def schema_name(url: str) -> str:
    """A short, readable name for a schema URL (``projection v2.0.0``, ``STAC item v1.1.0``)."""
    core = _CORE_RE.search(url)
    if core:
        return f"STAC {core['name']} v{core['version']}"
    extension = _EXTENSION_RE.search(url)
    if extension:
        return f"{extension['name']} v{extension['version']}"
    return url


@dataclass(slots=True)
class Coverage:
    """Which schemas a validation run used, from where, and which it could not obtain."""

    checked: dict[str, str] = field(default_factory=dict)
    unchecked: list[str] = field(default_factory=list)
    fetch_failures: dict[str, str] = field(default_factory=dict)

    def lines(self, *, network: bool) -> list[str]:
        """What a person needs to know, one line per fact; nothing when there is nothing to say."""
        out = []
        if self.checked:
            by_origin: dict[str, list[str]] = {}
            for url, origin in self.checked.items():
                by_origin.setdefault(origin, []).append(schema_name(url))
            parts = [f"{', '.join(sorted(set(names)))} ({origin})" for origin, names in sorted(by_origin.items())]
            out.append(f"checked against: {'; '.join(parts)}")
        if self.fetch_failures:
            failures = "; ".join(f"{url} ({reason})" for url, reason in self.fetch_failures.items())
            out.append(f"could not fetch {_count(len(self.fetch_failures), 'schema')}: {failures}")
        if self.unchecked:
            names = ", ".join(schema_name(u) for u in self.unchecked)
            hint = "" if network else " — run `stacwatchd validate --network` once to cache them"
            out.append(f"{_count(len(self.unchecked), 'schema')} unavailable, not checked: {names}{hint}")
        return out


def coverage(store: SchemaStore, unchecked: Iterable[str]) -> Coverage:
    """The account of one run from its store and the URLs the report left unchecked."""
    missing = list(dict.fromkeys(unchecked))
    failures = {
        url: error.reason for url, error in store.failures.items() if url in missing and error.reason.startswith("download")
    }
    checked = {url: origin for url, origin in store.origins.items() if url not in missing and _top_level(url)}
    return Coverage(checked=checked, unchecked=missing, fetch_failures=failures)


def _top_level(url: str) -> bool:
    """A core object schema or an extension, not one of the pieces they reference."""
    core = _CORE_RE.search(url)
    return (core is not None and core["name"] in ("item", "catalog", "collection")) or _EXTENSION_RE.search(url) is not None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
