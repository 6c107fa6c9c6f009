"""Filesystem events in, small :class:`FileEvent` records out; nothing heavy in a handler.

A :class:`Watcher` gives each watched root its own watchdog observer: inotify through
:mod:`stacwatchd.engine._inotify` (a watchdog emitter that reports queue overflows and
folders it could not watch), or watchdog's :class:`~watchdog.observers.polling.PollingObserver`.
Handlers run in watchdog's dispatcher thread and do no I/O at all: they translate an event
into a :class:`FileEvent` and hand it to the sink (the settler), or note that a folder
arrived or that the root itself went away. Everything that touches the disk happens in
the watcher's own thread: listing a folder that arrived (its files produce no events of
their own), checking every ``check_interval`` that each root is still the folder that was
watched (exists, same ``st_dev``/``st_ino``, still mounted), re-watching roots that were
replaced or came back, and calling back.

Events are hints (invariant 5), so the watcher says when they cannot be trusted:
``on_overflow(root)`` when the kernel dropped events, ``on_root_changed(root)`` when a
root was deleted and recreated, replaced, remounted, or came back after being missing.
The daemon answers both with a reconcile. A root that is missing, or a share unmounted
from under it (the mount point left behind), is only retried: it never produces
removals, and :meth:`Watcher.intact` tells the settler so.
"""

from __future__ import annotations

import errno
import functools
import os
import stat as stat_module
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from stacwatchd.log import get_logger

__all__ = [
    "NETWORK_FILESYSTEMS",
    "Accepts",
    "EventKind",
    "FileEvent",
    "ObserverKind",
    "ScanEntry",
    "Watcher",
    "filesystem_type",
    "scan_tree",
]

EventKind = Literal["created", "modified", "closed", "moved_in", "deleted", "found", "dir_gone"]
ObserverKind = Literal["auto", "inotify", "polling"]
Accepts = Callable[[Path], bool]
Sink = Callable[["FileEvent"], None]

#: watchdog file event types passed on under the same name; the rest (opened, attrib,
#: closed_no_write) say nothing about content, and our own workers cause them.
_FILE_KINDS: dict[str, EventKind] = {
    "created": "created",
    "modified": "modified",
    "closed": "closed",
    "deleted": "deleted",
}

#: Filesystems where inotify sees only local changes: ``auto`` polls roots on them.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "ceph", "glusterfs", "lustre",
        "gpfs", "beegfs", "9p", "virtiofs", "vboxsf", "davfs", "fuse.sshfs", "fuse.glusterfs",
        "fuse.ceph", "fuse.s3fs", "fuse.rclone", "fuse.gcsfuse", "fuse.blobfuse2", "fuse.goofys",
        "fuse.mountpoint-s3",
    }
)  # fmt: skip

#: Overflows of one root closer together than this are reported once more at the end of
#: the burst rather than one by one, so an overflow storm cannot become a reconcile storm.
OVERFLOW_COOLDOWN = 1.0

#: ``_Root.lost`` values after which a failure is a new loss rather than a failed retry.
_FRESH = (None, "not started", "stopped")

#: Errors from starting inotify on a root that mean "out of kernel resources".
_LIMIT_ERRNOS = frozenset({errno.ENOSPC, errno.EMFILE, errno.ENFILE})


@dataclass(frozen=True, slots=True)
class FileEvent:
    """What happened to one path under one watched root, and when we saw it."""

    kind: EventKind
    path: Path
    watch: Path
    at: float
    #: Whether a close event will follow a write (inotify), so that created/modified
    #: need not be judged by size and mtime alone.
    closes: bool = False


class ScanEntry(NamedTuple):
    """One regular file as a directory listing sees it (no file is opened)."""

    path: Path
    size: int
    mtime_ns: int
    inode: int


