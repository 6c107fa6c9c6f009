"""The sink interface: one small contract, several destinations.

A sink receives the rows of one outbox stream in order, at least once:

* the ``changes`` stream (:class:`~stacwatchd.state.store.Change`): an Item or collection
  added, updated or removed, with the Item JSON as written — PgSTAC, notifications;
* the ``files`` stream (:class:`~stacwatchd.state.store.FileChange`): each catalog file
  written (its bytes) or deleted, in the writer's safe order — object-store mirrors.

A :class:`Sink` only says how to deliver a batch; a :class:`SinkRunner` owns everything
else: its thread, its cursor in the state (advanced through the store, never by raw SQL),
capped backoff, stall detection and the status ``stacwatchd status`` shows. Each sink has
its own runner, so a dead sink delays neither the local catalog nor another sink.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stacwatchd.backoff import Backoff
from stacwatchd.errors import StacwatchdError
from stacwatchd.log import get_logger
from stacwatchd.state.store import Change, FileChange, State, StateUnwritable, Stream

__all__ = ["Row", "Sink", "SinkError", "SinkRunner", "deliver_once", "note_refused", "refused_key"]

Row = Change | FileChange


class SinkError(StacwatchdError):
    """A delivery failed; the rows are delivered again later (at least once).

    ``delivered`` is the seq of the last row that did get through (None: none did), so a
    runner does not resend a whole batch after a late failure. ``retry_after`` honours
    a server's request (HTTP ``Retry-After``).
    """

    def __init__(
        self,
        target: str,
        reason: str,
        *,
        kind: str = "unavailable",
        delivered: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(None, f"{target}: {reason}")
        self._kind = kind
        self.delivered = delivered
        self.retry_after = retry_after

    @property
    def kind(self) -> str:
        return self._kind


class Sink(ABC):
    """A destination fed from one outbox stream."""

    #: Unique name: the key of its cursor and of its lines in ``status`` and the logs.
    name: str
    stream: Stream
    #: Rows handed to one ``deliver`` call at most.
    batch_size: int = 500
    #: Backoff after failures (first delay, cap), unless the runner is given its own.
    retry: tuple[float, float] = (0.5, 60.0)

    @abstractmethod
    def deliver(self, rows: Sequence[Row], state: State) -> None:
        """Deliver ``rows`` in order or raise :class:`SinkError`. ``state`` is this sink's
        own connection, for reading what the rows refer to; it writes nothing there but
        a note of a row it refused (:func:`note_refused`)."""

    def describe(self) -> str:
        """Where it delivers, safe to log (no secrets)."""
        return self.name

    def interrupt(self) -> None:  # noqa: B027 - optional hook
        """Abort a delivery in flight (called from another thread when ``stop`` runs out
        of patience); the rows are delivered again later."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called once the runner stopped."""


