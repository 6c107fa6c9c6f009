"""The PostgreSQL side of the PgSTAC sink: one connection, bulk upserts, isolation.

A push (one :class:`~stacwatchd.sinks.pgstac.plan.Plan`) is one PostgreSQL transaction:

1. upsert the plan's collections and their queryables (:func:`upsert_collection`, the
   one place where a collection is written);
2. delete Items that are no longer in the state (a missing Item is not an error);
3. upsert Items, in bulk: pypgstac's own Item → row conversion (dehydration against
   the collection's base item, partition name) in Python, one ``COPY`` into a temporary
   table, ``check_partition`` once per partition, then ``DELETE`` the rows that differ
   and ``INSERT ... ON CONFLICT DO NOTHING``. That is delete-then-insert: an Item whose
   datetime changed leaves its old partition in the same transaction, and re-sending an
   unchanged Item writes nothing;
4. delete collections left without Items.

Two failures would repeat forever if retried as they are, so the Items are then
bisected into smaller transactions instead: a document PgSTAC refuses as data, found in
O(log n) transactions and handed to the caller's ``refused`` (logged, recorded,
skipped); and a push spanning so many partitions that its locks overflow the lock table
(~100 locks plus ~18 per partition touched, whatever the number of Items; see
``max_locks_per_transaction``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson
import psycopg
import pypgstac
from pypgstac.load import Loader

from stacwatchd.log import get_logger
from stacwatchd.sinks.pgstac.credentials import Credentials
from stacwatchd.sinks.pgstac.errors import OUT_OF_LOCKS, PublishError, is_refusal, splittable
from stacwatchd.sinks.pgstac.hrefs import Hrefs
from stacwatchd.sinks.pgstac.plan import PendingItem, Plan, Progress, PublishCounts
from stacwatchd.sinks.pgstac.queryables import register_queryables
from stacwatchd.state.packed import decompress

__all__ = ["ITEM_CHUNK", "PgstacDatabase", "Refused", "upsert_collection"]

#: Items per COPY. Several chunks may share a transaction: they reuse the same two
#: temporary tables, so the locks a transaction holds grow with the partitions it
#: touches, not with the number of Items (``max_locks_per_transaction``).
ITEM_CHUNK = 1000

#: Called with an Item PgSTAC refused as data, the error, and the counts to update.
Refused = Callable[[PendingItem, BaseException, PublishCounts], None]

_TEMP_TABLES = """
CREATE TEMP TABLE IF NOT EXISTS stacwatchd_stage (
    id text, collection text, datetime timestamptz, end_datetime timestamptz,
    geojson text, content jsonb, private jsonb
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stacwatchd_items (LIKE pgstac.items) ON COMMIT DELETE ROWS;
"""
_UPSERT_COLLECTION = """
INSERT INTO pgstac.collections (content) VALUES (%s::jsonb)
ON CONFLICT (id) DO UPDATE SET content = EXCLUDED.content
WHERE pgstac.collections.content IS DISTINCT FROM EXCLUDED.content
"""


def upsert_collection(conn: psycopg.Connection[Any], doc: dict[str, Any], queryables: dict[str, Any] | None = None) -> None:
    """Create or update one collection and its queryables, inside the caller's transaction.

    Every collection the sink sends goes through here (drains and ``publish --all``),
    before any of its Items; an unchanged document writes nothing.
    """
    conn.execute(_UPSERT_COLLECTION, (orjson.dumps(doc).decode(),))
    if queryables is not None:
        register_queryables(conn, doc["id"], queryables)


class PgstacDatabase:
    """One lazily opened connection to PgSTAC, checked against pypgstac's version."""

    def __init__(self, credentials: Credentials, hrefs: Hrefs) -> None:
        self.credentials = credentials
        self.hrefs = hrefs
        self.target = credentials.describe()
        self.log = get_logger()
        self._conn: psycopg.Connection[Any] | None = None

    # -- the connection -------------------------------------------------------------------

    def connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._conn = None
        conn = self.credentials.connect()
        try:
            version = str(conn.execute("SELECT pgstac.get_version()").fetchone()[0])  # type: ignore[index]
            conn.commit()
        except BaseException:
            conn.close()
            raise
        if _minor(version) != _minor(pypgstac.__version__) and version != "unreleased":
            conn.close()
            raise PublishError(
                self.target,
                f"pgstac {version} in the database does not match pypgstac {pypgstac.__version__} here",
                "version_mismatch",
            )
        self._conn = conn
        return conn

    def discard_if_broken(self, exc: BaseException) -> None:
        """Drop the connection after a failure that may have left it unusable."""
        conn = self._conn
        if conn is None:
            return
        if conn.closed or conn.broken or isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
            with contextlib.suppress(Exception):
                conn.close()
            self._conn = None

    def cancel(self) -> None:
        """Cancel the statement running now (from another thread)."""
        conn = self._conn
        if conn is not None:
            conn.cancel_safe(timeout=1.0)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    # -- reads ----------------------------------------------------------------------------

    def published_ids(self, collection: str) -> set[str]:
        """Ids of the Items PgSTAC holds in ``collection``."""
        conn = self.connection()
        with conn.transaction():
            rows = conn.execute("SELECT id FROM pgstac.items WHERE collection = %s", (collection,))
            return {row[0] for row in rows}

    # -- pushing --------------------------------------------------------------------------

    def push(self, plan: Plan, refused: Refused, progress: Progress | None = None) -> PublishCounts:
        """Send one plan in one transaction; bisect the Items if PgSTAC refuses it.

        ``progress`` records what got committed, for a caller whose push failed part-way.
        """
        progress = progress if progress is not None else Progress()
        counts = PublishCounts(skipped=plan.skipped)
        if plan.empty:
            return counts
        conn = self.connection()
        try:
            with conn.transaction():
                self._send_head(conn, plan, counts)
                self._send_items(conn, _ItemRows(conn, self.target), plan.items, counts, refused)
                self._send_tail(conn, plan, counts)
        except psycopg.Error as exc:
            if not plan.items or not splittable(exc, conn):
                raise
            reason = "out_of_locks" if exc.sqlstate in OUT_OF_LOCKS else "refused"
        else:
            progress.head = progress.tail = True
            progress.items.update((item.collection, item.id) for item in plan.items)
            return counts
        self.log.info("pgstac_batch_bisected", items=len(plan.items), reason=reason)
        counts = PublishCounts(skipped=plan.skipped)
        with conn.transaction():
            self._send_head(conn, plan, counts)
        progress.head = True
        self._send_bisected(conn, plan.items, counts, refused, progress)
        with conn.transaction():
            self._send_tail(conn, plan, counts)
        progress.tail = True
        return counts

    def _send_bisected(
        self,
        conn: psycopg.Connection[Any],
        items: Sequence[PendingItem],
        counts: PublishCounts,
        refused: Refused,
        progress: Progress,
    ) -> None:
        """Items in halves, each half its own transaction, down to the ones PgSTAC refuses.

        Two reasons to get here: a document PgSTAC refuses (found in O(log n)
        transactions and skipped), or a batch touching so many partitions that its
        locks overflow the lock table ("out of shared memory"); the Items are in time
        order, so each half touches about half the partitions.
        """
        attempt = PublishCounts()
        try:
            with conn.transaction():
                self._send_items(conn, _ItemRows(conn, self.target), items, attempt, refused)
        except psycopg.Error as exc:
            if not splittable(exc, conn):
                raise
            if len(items) == 1:
                if not is_refusal(exc):
                    raise
                refused(items[0], exc, counts)
                progress.items.add((items[0].collection, items[0].id))
                return
            middle = len(items) // 2
            self._send_bisected(conn, items[:middle], counts, refused, progress)
            self._send_bisected(conn, items[middle:], counts, refused, progress)
            return
        counts.merge(attempt)
        progress.items.update((item.collection, item.id) for item in items)

    def _send_head(self, conn: psycopg.Connection[Any], plan: Plan, counts: PublishCounts) -> None:
        conn.execute(_TEMP_TABLES)
        for cid, doc in sorted(plan.collections.items()):
            if doc is not None:
                upsert_collection(conn, doc, plan.queryables.get(cid))
                counts.collections += 1
        for cid, ids in sorted(plan.deletes.items()):
            cur = conn.execute("DELETE FROM pgstac.items WHERE collection = %s AND id = ANY(%s)", (cid, ids))
            counts.items_deleted += max(cur.rowcount, 0)

    def _send_tail(self, conn: psycopg.Connection[Any], plan: Plan, counts: PublishCounts) -> None:
        for cid, doc in sorted(plan.collections.items()):
            if doc is None and conn.execute("SELECT 1 FROM pgstac.collections WHERE id = %s", (cid,)).fetchone():
                conn.execute("SELECT pgstac.delete_collection(%s)", (cid,))
                counts.collections_deleted += 1

    def _send_items(
        self,
        conn: psycopg.Connection[Any],
        rows: _ItemRows,
        items: Sequence[PendingItem],
        counts: PublishCounts,
        refused: Refused,
    ) -> None:
        for start in range(0, len(items), ITEM_CHUNK):
            self._send_chunk(conn, rows, items[start : start + ITEM_CHUNK], counts, refused)

    def _send_chunk(
        self,
        conn: psycopg.Connection[Any],
        rows: _ItemRows,
        items: Sequence[PendingItem],
        counts: PublishCounts,
        refused: Refused,
    ) -> None:
        staged: list[tuple[str, ...]] = []
        for item in items:
            try:
                doc = orjson.loads(decompress(item.blob))
                if doc.get("geometry") is None:
                    counts.skipped += 1
                    continue
                staged.append(rows.row(self.hrefs.item(doc, item.collection, item.partition)))
            except (PublishError, psycopg.Error):
                raise
            except Exception as exc:  # noqa: BLE001 - pypgstac raises bare Exception for bad Items
                refused(item, exc, counts)
        if not staged:
            return
        ranges: dict[tuple[str, str], list[datetime]] = {}
        for row in staged:
            start, end = _instant(row[2]), _instant(row[3])
            found = ranges.setdefault((row[1], row[7]), [start, start, end, end])
            found[0], found[1] = min(found[0], start), max(found[1], start)
            found[2], found[3] = min(found[2], end), max(found[3], end)
        with conn.cursor() as cur:
            cur.execute("TRUNCATE stacwatchd_stage, stacwatchd_items")
            with cur.copy(
                "COPY stacwatchd_stage (id, collection, datetime, end_datetime, geojson, content, private) FROM STDIN"
            ) as copy:
                for row in staged:
                    copy.write_row(row[:7])
            cur.execute(
                "INSERT INTO stacwatchd_items (id, geometry, collection, datetime, end_datetime, content, private) "
                "SELECT id, ST_GeomFromGeoJSON(geojson), collection, datetime, end_datetime, content, private "
                "FROM stacwatchd_stage"
            )
            # Ordered, as pgstac's own loaders do: check_partition holds locks until commit.
            for (collection, _), (low, high, end_low, end_high) in sorted(ranges.items()):
                cur.execute(
                    "SELECT pgstac.check_partition(%s, tstzrange(%s, %s, '[]'), tstzrange(%s, %s, '[]'))",
                    (collection, low, high, end_low, end_high),
                )
            cur.execute(
                "DELETE FROM pgstac.items i USING stacwatchd_items s "
                "WHERE i.collection = s.collection AND i.id = s.id AND i IS DISTINCT FROM s"
            )
            cur.execute("INSERT INTO pgstac.items SELECT * FROM stacwatchd_items ON CONFLICT DO NOTHING")
            counts.items_changed += max(cur.rowcount, 0)
        counts.items += len(staged)


class _ItemRows(Loader):
    """pypgstac's own Item → row conversion, bound to one connection.

    ``format_item`` (dehydration against the collection's base item, datetime range,
    partition name) is reused as is. ``collection_json`` is overridden: the original is
    an lru-cache shared by every Loader in the process, which would outlive a rolled
    back transaction or a changed base item. Geometry is left to PostGIS
    (``ST_GeomFromGeoJSON``, as pgstac's own ``stac_geom``): plpygis costs ~200 µs
    per footprint, which is most of the Loader's time.
    """

    def __init__(self, conn: psycopg.Connection[Any], target: str) -> None:
        super().__init__(None)  # type: ignore[arg-type]  # no PgstacDB (and no pool)
        self.conn = conn
        self.target = target
        self.cache: dict[str, tuple[dict[str, Any], int, str | None, int | None]] = {}

    def collection_json(self, collection_id: str) -> tuple[dict[str, Any], int, str | None, int | None]:  # type: ignore[override]
        found = self.cache.get(collection_id)
        if found is None:
            row = self.conn.execute(
                "SELECT b.base_item, c.key, c.partition_trunc, b.base_item_id "
                "FROM pgstac.collections c, pgstac.current_base_item(c.id) b WHERE c.id = %s",
                (collection_id,),
            ).fetchone()
            if row is None:
                raise PublishError(self.target, f"collection {collection_id!r} is not in PgSTAC", "missing_collection")
            found = self.cache[collection_id] = (row[0], row[1], row[2], row[3])
        return found

    def row(self, item: dict[str, Any]) -> tuple[str, ...]:
        """(id, collection, datetime, end_datetime, GeoJSON, content, private, partition)."""
        out = self.format_item(dict(item, geometry=None))
        geojson = orjson.dumps(item["geometry"]).decode()
        return (out["id"], out["collection"], out["datetime"], out["end_datetime"], geojson,
                out["content"], out.get("private"), out["partition"])  # fmt: skip


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
