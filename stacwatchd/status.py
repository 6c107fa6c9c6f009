"""What ``stacwatchd status`` shows, read from the state file (works while the daemon runs)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from stacwatchd.config import STATE_DIRNAME
from stacwatchd.engine.scrub import REPAIR_COMMAND
from stacwatchd.sinks.base import refused_key
from stacwatchd.state.store import SourceRecord, State

__all__ = ["HEARTBEAT_STALE_SECONDS", "ago", "read_status", "refused_under", "render_status"]

#: The daemon records a heartbeat every 2 s; one older than this means it is not responding.
HEARTBEAT_STALE_SECONDS = 30.0


def read_status(state_path: Path, recent: int = 10, catalog_root: Path | None = None) -> dict[str, Any]:
    """Counts, the daemon's last heartbeat, each sink's backlog and last success or
    error, the most recent failures, and ``warnings``: stalls and unreadable folders the
    daemon reported, and catalog files found missing."""
    if catalog_root is None and state_path.parent.name == STATE_DIRNAME:
        catalog_root = state_path.parent.parent
    state = State(state_path, readonly=True)
    try:
        counts = state.counts()
        report: dict[str, Any] = {
            "items": counts["items"],
            "sources": counts["sources"],
            "failed_files": counts["rejected"],
            "journal_pending": counts["journal"],
            "outbox_depth": counts["outbox"],
        }
        daemon = state.meta("daemon")
        if daemon:
            report["daemon"] = json.loads(daemon)
        sinks = {}
        for name, stream, _, status in state.sinks():
            entry: dict[str, Any] = {"stream": stream, "backlog": state.backlog(name), **status}
            refused = state.meta(refused_key(name))
            if refused:
                entry["last_refused"] = _json_or_text(refused)
            sinks[name] = entry
        if sinks:
            report["sinks"] = sinks
        report["recent_failures"] = [f"{r.path}: {r.error} ({r.error_kind})" for r in state.failed_sources(recent)]
        daemon = report.get("daemon") or {}
        running = bool(daemon.get("running")) and time.time() - float(daemon.get("heartbeat_at") or 0) <= HEARTBEAT_STALE_SECONDS
        warnings = _daemon_warnings(daemon) if running else []
        if catalog_root is not None:
            warnings += _missing_catalogs(state, catalog_root, running=running)
        if warnings:
            report["warnings"] = warnings
        return report
    finally:
        state.close()


def _daemon_warnings(daemon: dict[str, Any]) -> list[str]:
    """What the running daemon last reported as stalled, or could not read."""
    found = []
    for name, sink in (daemon.get("sinks") or {}).items():
        if "stalled_for_s" in sink:
            found.append(f"sink {name} stalled: no progress for {sink['stalled_for_s']} s, backlog {sink.get('backlog')}")
    if "writer_stalled_for_s" in daemon:
        found.append(
            f"writer stalled: no progress for {daemon['writer_stalled_for_s']} s "
            f"(pending {daemon.get('pending_commit', 0)}, journal {daemon.get('journal', 0)})"
        )
    for build in daemon.get("stalled_builds") or []:
        found.append(f"build stalled: {build['path']} running for {build['running_for_s']} s")
    for root, unreadable in (daemon.get("unreadable") or {}).items():
        count = unreadable["count"]
        found.append(
            f"{count} folder{'s' if count != 1 else ''} under {root} could not be read at the last "
            f"reconcile ({'; '.join(unreadable['first'])}): their files are not cataloged, and "
            f"nothing under {root} is removed until they can be read"
        )
    return found


def _missing_catalogs(state: State, root: Path, *, running: bool) -> list[str]:
    """Catalog files (root, collections, partitions: few) the state says exist but are gone."""
    missing = [rel for rel in state.catalog_file_paths() if not os.path.exists(root / rel)]
    if not missing:
        return []
    fix = "the running daemon repairs them at its next reconcile pass" if running else f"run '{REPAIR_COMMAND}'"
    return [f"{len(missing)} catalog files missing (e.g. {min(missing)}): {fix}"]


def refused_under(state_path: Path, folders: Sequence[Path], limit: int = 100_000) -> list[SourceRecord]:
    """Files below ``folders`` that are refused now, most recently refused first."""
    roots = [str(folder.resolve()).rstrip("/") for folder in folders]
    state = State(state_path, readonly=True)
    try:
        return [
            record
            for record in state.failed_sources(limit)
            if any(record.path == root or record.path.startswith(root + "/") for root in roots)
        ]
    finally:
        state.close()


def ago(seconds: float) -> str:
    """A duration in the largest sensible units: ``4 s``, ``3 min``, ``2 h 5 min``, ``3 days``."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    hours, rest = divmod(int(minutes), 60)
    if hours < 48:
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    return f"{hours // 24} days"


