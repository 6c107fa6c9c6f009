"""Ready files → bounded queue → worker threads → one writer thread.

The queue deduplicates by path (the newest decision wins) and blocks producers when full
(back-pressure instead of unbounded memory). Workers run the pure Item builder; only the
writer thread touches the state index and the catalog, in batches, so a burst of files
into one partition rewrites that partition once per batch, not once per file.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stacwatchd.engine.writer import BatchResult, CatalogWriter, Op, Reject, Remove, RemoveTree, Tally, op_for
from stacwatchd.model.items import Rejection, Rules, build
from stacwatchd.log import get_logger
from stacwatchd.metrics import Metrics
from stacwatchd.engine.reconcile import data_for_sidecar
from stacwatchd.engine.settle import Ready
from stacwatchd.model.sources import signature_of
from stacwatchd.state.store import State


class WorkQueue:
    """Bounded, deduplicated by path, newest decision wins; ``put`` blocks when full."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Path, Ready] = OrderedDict()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, ready: Ready, timeout: float | None = None) -> bool | None:
        """True when queued, None when it replaced a queued decision for the same path,
        False when the queue stayed full past ``timeout`` or is closed."""
        with self._cond:
            if ready.path in self._items:
                self._items[ready.path] = ready
                return None
            deadline = None if timeout is None else time.monotonic() + timeout
            while len(self._items) >= self.capacity and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            if self._closed:
                return False
            self._items[ready.path] = ready
            self._cond.notify_all()
            return True

    def take(self, timeout: float | None = None) -> Ready | None:
        with self._cond:
            if not self._items:
                self._cond.wait_for(lambda: self._items or self._closed, timeout)
            if not self._items:
                return None
            _, ready = self._items.popitem(last=False)
            self._cond.notify_all()
            return ready

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


@dataclass(slots=True)
class Counters(Tally):
    """What the service reports in STATUS= and ``stacwatchd status``."""

    skipped: int = 0
    batches: int = 0
    timeouts: int = 0
    last_errors: list[str] = field(default_factory=list)

    def absorb(self, result: BatchResult) -> None:
        Tally.absorb(self, result)
        self.batches += 1
        for rejection in result.rejections:
            self.last_errors = ([f"{rejection.path}: {rejection.reason}"] + self.last_errors)[:10]


@dataclass(slots=True)
class _Busy:
    path: Path
    since: float


