"""Which files make one Item: band-per-file groups and metadata sidecars.

Reads only directory listings, never file contents, so it is cheap to call for every
event; the Item builder then opens what it names.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from stacwatchd.config import ItemRules

__all__ = [
    "Signature",
    "Sources",
    "is_sidecar_of_any",
    "item_key",
    "name_key",
    "sidecar_media_type",
    "signature_of",
    "sources_for",
    "stem",
]

_SIDECAR_TYPES = {
    ".xml": "application/xml",
    ".json": "application/json",
    ".txt": "text/plain",
    ".mtl": "text/plain",
    ".html": "text/html",
    ".pdf": "application/pdf",
}
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

DataFilter = Callable[[Path], bool]


class Signature(NamedTuple):
    """What tells a changed file from an unchanged one without opening it."""

    size: int
    mtime_ns: int
    inode: int
    device: int


def signature_of(path: Path) -> Signature | None:
    """The file's signature, or None when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return Signature(st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


@dataclass(frozen=True, slots=True)
class Sources:
    """The files behind one Item: data assets (key → path) and metadata sidecars."""

    key: str
    data: tuple[tuple[str, Path], ...]
    metadata: tuple[tuple[str, Path], ...] = ()
    groups: tuple[tuple[str, str], ...] = ()

    @property
    def primary(self) -> Path:
        """The data file whose name and tags decide id and datetime."""
        return self.data[0][1]

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(p for _, p in self.data) + tuple(p for _, p in self.metadata)


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def stem(path: Path) -> str:
    """File name without its last extension."""
    return name_stem(path.name)


def name_stem(name: str) -> str:
    """``stem`` of a bare file name."""
    dot = name.rfind(".")
    return name[:dot] if dot > 0 else name


def group_match(path: Path, rules: ItemRules) -> re.Match[str] | None:
    """The grouping regex match on a file name, when grouping is configured and matches."""
    return _group_match(path.name, rules)


def _group_match(name: str, rules: ItemRules) -> re.Match[str] | None:
    if rules.group_pattern is None:
        return None
    return _compiled(rules.group_pattern).search(name)


def item_key(path: Path, rules: ItemRules) -> str:
    """The key shared by every file of one Item (its group, else the file's stem)."""
    return name_key(path.name, rules)


def name_key(name: str, rules: ItemRules) -> str:
    """``item_key`` of a bare file name: a walk over many files needs no ``Path`` for it."""
    match = _group_match(name, rules)
    return match.group("item") if match else name_stem(name)


def sources_for(path: Path, rules: ItemRules, is_data: DataFilter) -> Sources:
    """Gather the data files of ``path``'s group and the sidecars of all of them."""
    match = group_match(path, rules)
    if match is None:
        data: list[tuple[str, Path]] = [("data", path)]
        key = stem(path)
        groups: dict[str, str] = {}
    else:
        key = match.group("item")
        groups = {k: v for k, v in match.groupdict().items() if v is not None}
        data = _group_members(path.parent, key, rules, is_data) or [(_asset_key(match), path)]
    sidecars = _sidecars(path.parent, key, [p for _, p in data], rules)
    return Sources(key=key, data=tuple(data), metadata=tuple(sidecars), groups=tuple(sorted(groups.items())))


def _asset_key(match: re.Match[str]) -> str:
    value = match.groupdict().get("asset") or "data"
    return _KEY_UNSAFE.sub("_", value)


def _group_members(folder: Path, key: str, rules: ItemRules, is_data: DataFilter) -> list[tuple[str, Path]]:
    members: dict[str, Path] = {}
    for name in _listdir(folder):
        candidate = folder / name
        match = group_match(candidate, rules)
        if match is None or match.group("item") != key or not is_data(candidate):
            continue
        if candidate.is_file():
            members.setdefault(_asset_key(match), candidate)
    return sorted(members.items())


_WILDCARDS = re.compile(r"[*?\[]")


def _sidecars(folder: Path, key: str, data: list[Path], rules: ItemRules) -> list[tuple[str, Path]]:
    """Sidecars named by the patterns: exact names are stat'ed, never searched for.

    Only patterns with wildcards list the folder, so a folder of 100,000 files costs
    a few stats per Item, not a scan.
    """
    if not rules.sidecars:
        return []
    data_names = {p.name for p in data}
    where = os.fspath(folder)
    found: dict[str, Path] = {}
    listing: list[str] | None = None
    for pattern in rules.sidecars:
        for base in dict.fromkeys((key, *(stem(p) for p in data))):
            wanted = pattern.format(stem=base, item=key)
            if _WILDCARDS.search(wanted):
                if listing is None:
                    listing = _listdir(folder)
                names = [n for n in listing if fnmatch.fnmatchcase(n, wanted)]
            else:
                names = [wanted]
            for name in names:
                if name in data_names or len(name.encode()) > _NAME_MAX or not _is_file(os.path.join(where, name)):
                    continue
                suffix = name[len(base) :].lstrip("._-") or "file"
                found.setdefault("metadata-" + _KEY_UNSAFE.sub("_", suffix.lower()), folder / name)
    return sorted(found.items())


def _is_file(path: str) -> bool:
    """``Path.is_file`` without a Path: most sidecars looked for do not exist, and each
    file's build looks for several."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


#: A longer name cannot exist (and stat'ing it fails with ENAMETOOLONG).
_NAME_MAX = 255


def _listdir(folder: Path) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


def sidecar_media_type(path: Path) -> str:
    """Registered media type of a metadata sidecar, by extension."""
    return _SIDECAR_TYPES.get(path.suffix.lower(), "application/octet-stream")


def is_sidecar_of_any(path: Path, rules: ItemRules) -> bool:
    """Whether a file name looks like one of the configured sidecars (of some stem)."""
    name = path.name.lower()
    for pattern in rules.sidecars:
        regex = re.escape(pattern.lower()).replace(r"\{stem\}", ".+").replace(r"\{item\}", ".+")
        if re.fullmatch(regex, name):
            return True
    return False
