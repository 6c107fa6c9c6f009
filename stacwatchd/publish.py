"""``stacwatchd publish [--all] [--sink NAME]``: deliver to the sinks once, from the command line.

Without ``--all`` the PgSTAC sink's backlog is delivered once, from its cursor, exactly
as the daemon's runner does continuously. With ``--all`` every collection and Item of
the state is pushed in bulk, for a first load or after a database restore, and the
cursor then moves past what was queued before. Both are idempotent: running them again
changes nothing in PgSTAC and never duplicates an Item. They may run while the daemon
does; the two then take turns through the state file and PgSTAC's idempotent upserts.
Other sinks (the object store) are published one by one with :func:`publish_sink`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from stacwatchd.config import Settings
from stacwatchd.errors import ConfigError, StacwatchdError
from stacwatchd.sinks import configured_sinks
from stacwatchd.sinks.base import SinkRunner
from stacwatchd.sinks.pgstac import PgstacSink, PublishCounts, PublishError
from stacwatchd.sinks.pgstac import publish_all as push_everything

__all__ = ["PublishCounts", "PublishError", "publish_all", "publish_outbox", "publish_sink"]


@contextlib.contextmanager
def _pgstac_runner(settings: Settings) -> Iterator[tuple[PgstacSink, SinkRunner]]:
    """The PgSTAC sink and a runner on the state, every configured sink's cursor kept."""
    if settings.pgstac is None:
        raise ConfigError(None, "no [pgstac] section configured: nothing to publish to")
    state_path = settings.catalog.state_path
    if not state_path.exists():
        raise StacwatchdError(state_path, "no state file: catalog something first (stacwatchd scan)")
    sinks = configured_sinks(settings)
    sink = next(s for s in sinks if isinstance(s, PgstacSink))
    runner = SinkRunner(sink, state_path)
    try:
        runner.state.register_sinks({s.name: s.stream for s in sinks})
        yield sink, runner
    finally:
        sink.close()
        runner.state.close()


def publish_all(settings: Settings, *, prune: bool = True) -> PublishCounts:
    """Push every collection and Item of the state to PgSTAC (bulk, idempotent).

    With ``prune`` (the default) PgSTAC is made to mirror the state for our
    collections: Items it holds there that the state does not are deleted, and so are
    collections the state has emptied. Raises :class:`PublishError` on failure.
    """
    with _pgstac_runner(settings) as (sink, runner):
        queued = runner.state.stream_end(sink.stream)
        counts = push_everything(sink, runner.state, prune=prune)
        counts.outbox_rows = runner.acknowledge(queued)
        return counts


def publish_outbox(settings: Settings) -> PublishCounts:
    """Deliver the PgSTAC backlog once: every change queued now, in order."""
    with _pgstac_runner(settings) as (sink, runner):
        runner.drain()
        return sink.counts


def publish_sink(settings: Settings, name: str, *, everything: bool) -> dict[str, int]:
    """Deliver one configured sink's backlog now, or with ``everything`` make its target
    equal the local catalog (a sink that can compare, such as the object store); the
    cursor then moves past what was queued before.

    Raises :class:`~stacwatchd.sinks.base.SinkError` when the target fails.
    """
    state_path = settings.catalog.state_path
    if not state_path.exists():
        raise StacwatchdError(state_path, "no state file: catalog something first (stacwatchd scan)")
    sinks = configured_sinks(settings)
    sink = next((s for s in sinks if s.name == name), None)
    if sink is None:
        known = ", ".join(sorted(s.name for s in sinks)) or "none"
        raise ConfigError(None, f"no sink named {name!r} is configured (configured: {known})")
    runner = SinkRunner(sink, state_path)
    try:
        runner.state.register_sinks({s.name: s.stream for s in sinks})
        mirror = getattr(sink, "mirror", None)
        if everything and mirror is not None:
            counts = mirror(runner.state)
            runner.acknowledge(counts.through)
            return counts.as_dict()
        return {"delivered": runner.drain()}
    finally:
        for each in sinks:
            each.close()
        runner.state.close()