class Pipeline:
    """Workers and the writer thread around one CatalogWriter."""

    def __init__(
        self,
        writer: CatalogWriter,
        rules_for: Callable[[Path], Rules | None],
        *,
        workers: int,
        queue_size: int,
        item_timeout: float,
        keep_deleted: Callable[[Path], bool] = lambda watch: False,
        max_batch: int = 1000,
        linger: float = 0.05,
        on_batch: Callable[[BatchResult], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.writer = writer
        self.rules_for = rules_for
        self.queue = WorkQueue(queue_size)
        self.counters = Counters()
        self.log = get_logger()
        self.n_workers = workers
        self.item_timeout = item_timeout
        self.keep_deleted = keep_deleted
        self.max_batch = max_batch
        self.linger = linger
        self.on_batch = on_batch
        self.metrics = metrics or Metrics()
        self.status_extra: Callable[[], Mapping[str, Any]] = dict
        self._inbox: queue.Queue[tuple[Op, float, Path]] = queue.Queue()
        self._busy: dict[int, _Busy] = {}
        self._busy_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._writer_thread: threading.Thread | None = None
        self._reader = State(writer.state.path, readonly=True)
        self._reader_lock = threading.Lock()
        self._abandoned: set[Path] = set()
        self._worker_seq = 0
        self._idle = threading.Condition()
        self._outstanding = 0
        self._meta: dict[str, str] = {}
        self._meta_lock = threading.Lock()

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        for _ in range(self.n_workers):
            self._spawn_worker()
        self._writer_thread = threading.Thread(target=self._write_loop, name="stacwatchd-writer", daemon=True)
        self._writer_thread.start()

    def submit(self, ready: Ready, timeout: float | None = None) -> bool:
        """Hand a settled decision to the workers; blocks while the queue is full."""
        with self._idle:
            self._outstanding += 1
        queued = self.queue.put(ready, timeout)
        if queued is True:
            return True
        self._done()
        return queued is None

    def drain(self, timeout: float) -> bool:
        """Wait until everything submitted so far is cataloged (or refused)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._outstanding <= 0, timeout)

    def stop(self, timeout: float = 30.0) -> bool:
        """Finish in-flight work and flush the writer, within ``timeout``."""
        drained = self.drain(timeout)
        self._stop.set()
        self.queue.close()
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
        return len(self.queue) + self._inbox.qsize()

    def status(self) -> dict[str, Any]:
        c = self.counters
        return {
            "queue": len(self.queue),
            "building": len(self._busy),
            "added": c.added,
            "updated": c.updated,
            "removed": c.removed,
            "rejected": c.rejected,
            "timeouts": c.timeouts,
            "last_errors": c.last_errors[:5],
            **self.status_extra(),
        }

    # -- workers -------------------------------------------------------------------------

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
                    abandoned = me not in self._live_workers()
            if abandoned:
                return

    def _live_workers(self) -> set[int]:
        return {t.ident for t in self._threads if t.ident is not None}

    def _handle(self, ready: Ready) -> None:
        started = time.monotonic()
        if ready.op == "delete_tree":
            self._to_writer(RemoveTree(ready.path), started, ready.path, keep=ready.watch)
            return
        if ready.op == "delete":
            self._to_writer(Remove(ready.path), started, ready.path, keep=ready.watch)
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
            if self._unchanged_since_refused(target):
                self.counters.skipped += 1
                self._done()
                continue
            built_at = time.monotonic()
            result = build(target, rules)
            self.metrics.build_time(time.monotonic() - built_at)
            if target in self._abandoned:
                self._abandoned.discard(target)  # already refused with a timeout
                continue
            self._to_writer(op_for(result, rules), started, target)

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

    def _to_writer(self, op: Op, started: float, path: Path, keep: Path | None = None) -> None:
        if keep is not None and self.keep_deleted(keep):
            self._done()
            return
        self._inbox.put((op, started, path))

    def check_stuck(self) -> list[Path]:
        """Replace workers stuck on one file longer than the item timeout.

        Python cannot interrupt a hung read; the stuck thread is left behind (it is a
        daemon thread) and a fresh worker takes its place, so the rest keeps moving.
        The file is refused with a timeout so it is not retried until it changes.
        """
        now = time.monotonic()
        stuck: list[Path] = []
        with self._busy_lock:
            for ident, busy in list(self._busy.items()):
                if now - busy.since > self.item_timeout:
                    stuck.append(busy.path)
                    self._busy.pop(ident)
                    self._threads = [t for t in self._threads if t.ident != ident]
                    self._abandoned.add(busy.path)
        for path in stuck:
            self.counters.timeouts += 1
            self.log.error("item_timeout", path=str(path), error="timeout", timeout_s=self.item_timeout)
            self._spawn_worker()
            rules = next((r for r in [self._rules_containing(path)] if r is not None), None)
            if rules is not None:
                rejection = Rejection(path, f"reading the file took longer than {self.item_timeout:g} s", "timeout", signature_of(path))
                self._inbox.put((Reject(rejection, rules.root, rules.collection_id), now, path))
            else:
                self._done()
        return stuck

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
        if pending:
            with self.writer.state.transaction() as db:
                db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(pending.items()))

    def counters_summary(self) -> dict[str, int]:
        c = self.counters
        return {"added": c.added, "updated": c.updated, "removed": c.removed, "rejected": c.rejected}

    def _write_loop(self) -> None:
        while not (self._stop.is_set() and self._inbox.empty()):
            try:
                first = self._inbox.get(timeout=0.5)
            except queue.Empty:
                self._flush_meta()
                continue
            batch = [first]
            deadline = time.monotonic() + self.linger
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._inbox.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            self._apply(batch)
            self._flush_meta()

    def _apply(self, batch: list[tuple[Op, float, Path]]) -> None:
        started = time.monotonic()
        try:
            result = self.writer.apply([op for op, _, _ in batch])
        except Exception as exc:
            self.log.exception("batch_failed", error=type(exc).__name__, ops=len(batch))
            for _ in batch:
                self._done()
            return
        self.metrics.batch_written(time.monotonic() - started)
        self.counters.absorb(result)
        self._log_result(result, batch, started)
        for path in result.requeue:
            self.submit(Ready("upsert", path, self._watch_of(path)))
        if self.on_batch is not None:
            self.on_batch(result)
        for _ in batch:
            self._done()

    def _watch_of(self, path: Path) -> Path:
        rules = self._rules_containing(path)
        return rules.root if rules else path.parent

    def _log_result(self, result: BatchResult, batch: list[tuple[Op, float, Path]], started: float) -> None:
        now = time.monotonic()
        began = {str(path): t0 for _, t0, path in batch}
        for kind, collection, item_id, path in result.changes:
            self.metrics.item_changed(kind)
            self.log.info(
                f"item_{kind}",
                path=path,
                collection=collection,
                item_id=item_id,
                duration_ms=round((now - began.get(path or "", started)) * 1000, 1),
            )
        for rejection in result.rejections:
            self.metrics.refused(rejection.kind)
            self.log.warning(
                "item_rejected", path=str(rejection.path), error=rejection.kind, reason=rejection.reason
            )
        if result.written or result.deleted:
            self.log.debug(
                "batch_written",
                ops=len(batch),
                files_written=len(result.written),
                files_deleted=len(result.deleted),
                duration_ms=round((now - started) * 1000, 1),
            )

    def _done(self) -> None:
        with self._idle:
            self._outstanding -= 1
            if self._outstanding <= 0:
                self._idle.notify_all()
