"""Filesystem events in, small :class:`FileEvent` records out; nothing heavy in a handler.

A :class:`Watcher` owns watchdog observers and one handler per watched root. Handlers only
translate watchdog's events into our own record and pass it to a sink (the settler); the
only I/O they do is listing a folder that has just appeared, because files that were
already inside it produce no events of their own that can be trusted.

Events are hints (invariant 6): the watcher keeps each root watched through unmounts,
deletions and kernel limits, and says so in the log, but reconciliation is the truth.
A vanished root therefore never produces deletions here: an unmounted share must not
look like a mass delete.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat as stat_module
import sys
import threading
import time
from collections.abc import Iterable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT, BaseObserver, EventQueue, ObservedWatch
from watchdog.observers.polling import PollingObserver

from stacwatchd.log import get_logger

if sys.platform.startswith("linux"):
    from watchdog.observers.inotify import InotifyFullEmitter, InotifyWatchGroup
    from watchdog.observers.inotify_c import InotifyFD
    from watchdog.observers.inotify_move_event_grouper import GroupedInotifyEvent, PathedInotifyEvent

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

#: Overflows of one root closer together than this are reported (and rebuilt) once, at
#: the end of the burst, so that an overflow storm cannot become a reconcile storm.
OVERFLOW_COOLDOWN = 1.0

#: ``_Root.lost`` values after which a failure is a new loss rather than a failed retry.
_FRESH = (None, "not started", "stopped")

#: inotify_add_watch / inotify_init errors that mean "out of kernel resources".
_LIMIT_ERRNOS = frozenset({errno.ENOSPC, errno.EMFILE})


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


@dataclass(slots=True, eq=False)
class _Root:
    path: Path
    text: str
    recursive: bool
    accepts: Accepts
    nested: tuple[str, ...] = ()
    handler: _Handler | None = None
    observed: ObservedWatch | None = None
    observer: BaseObserver | None = None
    backend: str = ""
    identity: tuple[int, int] | None = None
    lost: str | None = "not started"
    lost_at: float = 0.0
    retry_at: float = 0.0
    backoff: float = 0.0
    attempts: int = 0
    wants_polling: bool = False
    limit_hit: str | None = None
    limit_reported: bool = False
    overflow_at: float = float("-inf")
    overflow_held: int = 0
    rebuild: Callable[[], None] | None = None


class _Handler(FileSystemEventHandler):
    """Translate one root's watchdog events into FileEvents; never raise into watchdog."""

    def __init__(self, watcher: Watcher, root: _Root) -> None:
        self._watcher = watcher
        self._root = root
        self._prefix = root.text if root.text.endswith(os.sep) else root.text + os.sep
        self.root_changed = False

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self._translate(event)
        except Exception:
            self._watcher._log.exception("watch_event_failed", path=os.fsdecode(event.src_path))

    def _translate(self, event: FileSystemEvent) -> None:
        if event.is_synthetic:
            return  # a folder's contents are listed by _arrived, once, with our filter
        kind = event.event_type
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if kind == "moved" else ""
        if event.is_directory:
            if kind == "created":
                self._arrived(src)
            elif kind == "deleted":
                if src.rstrip(os.sep) == self._root.text.rstrip(os.sep):
                    self.root_changed = True
                    self._watcher._wake.set()
                else:
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
        if self._root.accepts(p) and (kind != "deleted" or self._intact()):
            self._watcher._emit(
                FileEvent(kind, p, self._root.path, time.monotonic(), closes=self._root.backend == "inotify")
            )

    def _left(self, path: str) -> None:
        if self._mine(path, is_dir=True) and self._intact():
            self._watcher._emit(FileEvent("dir_gone", Path(path), self._root.path, time.monotonic()))

    def _intact(self) -> bool:
        """Whether the root is still the folder we started watching.

        A share unmounted from under a polled root leaves the empty mount point behind;
        the next poll then "sees" every file deleted. Those deletions are dropped here,
        and the keeper re-watches the root.
        """
        try:
            st = os.stat(self._root.text)
        except OSError:
            intact = False
        else:
            intact = (st.st_dev, st.st_ino) == self._root.identity
        if not intact:
            self.root_changed = True
            self._watcher._wake.set()
        return intact

    def _arrived(self, path: str) -> None:
        if self._mine(path, is_dir=True):
            self._watcher._found(self._root, Path(path))


