"""Rebuilding a lost or corrupt state: a scan of the sources that keeps what the catalog knew.

The state is the truth the catalog is projected from; when it is gone, the sources are
the truth of what exists, and the Item JSON on disk the only record of when each Item
was first cataloged. A rebuild sets a corrupt file aside, scans every source with the
old ``created`` times at hand (ids follow from the files and the rules, so they come
back unchanged), then scrubs the catalog: Items whose sources are gone, and catalogs
nothing links any more, are removed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from stacwatchd.config import CatalogSettings
from stacwatchd.engine.scrub import repair, scrub_catalog
from stacwatchd.engine.writer import CatalogWriter
from stacwatchd.log import get_logger
from stacwatchd.stac.names import CATALOG_FILE, COLLECTION_FILE
from stacwatchd.state.recover import RECOVERY_KEY, StateDamage, created_times, set_aside

__all__ = ["StateRecovery", "begin_recovery"]

_CATALOG_NAMES = (CATALOG_FILE, COLLECTION_FILE)
_HINT = "rebuilding the state from the sources and the catalog's Item JSON (ids and created times kept)"


@dataclass(slots=True)
class StateRecovery:
    """One rebuild of the state, from :func:`begin_recovery` to :meth:`finish`."""

    damage: StateDamage
    created: dict[tuple[str, str], str]
    moved: list[Path] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def attach(self, writer: CatalogWriter) -> None:
        """Give the writer the old ``created`` times; mark the state as being rebuilt."""
        writer.created_hints = self.created
        writer.state.set_meta({RECOVERY_KEY: self.damage.kind})

    def finish(self, writer: CatalogWriter, skip: Iterable[Path] = ()) -> None:
        """Remove what the rebuilt state does not hold, then clear the mark; one log line."""
        report = scrub_catalog(writer.root, writer.state, skip=skip)
        confirmed, done = repair(writer, report)
        writer.flush()
        writer.state.set_meta({}, drop=[RECOVERY_KEY])
        writer.created_hints = {}
        items = writer.state.count_items()
        kept = sum(1 for collection, item_id, _ in writer.state.all_items() if (collection, item_id) in self.created)
        orphans = [rel for rel in done.removed if rel.endswith(".json") and not rel.endswith(_CATALOG_NAMES)]
        get_logger().warning(
            "state_rebuilt", path=str(self.damage.path), cause=self.damage.kind, items=items, created_kept=kept,
            orphans_removed=len(orphans), files_removed=len(done.removed), files_rewritten=len(done.rewritten),
            removed=done.removed[:10], foreign=confirmed.foreign[:10],
            duration_ms=round((time.monotonic() - self.started) * 1000),
        )  # fmt: skip


def begin_recovery(catalog: CatalogSettings, damage: StateDamage | None) -> StateRecovery | None:
    """Set a corrupt state aside, read the catalog's ``created`` times; one log line."""
    if damage is None:
        return None
    log = get_logger()
    moved = set_aside(damage.path) if damage.kind == "corrupt" else []
    created = created_times(catalog.root.resolve())
    if damage.kind == "corrupt":
        log.error(
            "state_corrupt", path=str(damage.path), reason=damage.detail, moved_to=[str(p) for p in moved],
            items_in_catalog=len(created), hint=_HINT,
        )  # fmt: skip
    elif damage.kind == "missing":
        log.warning("state_missing", path=str(damage.path), catalog=str(catalog.root), items_in_catalog=len(created), hint=_HINT)
    else:
        log.warning("state_rebuild_resumed", path=str(damage.path), reason=damage.detail, hint=_HINT)
    return StateRecovery(damage, created, moved)
