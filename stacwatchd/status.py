"""What ``stacwatchd status`` shows, read from the state file (works while the daemon runs)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from stacwatchd.config import STATE_DIRNAME
from stacwatchd.engine.scrub import REPAIR_COMMAND
from stacwatchd.state.store import State


def read_status(state_path: Path, recent: int = 10, catalog_root: Path | None = None) -> dict[str, Any]:
    """Counts, the daemon's last heartbeat, the outbox, the most recent failures, and
    ``warnings``: stalls the daemon reported and catalog files found missing."""
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
        for key, label in (("publish_ok", "last_publish"), ("publish_error", "last_publish_error"), ("publish_refused", "last_publish_refused")):
            value = state.meta(key)
            if value:
                report[label] = _json_or_text(value)
        report["recent_failures"] = [
            f"{r.path}: {r.error} ({r.error_kind})" for r in state.failed_sources(recent)
        ]
        warnings = _stalls(report.get("daemon") or {})
        if catalog_root is not None:
            warnings += _missing_catalogs(state, catalog_root, running=bool((report.get("daemon") or {}).get("running")))
        if warnings:
            report["warnings"] = warnings
        return report
    finally:
        state.close()


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _stalls(daemon: dict[str, Any]) -> list[str]:
    """What the running daemon last reported as stalled."""
    if not daemon.get("running"):
        return []
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
    return found


def _missing_catalogs(state: State, root: Path, *, running: bool) -> list[str]:
    """Catalog files (root, collections, partitions: few) the state says exist but are gone."""
    missing = [
        rel for rel in state.file_paths()
        if rel.endswith(("catalog.json", "collection.json")) and not os.path.exists(root / rel)
    ]  # fmt: skip
    if not missing:
        return []
    fix = "the running daemon repairs them at its next reconcile pass" if running else f"run '{REPAIR_COMMAND}'"
    return [f"{len(missing)} catalog files missing (e.g. {min(missing)}): {fix}"]
