"""The SQLite state index: the truth of which the catalog JSON is a projection.

Source files, Items (with the exact bytes of their JSON and the columns that feed
extents and summaries), collection metadata, the hashes of the files on disk and the
journal of catalog files still to be written. Only the writer thread changes it;
other threads and processes open their own read-only connections (WAL).
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any, Literal

from stacwatchd.errors import StacwatchdError
from stacwatchd.stac.names import CATALOG_FILE, COLLECTION_FILE
from stacwatchd.state.packed import compress, decompress

__all__ = [
    "Change",
    "FileChange",
    "FileRecord",
    "ItemRecord",
    "SCHEMA_VERSION",
    "SourceRecord",
    "State",
    "StateError",
    "StateUnwritable",
    "Stream",
    "Tx",
]

SCHEMA_VERSION = 3
_NULL_REPORT = re.compile(r"NULL value in (\w+)\.(\w+)")
_SCHEMA = (Path(__file__).with_name("schema.sql")).read_text(encoding="utf-8")
#: SQLite's page cache per connection, in KiB. Pages it misses come from the OS page
#: cache: a scan of 50,000 files ran as fast with 2 MB as with 8 MB, and its process held
#: 5 MB less (the writer's cache fills whatever it is given); a daemon holds several
#: connections (writer, readers, sinks).
_CACHE_KIB = 2000

#: The outbox streams: item-level changes (PgSTAC, notifications) and catalog files
#: in the order the writer wrote them (object-store mirrors).
Stream = Literal["changes", "files"]


class StateError(StacwatchdError):
    """The state file cannot be opened or is from an incompatible version."""


class StateUnwritable(StateError):
    """A change to the state failed for a reason outside it (disk full, read-only, I/O):
    nothing was changed, and the same change can be tried again later."""


@dataclass(frozen=True, slots=True)
class SourceRecord:
    path: str
    watch: str
    collection: str
    size: int
    mtime_ns: int
    inode: int
    device: int
    status: str
    role: str
    item_id: str | None
    error_kind: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A catalog file as the writer left it: sha256 and size; ``mtime_ns`` is the mtime it
    had when a scrub last hashed it and found it right (None: not since it was written)."""

    path: str
    hash: str
    size: int | None
    mtime_ns: int | None


@dataclass(frozen=True, slots=True)
class ItemRecord:
    collection: str
    id: str
    origin: str
    partition: str
    created: str
    hash: str


