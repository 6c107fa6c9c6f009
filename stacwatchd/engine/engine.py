"""The engine shared by ``run`` and ``scan``: decisions → build workers → one writer.

Intake (the watcher and settler of ``run``, the walk of ``scan``) submits
:class:`~stacwatchd.engine.settle.Ready` decisions. A bounded queue deduplicates them by
path; ``workers`` threads turn each into a writer operation (building Items through the
injected ``build``); one writer thread commits whatever is ready as one batch and then
projects the journal onto files.

The writer thread never dies and never gives up: a failure of the environment (disk
full, read-only, permissions, I/O) keeps the work — operations not yet committed stay in
memory, committed ones in the journal — and is retried with capped backoff, without
waiting for another event, while ``status`` shows the backlog and the last error.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stacwatchd.backoff import Backoff
from stacwatchd.engine.inbox import Inbox
from stacwatchd.engine.queue import WorkQueue
from stacwatchd.engine.reconcile import data_for_sidecar
from stacwatchd.engine.settle import Ready
from stacwatchd.engine.window import Window
from stacwatchd.engine.writer import (
    BatchResult,
    CatalogUnwritable,
    CatalogWriter,
    Op,
    Remove,
    RemoveTree,
    op_for,
)
from stacwatchd.log import get_logger
from stacwatchd.metrics import Metrics
from stacwatchd.model.results import BuiltItem, Rejection, Rules
from stacwatchd.model.sources import signature_of
from stacwatchd.state.store import State, StateUnwritable

__all__ = ["Build", "Counters", "Engine"]

#: How the engine has an Item built: a ``Builder``'s ``build``, or the model's ``build`` itself.
Build = Callable[[Path, Rules], "BuiltItem | Rejection"]
Submit = Callable[[Path, Rules], "Future[Any]"]

#: How many paths a failure log line names (the rest are counted).
_PATHS_IN_LOG = 10
_INTAKE_THREADS = 2  # worker threads where builds run in a Builder's processes


@dataclass(slots=True)
class Counters:
    """What the engine did: the daemon's status and metrics, ``scan``'s summary."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    rejected: int = 0
    skipped: int = 0
    batches: int = 0
    timeouts: int = 0
    files_written: int = 0
    seconds: float = 0.0
    rejections: list[Rejection] = field(default_factory=list)
    #: Folders a walk could not read ("path: reason"): their files were neither cataloged
    #: nor, for want of a full view, removed.
    unreadable: list[str] = field(default_factory=list)

    @property
    def wrote_nothing(self) -> bool:
        return self.files_written == 0

    def absorb(self, result: BatchResult) -> None:
        self.added += result.added
        self.updated += result.updated
        self.removed += result.removed
        self.unchanged += result.unchanged
        self.rejected += result.rejected
        self.timeouts += sum(1 for r in result.rejections if r.kind == "timeout")
        self.files_written += len(result.written)
        self.rejections = (list(reversed(result.rejections)) + self.rejections)[:1000]

    def summary(self) -> dict[str, int]:
        return {"added": self.added, "updated": self.updated, "removed": self.removed, "rejected": self.rejected}


@dataclass(slots=True)
class _Busy:
    path: Path
    since: float


@dataclass(slots=True)
class _Work:
    op: Op
    started: float
    path: Path


#: Operations built and waiting for the writer: about one batch, so that the writer finds
#: its next batch ready when it finishes one. A longer queue would not make the writer
#: faster, only hold more built Items (~16 KB each) while the builds run ahead of it.
INBOX_SIZE = 256


