"""Publish the catalog to PgSTAC from the state's outbox, with retries.

The writer records every change (collection created or changed, Item added, updated or
removed) as a row of the ``outbox`` table in the same SQLite transaction as the change
itself. :class:`PgstacPublisher` drains that table in ``seq`` order, ``batch_size`` rows
at a time, and deletes rows only after PgSTAC has committed them. Each batch is one
PostgreSQL transaction:

1. upsert the batch's collections (rendered from the state, like the static files);
2. delete Items that are no longer in the state (a missing Item is not an error);
3. upsert Items, in bulk: pypgstac's own Item → row conversion (dehydration against
   the collection's base item, partition name) in Python, one ``COPY`` into a temporary
   table, ``check_partition`` once per partition, then ``DELETE`` the rows that differ
   and ``INSERT ... ON CONFLICT DO NOTHING``. That is delete-then-insert: an Item whose
   datetime changed leaves its old partition in the same transaction, and re-sending an
   unchanged Item writes nothing;
4. delete collections left without Items.

Rows are coalesced: whatever the operations queued for an Item, what is sent is the
Item as the state holds it *now* (or its deletion), so the last operation wins and
replaying a batch is harmless. ``publish_all`` pushes the whole state the same way.

Hrefs. An API needs absolute hrefs. With ``public_base_url`` (where the static catalog's
root is served) every relative href is resolved against the Item's own published URL,
exactly as a client reading the static catalog over HTTP would. Without it, against the
Item file's ``file://`` URL: right for a catalog read on this machine only. The static
structural links (root, parent, collection, self, child, item) are dropped, since
stac-fastapi makes its own; with ``canonical_links`` a ``canonical`` link points to the
static JSON.

Credentials. The DSN must not carry a password. It comes from ``password_env`` (the
name of an environment variable) or ``password_file`` (e.g. systemd ``LoadCredential=``;
a trailing newline is stripped), read again at each connection; with neither, libpq's
own defaults apply (``PGPASSWORD``, ``~/.pgpass``, peer/trust). The password is masked
in every log line, error message and the state's ``publish_error``.

Failures. PgSTAC down, restarting or refusing: the publisher thread logs one warning
when publishing starts failing (and one line when it recovers), retries with capped,
jittered exponential backoff, and never blocks the writer: the outbox grows and
drains, in order, once the database is back. ``stacwatchd status`` reads
``publish_error`` (cleared on success) and ``publish_ok`` from the ``meta`` table.
Two failures would repeat forever if retried as they are, so a batch's Items are then
bisected into smaller transactions instead: a document PgSTAC refuses as data (SQLSTATE
classes 22, 23, P0, XX), found in O(log n) transactions, logged, recorded as
``publish_refused`` and skipped; and a batch spanning so many partitions that its locks
overflow the lock table (~100 locks plus ~18 per partition touched, whatever the number
of Items; see ``max_locks_per_transaction``).

Garbage. Items stay compressed bytes until the moment they are sent and are parsed one
at a time: a batch of parsed Items alive at once triggers a full collection of the whole
process's heap in almost every batch, which cost more than everything else here.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import sqlite3
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, urljoin, urlsplit

import orjson
import psycopg
import pypgstac
from psycopg.conninfo import conninfo_to_dict
from pypgstac.load import Loader

from stacwatchd.config import CatalogSettings, CollectionSettings, PgstacSettings
from stacwatchd.errors import ConfigError, StacwatchdError
from stacwatchd.stac.layout import Layout
from stacwatchd.log import get_logger
from stacwatchd.stac.render import Renderer
from stacwatchd.state.store import State, decompress
from stacwatchd.sinks.pgstac_queryables import queryables_document, register_queryables
from stacwatchd.stac.summaries import DEFAULT_SUMMARIES

__all__ = [
    "Credentials",
    "Hrefs",
    "PgstacPublisher",
    "PublishCounts",
    "PublishError",
    "STRUCTURAL_RELS",
]

#: Links of the static catalog that only make sense next to its files.
STRUCTURAL_RELS = frozenset({"root", "parent", "collection", "self", "child", "item"})
#: Items per COPY. Several chunks may share a transaction: they reuse the same two
#: temporary tables, so the locks a transaction holds grow with the partitions it
#: touches, not with the number of Items (``max_locks_per_transaction``).
ITEM_CHUNK = 1000
META_ERROR = "publish_error"
META_OK = "publish_ok"
META_REFUSED = "publish_refused"
#: SQLSTATE classes meaning "this document is wrong", not "the database is unwell":
#: data exception, integrity violation, PL/pgSQL raise, internal (PostGIS parse) error.
REFUSAL_CLASSES = frozenset({"22", "23", "P0", "XX"})
#: "out of shared memory ... increase max_locks_per_transaction". pgstac 0.10's
#: check_partition swallows it when it strikes while creating a partition (an
#: ``EXCEPTION WHEN others`` that only RAISEs INFO), and the insert then fails with
#: "relation _items_... does not exist" (42P01): both mean "fewer partitions at once".
OUT_OF_LOCKS = frozenset({"53200", "42P01"})

_CONNECT_DEFAULTS = {
    "application_name": "stacwatchd",
    # A dead peer is noticed in ~25 s instead of the kernel's two hours.
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}
_PASSWORD_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]+)", re.IGNORECASE)
_PASSWORD_URL = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)", re.IGNORECASE)

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


class PublishError(StacwatchdError):
    """PgSTAC could not be reached or refused a batch. The message carries no secret."""

    def __init__(self, reason: str, kind: str = "publish_error", sqlstate: str | None = None) -> None:
        super().__init__(None, reason)
        self.error_kind = kind
        self.sqlstate = sqlstate
        #: The exception behind it when that is a bug rather than a database or state
        #: error (kept for its traceback; never chained, so no driver text leaks).
        self.bug: BaseException | None = None

    @property
    def kind(self) -> str:
        return self.error_kind


# -- credentials ------------------------------------------------------------------------


class Credentials:
    """The DSN from the settings and the password from its environment variable or file.

    Raises :class:`ConfigError` at construction when the DSN is missing, unparsable,
    carries a password, or the password source is missing; the message never quotes
    the DSN or the password.
    """

    def __init__(self, settings: PgstacSettings) -> None:
        self.settings = settings
        self._secrets: set[str] = set()
        if settings.dsn is None:
            raise ConfigError(None, "pgstac.dsn is not set")
        dsn = settings.dsn.get_secret_value()
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error:
            raise ConfigError(None, "pgstac.dsn is not a valid PostgreSQL connection string") from None
        if params.get("password"):
            self._secrets.add(str(params["password"]))
            raise ConfigError(
                None, "pgstac.dsn must not contain a password: use pgstac.password_env or pgstac.password_file"
            )
        if settings.password_env and settings.password_file:
            raise ConfigError(None, "set pgstac.password_env or pgstac.password_file, not both")
        self._params: dict[str, Any] = {k: v for k, v in params.items() if v is not None}
        try:
            self.password()
        except PublishError as error:
            raise ConfigError(None, error.reason) from None

    def password(self) -> str | None:
        """Read the password now (a rotated credential is picked up at the next connect)."""
        s = self.settings
        if s.password_env:
            value = os.environ.get(s.password_env, "")
            if not value:
                raise PublishError(f"environment variable {s.password_env} (pgstac.password_env) is not set", "no_password")
        elif s.password_file is not None:
            try:
                value = s.password_file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise PublishError(
                    f"cannot read pgstac.password_file {s.password_file}: {exc.strerror}", "no_password"
                ) from None
            if not value:
                raise PublishError(f"pgstac.password_file {s.password_file} is empty", "no_password")
        else:
            return None
        self._secrets.add(value)
        return value

    def connect(self) -> psycopg.Connection[Any]:
        """A new connection with a short connect timeout and ``search_path`` set for pgstac."""
        params = {**_CONNECT_DEFAULTS, **self._params}
        # libpq's (and psycopg's) floor is 2 s; a fraction is rounded up.
        params["connect_timeout"] = str(max(2, math.ceil(self.settings.connect_timeout_seconds)))
        password = self.password()
        if password is not None:
            params["password"] = password
        conn = psycopg.connect(autocommit=False, **params)
        try:
            conn.execute("SET search_path TO pgstac, public")
            conn.execute("SET client_min_messages TO warning")
            conn.commit()
        except BaseException:
            conn.close()
            raise
        return conn

    def describe(self) -> str:
        """Where we connect, for logs: ``user@host:port/dbname``, never the password."""
        p = self._params
        user = p.get("user") or os.environ.get("PGUSER") or "-"
        host = p.get("host") or p.get("hostaddr") or os.environ.get("PGHOST") or "localhost"
        port = p.get("port") or os.environ.get("PGPORT") or "5432"
        dbname = p.get("dbname") or os.environ.get("PGDATABASE") or user
        return f"{user}@{host}:{port}/{dbname}"

    def redact(self, text: str) -> str:
        """``text`` with every password we know of, and any DSN password, masked."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        text = _PASSWORD_KV.sub(r"\1***", text)
        return _PASSWORD_URL.sub(r"\1***\3", text)


