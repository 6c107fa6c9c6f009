"""``stacwatchd publish [--all]``: push the state to PgSTAC once, from the command line.

Without ``--all`` the outbox is drained once (what the daemon's publisher thread does
continuously), with ``--all`` every collection and Item of the state is pushed in bulk,
for a first load or after a database restore. Both are idempotent: running them again
changes nothing in PgSTAC and never duplicates an Item. They may run while the daemon
does; the two publishers then take turns through the state file and PgSTAC's
idempotent upserts.
"""

from __future__ import annotations

from stacwatchd.config import Settings
from stacwatchd.errors import ConfigError, StacwatchdError
from stacwatchd.sinks.pgstac import PgstacPublisher, PublishCounts, PublishError

__all__ = ["PublishCounts", "PublishError", "publish_all", "publish_outbox", "publish_sink", "publisher_for"]


def publisher_for(settings: Settings) -> PgstacPublisher:
    """A publisher for the configured catalog and ``[pgstac]`` section (not started)."""
    if settings.pgstac is None:
        raise ConfigError(None, "no [pgstac] section configured: nothing to publish to")
    state_path = settings.catalog.state_path
    if not state_path.exists():
        raise StacwatchdError(state_path, "no state file: catalog something first (stacwatchd scan)")
    collections = {w.collection_id: w.collection for w in settings.watch}
    return PgstacPublisher(settings.pgstac, settings.catalog, state_path, collections=collections)


def publish_all(settings: Settings, *, prune: bool = True) -> PublishCounts:
    """Push every collection and Item of the state to PgSTAC (bulk, idempotent).

    With ``prune`` (the default) PgSTAC is made to mirror the state for our
    collections: Items it holds there that the state does not are deleted, and so are
    collections the state has emptied. Raises :class:`PublishError` on failure.
    """
    with publisher_for(settings) as publisher:
        return publisher.publish_all(prune=prune)


def publish_outbox(settings: Settings) -> PublishCounts:
    """Drain the outbox once: every change queued now is published, in order."""
    with publisher_for(settings) as publisher:
        return publisher.drain()


def publish_sink(settings: Settings, name: str, *, everything: bool) -> dict[str, int]:
    """Deliver one configured sink's backlog now, or with ``everything`` make its target
    equal the local catalog (a sink that can compare, such as the object store).

    Raises :class:`~stacwatchd.sinks.base.SinkError` when the target fails.
    """
    from stacwatchd.sinks import configured_sinks
    from stacwatchd.sinks.base import SinkRunner

    state_path = settings.catalog.state_path
    if not state_path.exists():
        raise StacwatchdError(state_path, "no state file: catalog something first (stacwatchd scan)")
    sinks = {sink.name: sink for sink in configured_sinks(settings)}
    sink = sinks.get(name)
    if sink is None:
        known = ", ".join(sorted(sinks)) or "none"
        raise ConfigError(None, f"no sink named {name!r} is configured (configured: {known})")
    runner = SinkRunner(sink, state_path)
    try:
        if everything and hasattr(sink, "mirror"):
            return sink.mirror(runner.state).as_dict()
        return {"delivered": runner.drain()}
    finally:
        sink.close()
        runner.state.close()
