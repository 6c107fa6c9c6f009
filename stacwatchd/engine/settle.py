"""When is a file finished? Filesystem events in, one ``Ready`` per finished file out.

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
  event) is the file judged by two equal looks. A bare "created" (watchdog also
  reports files already inside a new folder that way) is judged by looks.

Every later event for a path replaces its pending entry and restarts its timer, so a
file that is still being appended to is never emitted early. Deletions are emitted in
the order they were fed, and an upsert that a later event overtook is dropped, so the
consumer never sees an upsert after the delete that followed it.

All emission happens in :meth:`Settler.flush_due` (the timer thread), never in the
observer thread, so a slow consumer cannot stall event intake. Memory is O(pending
files): two insertion-ordered dicts whose heads are always the earliest due entries,
because every entry in one dict shares the same delay and timers only move forward.
"""

from __future__ import annotations

import os
import stat as stat_module
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

from stacwatchd.log import get_logger
from stacwatchd.engine.watch import FileEvent

__all__ = ["Ready", "Settler"]

Op = Literal["upsert", "delete", "delete_tree"]
_Mode = Literal["closed", "moved", "stable", "await_close"]

#: How many times an entry may fail to be stat'ed (EIO, EACCES...) before it is dropped;
#: the next reconcile looks at the file again.
MAX_STAT_FAILURES = 3

_MODE_FOR_KIND: dict[str, _Mode] = {
    "closed": "closed",
    "moved_in": "moved",
    "created": "stable",
    "modified": "stable",
    "found": "stable",
}


@dataclass(frozen=True, slots=True)
class Ready:
    """A decision for the pipeline: (re)catalog ``path``, or forget it or a whole subtree."""

    op: Op
    path: Path
    watch: Path


@dataclass(slots=True, eq=False)
class _Pending:
    watch: Path
    mode: _Mode
    since: float
    look: tuple[int, int] | None = None
    failures: int = 0
    flush: int = -1


@dataclass(slots=True)
class _Taken:
    path: Path
    entry: _Pending
    token: object = field(default_factory=object)


_GONE = object()


class Settler:
    """Turns a stream of :class:`~stacwatchd.engine.watch.FileEvent` into :class:`Ready` decisions.

    ``feed`` is thread-safe and O(1) (``dir_gone`` is O(pending)); ``emit`` is called
    only from ``flush_due``, i.e. from the timer thread once :meth:`start` ran. Inject
    ``clock`` and ``stat`` to drive the state machine deterministically in tests.
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
        self._log = log or get_logger("stacwatchd.engine.settle")
        self._cond = threading.Condition(threading.Lock())
        self._later: OrderedDict[Path, _Pending] = OrderedDict()  # due = since + settle
        self._soon: OrderedDict[Path, _Pending] = OrderedDict()  # due = since + debounce
        self._patient: OrderedDict[Path, _Pending] = OrderedDict()  # due = since + close_grace
        self._inflight: dict[Path, object] = {}
        self._decided: deque[Ready] = deque()
        self._latest = float("-inf")
        self._flushes = 0
        self._wake_at = float("-inf")
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- intake ---------------------------------------------------------------------

    def feed(self, event: FileEvent) -> None:
        """Record an event; the newest event for a path replaces what was pending for it."""
        with self._cond:
            if event.kind == "deleted":
                self._forget(event.path)
                self._decided.append(Ready("delete", event.path, event.watch))
                due = float("-inf")
            elif event.kind == "dir_gone":
                self._forget_tree(event.path)
                self._decided.append(Ready("delete_tree", event.path, event.watch))
                due = float("-inf")
            else:
                mode = _MODE_FOR_KIND.get(event.kind)
                if mode is None:
                    raise ValueError(f"unknown event kind {event.kind!r}")
                if event.kind == "modified" and event.closes:
                    mode = "await_close"  # a write was seen: its close will be too
                since = self._advance(event.at)
                self._forget(event.path)
                queue, delay = self._queue_for(mode)
                queue[event.path] = _Pending(event.watch, mode, since)
                due = since + delay
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
            with self._cond:
                ready_now = [r for item, look in looks if (r := self._decide(item, look, now, flush))]
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
                item = _Taken(path, entry)
                self._inflight[path] = item.token
                taken.append(item)
        return taken

    def _look(self, path: Path) -> tuple[int, int] | OSError | object:
        try:
            st = self._stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return _GONE
        except OSError as exc:
            return exc
        if not stat_module.S_ISREG(st.st_mode):
            return _GONE
        return (st.st_size, st.st_mtime_ns)

    def _decide(self, item: _Taken, look: object, now: float, flush: int) -> Ready | None:
        """Called with the lock held: upsert, drop, or re-queue for another look."""
        if self._inflight.get(item.path) is not item.token:
            return None  # a newer event replaced this entry while we looked
        del self._inflight[item.path]
        entry = item.entry
        if look is _GONE:
            self._log.debug("settle_vanished", path=str(item.path))
            return None
        if isinstance(look, OSError):
            entry.failures += 1
            if entry.failures >= MAX_STAT_FAILURES:
                self._log.warning(
                    "settle_gave_up",
                    path=str(item.path),
                    error=look.strerror or str(look),
                    attempts=entry.failures,
                )
                return None
            self._log.warning("settle_stat_failed", path=str(item.path), error=look.strerror or str(look))
            entry.look = None
            self._requeue(item.path, entry, now, flush)
            return None
        assert isinstance(look, tuple)
        if entry.mode == "await_close":
            self._log.info("settle_no_close", path=str(item.path), waited_s=self._close_grace)
            entry.mode = "stable"
        elif entry.mode != "stable" or entry.look == look:
            return Ready("upsert", item.path, entry.watch)
        entry.look = look
        self._requeue(item.path, entry, now, flush)
        return None

    def _requeue(self, path: Path, entry: _Pending, now: float, flush: int) -> None:
        entry.since = self._advance(now)
        entry.flush = flush
        self._later[path] = entry

    def _deliver(self, ready: Ready) -> int:
        try:
            self._emit(ready)
        except Exception:
            self._log.exception("settle_emit_failed", path=str(ready.path), op=ready.op)
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

    def _forget(self, path: Path) -> None:
        self._later.pop(path, None)
        self._soon.pop(path, None)
        self._patient.pop(path, None)
        self._inflight.pop(path, None)

    def _forget_tree(self, prefix: Path) -> None:
        top = str(prefix)
        under = top.rstrip(os.sep) + os.sep
        for container in (self._later, self._soon, self._patient, self._inflight):
            doomed = [p for p in container if (s := str(p)) == top or s.startswith(under)]
            for path in doomed:
                del container[path]

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
