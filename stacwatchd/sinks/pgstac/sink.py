"""PgSTAC as a sink of the change stream.

A :class:`~stacwatchd.sinks.base.SinkRunner` hands :class:`PgstacSink` the rows of the
``changes`` stream in order; each batch is coalesced into a plan
(:mod:`~stacwatchd.sinks.pgstac.plan`) and pushed (:mod:`~stacwatchd.sinks.pgstac.database`).
The runner owns the thread, the cursor, the backoff and the status; the sink only says
how a batch gets to PgSTAC, and why it did not (:class:`PublishError`, its message
masked, with the last row that did get through when a push failed part-way).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from stacwatchd.config import CatalogSettings, CollectionSettings, PgstacSettings
from stacwatchd.errors import StacwatchdError
from stacwatchd.log import get_logger
from stacwatchd.sinks.base import Row, Sink, note_refused
from stacwatchd.sinks.pgstac.credentials import Credentials
from stacwatchd.sinks.pgstac.database import PgstacDatabase, Refused
from stacwatchd.sinks.pgstac.errors import PublishError, failure_kind, first_line
from stacwatchd.sinks.pgstac.hrefs import Hrefs
from stacwatchd.sinks.pgstac.plan import PendingItem, Planner, Progress, PublishCounts
from stacwatchd.stac.layout import Layout
from stacwatchd.stac.summaries import DEFAULT_SUMMARIES
from stacwatchd.state.store import Change, State

__all__ = ["PgstacSink"]


class PgstacSink(Sink):
    """Publishes the catalog's changes to PgSTAC. Constructing one checks the settings
    (and reads the password once) but does not connect."""

    name = "pgstac"
    stream = "changes"

    def __init__(
        self,
        settings: PgstacSettings,
        catalog: CatalogSettings,
        *,
        collections: Mapping[str, CollectionSettings] | None = None,
        summaries: Sequence[str] = DEFAULT_SUMMARIES,
    ) -> None:
        self.settings = settings
        self.credentials = Credentials(settings)
        self.target = self.credentials.describe()
        self.batch_size = settings.batch_size
        self.retry = (settings.retry_initial_seconds, settings.retry_max_seconds)
        layout = Layout(catalog.root.resolve())
        self.hrefs = Hrefs(layout, settings.public_base_url, settings.canonical_links)
        self.planner = Planner(layout, catalog, dict(collections or {}), tuple(summaries), self.hrefs)
        self.database = PgstacDatabase(self.credentials, self.hrefs)
        #: What this sink sent since it was made.
        self.counts = PublishCounts()
        self.log = get_logger()
        self._bug: str | None = None

    def describe(self) -> str:
        return self.target

    def deliver(self, rows: Sequence[Row], state: State) -> None:
        started = time.monotonic()
        changes = [row for row in rows if isinstance(row, Change)]
        try:
            with state.snapshot():
                plan = self.planner.changes(changes, state)
        except Exception as exc:
            raise self.failed(exc, kind="state_error") from None
        progress = Progress()
        try:
            counts = self.database.push(plan, self.refusals(state), progress)
        except Exception as exc:
            raise self.failed(exc, delivered=plan.delivered(progress)) from None
        counts.outbox_rows = len(rows)
        counts.seconds = time.monotonic() - started
        self.log.debug("pgstac_batch_published", **counts.as_dict())
        self.counts.merge(counts)
        self._bug = None

    def interrupt(self) -> None:
        self.database.cancel()

    def close(self) -> None:
        self.database.close()

    # -- what is sent -----------------------------------------------------------------------

    def item_document(self, state: State, collection: str, item_id: str) -> dict[str, Any] | None:
        """The Item as it is sent to PgSTAC (absolute hrefs), or None when not in the state."""
        return self.planner.item_doc(state, collection, item_id)

    def collection_document(self, state: State, collection: str) -> dict[str, Any] | None:
        """The collection as it is sent to PgSTAC, or None when it has no Items."""
        return self.planner.collection_doc(state, collection)

    # -- failures ---------------------------------------------------------------------------

    def refusals(self, state: State) -> Refused:
        """What to do with an Item PgSTAC refuses as data: log it, note it in the state
        (``stacwatchd status``), and go on without it."""

        def refused(item: PendingItem, exc: BaseException, counts: PublishCounts) -> None:
            message = self.credentials.redact(first_line(exc))
            counts.refused += 1
            self.log.error(
                "pgstac_item_refused",
                collection=item.collection,
                id=item.id,
                error=message,
                sqlstate=getattr(exc, "sqlstate", None),
            )
            note_refused(state, self.name, {"at": _now(), "collection": item.collection, "id": item.id, "error": message})

        return refused

    def failed(self, exc: BaseException, *, delivered: int | None = None, kind: str | None = None) -> PublishError:
        """A clean error for the runner (nothing secret in it); drops a broken connection."""
        self.database.discard_if_broken(exc)
        if isinstance(exc, PublishError):
            return PublishError(self.target, exc.reason, exc.kind, sqlstate=exc.sqlstate, delivered=delivered)
        reason = self.credentials.redact(first_line(exc))
        if kind is None and not isinstance(exc, (psycopg.Error, StacwatchdError)):
            self._note_bug(exc)
        return PublishError(
            self.target, reason, kind or failure_kind(exc), sqlstate=getattr(exc, "sqlstate", None), delivered=delivered
        )

    def _note_bug(self, exc: BaseException) -> None:
        """A failure that is neither the database's nor the state's: its traceback, once.

        Text, not ``exc_info``: a renderer that shows a frame's locals could show a
        password; this text is masked.
        """
        text = self.credentials.redact("".join(traceback.format_exception(exc)))
        if text != self._bug:
            self._bug = text
            self.log.error("pgstac_sink_bug", target=self.target, error=type(exc).__name__, traceback=text)


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