class _Connection(sqlite3.Connection):
    """The writable connection: it holds back the writer's most frequent inserts and runs
    each kind as one ``executemany`` just before the next other statement (a read, a
    savepoint, the commit), so that a batch of new Items costs a few calls into SQLite,
    not several per Item: each call gives up the GIL, and the writer waits to get it
    back from the threads that decode answers. Every statement sees the rows held before
    it; a rollback forgets the rows held since the last statement, which lie inside what
    it undoes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: dict[str, list[Sequence[Any]]] = {}

    def hold(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._held.setdefault(sql, []).extend(rows)

    def _release(self, sql: str) -> None:
        held, self._held = self._held, {}
        if sql.startswith("ROLLBACK"):
            return
        for statement, rows in held.items():
            super().executemany(statement, rows)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if self._held:
            self._release(sql)
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        if self._held:
            self._release(sql)
        return super().executemany(sql, parameters)

    def executescript(self, sql: str, /) -> sqlite3.Cursor:
        if self._held:
            self._release(sql)
        return super().executescript(sql)


_SOURCE_COLUMNS = "SELECT path, watch, collection, size, mtime_ns, inode, device, status, role, item_id, error_kind, error "


class State:
    """One connection to the state file; not shared between threads without its lock.

    Every SQL statement of the project lives in this module: reads here, writes in
    :class:`Tx` (one transaction of the writer), outbox cursors in the sink methods.
    """

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        try:
            if readonly:
                if not path.exists():
                    raise StateError(path, "no state file (has the catalog been created yet?)")
                self.db = sqlite3.connect(
                    f"file:{path}?mode=ro", uri=True, timeout=30, isolation_level=None, check_same_thread=False
                )
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False, factory=_Connection)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self._migrate()
            self.db.execute("PRAGMA foreign_keys=OFF")
            self.db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        except sqlite3.DatabaseError as exc:
            raise StateError(path, f"cannot open state file: {exc}") from None
        self._lock = threading.RLock()

    def _migrate(self) -> None:
        """Create the schema, or bring an older state file up to this version."""
        row = None
        if self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone():
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        found = int(row[0]) if row else None
        if found is not None and found > SCHEMA_VERSION:
            raise StateError(self.path, f"state schema version {found} is newer than this stacwatchd ({SCHEMA_VERSION})")
        if found == SCHEMA_VERSION:
            return  # nothing to write: a start on a full disk must not fail here
        # Each step is idempotent, so a migration killed half-way is finished next time.
        if found == 1:
            self._add_columns("outbox", (("event", "TEXT"), ("doc", "BLOB")))
        if found in (1, 2):
            # Version 3 records each catalog file's size (a scrub's cheap check) and the
            # mtime it had when last verified; rows of older versions learn them later.
            self._add_columns("files", (("size", "INTEGER"), ("mtime_ns", "INTEGER")))
        self.db.executescript(_SCHEMA)
        if found == 1 and self.db.execute("SELECT 1 FROM outbox LIMIT 1").fetchone():
            # Version 1 had one consumer of the outbox: PgSTAC.
            self.db.execute("INSERT OR IGNORE INTO sink_cursors (name, stream, seq) VALUES ('pgstac', 'changes', 0)")
        if found == 1:
            # Version 1's PgSTAC status; sinks now keep theirs with their cursor.
            self.db.execute("DELETE FROM meta WHERE key IN ('publish_ok', 'publish_error', 'publish_refused')")
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def _add_columns(self, table: str, columns: Iterable[tuple[str, str]]) -> None:
        """Add the columns a table lacks (a migration step that may run twice)."""
        present = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
        if not present:
            return  # the table itself is created by the schema script
        for name, kind in columns:
            if name not in present:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One atomic change: everything inside commits together or not at all."""
        with self._lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    yield Tx(self.db)
                except BaseException:
                    if self.db.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            self.db.execute("ROLLBACK")
                    raise
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self.db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self.db.execute("ROLLBACK")
                raise StateUnwritable(self.path, f"cannot change the state: {exc}") from exc

    @contextmanager
    def snapshot(self) -> Iterator[State]:
        """Reads that see one consistent state (a read transaction)."""
        with self._lock:
            self.db.execute("BEGIN")
            try:
                yield self
            finally:
                self.db.execute("COMMIT")

    def check_integrity(self) -> str | None:
        """None when SQLite's quick check passes, else what it reported."""
        try:
            rows = [r[0] for r in self.db.execute("PRAGMA quick_check") if not self._null_misreported(r[0])]
        except sqlite3.DatabaseError as exc:
            return str(exc)
        return None if rows in (["ok"], []) else "; ".join(rows[:5])

    def _null_misreported(self, line: str) -> bool:
        """Whether a quick check's "NULL value in T.C" is false: SQLite 3.40's quick check
        reports NULLs in WITHOUT ROWID tables whose key order differs from the column
        order (integrity_check does not). A query that finds no such NULL settles it."""
        found = _NULL_REPORT.fullmatch(line)
        if found is None:
            return False
        table, column = found.groups()
        if column not in {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}:
            return False
        return self.db.execute(f"SELECT 1 FROM {table} WHERE {column} IS NULL LIMIT 1").fetchone() is None

    @classmethod
    def probe(cls, path: Path, *, quick_check: bool = True, keys: Iterable[str] = ()) -> tuple[str | None, dict[str, str]]:
        """Open a state file read-only: (None, the meta values asked for) when it is
        healthy, else (what is wrong with it, {}). Never changes the file."""
        try:
            state = cls(path, readonly=True)
        except StateError as error:
            return error.reason, {}
        try:
            problem = state.check_integrity() if quick_check else None
            if problem is not None:
                return problem, {}
            values = {key: value for key in keys if (value := state.meta(key)) is not None}
            return None, values
        except sqlite3.DatabaseError as exc:
            return str(exc), {}
        finally:
            state.close()

    # -- sources -------------------------------------------------------------------

    def source(self, path: str) -> SourceRecord | None:
        row = self.db.execute(
            _SOURCE_COLUMNS + "FROM sources WHERE path = ?",
            (path,),
        ).fetchone()
        return SourceRecord(*row) if row else None

    def sources_under(self, prefix: str) -> Iterator[SourceRecord]:
        """Every source whose path is ``prefix`` or below it, in path order."""
        prefix = prefix.rstrip("/")
        yield from (
            SourceRecord(*row)
            for row in self.db.execute(
                _SOURCE_COLUMNS + "FROM sources WHERE path = ? OR (path >= ? AND path < ?) ORDER BY path",
                (prefix, prefix + "/", prefix + "0"),
            )
        )

    def source_signatures(self, watch: str) -> dict[str, tuple[int, int, int]]:
        """path → (size, mtime_ns, inode) for reconcile: one query, no per-file lookups."""
        return {
            row[0]: (row[1], row[2], row[3])
            for row in self.db.execute("SELECT path, size, mtime_ns, inode FROM sources WHERE watch = ?", (watch,))
        }

    def item_sources(self, collection: str, item_id: str) -> list[tuple[str, str]]:
        """(path, role) of every file behind an Item (an index lookup, whatever the size)."""
        rows = self.db.execute(
            "SELECT path, role, status FROM sources INDEXED BY sources_item WHERE collection = ? AND item_id = ?",
            (collection, item_id),
        )
        return sorted((path, role) for path, role, status in rows if status == "cataloged")

    def failed_sources(self, limit: int = 20) -> list[SourceRecord]:
        return [
            SourceRecord(*row)
            for row in self.db.execute(
                _SOURCE_COLUMNS + "FROM sources WHERE status = 'rejected' ORDER BY changed_at DESC LIMIT ?",
                (limit,),
            )
        ]

    # -- items ---------------------------------------------------------------------

    def _rows_in(self, sql: str, values: Sequence[str], *before: Any) -> Iterator[tuple[Any, ...]]:
        """The rows of ``sql`` over ``values``, one query per 500 (the statement's ``IN
        ({marks})`` list takes them, after the ``before`` parameters)."""
        for start in range(0, len(values), 500):
            chunk = values[start : start + 500]
            yield from self.db.execute(sql.format(marks=",".join("?" * len(chunk))), (*before, *chunk))

    def known_items(self, collection: str, item_ids: Iterable[str]) -> set[str]:
        """Which of ``item_ids`` the state holds an Item or a cataloged file for."""
        ids = list(item_ids)
        in_items = self._rows_in("SELECT id FROM items WHERE collection = ? AND id IN ({marks})", ids, collection)
        in_sources = self._rows_in(
            "SELECT item_id FROM sources INDEXED BY sources_item WHERE collection = ? AND item_id IN ({marks}) "
            "AND status = 'cataloged'",
            ids,
            collection,
        )
        return {row[0] for row in in_items} | {row[0] for row in in_sources}

    def known_sources(self, paths: Iterable[str]) -> set[str]:
        """Which of ``paths`` the state has a record of."""
        return {row[0] for row in self._rows_in("SELECT path FROM sources WHERE path IN ({marks})", list(paths))}

    def item(self, collection: str, item_id: str) -> ItemRecord | None:
        row = self.db.execute(
            "SELECT collection, id, origin, partition, created, hash FROM items WHERE collection = ? AND id = ?",
            (collection, item_id),
        ).fetchone()
        return ItemRecord(*row) if row else None

    def item_doc(self, collection: str, item_id: str) -> bytes | None:
        row = self.db.execute("SELECT doc FROM items WHERE collection = ? AND id = ?", (collection, item_id)).fetchone()
        return decompress(row[0]) if row else None

    def item_thumbnail(self, collection: str, item_id: str) -> bytes | None:
        row = self.db.execute("SELECT thumbnail FROM items WHERE collection = ? AND id = ?", (collection, item_id)).fetchone()
        return row[0] if row else None

    def items_in_partition(self, collection: str, partition: str) -> list[str]:
        return [
            row[0]
            for row in self.db.execute(
                "SELECT id FROM items WHERE collection = ? AND partition = ? ORDER BY id", (collection, partition)
            )
        ]

    def child_partitions(self, collection: str, prefix: str) -> list[str]:
        """Names of the partitions one level below ``prefix`` that hold at least one Item."""
        like = f"{prefix}/" if prefix else ""
        width = 4 if not prefix else 2
        rows = self.db.execute(
            "SELECT DISTINCT substr(partition, ?, ?) FROM partitions "
            "WHERE collection = ? AND partition >= ? AND partition < ? AND partition != ''",
            (len(like) + 1, width, collection, like, like + "\uffff"),
        )
        return sorted(row[0] for row in rows)

    def partition_names(self, collection: str) -> list[str]:
        return [
            row[0]
            for row in self.db.execute("SELECT partition FROM partitions WHERE collection = ? ORDER BY partition", (collection,))
        ]

    def has_items(self, collection: str) -> bool:
        """Whether a collection holds any Item: one row of the small partition table."""
        row = self.db.execute("SELECT 1 FROM partitions WHERE collection = ? LIMIT 1", (collection,)).fetchone()
        return row is not None

    def count_items(self, collection: str | None = None) -> int:
        if collection is None:
            return self.db.execute("SELECT count(*) FROM items").fetchone()[0]
        return self.db.execute("SELECT count(*) FROM items WHERE collection = ?", (collection,)).fetchone()[0]

    def collection_ids(self) -> list[str]:
        """Collections holding at least one Item, sorted."""
        return [row[0] for row in self.db.execute("SELECT DISTINCT collection FROM partitions ORDER BY collection")]

    def items_with_partitions(self, collection: str) -> list[tuple[str, str]]:
        """(id, partition) of every Item of a collection."""
        return list(self.db.execute("SELECT id, partition FROM items WHERE collection = ? ORDER BY id", (collection,)))

    def all_items(self) -> Iterator[tuple[str, str, str]]:
        yield from self.db.execute("SELECT collection, id, partition FROM items ORDER BY collection, id")

    # -- collections -----------------------------------------------------------------

    def collection_settings(self, collection: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT settings FROM collections WHERE id = ?", (collection,)).fetchone()
        return json.loads(row[0]) if row else None

    # -- aggregates for extents and summaries ------------------------------------------

    def extent_aggregates(self, collection: str) -> dict[str, Any]:
        """Each value is one indexed MIN/MAX, so the cost does not grow with the collection."""
        q = self.db.execute
        agg: dict[str, Any] = {}
        for kind in ("e", "w", "c"):
            agg[f"{kind}_west"] = q(
                "SELECT min(west) FROM items WHERE collection = ? AND xkind = ?", (collection, kind)
            ).fetchone()[0]
            agg[f"{kind}_east"] = q(
                "SELECT max(east) FROM items WHERE collection = ? AND xkind = ?", (collection, kind)
            ).fetchone()[0]
        agg["south"] = q("SELECT min(south) FROM items WHERE collection = ?", (collection,)).fetchone()[0]
        agg["north"] = q("SELECT max(north) FROM items WHERE collection = ?", (collection,)).fetchone()[0]
        agg["start_us"] = q("SELECT min(start_us) FROM items WHERE collection = ?", (collection,)).fetchone()[0]
        agg["end_us"] = q("SELECT max(end_us) FROM items WHERE collection = ?", (collection,)).fetchone()[0]
        return agg

    def numeric_range(self, collection: str, column: str) -> tuple[float, float] | None:
        assert column in ("gsd", "resolution")
        low = self.db.execute(f"SELECT min({column}) FROM items WHERE collection = ?", (collection,)).fetchone()[0]
        high = self.db.execute(f"SELECT max({column}) FROM items WHERE collection = ?", (collection,)).fetchone()[0]
        return None if low is None else (low, high)

    def distinct_values(self, collection: str, field: str, limit: int) -> list[str]:
        return [
            row[0]
            for row in self.db.execute(
                "SELECT value FROM value_counts WHERE collection = ? AND field = ? ORDER BY value LIMIT ?",
                (collection, field, limit),
            )
        ]

    # -- files and journal ---------------------------------------------------------------

    def file_hash(self, relpath: str) -> str | None:
        row = self.db.execute("SELECT hash FROM files WHERE path = ?", (relpath,)).fetchone()
        return row[0] if row else None

    def file_hashes(self, relpaths: Sequence[str]) -> dict[str, str]:
        """The recorded sha256 of each of ``relpaths`` that has one (one query per 500)."""
        return dict(self._rows_in("SELECT path, hash FROM files WHERE path IN ({marks})", relpaths))

    def journal(self) -> list[tuple[int, str, str | None, str | None]]:
        return list(self.db.execute("SELECT seq, kind, collection, key FROM journal ORDER BY seq"))

    def outbox_depth(self) -> int:
        return self.db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def counts(self) -> dict[str, int]:
        row = self.db.execute(
            "SELECT (SELECT count(*) FROM items), "
            "(SELECT count(*) FROM sources WHERE status = 'cataloged'), "
            "(SELECT count(*) FROM sources WHERE status = 'rejected'), "
            "(SELECT count(*) FROM journal), (SELECT count(*) FROM outbox)"
        ).fetchone()
        return dict(zip(("items", "sources", "rejected", "journal", "outbox"), row, strict=True))

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, values: dict[str, str], drop: Iterable[str] = ()) -> None:
        """Status values (heartbeats, sink status) in a short transaction of their own."""
        with self.transaction() as tx:
            tx.set_meta(values, drop)

    # -- more reads of the writer and reconcile --------------------------------------------

    def rejected_paths(self, watch: str) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT path FROM sources WHERE watch = ? AND status = 'rejected'", (watch,))}

    def clash_waiters(self, collection: str, item_id: str) -> list[str]:
        """Files refused because ``item_id`` was taken: built again once it is free."""
        rows = self.db.execute(
            "SELECT path FROM sources INDEXED BY sources_item WHERE collection = ? AND item_id = ? "
            "AND status = 'rejected' AND error_kind = 'id_clash' ORDER BY path",
            (collection, item_id),
        )
        return [row[0] for row in rows]

    def item_files_row(self, collection: str, item_id: str) -> tuple[str, bytes, bytes | None] | None:
        """(partition, JSON bytes, thumbnail) of an Item, for writing its files."""
        row = self.db.execute(
            "SELECT partition, doc, thumbnail FROM items WHERE collection = ? AND id = ?", (collection, item_id)
        ).fetchone()
        return None if row is None else (row[0], decompress(row[1]), row[2])

    def item_publish_row(self, collection: str, item_id: str) -> tuple[str, bytes, str, int] | None:
        """(partition, compressed JSON, extent kind, start) of an Item, for publishers."""
        return self.db.execute(
            "SELECT partition, doc, xkind, start_us FROM items WHERE collection = ? AND id = ?", (collection, item_id)
        ).fetchone()

    def items_after(self, after: tuple[str, int, str], limit: int) -> list[tuple[str, int, str, str, bytes, str]]:
        """(collection, start_us, id, partition, compressed JSON, extent kind) in time order."""
        return self.db.execute(
            "SELECT collection, start_us, id, partition, doc, xkind FROM items "
            "WHERE (collection, start_us, id) > (?, ?, ?) ORDER BY collection, start_us, id LIMIT ?",
            (*after, limit),
        ).fetchall()

    def item_ids(self, collection: str, *, with_bbox: bool = False) -> set[str]:
        sql = "SELECT id FROM items WHERE collection = ?" + (" AND xkind != 'u'" if with_bbox else "")
        return {row[0] for row in self.db.execute(sql, (collection,))}

    def known_collections(self) -> list[str]:
        """Every collection the state has settings for, with or without Items."""
        return [row[0] for row in self.db.execute("SELECT id FROM collections ORDER BY id")]

    def file_paths(self) -> set[str]:
        """Relative paths of every catalog file the state says exists."""
        return {row[0] for row in self.db.execute("SELECT path FROM files")}

    def files(self) -> Iterator[tuple[str, str]]:
        """(relative path, sha256) of every catalog file the state says exists."""
        yield from self.db.execute("SELECT path, hash FROM files ORDER BY path")

    def file_records(self) -> Iterator[FileRecord]:
        """Every catalog file the state says exists, with what a scrub compares."""
        yield from (FileRecord(*row) for row in self.db.execute("SELECT path, hash, size, mtime_ns FROM files"))

    def catalog_file_paths(self) -> list[str]:
        """The root, collection and partition catalogs among the files (a few per collection)."""
        return [
            row[0]
            for row in self.db.execute(
                "SELECT path FROM files WHERE path = ? OR path LIKE ? OR path LIKE ?",
                (CATALOG_FILE, f"%/{CATALOG_FILE}", f"%/{COLLECTION_FILE}"),
            )
        ]

    def file_record(self, relpath: str) -> FileRecord | None:
        row = self.db.execute("SELECT path, hash, size, mtime_ns FROM files WHERE path = ?", (relpath,)).fetchone()
        return FileRecord(*row) if row else None

    def record_verified(self, rows: Iterable[tuple[str, str, int, int]]) -> None:
        """(path, sha256, size, mtime_ns) of files a scrub hashed and found as written;
        a row whose file was written again since (another hash) is left alone."""
        with self.transaction() as tx:
            tx.db.executemany(
                "UPDATE files SET size = ?, mtime_ns = ? WHERE path = ? AND hash = ?",
                [(size, mtime_ns, path, digest) for path, digest, size, mtime_ns in rows],
            )

    # -- the outbox and the sinks' cursors ------------------------------------------------

    def register_sinks(self, sinks: dict[str, Stream]) -> list[str]:
        """Make the cursors match the configured sinks; returns the names dropped.

        A new sink starts at the end of its stream (``publish --all`` fills it); a sink
        no longer configured loses its cursor, and with it its backlog.
        """
        with self.transaction() as tx:
            return tx.register_sinks(sinks)

    def identity(self) -> str:
        """A random id given to this state file once: with a change's ``seq`` it names
        that change uniquely and stably (a dedupe key that survives retries and restarts;
        a new state file starts its seqs again under a new identity)."""
        found = self.meta("identity")
        if found is None:
            with self.transaction() as tx:
                tx.db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('identity', ?)", (str(uuid.uuid4()),))
            found = self.meta("identity")
        assert found is not None
        return found

    def cursor(self, name: str) -> int | None:
        row = self.db.execute("SELECT seq FROM sink_cursors WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def sink_status(self, name: str) -> dict[str, Any]:
        row = self.db.execute("SELECT status FROM sink_cursors WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else {}

    def sinks(self) -> list[tuple[str, str, int, dict[str, Any]]]:
        """(name, stream, cursor, status) of every registered sink."""
        return [
            (n, st, seq, json.loads(status))
            for n, st, seq, status in self.db.execute("SELECT name, stream, seq, status FROM sink_cursors ORDER BY name")
        ]

    def stream_end(self, stream: Stream) -> int:
        table = _STREAM_TABLES[stream]
        row = self.db.execute(f"SELECT seq FROM sqlite_sequence WHERE name = '{table}'").fetchone()
        return row[0] if row else 0

    def backlog(self, name: str, until: int | None = None) -> int:
        """Rows of its stream a sink has not yet delivered (up to ``until``, if given)."""
        row = self.db.execute("SELECT stream, seq FROM sink_cursors WHERE name = ?", (name,)).fetchone()
        if row is None:
            return 0
        table = _STREAM_TABLES[row[0]]
        return self.db.execute(
            f"SELECT count(*) FROM {table} WHERE seq > ? AND seq <= ?", (row[1], until if until is not None else 2**62)
        ).fetchone()[0]

    def queued_since(self, name: str) -> float | None:
        """When the oldest row a sink has not delivered was queued (None: nothing waits)."""
        row = self.db.execute("SELECT stream, seq FROM sink_cursors WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        table = _STREAM_TABLES[row[0]]
        found = self.db.execute(f"SELECT queued_at FROM {table} WHERE seq > ? ORDER BY seq LIMIT 1", (row[1],)).fetchone()
        return found[0] if found else None

    def changes_after(self, seq: int, limit: int, until: int | None = None) -> list[Change]:
        rows = self.db.execute(
            "SELECT seq, kind, event, collection, key, queued_at, doc FROM outbox WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (seq, until if until is not None else 2**62, limit),
        )
        return [Change(*row) for row in rows]

    def file_changes_after(self, seq: int, limit: int, until: int | None = None) -> list[FileChange]:
        rows = self.db.execute(
            "SELECT seq, path, data, queued_at FROM file_outbox WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (seq, until if until is not None else 2**62, limit),
        )
        return [FileChange(*row) for row in rows]

    def advance(self, name: str, seq: int, status: dict[str, Any] | None = None) -> None:
        """Move a sink's cursor forward (never back) and drop rows every sink has."""
        with self.transaction() as tx:
            tx.advance(name, seq, status)

    def put_sink_status(self, name: str, status: dict[str, Any]) -> None:
        with self.transaction() as tx:
            tx.db.execute("UPDATE sink_cursors SET status = ? WHERE name = ?", (json.dumps(status), name))


@dataclass(frozen=True, slots=True)
class Change:
    """One row of the change stream: an Item or collection added, updated or removed."""

    seq: int
    kind: str  # collection | item | delete_item | delete_collection
    event: str | None  # item.added, item.updated, item.removed, collection.created, ...
    collection: str
    key: str | None  # the Item id
    queued_at: float
    doc: bytes | None  # compressed JSON as written (for removals: the last known)

    @property
    def document(self) -> bytes | None:
        return None if self.doc is None else decompress(self.doc)


@dataclass(frozen=True, slots=True)
class FileChange:
    """One row of the file stream: a catalog file written (its bytes) or deleted (None)."""

    seq: int
    path: str
    data: bytes | None
    queued_at: float


_STREAM_TABLES: dict[str, str] = {"changes": "outbox", "files": "file_outbox"}


class Tx:
    """The writes of one transaction; only obtained from :meth:`State.transaction`."""

    def __init__(self, db: _Connection) -> None:
        self.db = db
        self._savepoints = 0

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: an operation that fails is undone alone."""
        self._savepoints += 1
        name = f"op{self._savepoints}"
        self.db.execute(f"SAVEPOINT {name}")
        try:
            yield
        except sqlite3.Error:
            raise  # the state itself failed: the whole transaction goes
        except BaseException:
            self.db.execute(f"ROLLBACK TO {name}")
            self.db.execute(f"RELEASE {name}")
            raise
        self.db.execute(f"RELEASE {name}")

    # -- sources ------------------------------------------------------------------------

    def put_source(
        self,
        path: str,
        watch: str,
        collection: str,
        signature: tuple[int, int, int, int] | None,
        status: str,
        role: str,
        item_id: str | None,
        error_kind: str | None = None,
        error: str | None = None,
    ) -> None:
        size, mtime_ns, inode, device = signature or (0, 0, 0, 0)
        self.db.hold(
            "INSERT OR REPLACE INTO sources (path, watch, collection, size, mtime_ns, inode, device, status, role, "
            "item_id, error_kind, error, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(path, watch, collection, size, mtime_ns, inode, device, status, role, item_id, error_kind, error, time.time())],
        )

    def delete_source(self, path: str) -> None:
        self.db.execute("DELETE FROM sources WHERE path = ?", (path,))

    def delete_item_sources(self, collection: str, item_id: str) -> None:
        self.db.execute(
            "DELETE FROM sources WHERE collection = ? AND item_id = ? AND status = 'cataloged'", (collection, item_id)
        )

    # -- items ---------------------------------------------------------------------------

    def put_item(
        self,
        collection: str,
        item_id: str,
        origin: str,
        partition: str,
        index: Any,
        created: str,
        data: bytes,
        thumbnail: bytes | None,
        *,
        packed: bytes | None = None,
        digest: str | None = None,
    ) -> None:
        """``packed`` and ``digest`` (``compress(data)``, its sha256) when the caller has them."""
        west, south, east, north = index.bbox or (None, None, None, None)
        self.db.hold(
            "INSERT OR REPLACE INTO items (collection, id, origin, partition, xkind, west, south, east, north, "
            "start_us, end_us, gsd, resolution, created, hash, doc, thumbnail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(
                collection, item_id, origin, partition, index.xkind, west, south, east, north,
                index.start_us, index.end_us, index.gsd, index.resolution,
                created, digest or sha256(data).hexdigest(), packed or compress(data), thumbnail,
            )],
        )  # fmt: skip
        self._add_values(collection, item_id, index.values)

    def set_item_doc(self, collection: str, item_id: str, data: bytes) -> None:
        self.db.execute(
            "UPDATE items SET doc = ?, hash = ? WHERE collection = ? AND id = ?",
            (compress(data), sha256(data).hexdigest(), collection, item_id),
        )

    def delete_item(self, collection: str, item_id: str) -> None:
        self.drop_values(collection, item_id)
        self.db.execute("DELETE FROM items WHERE collection = ? AND id = ?", (collection, item_id))

    def _add_values(self, collection: str, item_id: str, values: dict[str, list[str]]) -> None:
        rows = value_rows(collection, item_id, values)
        self.db.hold("INSERT OR IGNORE INTO item_values (collection, field, value, id) VALUES (?, ?, ?, ?)", rows)
        self.db.hold(
            "INSERT INTO value_counts (collection, field, value, count) VALUES (?, ?, ?, 1) "
            "ON CONFLICT (collection, field, value) DO UPDATE SET count = count + 1",
            [(c, f, v) for c, f, v, _ in rows],
        )

    def drop_values(self, collection: str, item_id: str) -> None:
        rows = list(
            self.db.execute("SELECT field, value FROM item_values WHERE collection = ? AND id = ?", (collection, item_id))
        )
        self.db.execute("DELETE FROM item_values WHERE collection = ? AND id = ?", (collection, item_id))
        self.db.executemany(
            "UPDATE value_counts SET count = count - 1 WHERE collection = ? AND field = ? AND value = ?",
            [(collection, f, v) for f, v in rows],
        )
        self.db.execute("DELETE FROM value_counts WHERE collection = ? AND count <= 0", (collection,))

    def count_partition(self, collection: str, partition: str, delta: int) -> None:
        self.db.hold(
            "INSERT INTO partitions (collection, partition, count) VALUES (?, ?, ?) "
            "ON CONFLICT (collection, partition) DO UPDATE SET count = count + excluded.count",
            [(collection, partition, delta)],
        )
        if delta < 0:
            self.db.execute(
                "DELETE FROM partitions WHERE collection = ? AND partition = ? AND count <= 0", (collection, partition)
            )

    # -- collections, meta -----------------------------------------------------------------

    def put_collection_settings(self, collection: str, settings: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO collections (id, settings) VALUES (?, ?)", (collection, json.dumps(settings)))

    def set_meta(self, values: dict[str, str], drop: Iterable[str] = ()) -> None:
        self.db.executemany("DELETE FROM meta WHERE key = ?", [(k,) for k in drop])
        self.db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))

    # -- journal and files -------------------------------------------------------------------

    def append_journal(self, rows: Iterable[tuple[str, str | None, str | None]]) -> None:
        self.db.executemany("INSERT INTO journal (kind, collection, key) VALUES (?, ?, ?)", rows)

    def finish_journal(self, upto: int, written: Iterable[tuple[str, str, int]], deleted: Iterable[str]) -> None:
        """Record the files now on disk (path, sha256, size) and those gone; drop the entries done."""
        self.db.executemany(
            "INSERT INTO files (path, hash, size, mtime_ns) VALUES (?, ?, ?, NULL) ON CONFLICT (path) "
            "DO UPDATE SET hash = excluded.hash, size = excluded.size, mtime_ns = NULL",
            list(written),
        )
        self.db.executemany("DELETE FROM files WHERE path = ?", [(rel,) for rel in deleted])
        self.db.execute("DELETE FROM journal WHERE seq <= ?", (upto,))

    def drop_journal_entry(self, seq: int) -> None:
        self.db.execute("DELETE FROM journal WHERE seq = ?", (seq,))

    def forget_file_hashes(self, rels: Iterable[str]) -> None:
        """Forget what is on disk at these paths, so the next flush writes them whatever
        their bytes (a file damaged or removed behind the writer's back)."""
        self.db.executemany("DELETE FROM files WHERE path = ?", [(rel,) for rel in rels])

    def forget_files(self) -> set[str]:
        """Empty the table of files on disk (``rebuild``); returns what it held."""
        previous = {row[0] for row in self.db.execute("SELECT path FROM files")}
        self.db.execute("DELETE FROM files")
        return previous

    # -- outbox ------------------------------------------------------------------------------

    def append_changes(self, rows: Iterable[tuple[str, str | None, str, str | None, bytes | None]]) -> None:
        """(kind, event, collection, key, compressed JSON) in commit order."""
        now = time.time()
        self.db.executemany(
            "INSERT INTO outbox (kind, event, collection, key, doc, queued_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(*row, now) for row in rows],
        )

    def append_files(self, rows: Iterable[tuple[str, bytes | None]]) -> None:
        """Catalog files in the order they were written (bytes) or deleted (None)."""
        now = time.time()
        self.db.executemany("INSERT INTO file_outbox (path, data, queued_at) VALUES (?, ?, ?)", [(*row, now) for row in rows])

    def register_sinks(self, sinks: dict[str, Stream]) -> list[str]:
        known = {name: stream for name, stream in self.db.execute("SELECT name, stream FROM sink_cursors")}
        dropped = [name for name, stream in known.items() if sinks.get(name) != stream]
        self.db.executemany("DELETE FROM sink_cursors WHERE name = ?", [(n,) for n in dropped])
        for name, stream in sinks.items():
            if known.get(name) != stream:
                end = self.db.execute(f"SELECT coalesce(max(seq), 0) FROM {_STREAM_TABLES[stream]}").fetchone()[0]
                self.db.execute("INSERT INTO sink_cursors (name, stream, seq) VALUES (?, ?, ?)", (name, stream, end))
        self.collect_garbage()
        return dropped

    def advance(self, name: str, seq: int, status: dict[str, Any] | None = None) -> None:
        self.db.execute("UPDATE sink_cursors SET seq = max(seq, ?) WHERE name = ?", (seq, name))
        if status is not None:
            self.db.execute("UPDATE sink_cursors SET status = ? WHERE name = ?", (json.dumps(status), name))
        self.collect_garbage()

    def collect_garbage(self) -> None:
        """Drop stream rows every sink of the stream has delivered (all of them if none)."""
        for stream, table in _STREAM_TABLES.items():
            low = self.db.execute("SELECT min(seq) FROM sink_cursors WHERE stream = ?", (stream,)).fetchone()[0]
            if low is None:
                # A WHERE clause: an emptied table is not rewritten, so a start on a full
                # disk with nothing to drop writes nothing.
                self.db.execute(f"DELETE FROM {table} WHERE seq > 0")
            else:
                self.db.execute(f"DELETE FROM {table} WHERE seq <= ?", (low,))


def value_rows(collection: str, item_id: str, values: dict[str, Iterable[str]]) -> list[tuple[str, str, str, str]]:
    return [(collection, field, value, item_id) for field, vals in values.items() for value in sorted(set(vals))]