def scan_tree(
    root: Path,
    accepts: Accepts,
    recursive: bool = True,
    *,
    on_error: Callable[[Path, OSError], None] | None = None,
    skip: Iterable[Path] = (),
) -> Iterator[ScanEntry]:
    """Every accepted regular file under ``root``, using ``os.scandir`` and one stat each.

    Hidden folders are skipped and symlinked folders not followed, like the watcher.
    A folder that vanishes mid-scan is skipped (its files are gone). Any other error
    below ``root`` goes to ``on_error`` or, without one, is raised: a reconcile must not
    mistake an unreadable folder for an empty one. Errors on ``root`` itself always raise.
    """
    top = os.fspath(root)
    skipped = {os.fspath(p) for p in skip}
    stack = [top]
    while stack:
        folder = stack.pop()
        if folder in skipped:
            continue
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    found = _scan_entry(entry, accepts, recursive, stack, on_error)
                    if found is not None:
                        yield found
        except OSError as exc:
            if folder == top:
                raise
            if isinstance(exc, FileNotFoundError | NotADirectoryError):
                continue
            if on_error is None:
                raise
            on_error(Path(folder), exc)


def _scan_entry(
    entry: os.DirEntry[str],
    accepts: Accepts,
    recursive: bool,
    stack: list[str],
    on_error: Callable[[Path, OSError], None] | None,
) -> ScanEntry | None:
    try:
        if entry.is_dir(follow_symlinks=False):
            if recursive and not entry.name.startswith("."):
                stack.append(entry.path)
            return None
        path = Path(entry.path)
        if not accepts(path):
            return None
        st = entry.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if on_error is None:
            raise
        on_error(Path(entry.path), exc)
        return None
    if not stat_module.S_ISREG(st.st_mode):
        return None
    return ScanEntry(path, st.st_size, st.st_mtime_ns, st.st_ino)


def filesystem_type(path: Path, mounts: str | None = None) -> str | None:
    """The type of the filesystem holding ``path`` (longest mount point that contains it).

    ``mounts`` is the text of ``/proc/self/mounts``, read when not given; None when
    unknown (not Linux, unreadable).
    """
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text()
        except OSError:
            return None
    target = os.fspath(path)
    best, best_type = -1, None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = _unescape_mount(fields[1])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, best_type = len(point), fields[2]
    return best_type


def _unescape_mount(field: str) -> str:
    """``/proc/mounts`` writes space, tab, newline and backslash as octal escapes."""
    for escaped, plain in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escaped, plain)
    return field


# ---------------------------------------------------------------------------
# Per-root state and the event handler
# ---------------------------------------------------------------------------


class _Identity(NamedTuple):
    """Which folder a root path is: its device and inode, and whether a mount starts there."""

    device: int
    inode: int
    mount_point: bool


def _identify(path: str) -> _Identity:
    """Stat ``path`` (and its parent): OSError if it cannot be, NotADirectoryError if no folder."""
    st = os.stat(path)
    if not stat_module.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
    parent = os.path.dirname(path.rstrip(os.sep)) or os.sep
    above = os.stat(parent)
    mount_point = above.st_dev != st.st_dev or (above.st_ino == st.st_ino and above.st_dev == st.st_dev)
    return _Identity(st.st_dev, st.st_ino, mount_point)


@dataclass(slots=True, eq=False)
class _Root:
    path: Path
    text: str
    recursive: bool
    accepts: Accepts
    nested: tuple[str, ...] = ()
    handler: _Handler | None = None
    observer: BaseObserver | None = None
    backend: str = ""
    #: (device, inode) of the folder being watched.
    identity: tuple[int, int] | None = None
    #: The root was the top of a mounted filesystem: found on its parent's filesystem
    #: instead, it is an unmounted share, not an empty folder.
    mount_point: bool = False
    lost: str | None = "not started"
    lost_at: float = 0.0
    retry_at: float = 0.0
    backoff: float = 0.0
    attempts: int = 0
    wants_polling: bool = False
    limit_hit: str | None = None
    limit_reported: bool = False
    #: An event said the root itself went away: check it now rather than at the next tick.
    suspect: bool = False
    overflow_held: int = 0
    overflow_reported_at: float = float("-inf")