# -- hrefs ----------------------------------------------------------------------------------


class Hrefs:
    """Turn the static catalog's relative hrefs into the absolute ones an API needs."""

    def __init__(self, layout: Layout, public_base_url: str | None, canonical: bool) -> None:
        self.layout = layout
        self.base = None if not public_base_url else public_base_url.rstrip("/") + "/"
        self.canonical = canonical
        self._folders: dict[tuple[str, str], str] = {}

    def url(self, path: Path) -> str:
        """The published URL of a file under the catalog root (``file://`` without a base)."""
        if self.base is None:
            return path.as_uri()
        return self.base + quote(path.relative_to(self.layout.root).as_posix())

    def item_url(self, collection: str, partition: str, item_id: str) -> str:
        # The partition folder's URL is computed once: pathlib costs more than the rest.
        folder = self._folders.get((collection, partition))
        if folder is None:
            parts = tuple(partition.split("/")) if partition else ()
            path = self.layout.item_file(collection, parts, "_")
            if len(self._folders) > 4096:
                self._folders.clear()
            folder = self._folders[(collection, partition)] = self.url(path.parent.parent)
        return f"{folder}/{quote(item_id)}/{quote(item_id)}.json"

    def collection_url(self, collection: str) -> str:
        return self.url(self.layout.collection_file(collection))

    def item(self, doc: dict[str, Any], collection: str, partition: str) -> dict[str, Any]:
        """The Item for PgSTAC (``doc`` is changed in place and returned)."""
        url = self.item_url(collection, partition, doc["id"])
        return self._rewrite(doc, url, "application/geo+json")

    def collection(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The collection for PgSTAC: no links to partition catalogs or Item files."""
        return self._rewrite(doc, self.collection_url(doc["id"]), "application/json")

    def _rewrite(self, doc: dict[str, Any], url: str, media_type: str) -> dict[str, Any]:
        for asset in (doc.get("assets") or {}).values():
            if "href" in asset:
                asset["href"] = absolute(asset["href"], url)
        links = []
        for link in doc.get("links") or []:
            if link.get("rel") in STRUCTURAL_RELS:
                continue
            links.append(dict(link, href=absolute(link["href"], url)))
        if self.canonical:
            title = doc.get("title") or (doc.get("properties") or {}).get("title")
            canonical = {"rel": "canonical", "href": url, "type": media_type}
            if title:
                canonical["title"] = title
            links.append(canonical)
        doc["links"] = links
        return doc


def absolute(href: str, base_url: str) -> str:
    """``href`` resolved against ``base_url``; URLs with a scheme are left alone.

    Relative hrefs of the static catalog are percent-encoded URI references already;
    characters no URI may hold (spaces, quotes, non-ASCII, as catalogs written before
    hrefs were encoded have them) are escaped, everything else is kept as it is.
    """
    if len(urlsplit(href).scheme) > 1:
        return href
    return urljoin(base_url, quote(href, safe=_URI_CHARACTERS))


_URI_CHARACTERS = "!#$%&'()*+,/:;=?@[]~"


# -- what one batch sends -----------------------------------------------------------------


@dataclass(slots=True)
class PublishCounts:
    """What a drain or a full publish did."""

    outbox_rows: int = 0
    collections: int = 0
    collections_deleted: int = 0
    items: int = 0
    items_changed: int = 0
    items_deleted: int = 0
    skipped: int = 0
    refused: int = 0
    seconds: float = 0.0

    def merge(self, other: PublishCounts) -> None:
        for name in self.__slots__:  # type: ignore[attr-defined]
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        return data


class _Item(NamedTuple):
    """An Item to send, still as the state's compressed bytes.

    Documents are parsed one at a time while they are sent: a batch of parsed Items
    alive at once is enough new objects to trigger a full garbage collection (which
    scans the whole daemon's heap) in nearly every batch.
    """

    collection: str
    start_us: int
    id: str
    partition: str
    blob: bytes


@dataclass(slots=True)
class _Plan:
    """What one transaction sends."""

    last_seq: int = 0
    rows: int = 0
    collections: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # None: delete
    deletes: dict[str, list[str]] = field(default_factory=dict)
    items: list[_Item] = field(default_factory=list)
    skipped: int = 0

    @property
    def empty(self) -> bool:
        return not (self.collections or self.deletes or self.items)


class _ItemRows(Loader):
    """pypgstac's own Item → row conversion, bound to one connection.

    ``format_item`` (dehydration against the collection's base item, datetime range,
    partition name) is reused as is. ``collection_json`` is overridden: the original is
    an lru-cache shared by every Loader in the process, which would outlive a rolled
    back transaction or a changed base item. Geometry is left to PostGIS
    (``ST_GeomFromGeoJSON``, as pgstac's own ``stac_geom``): plpygis costs ~200 µs
    per footprint, which is most of the Loader's time.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        super().__init__(None)  # type: ignore[arg-type]  # no PgstacDB (and no pool)
        self.conn = conn
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
                raise PublishError(f"collection {collection_id!r} is not in PgSTAC", "missing_collection")
            found = self.cache[collection_id] = (row[0], row[1], row[2], row[3])
        return found

    def row(self, item: dict[str, Any]) -> tuple[str, ...]:
        """(id, collection, datetime, end_datetime, GeoJSON, content, private, partition)."""
        out = self.format_item(dict(item, geometry=None))
        geojson = orjson.dumps(item["geometry"]).decode()
        return (out["id"], out["collection"], out["datetime"], out["end_datetime"], geojson,
                out["content"], out.get("private"), out["partition"])  # fmt: skip


# -- the publisher ------------------------------------------------------------------------


class PgstacPublisher:
    """Drain the outbox of one state file into PgSTAC; a thread, or on demand.

    ``start()`` runs the thread, ``wake()`` tells it new rows are there (the writer
    calls it after each batch), ``stop(timeout)`` ends it, ``drain_once()`` publishes
    what is queued now, synchronously, and raises :class:`PublishError` on failure;
    ``publish_all()`` pushes the whole state. Constructing one checks the settings
    but does not connect.
    """

    name = "pgstac"

    def __init__(
        self,
        settings: PgstacSettings,
        catalog: CatalogSettings,
        state_path: Path | None = None,
        *,
        collections: Mapping[str, CollectionSettings] | None = None,
        summaries: Sequence[str] = DEFAULT_SUMMARIES,
        poll_seconds: float = 5.0,
        seed: int | None = None,
    ) -> None:
        self.settings = settings
        self.credentials = Credentials(settings)
        root = catalog.root.resolve()
        self.layout = Layout(root)
        self.hrefs = Hrefs(self.layout, settings.public_base_url, settings.canonical_links)
        self.state = State(Path(state_path) if state_path is not None else catalog.state_path)
        self.render = Renderer(self.state, self.layout, catalog, dict(collections or {}), tuple(summaries))
        self.poll_seconds = poll_seconds
        self.log = get_logger()
        self.target = self.credentials.describe()
        self.last_error: str | None = None
        self.last_success: float | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._state_lock = threading.RLock()
        self._drain_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._random = random.Random(seed)
        self._failing: str | None = None
        self._failing_since = 0.0

    def __enter__(self) -> PgstacPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API ---------------------------------------------------------------------

    def start(self) -> None:
        """Run the publisher thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="stacwatchd-pgstac", daemon=True)
        self._thread.start()
        self.log.info("pgstac_publisher_started", target=self.target, outbox=self.depth())

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the thread; cancels a query still running at ``timeout``. True when stopped."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            conn = self._conn
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.cancel_safe(timeout=1.0)
            thread.join(2.0)
        stopped = not thread.is_alive()
        if stopped:
            self._thread = None
        self.log.info("pgstac_publisher_stopped", outbox=self.depth(), clean=stopped)
        return stopped

    def close(self) -> None:
        """Stop, then close both connections."""
        if self.stop() and self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        with self._state_lock:
            self.state.close()

    def wake(self) -> None:
        """New rows are in the outbox: publish soon (ignored while backing off)."""
        self._wake.set()

    def depth(self) -> int:
        """Outbox rows not yet committed in PgSTAC."""
        with self._state_lock:
            return self.state.outbox_depth()

    @property
    def healthy(self) -> bool:
        """False while publishing keeps failing."""
        return self._failing is None

    def drain_once(self) -> int:
        """Publish every row queued now, in batches; returns the number of outbox rows.

        Rows queued while this runs are left for the next call. Raises
        :class:`PublishError` (after recording it in the state) on failure.
        """
        return self.drain().outbox_rows

    def drain(self) -> PublishCounts:
        """``drain_once``, returning what was sent."""
        with self._state_lock:
            until = self.state.db.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
        return self._drain(until)

    def publish_all(self, *, prune: bool = True) -> PublishCounts:
        """Push every collection and Item of the state; idempotent.

        With ``prune``, Items PgSTAC holds in our collections but the state does not
        (after a database restore, say), and collections we emptied, are deleted. The
        outbox rows queued before the call are then redundant and removed.
        """
        started = time.monotonic()
        counts = PublishCounts()
        with self._drain_lock:
            with self._state_lock:
                db = self.state.db
                until = db.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
                with_items = self.state.collection_ids()
                known = [row[0] for row in db.execute("SELECT id FROM collections ORDER BY id")]
                first = _Plan()
                for cid in with_items:
                    first.collections[cid] = self._collection_doc(cid)
            try:
                counts.merge(self._push(first))
                cursor: tuple[str, int, str] = ("", -(2**62), "")
                while True:
                    plan, cursor = self._read_items_after(cursor)
                    if plan is None:
                        break
                    counts.merge(self._push(plan))
                if prune:
                    for cid in with_items:
                        for plan in self._prune_plans(cid):
                            counts.merge(self._push(plan))
                    gone = _Plan(collections={cid: None for cid in known if cid not in set(with_items)})
                    if not gone.empty:
                        counts.merge(self._push(gone))
            except Exception as exc:
                raise self._failed(exc) from None
            try:
                with self._state_lock, self.state.transaction() as tx:
                    counts.outbox_rows = tx.db.execute("DELETE FROM outbox WHERE seq <= ?", (until,)).rowcount
            except sqlite3.Error as exc:  # published anyway: the rows left are replayed harmlessly
                raise self._failed(exc) from None
            counts.seconds = time.monotonic() - started
            self._succeeded(counts)
        self.log.info("pgstac_published_all", target=self.target, **counts.as_dict())
        return counts

    def item_document(self, collection: str, item_id: str) -> dict[str, Any] | None:
        """The Item as it is sent to PgSTAC (absolute hrefs), or None when not in the state."""
        with self._state_lock:
            row = self.state.db.execute(
                "SELECT partition, doc FROM items WHERE collection = ? AND id = ?", (collection, item_id)
            ).fetchone()
        if row is None:
            return None
        return self.hrefs.item(orjson.loads(decompress(row[1])), collection, row[0])

    def collection_document(self, collection: str) -> dict[str, Any] | None:
        """The collection as it is sent to PgSTAC, or None when it has no Items."""
        with self._state_lock:
            return self._collection_doc(collection)

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        try:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    self._drain(None)
                except Exception as exc:  # noqa: BLE001 - the thread must outlive any failure
                    if self._stop.is_set():
                        break
                    attempt += 1
                    delay = self._backoff(attempt)
                    error = exc if isinstance(exc, PublishError) else self._failed(exc)
                    self._note_failure(error, attempt, delay)
                    self._stop.wait(delay)  # wake() does not shorten a backoff
                    continue
                if attempt:
                    self._note_recovery(attempt)
                    attempt = 0
                self._wake.wait(self.poll_seconds)
        finally:
            with self._drain_lock:
                if self._conn is not None:
                    with contextlib.suppress(Exception):
                        self._conn.close()
                    self._conn = None

    def _backoff(self, attempt: int) -> float:
        """Capped exponential backoff with jitter: half the step, plus up to half again."""
        s = self.settings
        step = min(s.retry_max_seconds, s.retry_initial_seconds * 2 ** min(attempt - 1, 30))
        return step / 2 + self._random.uniform(0, step / 2)

    def _note_failure(self, error: PublishError, attempt: int, delay: float) -> None:
        if self._failing != error.kind:
            if self._failing is None:
                self._failing_since = time.monotonic()
            self._failing = error.kind
            self.log.warning(
                "pgstac_publish_failing",
                target=self.target,
                error=str(error),
                error_kind=error.kind,
                outbox=self.depth(),
                retry_in_s=round(delay, 2),
                hint="cataloging continues; the outbox is published when PgSTAC is back",
                # Text, not exc_info: the JSON renderer would log every frame's locals,
                # and a password can be one of them.
                traceback=self._traceback(error.bug),
            )
        else:
            self.log.debug("pgstac_publish_retry", attempt=attempt, retry_in_s=round(delay, 2), error_kind=error.kind)

    def _traceback(self, bug: BaseException | None) -> str | None:
        if bug is None:
            return None
        return self.credentials.redact("".join(traceback.format_exception(bug)))

    def _note_recovery(self, attempts: int) -> None:
        self.log.info(
            "pgstac_publish_recovered",
            target=self.target,
            after_s=round(time.monotonic() - self._failing_since, 2),
            attempts=attempts,
            outbox=self.depth(),
        )
        self._failing = None

    # -- draining ----------------------------------------------------------------------------

    def _drain(self, until: int | None) -> PublishCounts:
        total = PublishCounts()
        started = time.monotonic()
        with self._drain_lock:
            while True:
                if until is None and self._stop.is_set():
                    break
                with self._state_lock:
                    try:
                        plan = self._read_outbox(until)
                    except sqlite3.Error as exc:
                        raise self._failed(exc) from None
                if plan is None:
                    break
                batch_started = time.monotonic()
                try:
                    counts = self._push(plan)
                except Exception as exc:
                    raise self._failed(exc) from None
                counts.outbox_rows = plan.rows
                counts.seconds = time.monotonic() - batch_started
                with self._state_lock:
                    try:
                        with self.state.transaction() as tx:
                            tx.db.execute("DELETE FROM outbox WHERE seq <= ?", (plan.last_seq,))
                    except sqlite3.Error as exc:  # committed in PgSTAC: replaying it is harmless
                        raise self._failed(exc) from None
                self.log.debug("pgstac_batch_published", **counts.as_dict())
                total.merge(counts)
        total.seconds = time.monotonic() - started
        if total.outbox_rows:
            self._succeeded(total)
        return total

    def _read_outbox(self, until: int | None) -> _Plan | None:
        """The next batch, coalesced, read from one consistent snapshot of the state."""
        db = self.state.db
        db.execute("BEGIN")
        try:
            rows = db.execute(
                "SELECT seq, kind, collection, key FROM outbox WHERE seq <= ? ORDER BY seq LIMIT ?",
                (until if until is not None else 2**62, self.settings.batch_size),
            ).fetchall()
            if not rows:
                return None
            plan = _Plan(last_seq=rows[-1][0], rows=len(rows))
            items: dict[tuple[str, str], None] = {}
            collections: dict[str, None] = {}
            for _, kind, collection, key in rows:
                collections[collection] = None
                if kind in ("item", "delete_item") and key is not None:
                    items.pop((collection, key), None)
                    items[(collection, key)] = None  # the last operation wins
            for cid in collections:
                plan.collections[cid] = self._collection_doc(cid)
            for collection, item_id in items:
                found = db.execute(
                    "SELECT partition, doc, xkind, start_us FROM items WHERE collection = ? AND id = ?",
                    (collection, item_id),
                ).fetchone()
                self._plan_item(plan, collection, item_id, found)
            plan.items.sort()  # by collection and time: fewer partitions per transaction
            return plan
        finally:
            db.execute("COMMIT")

    def _read_items_after(self, after: tuple[str, int, str]) -> tuple[_Plan | None, tuple[str, int, str]]:
        """For ``publish_all``: the next ``batch_size`` Items, in time order (few partitions each)."""
        with self._state_lock:
            rows = self.state.db.execute(
                "SELECT collection, start_us, id, partition, doc, xkind FROM items "
                "WHERE (collection, start_us, id) > (?, ?, ?) ORDER BY collection, start_us, id LIMIT ?",
                (*after, self.settings.batch_size),
            ).fetchall()
        if not rows:
            return None, after
        plan = _Plan()
        for collection, start_us, item_id, partition, doc, xkind in rows:
            self._plan_item(plan, collection, item_id, (partition, doc, xkind, start_us), prune=False)
        return plan, (rows[-1][0], rows[-1][1], rows[-1][2])

    def _prune_plans(self, collection: str) -> Iterator[_Plan]:
        """Deletions of the Items PgSTAC has in ``collection`` and the state does not."""
        conn = self._connection()
        with conn.transaction():
            published = {row[0] for row in conn.execute("SELECT id FROM pgstac.items WHERE collection = %s", (collection,))}
        with self._state_lock:  # 'u': no bbox, hence no geometry; never sent (see _plan_item)
            wanted = {
                row[0]
                for row in self.state.db.execute(
                    "SELECT id FROM items WHERE collection = ? AND xkind != 'u'", (collection,)
                )
            }
        extra = sorted(published - wanted)
        for start in range(0, len(extra), self.settings.batch_size):
            yield _Plan(deletes={collection: extra[start : start + self.settings.batch_size]})

    def _plan_item(
        self,
        plan: _Plan,
        collection: str,
        item_id: str,
        found: tuple[str, bytes, str, int] | None,
        *,
        prune: bool = True,
    ) -> None:
        if found is None:
            plan.deletes.setdefault(collection, []).append(item_id)
            return
        partition, blob, xkind, start_us = found
        if xkind == "u":
            # No bbox, no geometry: PgSTAC cannot hold it (items.geometry is NOT NULL).
            plan.skipped += 1
            self.log.info("pgstac_item_skipped", collection=collection, id=item_id, reason="no geometry")
            if prune:
                plan.deletes.setdefault(collection, []).append(item_id)
            return
        plan.items.append(_Item(collection, start_us, item_id, partition, blob))

    def _collection_doc(self, collection: str) -> dict[str, Any] | None:
        data = self.render.collection(collection)
        return None if data is None else self.hrefs.collection(orjson.loads(data))

    # -- PostgreSQL -----------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
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
                f"pgstac {version} in the database does not match pypgstac {pypgstac.__version__} here",
                "version_mismatch",
            )
        self._conn = conn
        return conn

    def _push(self, plan: _Plan) -> PublishCounts:
        """Send one plan in one transaction; bisect the Items if PgSTAC refuses it."""
        counts = PublishCounts(skipped=plan.skipped)
        if plan.empty:
            return counts
        conn = self._connection()
        try:
            with conn.transaction():
                self._send_head(conn, plan, counts)
                self._send_items(conn, _ItemRows(conn), plan.items, counts)
                self._send_tail(conn, plan, counts)
            return counts
        except psycopg.Error as exc:
            if not plan.items or not _splittable(exc, conn):
                raise
            reason = "out_of_locks" if exc.sqlstate in OUT_OF_LOCKS else "refused"
        self.log.info("pgstac_batch_bisected", items=len(plan.items), reason=reason)
        counts = PublishCounts(skipped=plan.skipped)
        with conn.transaction():
            self._send_head(conn, plan, counts)
        self._send_bisected(conn, plan.items, counts)
        with conn.transaction():
            self._send_tail(conn, plan, counts)
        return counts

    def _send_bisected(self, conn: psycopg.Connection[Any], items: Sequence[_Item], counts: PublishCounts) -> None:
        """Items in halves, each half its own transaction, down to the ones PgSTAC refuses.

        Two reasons to get here: a document PgSTAC refuses (found in O(log n)
        transactions and skipped), or a batch touching so many partitions that its
        locks overflow the lock table ("out of shared memory"); the Items are in time
        order, so each half touches about half the partitions.
        """
        attempt = PublishCounts()
        try:
            with conn.transaction():
                self._send_items(conn, _ItemRows(conn), items, attempt)
        except psycopg.Error as exc:
            if not _splittable(exc, conn):
                raise
            if len(items) == 1:
                if not _is_refusal(exc):
                    raise
                self._refused(items[0], exc, counts)
                return
            middle = len(items) // 2
            self._send_bisected(conn, items[:middle], counts)
            self._send_bisected(conn, items[middle:], counts)
            return
        counts.merge(attempt)

    def _send_head(self, conn: psycopg.Connection[Any], plan: _Plan, counts: PublishCounts) -> None:
        conn.execute(_TEMP_TABLES)
        for cid, doc in sorted(plan.collections.items()):
            if doc is not None:
                conn.execute(_UPSERT_COLLECTION, (orjson.dumps(doc).decode(),))
                with self._state_lock:
                    meta = self.render.collection_meta(cid)
                register_queryables(conn, cid, queryables_document(doc, meta, self.render.summary_fields))
                counts.collections += 1
        for cid, ids in sorted(plan.deletes.items()):
            cur = conn.execute("DELETE FROM pgstac.items WHERE collection = %s AND id = ANY(%s)", (cid, ids))
            counts.items_deleted += max(cur.rowcount, 0)

    def _send_tail(self, conn: psycopg.Connection[Any], plan: _Plan, counts: PublishCounts) -> None:
        for cid, doc in sorted(plan.collections.items()):
            if doc is None and conn.execute("SELECT 1 FROM pgstac.collections WHERE id = %s", (cid,)).fetchone():
                conn.execute("SELECT pgstac.delete_collection(%s)", (cid,))
                counts.collections_deleted += 1

    def _send_items(
        self, conn: psycopg.Connection[Any], rows: _ItemRows, items: Sequence[_Item], counts: PublishCounts
    ) -> None:
        for start in range(0, len(items), ITEM_CHUNK):
            self._send_chunk(conn, rows, items[start : start + ITEM_CHUNK], counts)

    def _send_chunk(
        self, conn: psycopg.Connection[Any], rows: _ItemRows, items: Sequence[_Item], counts: PublishCounts
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
                self._refused(item, exc, counts)
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

    # -- bookkeeping ---------------------------------------------------------------------------

    def _refused(self, item: _Item, exc: BaseException, counts: PublishCounts) -> None:
        message = self.credentials.redact(_first_line(exc))
        counts.refused += 1
        self.log.error(
            "pgstac_item_refused",
            collection=item.collection,
            id=item.id,
            error=message,
            sqlstate=getattr(exc, "sqlstate", None),
        )
        record = {"at": _now(), "collection": item.collection, "id": item.id, "error": message}
        self._set_meta(META_REFUSED, json.dumps(record))

    def _failed(self, exc: BaseException) -> PublishError:
        """Record a failure (``publish_error``), drop a broken connection, return a clean error."""
        if isinstance(exc, PublishError):
            error = exc
        else:
            error = PublishError(self.credentials.redact(_first_line(exc)), _kind(exc), getattr(exc, "sqlstate", None))
            if not isinstance(exc, (psycopg.Error, sqlite3.Error)):
                error.bug = exc
        conn = self._conn
        if conn is not None and (conn.closed or conn.broken or isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))):
            with contextlib.suppress(Exception):
                conn.close()
            self._conn = None
        self.last_error = str(error)
        self._set_meta(META_ERROR, f"{_now()} {error.kind}: {error} ({self.target})")
        return error

    def _succeeded(self, counts: PublishCounts) -> None:
        self.last_error = None
        self.last_success = time.time()
        record = {"at": _now(), **counts.as_dict()}
        with contextlib.suppress(sqlite3.Error), self._state_lock, self.state.transaction() as tx:
            tx.db.execute("DELETE FROM meta WHERE key = ?", (META_ERROR,))
            tx.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (META_OK, json.dumps(record)))

    def _set_meta(self, key: str, value: str) -> None:
        with contextlib.suppress(sqlite3.Error), self._state_lock, self.state.transaction() as tx:
            tx.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def _kind(exc: BaseException) -> str:
    """A stable name for a failure: one outage is one kind, whatever libpq says each time."""
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return "unavailable"
    if isinstance(exc, sqlite3.Error):
        return "state_error"
    return type(exc).__name__


def _splittable(exc: psycopg.Error, conn: psycopg.Connection[Any]) -> bool:
    """Whether sending fewer Items per transaction may succeed where this failed."""
    if conn.closed or conn.broken:
        return False
    return _is_refusal(exc) or exc.sqlstate in OUT_OF_LOCKS


def _is_refusal(exc: BaseException) -> bool:
    """Whether PgSTAC refused the data itself (retrying the same document cannot help)."""
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return False
    state = getattr(exc, "sqlstate", None) or ""
    return state[:2] in REFUSAL_CLASSES


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
