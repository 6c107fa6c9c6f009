"""Destinations fed from the state's outbox, each at its own pace (see :mod:`.base`).

The static catalog stays the primary output; a sink republishes changes somewhere else.
Sink modules are imported lazily, so the daemon needs their dependencies only when one
is configured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stacwatchd.config import Settings
    from stacwatchd.sinks.base import Sink

__all__ = ["configured_sinks"]


def configured_sinks(settings: Settings) -> list[Sink]:
    """One :class:`~stacwatchd.sinks.base.Sink` per configured destination.

    Every entry point that opens the writer passes all of them: the state drops the
    cursor (and the backlog) of a sink left out.
    """
    sinks: list[Sink] = []
    if settings.pgstac is not None:
        from stacwatchd.sinks.pgstac import PgstacSink

        collections = {w.collection_id: w.collection for w in settings.watch}
        sinks.append(PgstacSink(settings.pgstac, settings.catalog, collections=collections))
    if settings.object_store is not None:
        from stacwatchd.sinks.object_store import ObjectStoreSink

        sinks.append(ObjectStoreSink(settings.object_store, settings))
    if settings.notify.webhook or settings.notify.sns:
        from stacwatchd.sinks.notify import notify_sinks

        sinks += notify_sinks(settings)
    return sinks
