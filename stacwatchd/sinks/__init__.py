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
    """One :class:`~stacwatchd.sinks.base.Sink` per configured destination."""
    sinks: list[Sink] = []
    if settings.notify.webhook or settings.notify.sns:
        from stacwatchd.sinks.notify import notify_sinks

        sinks += notify_sinks(settings)
    return sinks