# ---------------------------------------------------------------------------
# inotify with hooks for queue overflow and watch limits
# ---------------------------------------------------------------------------


class _Hooks(Protocol):
    """What the inotify machinery reports back; called from watchdog's threads, lock-free."""

    def _inotify_overflowed(self, root: str, deferred: Callable[[], None] | None) -> None: ...

    def _inotify_limit(self, root: str, path: str, error: OSError) -> None: ...


if sys.platform.startswith("linux"):

    @dataclass(eq=False)
    class _WatchGroup(InotifyWatchGroup):
        """watchdog's watch group, reporting overflows and per-folder watch failures.

        watchdog rebuilds its watches after ``IN_Q_OVERFLOW`` but tells no handler, and
        silently skips sub-folders it cannot watch; both mean lost events for us. It also
        keeps watching a folder moved out of the tree under its old name, so that
        changes over there would be reported for whatever takes that name here.
        """

        hooks: _Hooks | None = None
        root: str = ""
        _rebuilt_at: float = field(default=float("-inf"), init=False)

        def on_queue_overflow(self) -> None:
            """Rebuild at most once per cooldown; a later overflow defers to the keeper.

            watchdog's rebuild drops every queued event and re-walks the tree; a burst of
            overflows handled one rebuild each would let no event through at all.
            """
            now = time.monotonic()
            deferred = None
            if now - self._rebuilt_at >= OVERFLOW_COOLDOWN:
                self.rebuild()
            else:
                deferred = self.rebuild
            if self.is_active and self.hooks is not None:
                self.hooks._inotify_overflowed(self.root, deferred)

        def rebuild(self) -> None:
            """Drop events whose order is lost and re-add watches for folders made meanwhile."""
            self._rebuilt_at = time.monotonic()
            super().on_queue_overflow()

        def read_event(self) -> GroupedInotifyEvent | None:
            event = super().read_event()
            if isinstance(event, PathedInotifyEvent) and event.ev.is_moved_from and event.ev.is_directory:
                self._unwatch_subtree(event.path)  # moved out: no IN_MOVED_TO came to pair it
            return event

        def _unwatch_subtree(self, path: bytes) -> None:
            below = path.rstrip(b"/") + b"/"
            with self._lock:
                if not self.is_active:
                    return
                wds = [wd for p, wd in self._active_callbacks_by_path.items() if p == path or p.startswith(below)]
                if wds:
                    self._remove_callbacks(wds)

        def _add_callback(self, path: bytes) -> None:
            try:
                wd = self._inotify_fd.add_callback(path, self.event_mask, self._callback, self._id)
            except OSError as exc:
                if exc.errno in _LIMIT_ERRNOS and self.hooks is not None:
                    self.hooks._inotify_limit(self.root, os.fsdecode(path), exc)
                if path == self.path:
                    raise
                return
            self._active_callbacks_by_path[path] = wd
            self._active_callbacks_by_watch[wd] = path

    class _InotifyEmitter(InotifyFullEmitter):
        """Full events (moves from/to outside stay moves) through a hooked watch group."""

        def __init__(self, event_queue: EventQueue, watch: ObservedWatch, *, hooks: _Hooks, **kwargs: Any) -> None:
            super().__init__(event_queue, watch, **kwargs)
            self._hooks = hooks

        def on_thread_start(self) -> None:
            self._inotify = _WatchGroup(
                self._inotify_fd,
                os.fsencode(self.watch.path),
                event_mask=self.get_event_mask_from_filter(),
                is_recursive=self.watch.is_recursive,
                follow_symlink=self.watch.follow_symlink,
                hooks=self._hooks,
                root=self.watch.path,
            )

    class _InotifyObserver(BaseObserver):
        """One inotify instance for all roots; raises OSError if the kernel refuses one."""

        def __init__(self, hooks: _Hooks) -> None:
            self._inotify_fd = InotifyFD()
            self._inotify_fd.start()
            super().__init__(
                _InotifyEmitter, timeout=DEFAULT_OBSERVER_TIMEOUT, inotify_fd=self._inotify_fd, hooks=hooks
            )

        def on_thread_stop(self) -> None:
            super().on_thread_stop()
            self._inotify_fd.stop()
            self._inotify_fd.join()


