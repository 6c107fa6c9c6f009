"""When is a file finished, and when is it really gone? Filesystem events in, ``Ready`` out.

Pipelines give no "done" signal, so a file is cataloged only on evidence that its writer
is through with it:

* closed after writing (inotify ``IN_CLOSE_WRITE``) and then quiet for ``settle_seconds``;
* moved or renamed into place, the write-to-temp-then-rename idiom: ready right away
  (after a tiny debounce that coalesces bursts);
* where no close can be seen (polling observer, files found in a new folder or by a
  reconcile): size and ``mtime_ns`` unchanged across two looks ``settle_seconds`` apart;
* modified where a close *will* be seen (inotify): the close is awaited, so a writer
  that pauses longer than ``settle_seconds`` with the file open is never emitted
  early. Only if no close comes within ``close_grace`` (a writer using mmap, a missed
  event) is the file judged by two equal looks. A bare "created" is judged by looks.

Removals settle too. GDAL (rasterio, ``gdal_translate``) overwrites a file by unlinking
it and creating a new one, so a deletion is only a candidate: a path that reappears
within ``settle_seconds`` comes out as one upsert (the Item keeps its ``created``), and
``delete`` is emitted only once the path has stayed absent that long. A folder removal
likewise becomes ``delete_tree`` only if the folder stayed absent; a folder that came
back (``rm -rf out; mkdir out``) is handed to ``rescan`` so that the state is compared
with what is there now. A removal is applied only while ``root_intact(watch)`` says the
watched root is still the folder being followed: an unmounted share must never look
like a mass deletion.

Every later event for a path replaces its pending entry and restarts its timer, so a
file that is still being appended to is never emitted early, and the consumer never
sees an upsert after the removal that followed it (or the reverse).

All emission happens in :meth:`Settler.flush_due` (the timer thread), never in the
observer thread, so a slow consumer cannot stall event intake. Memory is O(pending
paths): insertion-ordered dicts whose heads are always the earliest due entries,
because every entry in one dict shares the same delay and timers only move forward.
"""

from __future__ import annotations

import os
import stat as stat_module
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from stacwatchd.engine.watch import FileEvent
from stacwatchd.log import get_logger

__all__ = ["MAX_STAT_FAILURES", "Op", "Ready", "Settler"]

Op = Literal["upsert", "delete", "delete_tree"]
_Mode = Literal["closed", "moved", "stable", "await_close", "gone", "tree_gone"]

#: How many times an entry may fail to be stat'ed (EIO, EACCES...) before it is dropped;
#: the next reconcile looks at the path again.
MAX_STAT_FAILURES = 3

_MODE_FOR_KIND: dict[str, _Mode] = {
    "closed": "closed",
    "moved_in": "moved",
    "created": "stable",
    "modified": "stable",
    "found": "stable",
    "deleted": "gone",
    "dir_gone": "tree_gone",
}

_REMOVALS = ("gone", "tree_gone")


@dataclass(frozen=True, slots=True)
class Ready:
    """A decision for the pipeline: (re)catalog ``path``, or forget it or a whole subtree."""

    op: Op
    path: Path
    watch: Path
    #: The file is known to differ from what the state recorded of it (a scan's diff):
    #: no need to ask whether it is unchanged since it was refused.
    checked: bool = False


@dataclass(frozen=True, slots=True)
class _Rescan:
    """A removed folder came back: the root's state must be compared with the disk."""

    watch: Path
    folder: Path


@dataclass(slots=True, eq=False)
class _Pending:
    watch: Path
    mode: _Mode
    since: float
    look: tuple[int, int] | None = None
    failures: int = 0
    flush: int = -1
    #: A removal of this path was pending when a newer event replaced it: should the path
    #: turn out to be gone after all, the removal is still owed.
    was_gone: bool = False


@dataclass(slots=True, eq=False)
class _Taken:
    path: Path
    entry: _Pending


_GONE = object()