class Engine:
    """Workers and the writer thread around one :class:`CatalogWriter`."""

    def __init__(
        self,
        writer: CatalogWriter,
        rules_for: Callable[[Path], Rules | None],
        *,
        build: Build,
        workers: int,
        queue_size: int,
        keep_deleted: Callable[[Path], bool] = lambda watch: False,
        max_batch: int = 1000,
        linger: float = 0.05,
        on_batch: Callable[[BatchResult], None] | None = None,
        retry: tuple[float, float] = (0.5, 30.0),
        metrics: Metrics | None = None,
        submit: Submit | None = None,
        in_flight: int = 1,
    ) -> None:
        self.writer = writer
        self.rules_for = rules_for
        self.build = build
        #: Where builds run elsewhere (a Builder's processes): ``submit`` queues one and
        #: its answer goes to the writer from the Builder's thread, so a worker thread
        #: never waits on a build; at most ``in_flight`` are queued or running.
        self.submit_build = submit
        self._in_flight = Window(max(1, in_flight))
        self.queue = WorkQueue(queue_size)
        self.counters = Counters()
        self.log = get_logger()
        self.n_workers = workers
        self.keep_deleted = keep_deleted
        self.max_batch = max_batch
        self.linger = linger
        self.on_batch = on_batch
        self.metrics = metrics or Metrics()
        self.status_extra: Callable[[], Mapping[str, Any]] = dict
        self.commit_retry = Backoff(*retry)
        self.flush_retry = Backoff(*retry)
        # Built Items for the writer; its ``wake`` ends the writer's wait at once for a stop
        # or a task, which the writer would otherwise notice only when the wait timed out.
        self._inbox: Inbox[_Work] = Inbox(min(max_batch, INBOX_SIZE))
        self._pending: list[_Work] = []
        self._journal = writer.pending()
        self._failing_paths: list[str] = []
        self._busy: dict[int, _Busy] = {}
        self._busy_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._writer_thread: threading.Thread | None = None
        self._reader = State(writer.state.path, readonly=True)
        self._reader_lock = threading.Lock()
        self._bad_names: set[Path] = set()
        self._unannounced: list[tuple[list[tuple[str, str, str, str | None]], dict[str, float], float]] = []
        self._worker_seq = 0
        self._idle = threading.Condition()
        self._outstanding = 0
        self._meta: dict[str, str] = {}
        self._meta_lock = threading.Lock()
        self._tasks: deque[Callable[[], None]] = deque()
        self._progress_at = time.monotonic()
        self._writer_stalled = False
        self._stalled_builds: dict[tuple[Path, float], _Busy] = {}
        #: (path, monotonic start) of the builds running now, where the builds run
        #: elsewhere (a Builder's processes); else the worker threads' own view.
        self.running_builds: Callable[[], list[tuple[Path, float]]] | None = None

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        for _ in range(self._intake_threads()):
            self._spawn_worker()
        self._writer_thread = threading.Thread(target=self._write_loop, name="stacwatchd-writer", daemon=True)
        self._writer_thread.start()

    def submit(self, ready: Ready, timeout: float | None = None) -> bool:
        """Hand a decision to the workers; blocks while the queue is full."""
        with self._idle:
            self._outstanding += 1
        queued = self.queue.put(ready, timeout)
        if queued is True:
            return True
        self._done()
        return queued is None

    def drain(self, timeout: float | None) -> bool:
        """Wait until everything submitted so far is in the state (or refused)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._outstanding <= 0, timeout)

    def wait_written(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted is in the state *and* on disk."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            if self.drain(remaining if remaining is None else min(remaining, 0.5)) and self._journal == 0 and not self._pending:
                return True
            with self._idle:
                self._idle.wait(0.05)

    def stop(self, timeout: float = 30.0) -> bool:
        """Finish in-flight work and flush the writer, within ``timeout``."""
        drained = self.drain(timeout)
        self._stop.set()
        self.queue.close()
        self._wake_writer()
        deadline = time.monotonic() + max(1.0, timeout / 4)
        for thread in [*self._threads, self._writer_thread]:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        self._reader.close()
        return drained

    @property
    def healthy(self) -> bool:
        return self._writer_thread is not None and self._writer_thread.is_alive()

    def depth(self) -> int:
        return len(self.queue) + len(self._inbox) + len(self._pending)

    def status(self) -> dict[str, Any]:
        c = self.counters
        report: dict[str, Any] = {
            "queue": len(self.queue),
            "building": len(self._busy),
            "pending_commit": len(self._pending) + len(self._inbox),
            "journal": self._journal,
            "added": c.added,
            "updated": c.updated,
            "removed": c.removed,
            "rejected": c.rejected,
            "timeouts": c.timeouts,
            "last_errors": [str(r) for r in c.rejections[:5]],
            **self.status_extra(),
        }
        if self._writer_stalled:
            report["writer_stalled_for_s"] = round(time.monotonic() - self._progress_at, 1)
        if self._stalled_builds:
            now = time.monotonic()
            report["stalled_builds"] = [
                {"path": str(busy.path), "running_for_s": round(now - busy.since, 1)} for busy in self._stalled_builds.values()
            ]
        failing = self.commit_retry if self.commit_retry.failing else self.flush_retry
        if failing.failing:
            report["writer_error"] = {
                "error": failing.last_error,
                "paths": self._failing_paths[:_PATHS_IN_LOG],
                "attempts": failing.attempts,
                "failing_for_s": round(time.monotonic() - (failing.since or time.monotonic()), 1),
                "retry_in_s": round(failing.wait_seconds(), 1),
            }
        return report

    # -- workers -------------------------------------------------------------------------

    def _intake_threads(self) -> int:
        """Worker threads to start. Where builds run elsewhere, a worker thread only checks
        a file and queues its build, so two suffice (one goes on while the other waits on a
        slow stat); each further thread would only contend for this process's GIL."""
        return self.n_workers if self.submit_build is None else min(self.n_workers, _INTAKE_THREADS)

    def _spawn_worker(self) -> None:
        self._worker_seq += 1
        thread = threading.Thread(target=self._work_loop, name=f"stacwatchd-worker-{self._worker_seq}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _work_loop(self) -> None:
        me = threading.get_ident()
        while not self._stop.is_set():
            ready = self.queue.take(timeout=0.5)
            if ready is None:
                continue
            with self._busy_lock:
                self._busy[me] = _Busy(ready.path, time.monotonic())
            try:
                self._handle(ready)
            except Exception as exc:  # a bug must not kill the worker: log and move on
                self.log.exception("worker_error", path=str(ready.path), error=type(exc).__name__)
                self._done()
            finally:
                with self._busy_lock:
                    self._busy.pop(me, None)

    def _handle(self, ready: Ready) -> None:
        started = time.monotonic()
        if not _is_utf8(ready.path):
            self._refuse_name(ready.path)
            return
        if ready.op in ("delete", "delete_tree"):
            if self.keep_deleted(ready.watch):
                self._done()
                return
            op: Op = RemoveTree(ready.path) if ready.op == "delete_tree" else Remove(ready.path)
            self._to_writer(_Work(op, started, ready.path))
            return
        rules = self.rules_for(ready.watch)
        if rules is None:
            self._done()
            return
        targets = [ready.path] if rules.is_data(ready.path) else data_for_sidecar(ready.path, rules)
        if not targets:
            self._done()
            return
        with self._idle:
            self._outstanding += len(targets) - 1
        for target in targets:
            if not (ready.checked and target == ready.path) and self._unchanged_since_refused(target):
                self.counters.skipped += 1
                self._done()
                continue
            if self.submit_build is not None:
                self._submit(target, rules, started)
                continue
            built_at = time.monotonic()
            try:
                result: BuiltItem | Rejection | Exception = self.build(target, rules)
            except Exception as exc:  # noqa: BLE001 - refused once, with the path, never retried in a loop
                result = exc
            self._built(target, rules, started, built_at, result)

    def _submit(self, target: Path, rules: Rules, started: float) -> None:
        while not self._in_flight.acquire(timeout=0.5):
            if self._stop.is_set() and not self.healthy:
                self._done()
                return
        built_at = time.monotonic()
        try:
            future = self.submit_build(target, rules)  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - refused once, with the path
            self._in_flight.release()
            self._built(target, rules, started, built_at, exc)
            return

        def answered(future: Future[Any]) -> None:
            self._in_flight.release()
            try:
                self._built(target, rules, started, built_at, future.exception() or future.result())
            except Exception as exc:  # a bug must not lose the file's accounting
                self.log.exception("worker_error", path=str(target), error=type(exc).__name__)
                self._done()

        future.add_done_callback(answered)

    def _built(
        self, target: Path, rules: Rules, started: float, built_at: float, result: BuiltItem | Rejection | BaseException
    ) -> None:
        """A build's answer to the writer; a build that raised is refused once, with the path."""
        if isinstance(result, BaseException):
            self.log.error("build_failed", path=str(target), error=type(result).__name__, reason=str(result))
            result = Rejection(
                target, f"cannot build an Item: {type(result).__name__}: {result}", "build_failed", signature_of(target)
            )
        self.metrics.build_time(time.monotonic() - built_at)
        self._to_writer(_Work(op_for(result, rules), started, target))

    def _refuse_name(self, path: Path) -> None:
        """A name that is not UTF-8 cannot be an href or a key in the state: refused, logged
        once per run (it cannot be recorded, so every reconcile finds it again)."""
        if path not in self._bad_names:
            self._bad_names.add(path)
            self.counters.rejected += 1
            self.log.warning(
                "item_rejected", path=str(path).encode("utf-8", "backslashreplace").decode(), error="bad_file_name",
                reason="the file name is not valid UTF-8: rename it",
            )  # fmt: skip
        self._done()

    def _unchanged_since_refused(self, path: Path) -> bool:
        """A refused file is not retried until it changes (size, mtime or inode)."""
        signature = signature_of(path)
        if signature is None:
            return False
        with self._reader_lock:
            record = self._reader.source(str(path))
        return (
            record is not None
            and record.status == "rejected"
            and (record.size, record.mtime_ns, record.inode) == (signature.size, signature.mtime_ns, signature.inode)
        )

    def _to_writer(self, work: _Work) -> None:
        while not self._inbox.put(work, timeout=0.5):
            if self._stop.is_set() and not self.healthy:
                self._done()
                return

    def check_stall(self, seconds: float) -> bool:
        """Warn once when the writer's backlog (operations to commit, journal to flush)
        made no progress for ``seconds``, and once per build running that long; called
        from the daemon's main loop, so a writer or worker hung inside a call is seen too.
        Returns whether anything is stalled."""
        now = time.monotonic()
        backlog = len(self._pending) + len(self._inbox) + self._journal
        if backlog == 0:
            self._progress_at = now
        idle = now - self._progress_at
        if backlog and idle >= seconds and not self._writer_stalled:
            self._writer_stalled = True
            failing = self.commit_retry if self.commit_retry.failing else self.flush_retry
            self.log.warning(
                "writer_stalled", pending_commit=len(self._pending) + len(self._inbox), journal=self._journal,
                no_progress_for_s=round(idle, 1), last_error=failing.last_error,
            )  # fmt: skip
        elif self._writer_stalled and idle < seconds:
            self._writer_stalled = False
            self.log.info("writer_moving_again", pending_commit=len(self._pending) + len(self._inbox), journal=self._journal)
        if self.running_builds is not None:
            running = {(path, since): _Busy(path, since) for path, since in self.running_builds()}
        else:
            with self._busy_lock:
                running = {(b.path, b.since): b for b in self._busy.values()}
        for key in [k for k in self._stalled_builds if k not in running]:
            del self._stalled_builds[key]
        for key, build in running.items():
            if now - build.since >= seconds and key not in self._stalled_builds:
                self._stalled_builds[key] = build
                self.log.warning("build_stalled", path=str(build.path), running_for_s=round(now - build.since, 1))
        return self._writer_stalled or bool(self._stalled_builds)

    def in_writer(self, task: Callable[[], None]) -> None:
        """Run ``task`` in the writer thread once the journal is flushed (a repair of
        the catalog must not race the writer); a task that leaves journal entries has
        them flushed like any batch's."""
        self._tasks.append(task)
        self._wake_writer()

    def _wake_writer(self) -> None:
        self._inbox.wake()

    def _rules_containing(self, path: Path) -> Rules | None:
        for parent in path.parents:
            rules = self.rules_for(parent)
            if rules is not None:
                return rules
        return None

    # -- the writer thread ---------------------------------------------------------------

    def post_meta(self, key: str, value: str) -> None:
        """Record a status value in the state; written by the writer thread (the only writer)."""
        with self._meta_lock:
            self._meta[key] = value
        if not self.healthy:
            self._flush_meta()

    def _flush_meta(self) -> None:
        with self._meta_lock:
            pending, self._meta = self._meta, {}
        if not pending:
            return
        try:
            self.writer.state.set_meta(pending)
        except StateUnwritable:
            with self._meta_lock:  # keep the newest values for the next try
                self._meta = {**pending, **self._meta}

    def _write_loop(self) -> None:
        while True:
            try:
                if self._write_step():
                    return
            except Exception as exc:  # noqa: BLE001 - the writer must outlive any bug
                self.log.exception("writer_error", error=type(exc).__name__, reason=str(exc))
                self._stop.wait(1.0)

    def _write_step(self) -> bool:
        """Gather, commit, flush once; True when stopped with nothing left to do."""
        self._gather()
        if self._pending and self.commit_retry.due():
            self._commit(self._pending[: self.max_batch])
        if self._journal and self.flush_retry.due():
            self._flush()
        if self._tasks and not self._journal:
            self._run_task(self._tasks.popleft())
        self._flush_meta()
        stopping = self._stop.is_set() and not self._inbox
        blocked = self.commit_retry.failing or self.flush_retry.failing
        return stopping and (blocked or (not self._pending and not self._journal))

    def _gather(self) -> None:
        """Take what is ready: wait for the first operation, then linger for more."""
        if self._pending and self.commit_retry.due() or self._journal and self.flush_retry.due():
            timeout = 0.0
        else:
            waits = [0.5]
            if self._pending:
                waits.append(self.commit_retry.wait_seconds())
            if self._journal:
                waits.append(self.flush_retry.wait_seconds())
            timeout = min(waits)
        # Returns early when woken for a stop or a task to look at.
        self._pending += self._inbox.take(timeout, self.linger, max(1, self.max_batch - len(self._pending)))

    def _commit(self, batch: list[_Work]) -> None:
        started = time.monotonic()
        try:
            result = self.writer.commit([work.op for work in batch])
        except StateUnwritable as error:
            self._failed(self.commit_retry, "state_write_failed", error, [str(w.path) for w in batch])
            return
        del self._pending[: len(batch)]
        self._progress_at = time.monotonic()
        self.metrics.committed(time.monotonic() - started)
        self._recovered(self.commit_retry, "state_write_recovered")
        self._journal = self.writer.pending()
        self.counters.batches += 1
        self.counters.absorb(result)
        self._log_rejections(result)
        began = {str(work.path): work.started for work in batch}
        self._unannounced.append((result.changes, began, started))
        if not self._journal:
            self._announce()
        for path in result.requeue:
            rules = self._rules_containing(path)
            self.submit(Ready("upsert", path, rules.root if rules else path.parent), timeout=0)
        for _ in batch:
            self._done()

    def _run_task(self, task: Callable[[], None]) -> None:
        try:
            task()
        except (CatalogUnwritable, StateUnwritable) as error:
            self.log.warning("writer_task_failed", path=str(error.path), error=error.kind, reason=error.reason)
        self._journal = self.writer.pending()

    def _flush(self) -> None:
        started = time.monotonic()
        try:
            result = self.writer.flush()
        except (CatalogUnwritable, StateUnwritable) as error:
            self._journal = max(1, self._journal)
            self._failed(self.flush_retry, "catalog_write_failed", error, [str(error.path)])
            return
        self._journal = 0
        self._progress_at = time.monotonic()
        self.metrics.flushed(time.monotonic() - started)
        self._recovered(self.flush_retry, "catalog_write_recovered")
        self.counters.files_written += len(result.written)
        self._announce()
        if self.on_batch is not None:
            self.on_batch(result)
        with self._idle:
            self._idle.notify_all()

    def _failed(self, backoff: Backoff, event: str, error: Exception, paths: list[str]) -> None:
        reason = getattr(error, "reason", str(error))
        first = not backoff.failing
        delay = backoff.failed(reason)
        self._failing_paths = paths
        log = self.log.error if first else self.log.warning
        log(
            event,
            error=getattr(error, "errno_name", None) or type(error).__name__,
            reason=reason,
            paths=paths[:_PATHS_IN_LOG],
            more_paths=max(0, len(paths) - _PATHS_IN_LOG),
            pending=len(self._pending),
            journal=self._journal,
            attempt=backoff.attempts,
            retry_in_s=round(delay, 2),
        )

    def _recovered(self, backoff: Backoff, event: str) -> None:
        attempts = backoff.attempts
        after = backoff.succeeded()
        if after is not None:
            self._failing_paths = []
            self.log.info(event, after_s=round(after, 2), attempts=attempts)

    def _done(self) -> None:
        with self._idle:
            self._outstanding -= 1
            if self._outstanding <= 0:
                self._idle.notify_all()

    def _log_rejections(self, result: BatchResult) -> None:
        for rejection in result.rejections:
            self.metrics.refused(rejection.kind)
            self.log.warning("item_rejected", path=str(rejection.path), error=rejection.kind, reason=rejection.reason)

    def _announce(self) -> None:
        """Log the changes whose files are now on disk: a user who reads the catalog after
        an ``item_added`` line finds the Item there."""
        now = time.monotonic()
        for changes, began, started in self._unannounced:
            for kind, collection, item_id, path in changes:
                self.metrics.item_changed(kind)
                self.log.info(
                    f"item_{kind}",
                    path=path,
                    collection=collection,
                    item_id=item_id,
                    duration_ms=round((now - began.get(path or "", started)) * 1000, 1),
                )
        self._unannounced.clear()


def _is_utf8(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