class _Handler(FileSystemEventHandler):
    """Translate one root's watchdog events into FileEvents; no I/O, never raises into watchdog."""

    def __init__(self, watcher: Watcher, root: _Root, backend: str) -> None:
        self._watcher = watcher
        self._root = root
        self._top = root.text.rstrip(os.sep)
        self._prefix = self._top + os.sep
        self._closes = backend == "inotify"
        self.gone = False

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self._translate(event)
        except Exception:
            self._watcher._log.exception("watch_event_failed", path=os.fsdecode(event.src_path))

    def _translate(self, event: FileSystemEvent) -> None:
        if event.is_synthetic or self.gone or self._root.handler is not self:
            return  # a replaced or removed observer's last events say nothing about the root now
        kind = event.event_type
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if kind == "moved" else ""
        if event.is_directory:
            if kind == "deleted" and src.rstrip(os.sep) == self._top:
                self.gone = True
                self._watcher._root_went_away(self._root, self)
            elif kind == "created":
                self._arrived(src)
            elif kind == "deleted":
                self._left(src)
            elif kind == "moved":
                if src:
                    self._left(src)
                if dest:
                    self._arrived(dest)
            return
        if kind == "moved":
            if src:
                self._file("deleted", src)
            if dest:
                self._file("moved_in", dest)
        elif kind in _FILE_KINDS:
            self._file(_FILE_KINDS[kind], src)

    def _mine(self, path: str, is_dir: bool) -> bool:
        """Inside this root, not inside a nested root, no hidden folder on the way."""
        if not path.startswith(self._prefix):
            return False
        for nested in self._root.nested:
            if path == nested or path.startswith(nested + os.sep):
                return False
        parts = path[len(self._prefix) :].split(os.sep)
        folders = parts if is_dir else parts[:-1]
        if folders and not self._root.recursive:
            return False
        return not any(part.startswith(".") for part in folders)

    def _file(self, kind: EventKind, path: str) -> None:
        if not self._mine(path, is_dir=False):
            return
        p = Path(path)
        if self._root.accepts(p):
            self._watcher._emit(FileEvent(kind, p, self._root.path, time.monotonic(), closes=self._closes))

    def _left(self, path: str) -> None:
        if self._mine(path, is_dir=True):
            self._watcher._emit(FileEvent("dir_gone", Path(path), self._root.path, time.monotonic()))

    def _arrived(self, path: str) -> None:
        if self._mine(path, is_dir=True):
            self._watcher._arrival(self._root, self, Path(path))


class _Reports:
    """What one root's inotify emitter reports, bound to the handler it was started with."""

    def __init__(self, watcher: Watcher, root: _Root, handler: _Handler) -> None:
        self._watcher = watcher
        self._root = root
        self._handler = handler

    def overflowed(self) -> None:
        self._watcher._overflowed(self._root, self._handler)

    def unwatchable(self, path: str, error: OSError) -> None:
        if self._root.handler is not self._handler:
            return
        if error.errno not in _LIMIT_ERRNOS:
            self._watcher._log.warning("watch_folder_unwatchable", path=path, error=error.strerror or str(error))
        elif self._root.limit_hit is None:
            self._root.limit_hit = f"{path}: {error.strerror}"
            self._watcher._wake.set()


# ---------------------------------------------------------------------------
# Watcher
# ---------------------------------------------------------------------------