class Settler:
    """Turns a stream of :class:`~stacwatchd.engine.watch.FileEvent` into :class:`Ready` decisions.

    ``feed`` is thread-safe and O(1) (O(depth) while folder removals are pending); ``emit`` and
    ``rescan`` are called only from ``flush_due``, i.e. from the timer thread once
    :meth:`start` ran. ``root_intact(watch)`` is asked, from that thread, before a removal
    is emitted; a removal it refuses is dropped, because the watcher asks for a rescan
    once the root is back. ``rescan(watch)``, when given, is called when a removed folder
    came back within ``settle_seconds``; without it such a folder is emitted as
    ``delete_tree`` as soon as anything reappears in it, before what reappeared.
    Inject ``clock`` and ``stat`` to drive the state machine deterministically in tests.
    """

    def __init__(
        self,
        emit: Callable[[Ready], None],
        settle_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        stat: Callable[[Path], Any] = os.stat,
        debounce: float = 0.05,
        close_grace: float | None = None,
        root_intact: Callable[[Path], bool] | None = None,
        rescan: Callable[[Path], None] | None = None,
        log: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        if settle_seconds < 0 or debounce < 0:
            raise ValueError("settle_seconds and debounce must not be negative")
        self._emit = emit
        self._settle = float(settle_seconds)
        self._debounce = float(debounce)
        self._close_grace = float(close_grace) if close_grace is not None else max(60.0, 10 * self._settle)
        self._clock = clock
        self._stat = stat
        self._root_intact = root_intact
        self._rescan = rescan
        self._log = log or get_logger("stacwatchd.engine.settle")
        self._cond = threading.Condition(threading.Lock())
        self._later: OrderedDict[Path, _Pending] = OrderedDict()  # due = since + settle
        self._soon: OrderedDict[Path, _Pending] = OrderedDict()  # due = since + debounce
        self._patient: OrderedDict[Path, _Pending] = OrderedDict()  # due = since + close_grace
        self._inflight: dict[Path, _Taken] = {}
        self._trees: set[Path] = set()  # folders with a pending tree_gone entry
        self._decided: deque[Ready | _Rescan] = deque()
        self._latest = float("-inf")
        self._flushes = 0
        self._wake_at = float("-inf")
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- intake ---------------------------------------------------------------------

    def feed(self, event: FileEvent) -> None:
        """Record an event; the newest event for a path replaces what was pending for it."""
        mode = _MODE_FOR_KIND.get(event.kind)
        if mode is None:
            raise ValueError(f"unknown event kind {event.kind!r}")
        with self._cond:
            if mode == "tree_gone":
                # What is pending below stays: removals there are covered by this one when
                # due, anything else is judged by its own look.
                was_gone = self._forget(event.path)
                self._trees.add(event.path)
            else:
                if self._rescan is None and mode != "gone":
                    self._reappeared_below(event.path)
                was_gone = self._forget(event.path)
                if mode == "stable" and event.kind == "modified" and event.closes:
                    mode = "await_close"  # a write was seen: its close will be too
            since = self._advance(event.at)
            queue, delay = self._queue_for(mode)
            queue[event.path] = _Pending(event.watch, mode, since, was_gone=was_gone or mode in _REMOVALS)
            due = float("-inf") if self._decided else since + delay
            if due < self._wake_at:
                self._cond.notify()

    def pending(self) -> int:
        """Paths waiting to settle plus decisions not yet emitted."""
        with self._cond:
            return len(self._later) + len(self._soon) + len(self._patient) + len(self._inflight) + len(self._decided)

    # -- decisions ------------------------------------------------------------------

    def flush_due(self, now: float | None = None) -> int:
        """Emit every decision due at ``now`` (default: the clock); return how many.

        Entries that need another look are re-queued for ``now + settle_seconds`` and are
        not looked at twice in one call, even with ``settle_seconds == 0``.
        """
        now = self._clock() if now is None else now
        with self._cond:
            self._flushes += 1
            flush = self._flushes
        emitted = 0
        while True:
            with self._cond:
                decided = list(self._decided)
                self._decided.clear()
                taken = self._take_due(now, flush)
            if not decided and not taken:
                return emitted
            for ready in decided:
                emitted += self._deliver(ready)
            looks = [(item, self._look(item.path)) for item in taken]
            intact = self._roots_intact({item.entry.watch for item, look in looks if self._may_remove(item, look)})
            with self._cond:
                ready_now = [r for item, look in looks if (r := self._decide(item, look, now, flush, intact))]
            for ready in ready_now:
                emitted += self._deliver(ready)

    def _take_due(self, now: float, flush: int) -> list[_Taken]:
        taken: list[_Taken] = []
        for queue, delay in (
            (self._soon, self._debounce),
            (self._later, self._settle),
            (self._patient, self._close_grace),
        ):
            while queue:
                path, entry = next(iter(queue.items()))
                if entry.flush == flush or entry.since + delay > now:
                    break
                del queue[path]
                if entry.mode in _REMOVALS and self._covered(path):
                    continue
                item = _Taken(path, entry)
                self._inflight[path] = item
                taken.append(item)
        return taken

    def _look(self, path: Path) -> os.stat_result | OSError | object:
        try:
            return self._stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return _GONE
        except OSError as exc:
            return exc

    @staticmethod
    def _may_remove(item: _Taken, look: object) -> bool:
        """Whether this look may end in a removal, so that its root must be asked about."""
        return not isinstance(look, OSError) and (item.entry.mode in _REMOVALS or item.entry.was_gone)

    def _roots_intact(self, roots: set[Path]) -> dict[Path, bool]:
        if self._root_intact is None:
            return dict.fromkeys(roots, True)
        verdicts = {}
        for root in roots:
            try:
                verdicts[root] = bool(self._root_intact(root))
            except Exception:
                self._log.exception("settle_root_check_failed", path=str(root))
                verdicts[root] = False
        return verdicts

    def _decide(self, item: _Taken, look: object, now: float, flush: int, intact: dict[Path, bool]) -> Ready | _Rescan | None:
        """Called with the lock held: emit, drop, or re-queue for another look."""
        if self._inflight.get(item.path) is not item:
            return None  # a newer event replaced this entry while we looked
        del self._inflight[item.path]
        entry = item.entry
        if entry.mode == "tree_gone":
            self._trees.discard(item.path)
        if isinstance(look, OSError):
            return self._stat_failed(item, entry, look, now, flush)
        if entry.mode == "tree_gone":
            if look is not _GONE and stat_module.S_ISDIR(look.st_mode) and self._rescan is not None:  # type: ignore[attr-defined]
                self._log.info("settle_folder_came_back", path=str(item.path), watch=str(entry.watch))
                return _Rescan(entry.watch, item.path)
            return self._removal(Ready("delete_tree", item.path, entry.watch), intact)
        regular = look is not _GONE and stat_module.S_ISREG(look.st_mode)  # type: ignore[attr-defined]
        if not regular:
            if (entry.mode == "gone" or entry.was_gone) and not self._covered(item.path):
                return self._removal(Ready("delete", item.path, entry.watch), intact)
            self._log.debug("settle_vanished", path=str(item.path))
            return None
        signature = (look.st_size, look.st_mtime_ns)  # type: ignore[attr-defined]
        if entry.mode == "gone":
            # Back without an event we saw (or ahead of it): judge it like a found file.
            self._log.debug("settle_reappeared", path=str(item.path))
            entry.mode = "stable"
        elif entry.mode == "await_close":
            self._log.info("settle_no_close", path=str(item.path), waited_s=self._close_grace)
            entry.mode = "stable"
        elif entry.mode != "stable" or entry.look == signature:
            return Ready("upsert", item.path, entry.watch)
        entry.look = signature
        self._requeue(item.path, entry, now, flush)
        return None

    def _stat_failed(self, item: _Taken, entry: _Pending, error: OSError, now: float, flush: int) -> None:
        entry.failures += 1
        if entry.failures >= MAX_STAT_FAILURES:
            self._log.warning(
                "settle_gave_up",
                path=str(item.path),
                error=error.strerror or str(error),
                attempts=entry.failures,
            )
            return
        self._log.warning("settle_stat_failed", path=str(item.path), error=error.strerror or str(error))
        entry.look = None
        if entry.mode == "tree_gone":
            self._trees.add(item.path)
        self._requeue(item.path, entry, now, flush)
        return

    def _removal(self, ready: Ready, intact: dict[Path, bool]) -> Ready | None:
        if intact.get(ready.watch, True):
            return ready
        self._log.debug("settle_removal_held", path=str(ready.path), watch=str(ready.watch), op=ready.op)
        return None

    def _requeue(self, path: Path, entry: _Pending, now: float, flush: int) -> None:
        entry.since = self._advance(now)
        entry.flush = flush
        self._later[path] = entry

    def _deliver(self, ready: Ready | _Rescan) -> int:
        try:
            if isinstance(ready, _Rescan):
                assert self._rescan is not None
                self._rescan(ready.watch)
            else:
                self._emit(ready)
        except Exception:
            self._log.exception(
                "settle_emit_failed",
                path=str(ready.folder if isinstance(ready, _Rescan) else ready.path),
                op="rescan" if isinstance(ready, _Rescan) else ready.op,
            )
            return 0
        return 1

    # -- bookkeeping (lock held) ------------------------------------------------------

    def _advance(self, at: float) -> float:
        """Timer start for a new entry: never earlier than one already queued, so each
        queue stays sorted by due time."""
        self._latest = max(self._latest, at)
        return self._latest

    def _queue_for(self, mode: _Mode) -> tuple[OrderedDict[Path, _Pending], float]:
        if mode == "moved":
            return self._soon, self._debounce
        if mode == "await_close":
            return self._patient, self._close_grace
        return self._later, self._settle

    def _forget(self, path: Path) -> bool:
        """Drop what is pending for ``path``; True if that carried a removal."""
        was_gone = False
        for queue in (self._later, self._soon, self._patient):
            entry = queue.pop(path, None)
            if entry is not None:
                was_gone = was_gone or entry.was_gone
        taken = self._inflight.pop(path, None)
        if taken is not None:
            was_gone = was_gone or taken.entry.was_gone
        self._trees.discard(path)
        return was_gone

    def _covered(self, path: Path) -> bool:
        """Whether a folder above ``path`` has a removal pending, which decides for it too."""
        return bool(self._trees) and any(folder in self._trees for folder in path.parents)

    def _reappeared_below(self, path: Path) -> None:
        """Without ``rescan``: a removed folder that something reappears in is removed
        now, before what reappeared, since what did not come back cannot be told apart."""
        if not self._trees:
            return
        for folder in path.parents:
            if folder in self._trees:
                entry = self._later.get(folder) or (taken.entry if (taken := self._inflight.get(folder)) else None)
                self._forget(folder)
                if entry is not None:
                    self._decided.append(Ready("delete_tree", folder, entry.watch))
                return

    def _next_delay(self, now: float) -> float | None:
        if self._decided:
            return 0.0
        dues = []
        if self._soon:
            dues.append(next(iter(self._soon.values())).since + self._debounce)
        if self._later:
            dues.append(next(iter(self._later.values())).since + self._settle)
        if self._patient:
            dues.append(next(iter(self._patient.values())).since + self._close_grace)
        return max(0.0, min(dues) - now) if dues else None

    # -- timer thread -----------------------------------------------------------------

    def start(self) -> None:
        """Start the timer thread that sleeps until the next due time and flushes."""
        with self._cond:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="stacwatchd-settle", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the timer thread; entries still pending stay pending (reconcile catches up)."""
        with self._cond:
            thread = self._thread
            self._stopping = True
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                self._log.warning("settle_stop_timeout", timeout=timeout)
        with self._cond:
            self._thread = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    now = self._clock()
                    delay = self._next_delay(now)
                    if delay == 0.0:
                        break
                    self._wake_at = now + delay if delay is not None else float("inf")
                    self._cond.wait(delay)
                    self._wake_at = float("-inf")
                if self._stopping:
                    return
            try:
                self.flush_due()
            except Exception:
                self._log.exception("settle_flush_failed")
                with self._cond:
                    self._cond.wait(min(1.0, self._settle or 0.1))
