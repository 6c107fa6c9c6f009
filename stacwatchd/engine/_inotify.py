"""inotify(7) for the watcher, as a watchdog emitter: what watchdog's own observer hides.

watchdog's inotify observer recovers from a kernel queue overflow and skips folders it
cannot watch, but tells no handler about either; both mean lost events, which the daemon
must answer with a rescan. This module is the small layer of our own that says so: one
inotify instance per watched root (so an overflow names its root), plugged into watchdog
through its public :class:`~watchdog.observers.api.EventEmitter` and
:class:`~watchdog.observers.api.BaseObserver`, so that handlers, threads and
scheduling stay watchdog's.

What it queues are plain watchdog events: file created/modified/closed/deleted, a file
moved with only one side known (``FileMovedEvent(src, "")`` leaving the tree,
``FileMovedEvent("", dest)`` arriving), the same for folders, and
``DirDeletedEvent(root)`` when the root itself was deleted, moved away or unmounted,
after which the emitter stops. Moves are not paired: for the catalog a move is a
removal plus an arrival, and a folder moved away is unwatched at once so that nothing
done to it later is reported under its old name.

The emitter thread touches the filesystem only to add watches to folders as they
appear, which inotify requires; hidden folders (``.name``) are not watched, as the
watcher ignores them.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import select
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
)
from watchdog.observers.api import (
    DEFAULT_EMITTER_TIMEOUT,
    EventEmitter,
    EventQueue,
    ObservedWatch,
)

__all__ = ["Inotify", "InotifyEmitter", "InotifyReports"]

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

#: What a watched folder reports: content changes, arrivals, departures, and its own end.
WATCH_MASK = (
    IN_MODIFY
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
    | IN_DONT_FOLLOW
    | IN_EXCL_UNLINK
)

_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len
_READ_SIZE = 256 * 1024
_ROOT_GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.inotify_init1.argtypes = [ctypes.c_int]
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc


def _error(path: bytes | None = None) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, os.strerror(code), os.fsdecode(path) if path is not None else None)


class Inotify:
    """One inotify instance: add and remove watches, read events, wake a blocked reader.

    Only the thread that reads may :meth:`close`; other threads call :meth:`wake`.
    Raises :class:`OSError` (``EMFILE``: too many instances) when the kernel refuses one.
    """

    def __init__(self) -> None:
        fd = _libc().inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise _error()
        self._fd = fd
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        self._poll.register(self._wake_r, select.POLLIN)
        self._lock = threading.Lock()
        self._closed = False

    def add_watch(self, path: bytes, mask: int = WATCH_MASK) -> int:
        """Watch folder ``path``; the same folder watched twice keeps one descriptor.

        ``ENOSPC`` means the per-user watch limit (``max_user_watches``) is reached.
        """
        wd = _libc().inotify_add_watch(self._fd, path, mask)
        if wd < 0:
            raise _error(path)
        return wd

    def rm_watch(self, wd: int) -> None:
        """Stop watching; a watch the kernel already dropped is no error."""
        if _libc().inotify_rm_watch(self._fd, wd) < 0 and ctypes.get_errno() != errno.EINVAL:
            raise _error()

    def read(self, timeout: float) -> list[tuple[int, int, bytes]]:
        """Events as ``(wd, mask, name)``, waiting at most ``timeout`` s; [] when woken."""
        ready = {fd for fd, _ in self._poll.poll(max(0, int(timeout * 1000)))}
        if self._wake_r in ready or self._fd not in ready:
            return []
        try:
            buffer = os.read(self._fd, _READ_SIZE)
        except BlockingIOError:
            return []
        return list(_parse(buffer))

    def wake(self) -> None:
        """Make a blocked :meth:`read` return at once (and every later one)."""
        with self._lock:
            if not self._closed:
                try:
                    os.write(self._wake_w, b"!")
                except BlockingIOError:
                    pass  # the pipe is full: the reader is woken anyway

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                for fd in (self._fd, self._wake_r, self._wake_w):
                    os.close(fd)


def _parse(buffer: bytes) -> Iterator[tuple[int, int, bytes]]:
    offset = 0
    while offset + _HEADER.size <= len(buffer):
        wd, mask, _cookie, length = _HEADER.unpack_from(buffer, offset)
        start = offset + _HEADER.size
        yield wd, mask, buffer[start : start + length].rstrip(b"\0")
        offset = start + length


class InotifyReports(Protocol):
    """What the emitter tells the watcher besides events; called from the emitter thread."""

    def overflowed(self) -> None:
        """The kernel dropped events of this root (``IN_Q_OVERFLOW``)."""

    def unwatchable(self, path: str, error: OSError) -> None:
        """A folder below the root could not be watched (``ENOSPC``: out of watches)."""


class InotifyEmitter(EventEmitter):
    """Events of one watched folder (recursively or not) from its own inotify instance.

    ``overflow_cooldown``: after a queue overflow the watches are re-synchronised with
    the tree (folders made meanwhile gained no watch), at most once per cooldown, so that
    a storm of overflows cannot turn into a storm of tree walks.
    """

    def __init__(
        self,
        event_queue: EventQueue,
        watch: ObservedWatch,
        timeout: float = DEFAULT_EMITTER_TIMEOUT,
        event_filter: Any = None,
        *,
        reports: InotifyReports,
        overflow_cooldown: float = 1.0,
    ) -> None:
        super().__init__(event_queue, watch, timeout=timeout, event_filter=event_filter)
        self.name = "stacwatchd-inotify"
        self._reports = reports
        self._cooldown = overflow_cooldown
        self._root = os.fsencode(watch.path)
        self._recursive = watch.is_recursive
        self._inotify: Inotify | None = None
        self._root_wd = -1
        self._paths: dict[int, bytes] = {}
        self._wds: dict[bytes, int] = {}
        self._resynced_at = float("-inf")
        self._resync_due: float | None = None
        self._close_lock = threading.Lock()

    # -- lifecycle (watchdog's EventEmitter contract) -----------------------------------

    def on_thread_start(self) -> None:
        """Open the instance and watch the tree; raises OSError if the root cannot be."""
        self._inotify = Inotify()
        try:
            self._root_wd = self._add_tree(self._root, root=True)
        except BaseException:
            self._close()
            raise

    def on_thread_stop(self) -> None:
        inotify = self._inotify
        if inotify is not None:
            inotify.wake()
        if not self.is_alive():
            self._close()

    def run(self) -> None:
        try:
            super().run()
        finally:
            self._close()

    def _close(self) -> None:
        with self._close_lock:
            if self._inotify is not None:
                self._inotify.close()
                self._inotify = None

    def queue_events(self, timeout: float) -> None:
        inotify = self._inotify
        if inotify is None:
            return
        if self._resync_due is not None:
            timeout = max(0.0, min(timeout, self._resync_due - time.monotonic()))
        for wd, mask, name in inotify.read(timeout):
            if not self.should_keep_running():
                return
            self._handle(wd, mask, name)
        if self._resync_due is not None and time.monotonic() >= self._resync_due and self.should_keep_running():
            self._resync()

    # -- events ---------------------------------------------------------------------------

    def _handle(self, wd: int, mask: int, name: bytes) -> None:
        if mask & IN_Q_OVERFLOW:
            self._overflowed()
            return
        if mask & IN_IGNORED:
            path = self._paths.pop(wd, None)
            if path is not None and self._wds.get(path) == wd:
                del self._wds[path]
            if wd == self._root_wd:
                self._root_gone()
            return
        folder = self._paths.get(wd)
        if folder is None:
            return
        if not name:
            if wd == self._root_wd and mask & _ROOT_GONE:
                self._root_gone()
            return  # a sub-folder's own end: its parent reports it
        path = os.path.join(folder, name)
        if mask & IN_ISDIR:
            self._folder_event(mask, path, name)
        else:
            self._file_event(mask, os.fsdecode(path))

    def _folder_event(self, mask: int, path: bytes, name: bytes) -> None:
        text = os.fsdecode(path)
        if mask & (IN_CREATE | IN_MOVED_TO):
            if self._recursive and not name.startswith(b"."):
                self._add_tree(path)
            self.queue_event(DirCreatedEvent(text) if mask & IN_CREATE else DirMovedEvent("", text))
        elif mask & IN_MOVED_FROM:
            self._unwatch_tree(path)
            self.queue_event(DirMovedEvent(text, ""))
        elif mask & IN_DELETE:
            self.queue_event(DirDeletedEvent(text))

    def _file_event(self, mask: int, text: str) -> None:
        event: FileSystemEvent | None = None
        if mask & IN_CREATE:
            event = FileCreatedEvent(text)
        elif mask & IN_MODIFY:
            event = FileModifiedEvent(text)
        elif mask & IN_CLOSE_WRITE:
            event = FileClosedEvent(text)
        elif mask & IN_DELETE:
            event = FileDeletedEvent(text)
        elif mask & IN_MOVED_FROM:
            event = FileMovedEvent(text, "")
        elif mask & IN_MOVED_TO:
            event = FileMovedEvent("", text)
        if event is not None:
            self.queue_event(event)

    def _root_gone(self) -> None:
        """Deleted, moved away or unmounted: what the watch would report now is not the root."""
        self.queue_event(DirDeletedEvent(self.watch.path))
        self.stop()

    def _overflowed(self) -> None:
        self._reports.overflowed()
        now = time.monotonic()
        if now - self._resynced_at >= self._cooldown:
            self._resync()
        else:
            self._resync_due = self._resynced_at + self._cooldown

    # -- watches ----------------------------------------------------------------------------

    def _add_tree(self, top: bytes, *, root: bool = False) -> int:
        """Watch ``top`` and (recursive) every non-hidden folder below; the top's wd."""
        assert self._inotify is not None
        top_wd = -1
        stack = [top]
        while stack:
            folder = stack.pop()
            try:
                wd = self._inotify.add_watch(folder)
            except OSError as exc:
                if root and folder == top:
                    raise
                if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                    self._reports.unwatchable(os.fsdecode(folder), exc)
                continue
            self._remember(wd, folder)
            if folder == top:
                top_wd = wd
            if self._recursive:
                stack.extend(_subfolders(folder))
        return top_wd

    def _remember(self, wd: int, path: bytes) -> None:
        old = self._paths.get(wd)
        if old is not None and old != path and self._wds.get(old) == wd:
            del self._wds[old]
        self._paths[wd] = path
        self._wds[path] = wd

    def _unwatch_tree(self, top: bytes) -> None:
        assert self._inotify is not None
        below = top + b"/"
        for path in [p for p in self._wds if p == top or p.startswith(below)]:
            wd = self._wds.pop(path)
            self._paths.pop(wd, None)
            try:
                self._inotify.rm_watch(wd)
            except OSError:
                pass

    def _resync(self) -> None:
        """After an overflow: watch folders made meanwhile, forget those gone meanwhile."""
        assert self._inotify is not None
        self._resynced_at = time.monotonic()
        self._resync_due = None
        before = dict(self._paths)
        self._paths.clear()
        self._wds.clear()
        try:
            self._root_wd = self._add_tree(self._root, root=True)
        except OSError:
            self._root_gone()
            return
        for wd in before.keys() - self._paths.keys():
            try:
                self._inotify.rm_watch(wd)
            except OSError:
                pass


def _subfolders(folder: bytes) -> list[bytes]:
    try:
        with os.scandir(folder) as entries:
            return [e.path for e in entries if not e.name.startswith(b".") and e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
