"""What ``stacwatchd status`` shows, read from the state file (works while the daemon runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stacwatchd.state import State


def read_status(state_path: Path, recent: int = 10) -> dict[str, Any]:
    """Counts, the daemon's last heartbeat, the outbox and the most recent failures."""
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
        last_publish_error = state.meta("publish_error")
        if last_publish_error:
            report["last_publish_error"] = last_publish_error
        report["recent_failures"] = [
            f"{r.path}: {r.error} ({r.error_kind})" for r in state.failed_sources(recent)
        ]
        return report
    finally:
        state.close()