class Watcher:
    """Watch folders and hand every relevant change to ``sink`` as a :class:`FileEvent`.

    ``sink`` runs in watchdog's dispatcher threads (and in the watcher's own thread for
    folders that arrived), so it must be quick: ``Settler.feed`` is. Roots can be added
    and removed while running. A root that is missing is logged and retried with
    backoff; one that was replaced is re-watched at once. Both then go to
    ``on_root_changed(root)`` or, without it, have their files reported as ``found``.
    ``on_overflow(root)`` is called when the kernel dropped events of a root: at once, and
    once more after a burst (at most once per ``overflow_cooldown``). Callbacks run in
    the watcher's own thread.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        observer: ObserverKind = "auto",
        polling_interval: float = 1.0,
        log: structlog.typing.FilteringBoundLogger | None = None,
        on_overflow: Callable[[Path], None] | None = None,
        on_root_changed: Callable[[Path], None] | None = None,
        check_interval: float = 1.0,
        retry_initial: float = 0.25,
        retry_max: float = 30.0,
        overflow_cooldown: float = OVERFLOW_COOLDOWN,
    ) -> None:
        if observer not in ("auto", "inotify", "polling"):
            raise ValueError(f"observer must be auto, inotify or polling, not {observer!r}")
        if observer == "inotify" and not sys.platform.startswith("linux"):
            raise ValueError("the inotify observer needs Linux")
        self._sink = sink
        self._mode: ObserverKind = observer
        self._polling_interval = polling_interval
        self._log = log or get_logger("stacwatchd.engine.watch")
        self._on_overflow = on_overflow
        self._on_root_changed = on_root_changed
        self._check_interval = check_interval
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._overflow_cooldown = overflow_cooldown
        self._lock = threading.RLock()
        self._roots: dict[Path, _Root] = {}
        self._running = False
        self._wake = threading.Event()
        self._keeper: threading.Thread | None = None
        self._next_tick = 0.0
        self._arrivals: deque[tuple[_Root, _Handler, Path]] = deque()
        self._retired: list[BaseObserver] = []
        self._overflows = 0
        self._overflow_lock = threading.Lock()

    # -- public API -------------------------------------------------------------------

    @property
    def roots(self) -> tuple[Path, ...]:
        """The watched roots (resolved), whether currently live or being re-established."""
        with self._lock:
            return tuple(self._roots)

    @property
    def overflows(self) -> int:
        """How many times the kernel reported lost events (per root), since creation."""
        return self._overflows

    def status(self) -> dict[Path, str]:
        """Per root: ``inotify``, ``polling``, or ``lost: <reason>``; for health reports."""
        with self._lock:
            return {p: (f"lost: {r.lost}" if r.lost else r.backend) for p, r in self._roots.items()}

    def intact(self, root: Path) -> bool:
        """Whether removals under ``root`` may be applied now: the root is watched and is
        still the very folder that was watched (not missing, replaced or unmounted).

        Safe from any thread; it stats the root. A root this watcher does not know is
        judged by whether it is a folder at all.
        """
        entry = self._roots.get(Path(root))
        if entry is None:
            return os.path.isdir(root)
        identity, mount_point = entry.identity, entry.mount_point
        if entry.lost is not None or identity is None:
            return False
        try:
            now = _identify(entry.text)
        except OSError:
            ok = False
        else:
            ok = (now.device, now.inode) == identity and (now.mount_point or not mount_point)
        if not ok:
            entry.suspect = True
            self._wake.set()
        return ok

    def watch(self, root: Path, *, recursive: bool = True, accepts: Accepts) -> None:
        """Watch ``root`` (again, with new settings, if already watched).

        Existing files are not reported: the start-up reconcile does that. A root that
        does not exist yet is retried until it does, and is then treated as changed.
        """
        path = Path(root).resolve()
        with self._lock:
            old = self._roots.get(path)
            if old is not None and old.recursive == recursive:
                old.accepts = accepts
                return
            if old is not None:
                self._detach(old)
            entry = _Root(path=path, text=str(path), recursive=recursive, accepts=accepts)
            self._roots[path] = entry
            self._renest()
            if self._running and not self._establish(entry):
                self._wake.set()

    def unwatch(self, root: Path) -> None:
        """Stop watching ``root``; its pending settle entries are the caller's to drop."""
        path = Path(root).resolve()
        with self._lock:
            entry = self._roots.pop(path, None)
            if entry is None:
                return
            self._detach(entry)
            self._renest()
        self._log.info("watch_removed", path=str(path))

    def start(self) -> None:
        """Start observing every root added so far, and the thread that keeps them watched."""
        with self._lock:
            if self._running:
                return
            self._running = True
            for entry in self._roots.values():
                self._establish(entry)
            self._wake.clear()
            self._next_tick = time.monotonic() + self._check_interval
            self._keeper = threading.Thread(target=self._keep, name="stacwatchd-watch", daemon=True)
            self._keeper.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop observing; no events reach the sink afterwards."""
        with self._lock:
            if not self._running:
                return
            self._running = False
            keeper, self._keeper = self._keeper, None
        self._wake.set()
        if keeper is not None:
            keeper.join(timeout)
        with self._lock:
            for entry in self._roots.values():
                self._detach(entry)
                entry.lost = "stopped"
            self._arrivals.clear()
        self._join_retired(timeout)

    # -- called from watchdog's threads (no watcher lock taken) ----------------------------

    def _emit(self, event: FileEvent) -> None:
        self._sink(event)

    def _arrival(self, root: _Root, handler: _Handler, folder: Path) -> None:
        self._arrivals.append((root, handler, folder))
        self._wake.set()

    def _root_went_away(self, root: _Root, handler: _Handler) -> None:
        if root.handler is handler:
            root.suspect = True
            self._wake.set()

    def _overflowed(self, root: _Root, handler: _Handler) -> None:
        with self._overflow_lock:
            self._overflows += 1
            if root.handler is handler:
                root.overflow_held += 1
        self._wake.set()

    # -- the keeper thread ----------------------------------------------------------------

    def _keep(self) -> None:
        """Check roots, list arrived folders, call back; until stopped."""
        while True:
            self._wake.wait(self._next_check())
            self._wake.clear()
            with self._lock:
                if not self._running:
                    return
            try:
                self._check()
            except Exception:
                self._log.exception("watch_check_failed")

    def _next_check(self) -> float:
        if self._arrivals:
            return 0.0
        with self._lock:
            now = time.monotonic()
            waits = [max(0.0, self._next_tick - now)]
            for r in self._roots.values():
                if r.lost:
                    waits.append(max(0.0, r.retry_at - now))
                if r.overflow_held:
                    waits.append(max(0.0, r.overflow_reported_at + self._overflow_cooldown - now))
            return min(waits)

    def _check(self) -> None:
        changed: list[_Root] = []
        with self._lock:
            if not self._running:
                return
            now = time.monotonic()
            tick = now >= self._next_tick
            if tick:
                self._next_tick = now + self._check_interval
            roots = list(self._roots.values())
            for entry in roots:
                if entry.lost is None and (tick or entry.suspect or entry.limit_hit) and self._check_live(entry):
                    changed.append(entry)
                if entry.lost is not None and now >= entry.retry_at and self._retry(entry):
                    changed.append(entry)
        self._list_arrivals()
        for entry in changed:
            self._changed(entry)
        self._report_overflows(roots)
        self._join_retired(timeout=5.0)

    def _check_live(self, entry: _Root) -> bool:
        """Fall back, re-watch or mark lost as needed (lock held); True when the root changed."""
        if entry.limit_hit and entry.backend == "inotify":
            if self._mode == "auto":
                # Files made in the unwatched folder before polling began produced no event.
                return self._fall_back(entry, entry.limit_hit, "inotify_limit_reached")
            if not entry.limit_reported:
                entry.limit_reported = True
                self._log.error(
                    "inotify_limit_reached",
                    path=entry.text,
                    reason=entry.limit_hit,
                    hint="raise fs.inotify.max_user_watches; reconcile covers the rest",
                )
        suspect, entry.suspect = entry.suspect, False
        reason = self._health(entry)
        if reason is None and suspect and entry.handler is not None and entry.handler.gone:
            reason = "interrupted"  # the same folder, but its observer stopped following it
        if reason is None:
            return False
        if reason in ("replaced", "interrupted"):
            self._log.warning("watch_root_replaced", path=entry.text, reason=reason)
            self._detach(entry)
            entry.lost = "replaced"
            if not self._establish(entry):
                return False
            self._log.info("watch_root_restored", path=entry.text, observer=entry.backend, lost_seconds=0.0)
            return True
        self._lose(entry, reason)
        return False

    def _health(self, entry: _Root) -> str | None:
        """Why a live root is no longer the folder being watched, or None."""
        try:
            now = _identify(entry.text)
        except (FileNotFoundError, NotADirectoryError):
            return "missing"
        except OSError as exc:
            return exc.strerror or str(exc)
        if entry.mount_point and not now.mount_point:
            return "unmounted"
        if (now.device, now.inode) != entry.identity:
            return "replaced"
        return None

    def _retry(self, entry: _Root) -> bool:
        """Try to re-establish a lost root (lock held); True when it is back."""
        lost_for = time.monotonic() - entry.lost_at
        if not self._establish(entry):
            return False
        self._log.info("watch_root_restored", path=entry.text, observer=entry.backend, lost_seconds=round(lost_for, 3))
        return True

    def _changed(self, entry: _Root) -> None:
        """A root came back or was replaced: its events since are not the whole story."""
        if self._on_root_changed is None:
            count = self._found(entry, entry.path)
            self._log.info("watch_root_rescanned", path=entry.text, found=count)
            return
        self._log.info("watch_root_changed", path=entry.text)
        try:
            self._on_root_changed(entry.path)
        except Exception:
            self._log.exception("root_changed_callback_failed", path=entry.text)

    def _list_arrivals(self) -> None:
        while self._arrivals:
            root, handler, folder = self._arrivals.popleft()
            if root.handler is handler:
                self._found(root, folder)

    def _found(self, root: _Root, folder: Path) -> int:
        """Report the files already inside a folder that arrived (or a root that came back)."""
        count = 0

        def failed(path: Path, exc: OSError) -> None:
            self._log.warning("watch_scan_failed", path=str(path), error=exc.strerror or str(exc))

        try:
            for entry in scan_tree(folder, root.accepts, root.recursive, on_error=failed):
                if self._owns(root, str(entry.path)):
                    self._emit(FileEvent("found", entry.path, root.path, time.monotonic()))
                    count += 1
        except OSError as exc:
            if not isinstance(exc, FileNotFoundError | NotADirectoryError):
                failed(folder, exc)
        return count

    def _report_overflows(self, roots: Iterable[_Root]) -> None:
        """At most one report per root and cooldown; what a burst held back comes after it."""
        for entry in roots:
            with self._overflow_lock:
                now = time.monotonic()
                if not entry.overflow_held or now - entry.overflow_reported_at < self._overflow_cooldown:
                    continue
                held, entry.overflow_held = entry.overflow_held, 0
                entry.overflow_reported_at = now
            self._log.warning("inotify_overflow", path=entry.text, overflows=self._overflows, coalesced=held - 1)
            if self._on_overflow is not None:
                try:
                    self._on_overflow(entry.path)
                except Exception:
                    self._log.exception("overflow_callback_failed", path=entry.text)

    # -- establishing roots (lock held) ---------------------------------------------------

    def _owns(self, root: _Root, path: str) -> bool:
        return not any(path == n or path.startswith(n + os.sep) for n in root.nested)

    def _renest(self) -> None:
        texts = [r.text for r in self._roots.values()]
        for r in self._roots.values():
            prefix = r.text.rstrip(os.sep) + os.sep
            r.nested = tuple(t for t in texts if t != r.text and t.startswith(prefix))

    def _establish(self, entry: _Root) -> bool:
        """Give ``entry`` an observer; mark it lost on failure."""
        try:
            identity = _identify(entry.text)
        except (FileNotFoundError, NotADirectoryError) as exc:
            self._lose(entry, "missing" if isinstance(exc, FileNotFoundError) else "not a directory")
            return False
        except OSError as exc:
            self._lose(entry, exc.strerror or str(exc))
            return False
        if entry.mount_point and not identity.mount_point:
            self._lose(entry, "unmounted")
            return False
        use_inotify = self._wants_inotify(entry)
        handler = _Handler(self, entry, "inotify" if use_inotify else "polling")
        entry.limit_hit = None
        entry.limit_reported = False
        entry.suspect = False
        entry.identity = (identity.device, identity.inode)
        entry.mount_point = entry.mount_point or identity.mount_point
        entry.handler = handler  # before start: the emitter reports through it while starting
        observer = self._observer(entry, handler, use_inotify)
        try:
            observer.schedule(handler, entry.text, recursive=entry.recursive)
            observer.start()
        except OSError as exc:
            entry.handler = None
            self._retire(observer)
            if use_inotify and exc.errno in _LIMIT_ERRNOS and self._mode == "auto":
                event = "inotify_limit_reached" if exc.errno == errno.ENOSPC else "inotify_unavailable"
                return self._fall_back(entry, f"{entry.text}: {exc.strerror}", event)
            self._lose(entry, exc.strerror or str(exc))
            return False
        entry.observer = observer
        entry.backend = "inotify" if use_inotify else "polling"
        entry.lost = None
        entry.backoff = 0.0
        entry.attempts = 0
        if use_inotify and entry.limit_hit and self._mode == "auto":
            return self._fall_back(entry, entry.limit_hit, "inotify_limit_reached")
        self._log.debug("watch_started", path=entry.text, observer=entry.backend, recursive=entry.recursive)
        return True

    def _wants_inotify(self, entry: _Root) -> bool:
        if self._mode == "polling" or entry.wants_polling:
            return False
        if not sys.platform.startswith("linux"):
            entry.wants_polling = True
            self._log.info("inotify_unavailable", path=entry.text, reason="not Linux", fallback="polling")
            return False
        if self._mode == "auto":
            fstype = filesystem_type(entry.path)
            if fstype in NETWORK_FILESYSTEMS:
                self._log.info("watch_network_filesystem", path=entry.text, fstype=fstype, observer="polling")
                entry.wants_polling = True
                return False
        return True

    def _observer(self, entry: _Root, handler: _Handler, use_inotify: bool) -> BaseObserver:
        if use_inotify:
            from stacwatchd.engine._inotify import InotifyEmitter

            emitter = functools.partial(
                InotifyEmitter, reports=_Reports(self, entry, handler), overflow_cooldown=self._overflow_cooldown
            )
            observer = BaseObserver(emitter)  # type: ignore[arg-type]
        else:
            observer = PollingObserver(timeout=self._polling_interval)
        observer.name = "stacwatchd-observer"
        return observer

    def _fall_back(self, entry: _Root, reason: str, event: str) -> bool:
        """inotify is out of watches or instances for this root: poll it instead."""
        self._log.warning(
            event,
            path=entry.text,
            reason=reason,
            fallback="polling",
            hint="raise fs.inotify.max_user_watches / max_user_instances",
        )
        self._detach(entry)
        entry.wants_polling = True
        return self._establish(entry)

    def _detach(self, entry: _Root) -> None:
        observer, entry.observer, entry.handler = entry.observer, None, None
        if observer is not None:
            self._retire(observer)

    def _retire(self, observer: BaseObserver) -> None:
        """Stop an observer now (its emitters end their reads at once); join it later."""
        try:
            observer.stop()
        except Exception:
            self._log.exception("watch_observer_stop_failed")
        self._retired.append(observer)

    def _join_retired(self, timeout: float | None) -> None:
        with self._lock:
            retired, self._retired = self._retired, []
        for observer in retired:
            if observer.is_alive():
                observer.join(timeout)

    def _lose(self, entry: _Root, reason: str) -> None:
        self._detach(entry)
        now = time.monotonic()
        first = entry.lost in _FRESH or entry.lost == "replaced"
        entry.lost = reason
        if first:
            entry.lost_at = now
            entry.attempts = 0
            entry.backoff = self._retry_initial
            self._log.warning("watch_root_lost", path=entry.text, reason=reason, retry_in=entry.backoff)
        else:
            entry.attempts += 1
            entry.backoff = min(max(entry.backoff, self._retry_initial) * 2, self._retry_max)
            log = self._log.warning if entry.backoff >= self._retry_max else self._log.debug
            log("watch_root_still_lost", path=entry.text, reason=reason, attempts=entry.attempts, retry_in=entry.backoff)
        entry.retry_at = now + entry.backoff
