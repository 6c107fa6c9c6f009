"""What ``stacwatchd status`` shows, read from the state file (works while the daemon runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stacwatchd.sinks.base import refused_key
from stacwatchd.state.store import State


def read_status(state_path: Path, recent: int = 10) -> dict[str, Any]:
    """Counts, the daemon's last heartbeat, each sink's backlog and last success or
    error, and the most recent failures."""
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
        return report
    finally:
        state.close()


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value
