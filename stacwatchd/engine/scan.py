"""One-shot backfill or catch-up: the engine of ``run``, fed by one walk of the folders."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from stacwatchd.config import CatalogSettings, WatchSettings
from stacwatchd.engine.builders import DEFAULT_DEPTH, Builder, BuildMode
from stacwatchd.engine.engine import Build, Counters, Engine
from stacwatchd.engine.reconcile import diff
from stacwatchd.engine.recovery import begin_recovery
from stacwatchd.engine.settle import Op, Ready
from stacwatchd.engine.writer import open_writer
from stacwatchd.log import get_logger
from stacwatchd.model.results import Rules
from stacwatchd.sinks.base import Sink, deliver_once
from stacwatchd.state.recover import StateDamage, inspect_state

__all__ = ["Progress", "scan", "watches_for"]


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
    item_timeout: float = 60.0,
    progress: Callable[[int], Progress] | None = Progress,
    build: Build | None = None,
    sinks: Sequence[Sink] = (),
    deliver: bool = True,
    damage: StateDamage | None = None,
    build_mode: BuildMode = "process",
    build_depth: int = DEFAULT_DEPTH,
) -> Counters:
    """Bring the catalog in line with the folders: the engine of ``run``, fed by one walk.

    Unless ``build`` is given, Items are built by a ``Builder`` of ``workers`` slots
    (``build_mode``), which the engine keeps supplied ahead of time (``in_flight``), so
    that each build process always has its next file queued. A lost state (or
    ``damage`` found by the caller) is rebuilt on the way, keeping the ids and
    ``created`` times of the Items already in the catalog. With ``deliver`` false the
    sinks' rows stay in the outbox for the daemon's runners. ``build_depth``: requests
    queued per build process (``Builder``'s ``depth``).
    """
    started = time.monotonic()
    log = get_logger()
    collections = {w.collection_id: w.collection for w in watches}
    rules = {Rules.from_watch(w).root: (Rules.from_watch(w), w) for w in watches}
    recovery = begin_recovery(catalog, damage or inspect_state(catalog.state_path, catalog.root, quick_check=False))
    builder = Builder(workers, item_timeout, mode=build_mode, depth=build_depth) if build is None else None
    with builder or contextlib.nullcontext(), open_writer(catalog, collections, sinks) as writer:
        if recovery is not None:
            recovery.attach(writer)
        writer.sync_collections(collections)
        rules = {root: (replace(r, placement=writer.placement(r.collection_id)), w) for root, (r, w) in rules.items()}
        engine = Engine(
            writer,
            lambda root: rules[root][0] if root in rules else None,
            build=build or builder.build,  # type: ignore[union-attr]
            submit=builder.submit if builder else None,
            in_flight=builder.in_flight() if builder else 1,
            workers=workers,
            queue_size=max(batch_size, workers * 4),
            keep_deleted=lambda root: root in rules and rules[root][1].on_delete == "keep",
            max_batch=batch_size,
        )
        engine.start()
        # The plan holds strings, and each Path is made when its file is submitted: a first
        # scan of a million files would otherwise hold a million Paths (~400 bytes each).
        plans: list[tuple[Op, str, Path, bool]] = []
        for root, (watch_rules, watch) in rules.items():
            found = diff(watch_rules, writer.state, recursive=watch.recursive, skip=[writer.root])
            for error in found.errors:
                log.warning("scan_incomplete", path=str(root), error=error)
            engine.counters.unreadable += found.errors
            engine.counters.unchanged += found.unchanged
            engine.counters.rejected += found.still_rejected
            plans += [("delete", p, root, False) for p in found.removed]
            found.changed.sort()
            plans += [("upsert", p, root, p not in found.by_sidecar) for p in found.changed]
            del found
        bar = progress(len(plans)) if progress else None
        plans.reverse()  # taken from the end, so that each entry is let go once submitted
        while plans:
            op, raw, root, checked = plans.pop()
            engine.submit(Ready(op, Path(raw), root, checked=checked))
            if bar:
                bar.advance()
        engine.wait_written()
        engine.stop()
        if bar:
            bar.close()
        if recovery is not None:
            recovery.finish(writer, skip=list(rules))
        for sink in sinks if deliver else ():
            deliver_once(sink, writer.state.path)
    engine.counters.seconds = time.monotonic() - started
    return engine.counters


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