def render_status(report: dict[str, Any], *, catalog: Path, state: Path, now: float | None = None) -> str:
    """The report for a person: states in words, times relative to now."""
    now = time.time() if now is None else now
    lines = [
        f"catalog:  {catalog}",
        f"state:    {state}",
        f"items:    {report['items']:,} from {report['sources']:,} source files"
        + (f"; {report['failed_files']:,} files refused" if report["failed_files"] else ""),
    ]
    lines += _daemon_lines(report.get("daemon"), now)
    if report["journal_pending"]:
        lines.append(f"journal:  {report['journal_pending']} files still to write (finished at the next start)")
    lines += _sink_lines(report, now)
    failures = report.get("recent_failures") or []
    if failures:
        lines.append("recent refusals:")
        lines += [f"  {entry}" for entry in failures]
    warnings = report.get("warnings") or []
    if warnings:
        lines.append("warnings:")
        lines += [f"  {entry}" for entry in warnings]
    return "\n".join(lines)


def _daemon_lines(daemon: dict[str, Any] | None, now: float) -> list[str]:
    if not daemon:
        return ["daemon:   never ran on this state file"]
    beat = float(daemon.get("heartbeat_at") or 0)
    started = float(daemon.get("started_at") or beat)
    since = f"added {daemon.get('added', 0)}, updated {daemon.get('updated', 0)}, removed {daemon.get('removed', 0)}, refused {daemon.get('rejected', 0)}"
    if not daemon.get("running", False):
        return [
            f"daemon:   stopped {ago(now - beat)} ago (cleanly), after running {ago(beat - started)}",
            f"          in that run: {since}",
        ]
    if now - beat > HEARTBEAT_STALE_SECONDS:
        return [
            f"daemon:   not responding: last heartbeat {ago(now - beat)} ago (pid {daemon.get('pid')}; killed or hung?)",
            f"          until then: {since}",
        ]
    lines = [
        f"daemon:   running, pid {daemon.get('pid')}, version {daemon.get('version')}, up {ago(now - started)} "
        f"(heartbeat {ago(now - beat)} ago)",
        f"          queue {daemon.get('queue', 0)}, building {daemon.get('building', 0)}; since start: {since}",
    ]
    if "outbox" in daemon:
        lines.append(f"          outbox {daemon['outbox']}")
    failing = daemon.get("writer_error")
    if isinstance(failing, dict):
        lines.append(
            f"  WRITER FAILING for {ago(float(failing.get('failing_for_s', 0)))}: {failing.get('error')} "
            f"(attempt {failing.get('attempts')}, next in {failing.get('retry_in_s')} s)"
        )
    for path, how in (daemon.get("watches") or {}).items():
        lines.append(f"  watching {path}: {_watch_state(how)}")
    for name, sink in (daemon.get("sinks") or {}).items():
        lines.append(f"  sink {name}: {_sink_state(sink, now)}")
    return lines


def _sink_state(sink: dict[str, Any], now: float) -> str:
    last = sink.get("last_success")
    text = f"backlog {sink.get('backlog', 0)}, last delivered {_relative(last, now) if last else 'never'}"
    if sink.get("last_error"):
        text += f"; FAILING for {ago(float(sink.get('failing_for_s', 0)))}: {sink['last_error']}"
    if sink.get("stalled_for_s"):
        text += f"; no progress for {ago(float(sink['stalled_for_s']))}"
    return text


def _watch_state(how: str) -> str:
    if how.startswith("lost: "):
        return f"NOT watched ({how[len('lost: ') :]})"
    return f"watched ({how})"


def _sink_lines(report: dict[str, Any], now: float) -> list[str]:
    """Each sink's backlog and last outcome as recorded in the state (daemon running or not)."""
    lines = []
    for name, sink in (report.get("sinks") or {}).items():
        what = "changes" if sink.get("stream") == "changes" else "files"
        lines.append(f"{name + ':':<10}{sink.get('backlog', 0):,} {what} waiting")
        if sink.get("last_success"):
            lines.append(f"          last delivered {_relative(sink['last_success'], now)}")
        if sink.get("last_error"):
            when = f", {_relative(sink['last_error_at'], now)}" if sink.get("last_error_at") else ""
            lines.append(f"          last error ({sink.get('last_error_kind', 'error')}{when}): {sink['last_error']}")
        refused = sink.get("last_refused")
        if isinstance(refused, dict):
            lines.append(
                f"          last refused: {refused.get('collection')}/{refused.get('id')} "
                f"{_relative(str(refused.get('at', '')), now)}: {refused.get('error')}"
            )
    return lines


def _relative(stamp: str, now: float) -> str:
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return stamp
    return f"{ago(now - when)} ago ({stamp})"


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value
