"""One-shot backfill or catch-up: folders → parallel Item builds → one writer, in batches."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from queue import SimpleQueue
from typing import TextIO

from stacwatchd.engine.builders import Builder, BuildMode
from stacwatchd.engine.writer import BatchResult, CatalogWriter, Op, Remove, Tally, op_for
from stacwatchd.config import CatalogSettings, WatchSettings
from stacwatchd.model.items import BuiltItem, Rejection, Rules
from stacwatchd.log import get_logger
from stacwatchd.engine.reconcile import diff


@dataclass(slots=True)
class ScanSummary(Tally):
    """The final line of a scan, and the files it could not catalog."""

    files_written: int = 0
    seconds: float = 0.0
    rejections: list[Rejection] = field(default_factory=list)

    def absorb(self, result: BatchResult) -> None:
        Tally.absorb(self, result)
        self.files_written += len(result.written)
        self.rejections.extend(result.rejections)

    @property
    def wrote_nothing(self) -> bool:
        return self.files_written == 0


class Progress:
    """A one-line progress bar with rate and ETA on a terminal; periodic log events otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None, interval: float = 0.2) -> None:
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self.interval = interval if self.tty else 5.0
        self.last = 0.0
        self.log = get_logger()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.interval or self.done == self.total:
            self.last = now
            self._show(now)

    def _show(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        if self.tty:
            self.stream.write(f"\rscan: {self.done}/{self.total} files  {rate:,.0f}/s  ETA {eta:,.0f}s ")
            self.stream.flush()
        else:
            self.log.info("scan_progress", done=self.done, total=self.total, rate=round(rate, 1), eta_s=round(eta, 1))

    def close(self) -> None:
        if self.tty and self.total:
            self.stream.write("\n")


def scan(
    catalog: CatalogSettings,
    watches: Sequence[WatchSettings],
    *,
    workers: int,
    batch_size: int = 256,
    progress: Callable[[int], Progress] | None = Progress,
    item_timeout: float = 120.0,
    build_mode: BuildMode = "process",
) -> ScanSummary:
    """Bring the catalog in line with the folders; returns what changed."""
    started = time.monotonic()
    summary = ScanSummary()
    log = get_logger()
    collections = {w.collection_id: w.collection for w in watches}
    with CatalogWriter(catalog, collections) as writer, Builder(workers, item_timeout, mode=build_mode) as builder:
        plans = []
        removals: list[Op] = []
        for watch in watches:
            rules = Rules.from_watch(watch)
            found = diff(rules, writer.state, recursive=watch.recursive, skip=[writer.root])
            for error in found.errors:
                log.warning("scan_incomplete", path=str(watch.path), error=error)
            summary.unchanged += found.unchanged
            summary.rejected += found.still_rejected
            removals += [Remove(p) for p in found.removed]
            plans += [(p, rules) for p in found.changed]
        bar = progress(len(plans)) if progress else None
        pending: list[Op] = list(removals)

        def flush() -> None:
            result = writer.apply(pending)
            pending.clear()
            summary.absorb(result)
            for rejection in result.rejections:
                log.warning("item_rejected", path=str(rejection.path), error=rejection.kind, reason=rejection.reason)
            for path in result.requeue:
                rules = next((r for _, r in plans if path.is_relative_to(r.root)), None)
                if rules is not None:
                    pending.append(op_for(builder.build(path, rules), rules))

        # Keep a batch's worth of builds queued, so the build processes go on while the
        # writer flushes the previous batch.
        finished: SimpleQueue[Future[BuiltItem | Rejection]] = SimpleQueue()
        rules_of: dict[Future[BuiltItem | Rejection], Rules] = {}
        queue = iter(plans)
        while True:
            while len(rules_of) < batch_size + workers * 4:
                nxt = next(queue, None)
                if nxt is None:
                    break
                future = builder.submit(nxt[0], nxt[1])
                rules_of[future] = nxt[1]
                future.add_done_callback(finished.put)
            if not rules_of:
                break
            done = [finished.get()]
            while not finished.empty():
                done.append(finished.get())
            for future in done:
                pending.append(op_for(future.result(), rules_of.pop(future)))
                if bar:
                    bar.advance()
            if len(pending) >= batch_size:
                flush()
        while pending:
            flush()
        if bar:
            bar.close()
    summary.seconds = time.monotonic() - started
    return summary


def watches_for(paths: Sequence[Path], configured: Sequence[WatchSettings], collection: str | None) -> list[WatchSettings]:
    """The watches to scan: the configured ones, or one per folder given on the command line."""
    from stacwatchd.config import CollectionSettings

    if not paths:
        return list(configured)
    out = []
    for path in paths:
        path = path.resolve()
        match = next((w for w in configured if w.path.resolve() == path), None)
        if match is None:
            match = WatchSettings(path=path, collection=CollectionSettings(id=collection) if collection else CollectionSettings())
        elif collection:
            match = match.model_copy(update={"collection": match.collection.model_copy(update={"id": collection})})
        out.append(match)
    return out
