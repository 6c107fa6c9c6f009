"""When the state is lost or damaged: notice it, set the damaged file aside, and read
back from the catalog on disk what the sources alone cannot tell (when each Item was
first cataloged).

Rebuilding the state is a scan of the sources (the ids follow from the files and the
rules); this module only decides whether that is needed and what the existing Item JSON
still knows. It reads, except :func:`set_aside`, which renames the damaged files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from stacwatchd.stac.json import loads
from stacwatchd.stac.names import CATALOG_FILE, COLLECTION_FILE
from stacwatchd.state.store import State

__all__ = ["RECOVERY_KEY", "StateDamage", "created_times", "inspect_state", "set_aside"]

#: Meta key set while a state is being rebuilt: a rebuild killed half-way is resumed.
RECOVERY_KEY = "recovery"

DamageKind = Literal["corrupt", "missing", "interrupted"]


@dataclass(frozen=True, slots=True)
class StateDamage:
    """Why the state cannot be used as it is."""

    kind: DamageKind
    path: Path
    detail: str


def inspect_state(state_path: Path, catalog_root: Path, *, quick_check: bool = True) -> StateDamage | None:
    """None when the state can be used; otherwise what is wrong with it.

    A missing state is damage only when a catalog exists to rebuild it against (a first
    start has neither). ``quick_check`` runs SQLite's quick check (it reads every page:
    about a second per few hundred MB).
    """
    if not state_path.exists():
        if _has_catalog(catalog_root):
            return StateDamage("missing", state_path, "no state file, but a catalog exists")
        return None
    problem, values = State.probe(state_path, quick_check=quick_check, keys=[RECOVERY_KEY])
    if problem is not None:
        return StateDamage("corrupt", state_path, problem)
    if RECOVERY_KEY in values:
        return StateDamage("interrupted", state_path, f"a rebuild of the state ({values[RECOVERY_KEY]}) did not finish")
    return None


def _has_catalog(root: Path) -> bool:
    """A root catalog, or a collection folder (the root catalog may be what was lost)."""
    try:
        if (root / CATALOG_FILE).exists():
            return True
        with os.scandir(root) as entries:
            return any(
                not e.name.startswith(".") and e.is_dir(follow_symlinks=False) and Path(e.path, COLLECTION_FILE).exists()
                for e in entries
            )
    except OSError:
        return False


def set_aside(state_path: Path, now: datetime | None = None) -> list[Path]:
    """Rename the state file and its -wal/-shm to ``<name>.corrupt-<UTC timestamp>``
    (kept for inspection; SQLite would replay a stale -wal into a new file)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    target = state_path.with_name(f"{state_path.name}.corrupt-{stamp}")
    moved = []
    for suffix in ("", "-wal", "-shm"):
        source = state_path.with_name(state_path.name + suffix)
        if source.exists():
            destination = target.with_name(target.name + suffix)
            os.replace(source, destination)
            moved.append(destination)
    return moved


def created_times(catalog_root: Path) -> dict[tuple[str, str], str]:
    """(collection, id) → ``created`` of every Item JSON in the catalog's layout
    (``<collection>/…/<name>/<name>.json``); files that are not Items are passed over."""
    found: dict[tuple[str, str], str] = {}
    top = os.fspath(catalog_root)
    for folder, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        name = os.path.basename(folder)
        if folder == top or f"{name}.json" not in files:
            continue
        collection = os.path.relpath(folder, top).split(os.sep)[0]
        try:
            doc = loads(Path(folder, f"{name}.json").read_bytes())
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict) or doc.get("type") != "Feature" or not isinstance(doc.get("id"), str):
            continue
        created = (doc.get("properties") or {}).get("created")
        if isinstance(created, str):
            found[(collection, doc["id"])] = created
    return found
