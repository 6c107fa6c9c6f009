"""Scrub: the catalog on disk checked against what the state says the writer wrote.

The writer only ever writes; a file deleted, truncated or edited behind its back (or
left by a lost state) would otherwise stay wrong for good. A scrub walks the catalog
once, stats every file and compares it with the state's record (present, same size);
it hashes a file only when its mtime moved since it was last found right, or on a
full pass. Files the state does not list are sorted into strays of ours (Item JSON and
catalogs in our layout, our temp files), which a repair removes, and foreign files,
which are left alone and reported.

A scrub reads; :func:`repair` changes, and must run where the writer runs (its thread
in the daemon): it confirms each finding against the state of that moment first, so a
file the writer was busy replacing is never mistaken for damage.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import TextIO

from stacwatchd.config import STATE_DIRNAME, CatalogSettings
from stacwatchd.engine.writer import (
    TEMP_PREFIX,
    TEMP_SUFFIX,
    CatalogWriter,
    Repaired,
)
from stacwatchd.errors import StacwatchdError
from stacwatchd.stac.json import loads
from stacwatchd.stac.layout import item_file_stem, partition_depth
from stacwatchd.stac.names import CATALOG_FILE, COLLECTION_FILE, THUMBNAIL_FILE
from stacwatchd.state.store import FileRecord, State

__all__ = ["REPAIR_COMMAND", "ScrubReport", "Scrubber", "repair", "repair_hint", "scrub_catalog", "scrub_command"]

#: What an operator runs to repair what a scrub (or ``validate``) found.
REPAIR_COMMAND = "stacwatchd scrub --repair"

_PARTITION_NAME = re.compile(r"\d{2,4}")
_CATALOG_NAMES = frozenset({CATALOG_FILE, COLLECTION_FILE})
_CHUNK = 1 << 20


@dataclass(slots=True)
class ScrubReport:
    """What one pass found. Paths are relative to the catalog root."""

    checked: int = 0
    hashed: int = 0
    missing: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    #: (path, sha256, size, mtime_ns) of files hashed and found as written.
    verified: list[tuple[str, str, int, int]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    full: bool = False
    seconds: float = 0.0

    @property
    def damage(self) -> list[str]:
        """Every finding a repair acts on."""
        return [*self.missing, *self.damaged, *self.strays]

    def summary(self) -> dict[str, object]:
        return {
            "checked": self.checked,
            "hashed": self.hashed,
            "missing": len(self.missing),
            "damaged": len(self.damaged),
            "strays": len(self.strays),
            "foreign": len(self.foreign),
            "unreadable": len(self.unreadable),
            "full": self.full,
            "duration_ms": round(self.seconds * 1000, 1),
        }


def scrub_catalog(root: Path, state: State, *, full: bool = False, skip: Iterable[Path] = ()) -> ScrubReport:
    """Compare the files under ``root`` with the state's record of them; change nothing.

    ``full`` walks every folder and hashes every file. Otherwise every recorded file is
    stat'ed by its path, hashed only when its size is unrecorded or its mtime moved since
    a scrub last found it right, and only the catalog folders (root, collections,
    partitions) are listed for files the state does not know: an Item's own folder is
    listed on full passes only. ``skip`` names folders inside the root that are not the
    catalog's (a watched folder below it). Hidden folders (the state's own) are not entered.
    """
    started = time.monotonic()
    report = ScrubReport(full=full)
    skipped = {os.fspath(p) for p in skip}
    depths = partition_depths(state)
    top = os.fspath(root)
    if full:
        on_disk = _walk(top, len(top) + 1, skipped, report, root=True)
        look = on_disk.pop
    else:
        on_disk = _unlisted(top, state, depths, skipped, report)
        look = _stat_at(top + os.sep, report)
    unreadable = tuple(f"{rel}/" for rel in report.unreadable)
    for record in state.file_records():
        report.checked += 1
        seen = look(record.path, None)
        if not seen:
            if seen is None and not record.path.startswith(unreadable):
                report.missing.append(record.path)
            continue
        size, mtime_ns = seen
        if record.size is not None and size != record.size:
            report.damaged.append(record.path)
        elif full or record.size is None or record.mtime_ns != mtime_ns:
            report.hashed += 1
            if _hash(root / record.path) != record.hash:
                report.damaged.append(record.path)
            elif (record.size, record.mtime_ns) != (size, mtime_ns):
                report.verified.append((record.path, record.hash, size, mtime_ns))
    for rel in sorted(on_disk):
        (report.strays if is_ours(rel, depths, root) else report.foreign).append(rel)
    report.missing.sort()
    report.damaged.sort()
    report.seconds = time.monotonic() - started
    return report


def partition_depths(state: State) -> dict[str, int]:
    """Collection id → how many partition folders its Items sit below."""
    depths = {}
    for collection in state.known_collections():
        depths[collection] = partition_depth((state.collection_settings(collection) or {}).get("partition"))
    return depths


def is_ours(rel: str, depths: dict[str, int], root: Path) -> bool:
    """Whether a file the state does not list is one the writer would have written:
    a temp file of ours, or a catalog, Item JSON or thumbnail where a collection's layout
    puts them (an Item JSON that is some other JSON document is not)."""
    parts = rel.split("/")
    name = parts[-1]
    if name.startswith(".") and name.endswith(TEMP_SUFFIX):
        return name.startswith(TEMP_PREFIX) or len(name) > len(TEMP_SUFFIX) + 1
    depth = depths.get(parts[0]) if len(parts) > 1 else None
    if depth is None:
        return False
    inner = parts[1:-1]
    if name == COLLECTION_FILE:
        return not inner
    if name == CATALOG_FILE:
        return 0 < len(inner) <= depth and all(_PARTITION_NAME.fullmatch(p) for p in inner)
    if len(inner) != depth + 1 or not all(_PARTITION_NAME.fullmatch(p) for p in inner[:-1]):
        return False
    if name == THUMBNAIL_FILE:
        return True
    return name == f"{inner[-1]}.json" and _maybe_item(root / rel)


def _maybe_item(path: Path) -> bool:
    """An Item, or a document too damaged to say (a truncated Item of ours)."""
    try:
        doc = loads(path.read_bytes())
    except OSError:
        return False
    except ValueError:
        return True
    return isinstance(doc, dict) and doc.get("type") == "Feature"


def _stat_at(top: str, report: ScrubReport) -> Callable[[str, None], tuple[int, int] | tuple[()] | None]:
    """A lookup of (size, mtime_ns) by relative path: None for a file that is not there,
    () for one that cannot be looked at (its folder is then reported unreadable)."""

    def look(rel: str, _: None) -> tuple[int, int] | tuple[()] | None:
        try:
            info = os.stat(top + rel)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError:
            folder = os.path.dirname(rel)
            if folder not in report.unreadable:
                report.unreadable.append(folder)
            return ()
        return (info.st_size, info.st_mtime_ns)

    return look


def _unlisted(top: str, state: State, depths: dict[str, int], skip: set[str], report: ScrubReport) -> dict[str, tuple[int, int]]:
    """Files in the catalog folders (and below folders that should not be there) that the
    state does not list; the expected Item folders come from the state, one query per leaf."""
    expected: dict[str, set[str]] = {"": set()}
    for rel in state.catalog_file_paths():
        folder, name = _split(rel)
        expected.setdefault(folder, set()).add(name)
        while folder:
            parent, child = _split(folder)
            expected.setdefault(parent, set()).add(child)
            folder = parent
    listed = sorted(folder for folder, names in expected.items() if not folder or names & _CATALOG_NAMES)
    for folder in listed:
        parts = folder.split("/") if folder else []
        if parts and depths.get(parts[0]) == len(parts) - 1:
            stems = (item_file_stem(i) for i in state.items_in_partition(parts[0], "/".join(parts[1:])))
            expected[folder].update(stems)
    found: dict[str, tuple[int, int]] = {}
    cut = len(top) + 1
    for folder in listed:
        path = os.path.join(top, folder) if folder else top
        if path in skip:
            continue
        try:
            with os.scandir(path) as scan:
                entries = [e for e in scan if e.name not in expected[folder]]
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            if not folder:
                raise
            report.unreadable.append(folder)
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if not entry.name.startswith(".") and entry.path not in skip:
                    found.update(_walk(entry.path, cut, skip, report))
                continue
            _note_file(entry, cut, found, report)
    return found


def _split(rel: str) -> tuple[str, str]:
    folder, _, name = rel.rpartition("/")
    return folder, name


def _note_file(entry: os.DirEntry[str], cut: int, found: dict[str, tuple[int, int]], report: ScrubReport) -> None:
    try:
        info = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISREG(info.st_mode):
        found[entry.path[cut:]] = (info.st_size, info.st_mtime_ns)
    else:
        report.foreign.append(entry.path[cut:])


def _walk(top: str, cut: int, skip: set[str], report: ScrubReport, *, root: bool = False) -> dict[str, tuple[int, int]]:
    """relative path → (size, mtime_ns) of every file below ``top``, hidden folders aside."""
    found: dict[str, tuple[int, int]] = {}
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        if not entry.name.startswith(".") and entry.path not in skip:
                            stack.append(entry.path)
                        continue
                    _note_file(entry, cut, found, report)
        except FileNotFoundError:
            continue
        except OSError:
            if root and folder == top:
                raise
            report.unreadable.append(folder[cut:])
    return found


def _hash(path: Path) -> str | None:
    digest = sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


# -- repair (in the writer's thread) ----------------------------------------------------


def _still_wrong(root: Path, record: FileRecord) -> bool:
    """The finding holds now: the file is missing, of another size or other bytes."""
    try:
        size = os.stat(root / record.path).st_size
    except FileNotFoundError:
        return True
    except OSError:
        return False  # unreadable is not damaged: a write there would fail as well
    if record.size is not None and size != record.size:
        return True
    return _hash(root / record.path) != record.hash


def confirm(report: ScrubReport, writer: CatalogWriter) -> ScrubReport:
    """The findings that still hold against the state and the files right now."""
    root, state = writer.root, writer.state
    now = ScrubReport(checked=report.checked, hashed=report.hashed, full=report.full, seconds=report.seconds)
    now.foreign = report.foreign
    now.unreadable = report.unreadable
    for rel in report.missing + report.damaged:
        record = state.file_record(rel)
        if record is not None and _still_wrong(root, record):
            (now.missing if not os.path.lexists(root / rel) else now.damaged).append(rel)
    now.strays = [rel for rel in report.strays if state.file_record(rel) is None and os.path.lexists(root / rel)]
    now.verified = report.verified
    return now


def repair(writer: CatalogWriter, report: ScrubReport) -> tuple[ScrubReport, Repaired]:
    """Confirm the findings, then journal what must be rewritten and remove the strays.

    Runs where the writer runs; the caller flushes the journal. Files hashed and found
    right have their mtime recorded, so later passes need not hash them again.
    """
    confirmed = confirm(report, writer)
    if confirmed.verified:
        writer.state.record_verified(confirmed.verified)
    if not confirmed.damage:
        return confirmed, Repaired()
    return confirmed, writer.repair([*confirmed.missing, *confirmed.damaged], confirmed.strays)


class Scrubber:
    """The daemon's scrub across passes: every ``full_every``-th pass (the first
    included) hashes every file; the others stat, and hash only what moved."""

    def __init__(self, full_every: int) -> None:
        self.full_every = full_every
        self.passes = 0
        self.last: ScrubReport | None = None
        self.last_at: float | None = None
        self.repaired = 0
        self.removed = 0
        self._foreign_reported: set[str] = set()

    def run(self, root: Path, state_path: Path, skip: Iterable[Path] = ()) -> ScrubReport:
        full = self.full_every > 0 and self.passes % self.full_every == 0
        self.passes += 1
        state = State(state_path, readonly=True)
        try:
            report = scrub_catalog(root, state, full=full, skip=skip)
        finally:
            state.close()
        self.last, self.last_at = report, time.time()
        return report

    def new_foreign(self, report: ScrubReport) -> list[str]:
        """Foreign files not reported before (each is reported once per run)."""
        fresh = [rel for rel in report.foreign if rel not in self._foreign_reported]
        self._foreign_reported = set(report.foreign)
        return fresh

    def status(self) -> dict[str, object]:
        if self.last is None:
            return {}
        return {
            "last_at": self.last_at,
            "files": self.last.checked,
            "hashed": self.last.hashed,
            "full": self.last.full,
            "duration_ms": round(self.last.seconds * 1000, 1),
            "repaired_total": self.repaired,
            "removed_total": self.removed,
            "foreign": self.last.foreign[:10],
            "foreign_count": len(self.last.foreign),
        }


# -- the command ------------------------------------------------------------------------


def _running_daemon(state: State) -> int | None:
    """The pid of a daemon that owns this state right now (fresh heartbeat, alive)."""
    try:
        beat = json.loads(state.meta("daemon") or "{}")
    except ValueError:
        return None
    pid = beat.get("pid")
    if not beat.get("running") or not isinstance(pid, int) or time.time() - beat.get("heartbeat_at", 0) > 30:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def scrub_command(settings: CatalogSettings, watched: Iterable[Path], *, fix: bool, full: bool, out: TextIO) -> int:
    """``stacwatchd scrub``: print what a scrub finds (and, with ``fix``, repair it).

    Exit status: 0 when the catalog matches the state (or was repaired), 1 when damage
    was found and is still there, 2 when there is no state to check against.
    """
    state_path = settings.state_path
    if not state_path.exists():
        raise StacwatchdError(state_path, "no state file: nothing to check the catalog against")
    root = settings.root.resolve()
    skip = [p for p in (Path(w).resolve() for w in watched) if p.is_relative_to(root)]
    state = State(state_path, readonly=True)
    try:
        report = scrub_catalog(root, state, full=full, skip=skip)
        daemon = _running_daemon(state)
    finally:
        state.close()
    s = report.summary()
    out.write(
        f"scrub: {s['checked']} files checked, {s['hashed']} hashed ({report.seconds:.1f} s): "
        f"{s['missing']} missing, {s['damaged']} damaged, {s['strays']} stray, {s['foreign']} foreign\n"
    )
    for label, paths in (("missing", report.missing), ("damaged", report.damaged), ("stray", report.strays)):
        out.writelines(f"  {label:8} {rel}\n" for rel in paths)
    out.writelines(f"  foreign  {rel} (not written by stacwatchd: left alone)\n" for rel in report.foreign)
    out.writelines(f"  unreadable {rel}/ (not checked)\n" for rel in report.unreadable)
    if daemon is not None and report.damage:
        out.write(f"not repaired here: the daemon (pid {daemon}) owns the catalog and repairs it at its next reconcile pass\n")
        return 1
    if not fix:
        if report.damage:
            out.write(f"to repair: {REPAIR_COMMAND}\n")
        return 1 if report.damage else 0
    if daemon is None and (report.damage or report.verified):
        with CatalogWriter(settings) as writer:  # also records the mtimes of files found right
            _, done = repair(writer, report)
            writer.flush()
        if report.damage:
            out.write(
                f"repaired: {len(done.rewritten)} rewritten, {len(done.removed)} removed, {len(done.forgotten)} forgotten\n"
            )
    return 0


def repair_hint(catalog: Path, settings: CatalogSettings) -> str | None:
    """What to run when ``validate`` finds damage in a catalog that has a state index."""
    folder = catalog if catalog.is_dir() or catalog.suffix != ".json" else catalog.parent
    folder = folder.resolve()
    state_path = settings.state_path if folder == settings.root.resolve() else folder / STATE_DIRNAME / "state.db"
    if not state_path.exists():
        return None
    return (
        f"hint: the state index {state_path} holds what this catalog should be: run '{REPAIR_COMMAND}'"
        f" (a running daemon repairs it at its next reconcile pass)"
    )
