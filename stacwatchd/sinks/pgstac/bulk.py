"""``publish --all``: the whole state into PgSTAC, for a first load or after a restore.

The same pushes as a drain, fed from the state's Items in time order instead of from
the change stream; idempotent (an unchanged Item or collection writes nothing). With
``prune``, PgSTAC is made to mirror the state for our collections. The caller then moves
the sink's cursor past the rows queued before it started: they are redundant.
"""

from __future__ import annotations

import time

from stacwatchd.sinks.pgstac.plan import Plan, PublishCounts
from stacwatchd.sinks.pgstac.sink import PgstacSink
from stacwatchd.state.store import State

__all__ = ["publish_all"]


def publish_all(sink: PgstacSink, state: State, *, prune: bool = True) -> PublishCounts:
    """Push every collection and Item of ``state`` through ``sink``.

    With ``prune``, Items PgSTAC holds in our collections but the state does not (after
    a database restore, say), and collections the state has emptied, are deleted.
    Raises :class:`~stacwatchd.sinks.pgstac.errors.PublishError` on failure.
    """
    started = time.monotonic()
    counts = PublishCounts()
    refused = sink.refusals(state)
    push = sink.database.push
    try:
        with state.snapshot():
            with_items = state.collection_ids()
            known = state.known_collections()
            first = sink.planner.collections_plan(state, with_items)
        counts.merge(push(first, refused))
        cursor: tuple[str, int, str] = ("", -(2**62), "")
        while True:
            plan, cursor = sink.planner.items_after(state, cursor, sink.batch_size)
            if plan is None:
                break
            counts.merge(push(plan, refused))
        if prune:
            for cid in with_items:
                published = sink.database.published_ids(cid)
                for deletes in sink.planner.prune(state, cid, published, sink.batch_size):
                    counts.merge(push(deletes, refused))
            gone = Plan(collections={cid: None for cid in known if cid not in set(with_items)})
            if not gone.empty:
                counts.merge(push(gone, refused))
    except Exception as exc:
        raise sink.failed(exc) from None
    counts.seconds = time.monotonic() - started
    sink.counts.merge(counts)
    sink.log.info("pgstac_published_all", target=sink.target, **counts.as_dict())
    return counts