class SinkRunner:
    """Drains one sink's stream from its cursor: a thread, or on demand (``drain``)."""

    def __init__(
        self,
        sink: Sink,
        state_path: Path,
        *,
        poll_seconds: float = 5.0,
        retry: tuple[float, float] | None = None,
        stall_seconds: float = 60.0,
    ) -> None:
        self.sink = sink
        self.state = State(state_path)
        self.poll_seconds = poll_seconds
        self.backoff = Backoff(*(retry or sink.retry))
        self.stall_seconds = stall_seconds
        self.log = get_logger()
        self.delivered = 0
        self.last_success: float | None = None  # wall clock, for status
        self.last_progress = time.monotonic()
        self.stalled = False
        self._stalled_at = 0.0
        self._lock = threading.RLock()
        self._drain_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._final_depth: int | None = None

    @property
    def name(self) -> str:
        return self.sink.name

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"stacwatchd-sink-{self.name}", daemon=True)
        self._thread.start()
        self.log.info("sink_started", sink=self.name, target=self.sink.describe(), backlog=self.depth())

    def stop(self, timeout: float = 10.0) -> bool:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                with contextlib.suppress(Exception):
                    self.sink.interrupt()
                thread.join(2.0)
        stopped = thread is None or not thread.is_alive()
        if stopped:
            self._thread = None
            with contextlib.suppress(Exception):
                self.sink.close()
            with self._lock:
                if self._final_depth is None:  # not stopped before
                    self._final_depth = self.state.backlog(self.name)
                    self.state.close()
        self.log.info("sink_stopped", sink=self.name, clean=stopped)
        return stopped

    def wake(self) -> None:
        """New rows are in the stream: deliver soon (a backoff is not shortened)."""
        self._wake.set()

    def depth(self) -> int:
        """Rows not yet delivered (once stopped: as they were when it stopped)."""
        with self._lock:
            if self._final_depth is not None:
                return self._final_depth
            return self.state.backlog(self.name)

    @property
    def healthy(self) -> bool:
        return not self.backoff.failing

    def status(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "target": self.sink.describe(),
            "backlog": self.depth(),
            "delivered": self.delivered,
            "last_success": _iso(self.last_success),
        }
        if self.backoff.failing:
            report["last_error"] = self.backoff.last_error
            report["failing_for_s"] = round(time.monotonic() - (self.backoff.since or time.monotonic()), 1)
            report["retry_in_s"] = round(self.backoff.wait_seconds(), 1)
        if self.stalled:
            report["stalled_for_s"] = round(time.monotonic() - self._stalled_at, 1)
        return report

    def check_stall(self) -> bool:
        """Warn once when rows wait and nothing moved for ``stall_seconds`` (even when the
        sink hangs inside a delivery); called from the daemon's main loop. The wait is
        counted from the later of the last delivery and the oldest waiting row's arrival:
        rows that arrive after a quiet hour are not late."""
        with self._lock:
            since = self.state.queued_since(self.name)
        if since is None:
            self.stalled = False
            return False
        idle = time.time() - max(since, self.last_success or since)
        if idle >= self.stall_seconds and not self.stalled:
            self.stalled = True
            self._stalled_at = time.monotonic() - idle
            self.log.warning(
                "sink_stalled", sink=self.name, target=self.sink.describe(), backlog=self.depth(),
                no_progress_for_s=round(idle, 1), last_error=self.backoff.last_error,
            )  # fmt: skip
        return self.stalled

    # -- delivery -----------------------------------------------------------------------

    def acknowledge(self, seq: int) -> int:
        """Move the cursor to ``seq`` for rows whose effect reached the target another way
        (``publish --all`` pushed the whole state); returns how many rows that was."""
        with self._drain_lock:
            with self._lock:
                count = self.state.backlog(self.name, until=seq)
            self._advance(seq, count)
        return count

    def drain(self, until: int | None = None) -> int:
        """Deliver every row up to ``until`` (default: what is queued now), synchronously.

        Returns the number of rows delivered; raises :class:`SinkError` on failure.
        """
        total = 0
        with self._drain_lock:
            with self._lock:
                end = until if until is not None else self.state.stream_end(self.sink.stream)
            while not (until is None and self._stop.is_set() and self._thread is not None):
                with self._lock:
                    cursor = self.state.cursor(self.name) or 0
                    rows = self._rows(cursor, end)
                if not rows:
                    break
                try:
                    self.sink.deliver(rows, self.state)
                except SinkError as error:
                    if error.delivered is not None:
                        self._advance(error.delivered, sum(1 for r in rows if r.seq <= error.delivered))
                    raise
                self._advance(rows[-1].seq, len(rows))
                total += len(rows)
        return total

    def _rows(self, cursor: int, end: int) -> list[Row]:
        if self.sink.stream == "changes":
            return list(self.state.changes_after(cursor, self.sink.batch_size, end))
        return list(self.state.file_changes_after(cursor, self.sink.batch_size, end))

    def _advance(self, seq: int, count: int) -> None:
        self.delivered += count
        self.last_success = time.time()
        self.last_progress = time.monotonic()
        if self.stalled:
            self.stalled = False
            self.log.info("sink_moving_again", sink=self.name)
        status = {"last_success": _iso(self.last_success), "delivered": self.delivered}
        with self._lock:
            self.state.advance(self.name, seq, status)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.drain(None)
            except (SinkError, StateUnwritable) as error:
                if self._stop.is_set():
                    break  # interrupted by stop(): not a failure of the target
                self._note_failure(error)
                self._stop.wait(self.backoff.wait_seconds())
                continue
            except Exception as exc:  # noqa: BLE001 - a sink's bug must not end its thread
                self.log.exception("sink_error", sink=self.name, error=type(exc).__name__)
                self._note_failure(SinkError(self.sink.describe(), f"{type(exc).__name__}: {exc}", kind="bug"))
                self._stop.wait(self.backoff.wait_seconds())
                continue
            attempts = self.backoff.attempts
            after = self.backoff.succeeded()
            if after is not None:
                self.log.info("sink_recovered", sink=self.name, after_s=round(after, 2), attempts=attempts, backlog=self.depth())
                with contextlib.suppress(StateUnwritable), self._lock:
                    self.state.put_sink_status(self.name, {"last_success": _iso(self.last_success), "delivered": self.delivered})
            self._wake.wait(self.poll_seconds)

    def _note_failure(self, error: StacwatchdError) -> None:
        first = not self.backoff.failing
        retry_after = getattr(error, "retry_after", None)
        delay = self.backoff.failed(error.reason, retry_after)
        backlog = self.depth()
        if first:
            self.log.warning(
                "sink_failing", sink=self.name, target=self.sink.describe(), error=error.kind, reason=error.reason,
                backlog=backlog, retry_in_s=round(delay, 2),
                hint="cataloging continues; the backlog is delivered when the target is back",
            )  # fmt: skip
        else:
            self.log.debug(
                "sink_retry", sink=self.name, attempt=self.backoff.attempts, retry_in_s=round(delay, 2), error=error.kind
            )
        status = {
            "last_success": _iso(self.last_success),
            "delivered": self.delivered,
            "last_error": error.reason,
            "last_error_kind": error.kind,
            "last_error_at": _iso(time.time()),
        }
        with contextlib.suppress(StateUnwritable), self._lock:
            self.state.put_sink_status(self.name, status)


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def refused_key(sink: str) -> str:
    """The meta key holding the last row a sink refused (see :func:`note_refused`)."""
    return f"sink.{sink}.refused"


def note_refused(state: State, sink: str, record: dict[str, Any]) -> None:
    """Remember the last row a sink refused as bad data and skipped, for ``status``.

    Best effort: a state that cannot be written now must not turn a refusal into a
    failure of the whole batch.
    """
    with contextlib.suppress(StateUnwritable):
        state.set_meta({refused_key(sink): json.dumps(record)})


def deliver_once(sink: Sink, state_path: Path) -> int:
    """Deliver a sink's backlog now (``scan``, ``publish``); a failure is logged and the
    rows stay for the daemon or the next ``publish``. Returns the rows delivered."""
    runner = SinkRunner(sink, state_path)
    try:
        return runner.drain()
    except (SinkError, StateUnwritable) as error:
        runner.log.warning(
            "sink_failing", sink=sink.name, target=sink.describe(), error=error.kind, reason=error.reason,
            backlog=runner.depth(), hint="delivered by the daemon or 'stacwatchd publish'",
        )  # fmt: skip
        return 0
    finally:
        with contextlib.suppress(Exception):
            sink.close()
        runner.state.close()
