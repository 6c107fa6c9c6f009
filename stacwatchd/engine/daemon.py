"""``stacwatchd run``: start-up, signals, systemd notification, health, reconcile timer."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stacwatchd import __version__
from stacwatchd.config import Settings, WatchSettings, load_settings, require_watches
from stacwatchd.engine.builders import Builder
from stacwatchd.engine.engine import Engine
from stacwatchd.engine.heap import freeze_startup_objects
from stacwatchd.engine.reconcile import accepts_for, diff
from stacwatchd.engine.scan import scan
from stacwatchd.engine.scrub import Scrubber, ScrubReport, repair
from stacwatchd.engine.settle import Settler
from stacwatchd.engine.watch import FileEvent, Watcher
from stacwatchd.engine.writer import BatchResult, open_writer
from stacwatchd.errors import StacwatchdError
from stacwatchd.log import configure, get_logger
from stacwatchd.metrics import Metrics
from stacwatchd.model.results import Rules
from stacwatchd.sinks import configured_sinks
from stacwatchd.sinks.base import SinkRunner
from stacwatchd.state.recover import inspect_state
from stacwatchd.state.store import State, StateUnwritable
from stacwatchd.systemd import notify, watchdog_seconds

__all__ = ["Daemon", "run"]

#: How many of the folders a reconcile could not read the heartbeat (and so ``status``) names.
_UNREADABLE_SHOWN = 5


@dataclass(frozen=True, slots=True)
class _Watch:
    settings: WatchSettings
    rules: Rules


class Daemon:
    """One running instance: watcher → settler → pipeline → writer (→ sinks)."""

    def __init__(self, settings: Settings, config_path: Path | None = None, *, stop_timeout: float = 60.0) -> None:
        require_watches(settings, config_path)
        self.settings = settings
        self.config_path = config_path
        self.stop_timeout = stop_timeout
        self.log = get_logger()
        self.watches: dict[Path, _Watch] = {}
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._reconcile_now = threading.Event()
        self._reconcile_roots: set[Path] = set()
        self._reconcile_lock = threading.Lock()
        #: Per root, the folders its last reconcile could not read ("path: reason").
        self._unreadable: dict[Path, list[str]] = {}
        self.started = time.time()
        self.sinks: list[SinkRunner] = []
        self.scrubber = Scrubber(settings.scrub_full_every)
        self._repair_queued = threading.Event()
        self.metrics = Metrics()

    # -- set-up ----------------------------------------------------------------------------

    def _build(self) -> None:
        s = self.settings
        collections = {w.collection_id: w.collection for w in s.watch}
        sinks = configured_sinks(s)
        self.writer = open_writer(s.catalog, collections, sinks)
        try:
            self.writer.sync_collections(collections)
        except StateUnwritable as error:
            self.log.error(
                "collections_sync_failed", path=str(error.path), reason=error.reason, hint="applied at the next start or SIGHUP"
            )
        self.catalog_root = self.writer.root
        self.builder = Builder(s.workers, s.item_timeout_seconds)
        self.engine = Engine(
            self.writer,
            self.rules_for,
            build=self.builder.build,
            submit=self.builder.submit,
            in_flight=self.builder.in_flight(),
            workers=s.workers,
            queue_size=s.queue_size,
            keep_deleted=lambda root: (w := self.watches.get(root)) is not None and w.settings.on_delete == "keep",
            on_batch=self._after_batch,
            metrics=self.metrics,
        )
        self.engine.status_extra = self._sink_status
        self.engine.running_builds = self.builder.running
        self.settler = Settler(
            self._settled,
            s.settle_seconds,
            root_intact=lambda root: self.watcher.intact(root),
            rescan=self._root_changed,
        )
        self.watcher = Watcher(
            self.settler.feed, observer=s.observer, on_overflow=self._overflowed, on_root_changed=self._root_changed
        )
        self.sinks = [SinkRunner(sink, self.writer.state.path, stall_seconds=s.stall_warning_seconds) for sink in sinks]
        self.metrics.watch(
            queue_depth=self.engine.depth, settle_backlog=self.settler.pending, writer_alive=lambda: self.engine.healthy
        )
        for runner in self.sinks:
            self.metrics.sink(runner.name, backlog=runner.depth, last_success=lambda runner=runner: runner.last_success)
        for watch in s.watch:
            self._add_watch(watch)

    def rules_for(self, root: Path) -> Rules | None:
        found = self.watches.get(root)
        return found.rules if found else None

    def _add_watch(self, watch: WatchSettings) -> None:
        self.writer.ensure_collection(watch.collection_id, watch.collection)
        rules = replace(Rules.from_watch(watch), placement=self.writer.placement(watch.collection_id))
        self.watches[rules.root] = _Watch(watch, rules)
        self.watcher.watch(rules.root, recursive=watch.recursive, accepts=self._accepts(rules))

    def _accepts(self, rules: Rules):  # noqa: ANN202 - a predicate
        base = accepts_for(rules)
        catalog = self.catalog_root

        def accepts(path: Path) -> bool:
            return base(path) and not path.is_relative_to(catalog)

        return accepts

    # -- running ---------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the process exit status."""
        self._install_signals()
        self._heal_state()
        self._build()
        for sink in self.sinks:
            sink.start()
        self.engine.start()
        self.settler.start()
        self.watcher.start()
        self.metrics.serve(self.settings.metrics.listen)
        notify("READY=1", f"STATUS=watching {len(self.watches)} folders")
        self.log.info(
            "daemon_started",
            version=__version__,
            pid=os.getpid(),
            catalog=str(self.catalog_root),
            watches=[str(p) for p in self.watches],
            observer=self.settings.observer,
        )
        self._request_reconcile(list(self.watches))
        reconciler = threading.Thread(target=self._reconcile_loop, name="stacwatchd-reconcile", daemon=True)
        reconciler.start()
        status = 0
        tick = min(1.0, (watchdog_seconds() or 2.0) / 2)
        last_heartbeat = 0.0
        while not self._stop.wait(tick):
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
            if not self.engine.healthy:
                self.log.error("writer_died", error="the writer thread stopped unexpectedly")
                status = 1
                break
            self.engine.check_stall(self.settings.stall_warning_seconds)
            self.metrics.tick()
            for sink in self.sinks:
                sink.check_stall()
            notify("WATCHDOG=1", f"STATUS={self._status_line()}")
            if time.monotonic() - last_heartbeat >= 2.0:
                last_heartbeat = time.monotonic()
                self._heartbeat()
        return self._shutdown(status)

    def _shutdown(self, status: int) -> int:
        notify("STOPPING=1")
        self.log.info("daemon_stopping", queue=self.engine.depth())
        self.watcher.stop()
        self.settler.stop()
        drained = self.engine.stop(self.stop_timeout)
        self.builder.close()
        self._heartbeat(stopped=True)  # while the sinks can still say their backlog
        for sink in self.sinks:
            sink.stop(timeout=10.0)
        self.writer.close()
        self.metrics.close()
        self.log.info("daemon_stopped", drained=drained, **self.engine.counters.summary())
        return status

    def stop(self) -> None:
        self._stop.set()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())

    def reload(self) -> None:
        """SIGHUP: re-read the configuration; add and remove watches, keep queued work."""
        try:
            fresh = load_settings(self.config_path)
        except StacwatchdError as error:
            self.log.error("reload_failed", error=error.kind, reason=error.reason, path=str(error.path))
            return
        wanted = {Rules.from_watch(w).root: w for w in fresh.watch}
        for root in [r for r in self.watches if r not in wanted]:
            self.watcher.unwatch(root)
            del self.watches[root]
            self.log.info("watch_removed", path=str(root))
        added = []
        for root, watch in wanted.items():
            current = self.watches.get(root)
            if current is None or current.settings != watch:
                self._add_watch(watch)
                added.append(root)
                self.log.info("watch_added" if current is None else "watch_changed", path=str(root))
        self.settings = fresh.model_copy(update={"catalog": self.settings.catalog})
        try:
            self.writer.sync_collections({w.collection_id: w.collection for w in fresh.watch})
        except StacwatchdError as error:
            self.log.error("reload_failed", error=error.kind, reason=error.reason, path=str(error.path))
        self._request_reconcile(added)

    # -- state and catalog healing -------------------------------------------------------------

    def _heal_state(self) -> None:
        """A corrupt state (SQLite's quick check), or none beside an existing catalog, is
        rebuilt before anything else starts: a scan of the sources that keeps the ids and
        ``created`` times of the Items on disk and removes those whose sources are gone."""
        s = self.settings
        damage = inspect_state(s.catalog.state_path, s.catalog.root)
        if damage is None:
            return
        notify(f"STATUS=rebuilding the state ({damage.kind})", "EXTEND_TIMEOUT_USEC=600000000")
        scan(
            s.catalog,
            s.watch,
            workers=s.workers,
            item_timeout=s.item_timeout_seconds,
            progress=None,
            sinks=configured_sinks(s),
            deliver=False,
            damage=damage,
        )

    def _scrub(self) -> None:
        """Check the catalog files against the state; what needs repair goes to the writer."""
        skip = [root for root in self.watches if root.is_relative_to(self.catalog_root)]
        try:
            report = self.scrubber.run(self.catalog_root, self.writer.state.path, skip)
        except OSError as exc:
            self.log.error("scrub_failed", path=str(self.catalog_root), reason=exc.strerror or str(exc))
            return
        except StacwatchdError as error:
            self.log.error("scrub_failed", path=str(error.path), reason=error.reason)
            return
        self.log.info("catalog_scrubbed", path=str(self.catalog_root), **report.summary())
        fresh = self.scrubber.new_foreign(report)
        if fresh:
            self.log.warning(
                "catalog_foreign_files", path=str(self.catalog_root), count=len(fresh), paths=fresh[:10],
                hint="not written by stacwatchd: left alone",
            )  # fmt: skip
        if (report.damage or report.verified) and not self._repair_queued.is_set():
            self._repair_queued.set()  # one at a time: a repair the writer cannot land yet is not queued again
            self.engine.in_writer(lambda: self._repair(report))

    def _repair(self, report: ScrubReport) -> None:
        """In the writer thread: confirm and repair; one log line for what was done."""
        self._repair_queued.clear()
        confirmed, done = repair(self.writer, report)
        count = len(done.rewritten) + len(done.removed) + len(done.forgotten)
        if not count:
            return
        self.scrubber.repaired += len(done.rewritten)
        self.scrubber.removed += len(done.removed)
        paths = [*done.rewritten, *done.removed, *done.forgotten]
        self.log.warning(
            "catalog_repaired", path=str(self.catalog_root), count=count, paths=paths[:10], more_paths=max(0, len(paths) - 10),
            missing=len(confirmed.missing), damaged=len(confirmed.damaged), removed=len(done.removed),
        )  # fmt: skip

    # -- reconcile ---------------------------------------------------------------------------

    def _overflowed(self, root: Path) -> None:
        self.log.warning("events_lost", path=str(root), reason="inotify queue overflow; reconciling")
        self._request_reconcile([root])

    def _root_changed(self, root: Path) -> None:
        """A root came back, was replaced or remounted, or a folder in it came back."""
        self._request_reconcile([root])

    def _request_reconcile(self, roots: list[Path]) -> None:
        with self._reconcile_lock:
            self._reconcile_roots.update(roots)
        self._reconcile_now.set()

    def _reconcile_loop(self) -> None:
        interval = self.settings.reconcile_interval
        while not self._stop.is_set():
            self._reconcile_now.wait(interval if interval > 0 else None)
            if self._stop.is_set():
                return
            self._reconcile_now.clear()
            with self._reconcile_lock:
                roots = self._reconcile_roots or set(self.watches)
                self._reconcile_roots = set()
            for root in sorted(roots):
                watch = self.watches.get(root)
                if watch is not None:
                    self.reconcile(watch)
            if roots >= set(self.watches):
                self._scrub()

    def reconcile(self, watch: _Watch) -> None:
        """Folders vs state: changed files go through the settler, vanished ones are removed."""
        started = time.monotonic()
        state = State(self.writer.state.path, readonly=True)
        try:
            found = diff(watch.rules, state, recursive=watch.settings.recursive, skip=[self.catalog_root])
        finally:
            state.close()
        for error in found.errors:
            self.log.warning("reconcile_incomplete", path=str(watch.rules.root), error=error)
        if found.errors:
            self._unreadable[watch.rules.root] = found.errors
        else:
            self._unreadable.pop(watch.rules.root, None)
        now = time.monotonic()
        for raw in found.changed:
            self.settler.feed(FileEvent("found", Path(raw), watch.rules.root, now))
        for raw in found.removed:
            self.settler.feed(FileEvent("deleted", Path(raw), watch.rules.root, now))
        self.log.info(
            "reconciled",
            path=str(watch.rules.root),
            changed=len(found.changed),
            removed=len(found.removed),
            unchanged=found.unchanged,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )

    def _unreadable_report(self) -> dict[str, dict[str, Any]]:
        """Per watched root, the folders its last reconcile could not read: how many, the
        first few (the heartbeat stays small whatever the count)."""
        return {
            str(root): {"count": len(errors), "first": errors[:_UNREADABLE_SHOWN]}
            for root, errors in list(self._unreadable.items())
            if root in self.watches
        }

    # -- glue ------------------------------------------------------------------------------

    def _settled(self, ready: Any) -> None:
        self.engine.submit(ready)

    def _after_batch(self, result: BatchResult) -> None:
        for sink in self.sinks:
            sink.wake()

    def _sink_status(self) -> dict[str, Any]:
        report: dict[str, Any] = {"outbox": sum(sink.depth() for sink in self.sinks)}
        if self.sinks:
            report["sinks"] = {runner.name: runner.status() for runner in self.sinks}
        return report

    def _status_line(self) -> str:
        s = self.engine.status()
        return (
            f"queue {s['queue']}, building {s['building']}, added {s['added']}, updated {s['updated']}, "
            f"removed {s['removed']}, rejected {s['rejected']}, outbox {s.get('outbox', 0)}"
        )

    def _heartbeat(self, stopped: bool = False) -> None:
        report = {
            "pid": os.getpid(),
            "version": __version__,
            "started_at": self.started,
            "heartbeat_at": time.time(),
            "running": not stopped,
            "watches": {str(p): state for p, state in self.watcher.status().items()},
            "unreadable": self._unreadable_report(),
            **self.engine.status(),
            "scrub": self.scrubber.status(),
        }
        self.engine.post_meta("daemon", json.dumps(report))


def run(config_path: Path | None) -> int:
    """Entry point of ``stacwatchd run``."""
    settings = load_settings(config_path)
    configure(settings.log.format, settings.log.level, stream=sys.stdout)
    freeze_startup_objects()
    return Daemon(settings, config_path).run()
