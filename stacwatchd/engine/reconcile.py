"""Folders versus the state index: what was added, changed or removed behind our back.

The safety net for missed events (inotify overflow, network filesystems, changes while
the daemon was down). It stats files and never opens them, so a pass over 100,000
unchanged files costs one directory walk and one query.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from stacwatchd.engine.watch import scan_tree
from stacwatchd.model.results import Rules
from stacwatchd.model.sources import is_sidecar_of_any, item_key, name_key, stem
from stacwatchd.state.store import State

__all__ = ["Diff", "accepts_for", "data_for_sidecar", "diff"]


def accepts_for(rules: Rules) -> Callable[[Path], bool]:
    """Files a watch cares about: its data files and the sidecars its rules claim."""

    def accepts(path: Path) -> bool:
        if rules.is_data(path):
            return True
        return is_sidecar_of_any(path, rules.items) and not any(
            fnmatchcase(path.name, p) for p in rules.exclude if p != "*.aux.xml"
        )

    return accepts


@dataclass(slots=True)
class Diff:
    """What a watch needs: files to (re)build, files gone, and how many are untouched.

    Paths are strings: a first walk of a million files would otherwise hold a million
    ``Path`` objects, and as many parent folders, until the last file is handed on.
    """

    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    still_rejected: int = 0
    errors: list[str] = field(default_factory=list)
    #: Data files in ``changed`` only because a sidecar of theirs changed.
    by_sidecar: set[str] = field(default_factory=set)


def diff(rules: Rules, state: State, *, recursive: bool = True, skip: Iterable[Path] = ()) -> Diff:
    """Compare one watched folder with what the state index remembers of it."""
    known = state.source_signatures(str(rules.root))
    rejected = state.rejected_paths(str(rules.root))
    result = Diff()
    seen: set[str] = set()
    changed_sidecars: list[Path] = []

    def failed(path: Path, exc: OSError) -> None:
        result.errors.append(f"{path}: {exc.strerror or exc}")

    try:
        for entry in scan_tree(rules.root, accepts_for(rules), recursive, on_error=failed, skip=skip):
            key = str(entry.path)
            if known:  # else a first scan: nothing to compare or to remove, no keys to hold
                seen.add(key)
                if known.get(key) == (entry.size, entry.mtime_ns, entry.inode):
                    if key in rejected:
                        result.still_rejected += 1
                    else:
                        result.unchanged += 1
                    continue
            if rules.is_data(entry.path):
                result.changed.append(key)
            else:
                changed_sidecars.append(entry.path)
    except OSError as exc:
        failed(rules.root, exc)
    # A folder that could not be read is not an empty folder: never remove on a partial view.
    result.removed = [] if result.errors else [p for p in known if p not in seen]
    direct = set(result.changed) if changed_sidecars else set()
    for sidecar in changed_sidecars:
        owners = [str(p) for p in data_for_sidecar(sidecar, rules)]
        result.changed.extend(owners)
        result.by_sidecar.update(p for p in owners if p not in direct)
    result.changed = one_per_item(result.changed, rules)
    return result


def data_for_sidecar(sidecar: Path, rules: Rules) -> list[Path]:
    """The data files whose Items list ``sidecar`` as a metadata asset."""
    try:
        names = os.listdir(sidecar.parent)
    except OSError:
        return []
    owners = []
    lowered = sidecar.name.lower()
    for name in sorted(names):
        candidate = sidecar.parent / name
        if candidate == sidecar or not rules.is_data(candidate):
            continue
        bases = {stem(candidate), item_key(candidate, rules.items)}
        patterns = {p.format(stem=b, item=item_key(candidate, rules.items)).lower() for p in rules.items.sidecars for b in bases}
        if any(fnmatchcase(lowered, p) for p in patterns):
            owners.append(candidate)
    return owners


def one_per_item(paths: Iterable[str], rules: Rules) -> list[str]:
    """One representative file per Item, so a band-per-file group is built once."""
    chosen: dict[tuple[str, str], str] = {}
    folders: dict[str, str] = {}  # one string per folder, not one per file
    for raw in paths:
        folder, _, name = raw.rpartition("/")
        chosen.setdefault((folders.setdefault(folder, folder), name_key(name, rules.items)), raw)
    return list(chosen.values())