# ---------------------------------------------------------------------------
# Watcher
# ---------------------------------------------------------------------------


class Watcher:
    """Watch folders and hand every relevant change to ``sink`` as a :class:`FileEvent`.

    ``sink`` runs in watchdog's dispatcher thread (and in the watcher's own thread when
    a lost root comes back), so it must be quick: ``Settler.feed`` is. Roots can be added
    and removed while running. A root that is missing, vanishes or is replaced is
    logged and re-watched with backoff; when it is back, its files are reported as
    ``found``. ``on_overflow(root)`` is called, from a watcher thread, when the kernel
    dropped events, so the daemon can reconcile at once; a burst of overflows is
    reported at its start and once more after it (at most once per ``OVERFLOW_COOLDOWN``).
    """

    def __init__(
        self,
        sink: Sink,
        *,
        observer: ObserverKind = "auto",
        polling_interval: float = 1.0,
        log: structlog.typing.FilteringBoundLogger | None = None,
        on_overflow: Callable[[Path], None] | None = None,
        check_interval: float = 1.0,
        retry_initial: float = 0.25,
        retry_max: float = 30.0,
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
        self._check_interval = check_interval
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._lock = threading.RLock()
        self._roots: dict[Path, _Root] = {}
        self._by_text: dict[str, _Root] = {}
        self._inotify: BaseObserver | None = None
        self._polling: BaseObserver | None = None
        self._running = False
        self._wake = threading.Event()
        self._keeper: threading.Thread | None = None
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

    def watch(self, root: Path, *, recursive: bool = True, accepts: Accepts) -> None:
        """Watch ``root`` (again, with new settings, if already watched).

        Existing files are not reported: the start-up reconcile does that. A root that
        does not exist yet is retried until it does, and its files are then ``found``.
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
            self._by_text[entry.text] = entry
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
            self._by_text.pop(entry.text, None)
            self._detach(entry)
            self._renest()
        self._log.info("watch_removed", path=str(path))

    def start(self) -> None:
        """Start observing every root added so far, and the thread that keeps them watched."""
        with self._lock:
            if self._running:
                return
            self._open_inotify()
            self._running = True
            for entry in self._roots.values():
                self._establish(entry)
            self._wake.clear()
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
                entry.handler = entry.observed = entry.observer = None
                entry.lost = "stopped"
            observers = [o for o in (self._inotify, self._polling) if o is not None]
            self._inotify = self._polling = None
        for obs in observers:
            obs.stop()
        for obs in observers:
            obs.join(timeout)

    # -- hooks from watchdog's threads (no locks taken) -------------------------------

    def _inotify_overflowed(self, root: str, deferred: Callable[[], None] | None) -> None:
        entry = self._by_text.get(root)
        with self._overflow_lock:
            self._overflows += 1
            if entry is None:
                return
            if deferred is not None:
                entry.rebuild = deferred
            if time.monotonic() - entry.overflow_at < OVERFLOW_COOLDOWN:
                entry.overflow_held += 1
                return
            entry.overflow_at = time.monotonic()
        self._report_overflow(entry, held=0)

    def _report_overflow(self, entry: _Root, held: int) -> None:
        self._log.warning("inotify_overflow", path=entry.text, overflows=self._overflows, coalesced=held)
        if self._on_overflow is not None:
            try:
                self._on_overflow(entry.path)
            except Exception:
                self._log.exception("overflow_callback_failed", path=entry.text)

    def _flush_overflows(self, roots: list[_Root]) -> None:
        """Keeper: report (and rebuild) overflows held back during a burst, once it is over."""
        for entry in roots:
            with self._overflow_lock:
                if not entry.overflow_held or time.monotonic() - entry.overflow_at < OVERFLOW_COOLDOWN:
                    continue
                held, rebuild = entry.overflow_held, entry.rebuild
                entry.overflow_held, entry.rebuild = 0, None
                entry.overflow_at = time.monotonic()
            if rebuild is not None:
                try:
                    rebuild()
                except Exception:
                    self._log.exception("inotify_rebuild_failed", path=entry.text)
            self._report_overflow(entry, held=held)

    def _inotify_limit(self, root: str, path: str, error: OSError) -> None:
        entry = self._by_text.get(root)
        if entry is not None and entry.limit_hit is None:
            entry.limit_hit = f"{path}: {error.strerror}"
            self._wake.set()

    # -- internals ----------------------------------------------------------------------

    def _emit(self, event: FileEvent) -> None:
        self._sink(event)

    def _found(self, root: _Root, folder: Path) -> int:
        """Report the files already inside a folder that appeared (or came back)."""
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

    def _owns(self, root: _Root, path: str) -> bool:
        return not any(path == n or path.startswith(n + os.sep) for n in root.nested)

    def _renest(self) -> None:
        texts = [r.text for r in self._roots.values()]
        for r in self._roots.values():
            prefix = r.text.rstrip(os.sep) + os.sep
            r.nested = tuple(t for t in texts if t != r.text and t.startswith(prefix))

    def _open_inotify(self) -> None:
        if self._mode == "polling":
            return
        if not sys.platform.startswith("linux"):
            self._log.info("inotify_unavailable", reason="not Linux", fallback="polling")
            return
        try:
            obs = _InotifyObserver(self)
        except OSError as exc:
            if self._mode == "inotify":
                raise
            self._log.warning("inotify_unavailable", reason=exc.strerror or str(exc), fallback="polling")
            return
        obs.start()
        self._inotify = obs

    def _polling_observer(self) -> BaseObserver:
        if self._polling is None:
            obs = PollingObserver(timeout=self._polling_interval)
            obs.start()
            self._polling = obs
        return self._polling

    def _establish(self, entry: _Root) -> bool:
        """Schedule ``entry`` on an observer (lock held); mark it lost on failure."""
        try:
            st = os.stat(entry.text)
        except OSError as exc:
            self._lose(entry, "missing" if isinstance(exc, FileNotFoundError) else exc.strerror or str(exc))
            return False
        if not stat_module.S_ISDIR(st.st_mode):
            self._lose(entry, "not a directory")
            return False
        if self._mode == "auto" and self._inotify is not None and not entry.wants_polling:
            fstype = filesystem_type(entry.path)
            if fstype in NETWORK_FILESYSTEMS:
                self._log.info("watch_network_filesystem", path=entry.text, fstype=fstype, observer="polling")
                entry.wants_polling = True
        use_inotify = self._inotify is not None and not entry.wants_polling
        observer = self._inotify if use_inotify else self._polling_observer()
        assert observer is not None
        handler = _Handler(self, entry)
        entry.limit_hit = None
        entry.identity = (st.st_dev, st.st_ino)
        try:
            observed = observer.schedule(handler, entry.text, recursive=entry.recursive)
        except OSError as exc:
            if use_inotify and exc.errno in _LIMIT_ERRNOS and self._mode == "auto":
                return self._fall_back(entry, f"{entry.text}: {exc.strerror}")
            self._lose(entry, exc.strerror or str(exc))
            return False
        entry.handler, entry.observed, entry.observer = handler, observed, observer
        entry.backend = "inotify" if use_inotify else "polling"
        entry.lost = None
        entry.backoff = 0.0
        entry.attempts = 0
        if use_inotify and entry.limit_hit and self._mode == "auto":
            return self._fall_back(entry, entry.limit_hit)
        self._log.debug("watch_started", path=entry.text, observer=entry.backend, recursive=entry.recursive)
        return True

    def _fall_back(self, entry: _Root, reason: str) -> bool:
        """inotify ran out of watches for this root: poll it instead (lock held)."""
        self._log.warning(
            "inotify_limit_reached",
            path=entry.text,
            reason=reason,
            fallback="polling",
            hint="raise fs.inotify.max_user_watches",
        )
        self._detach(entry)
        entry.wants_polling = True
        return self._establish(entry)

    def _detach(self, entry: _Root) -> None:
        if entry.observer is not None and entry.observed is not None:
            with contextlib.suppress(KeyError, OSError):
                entry.observer.unschedule(entry.observed)
        entry.handler = entry.observed = entry.observer = None

    def _lose(self, entry: _Root, reason: str) -> None:
        self._detach(entry)
        now = time.monotonic()
        first = entry.lost in _FRESH
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
            log(
                "watch_root_still_lost", path=entry.text, reason=reason, attempts=entry.attempts, retry_in=entry.backoff
            )
        entry.retry_at = now + entry.backoff

    def _health(self, entry: _Root) -> str | None:
        """Why a live root is no longer watched correctly, or None."""
        if entry.handler is not None and entry.handler.root_changed:
            return "deleted or replaced"
        try:
            st = os.stat(entry.text)
        except FileNotFoundError:
            return "missing"
        except OSError as exc:
            return exc.strerror or str(exc)
        if (st.st_dev, st.st_ino) != entry.identity:
            return "replaced"
        return None

    def _keep(self) -> None:
        """Keeper thread: check roots every ``check_interval`` and re-establish lost ones."""
        while True:
            timeout = self._next_check()
            self._wake.wait(timeout)
            self._wake.clear()
            with self._lock:
                if not self._running:
                    return
            try:
                self._check()
            except Exception:
                self._log.exception("watch_check_failed")

    def _next_check(self) -> float:
        with self._lock:
            now = time.monotonic()
            waits = [self._check_interval]
            waits += [max(0.0, r.retry_at - now) for r in self._roots.values() if r.lost]
            waits += [
                max(0.0, r.overflow_at + OVERFLOW_COOLDOWN - now) for r in self._roots.values() if r.overflow_held
            ]
            return min(waits)

    def _check(self) -> None:
        rescans: list[_Root] = []
        with self._lock:
            if not self._running:
                return
            roots = list(self._roots.values())
            for entry in roots:
                if entry.lost is None and self._check_live(entry):
                    rescans.append(entry)
                if entry.lost is not None and time.monotonic() >= entry.retry_at and self._retry(entry):
                    rescans.append(entry)
        for entry in rescans:
            count = self._found(entry, entry.path)
            self._log.info("watch_root_rescanned", path=entry.text, found=count)
        self._flush_overflows(roots)

    def _check_live(self, entry: _Root) -> bool:
        """Fall back or mark lost as needed (lock held); True when the root needs a rescan."""
        if entry.limit_hit and entry.backend == "inotify":
            if self._mode == "auto":
                return self._fall_back(entry, entry.limit_hit)
            if not entry.limit_reported:
                entry.limit_reported = True
                self._log.error(
                    "inotify_limit_reached",
                    path=entry.text,
                    reason=entry.limit_hit,
                    hint="raise fs.inotify.max_user_watches; reconcile covers the rest",
                )
        reason = self._health(entry)
        if reason is not None:
            self._lose(entry, reason)
        return False

    def _retry(self, entry: _Root) -> bool:
        """Try to re-establish a lost root (lock held); True when it is back."""
        lost_for = time.monotonic() - entry.lost_at
        if not self._establish(entry):
            return False
        self._log.info("watch_root_restored", path=entry.text, observer=entry.backend, lost_seconds=round(lost_for, 3))
        return True
