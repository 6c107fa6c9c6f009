"""The SQLite state index: the truth of which the catalog JSON is a projection.

Source files, Items (with the exact bytes of their JSON and the columns that feed
extents and summaries), collection metadata, the hashes of the files on disk and the
journal of catalog files still to be written. Only the writer thread changes it;
other threads and processes open their own read-only connections (WAL).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacwatchd.errors import StacwatchdError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS sources (
    path TEXT PRIMARY KEY,
    watch TEXT NOT NULL,
    collection TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    device INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('cataloged', 'rejected')),
    role TEXT NOT NULL DEFAULT 'data' CHECK (role IN ('data', 'metadata')),
    item_id TEXT,
    error_kind TEXT,
    error TEXT,
    changed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sources_item ON sources (collection, item_id);
CREATE INDEX IF NOT EXISTS sources_watch ON sources (watch, path);
CREATE INDEX IF NOT EXISTS sources_status ON sources (status, changed_at);

CREATE TABLE IF NOT EXISTS collections (
    id TEXT PRIMARY KEY,
    settings TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS items (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    origin TEXT NOT NULL,
    partition TEXT NOT NULL,
    xkind TEXT NOT NULL CHECK (xkind IN ('e', 'w', 'c', 'u')),
    west REAL, south REAL, east REAL, north REAL,
    start_us INTEGER NOT NULL,
    end_us INTEGER NOT NULL,
    gsd REAL,
    resolution REAL,
    created TEXT NOT NULL,
    hash TEXT NOT NULL,
    doc BLOB NOT NULL,
    thumbnail BLOB,
    PRIMARY KEY (collection, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_partition ON items (collection, partition, id);
CREATE INDEX IF NOT EXISTS items_west ON items (collection, xkind, west);
CREATE INDEX IF NOT EXISTS items_east ON items (collection, xkind, east);
CREATE INDEX IF NOT EXISTS items_south ON items (collection, south);
CREATE INDEX IF NOT EXISTS items_north ON items (collection, north);
CREATE INDEX IF NOT EXISTS items_start ON items (collection, start_us);
CREATE INDEX IF NOT EXISTS items_end ON items (collection, end_us);
CREATE INDEX IF NOT EXISTS items_gsd ON items (collection, gsd);
CREATE INDEX IF NOT EXISTS items_resolution ON items (collection, resolution);

CREATE TABLE IF NOT EXISTS item_values (
    collection TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (collection, id, field, value)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS value_counts (
    collection TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (collection, field, value)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS partitions (
    collection TEXT NOT NULL,
    partition TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (collection, partition)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    hash TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('item', 'partition', 'collection', 'root', 'delete_item')),
    collection TEXT,
    key TEXT
);

CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('collection', 'item', 'delete_item', 'delete_collection')),
    collection TEXT NOT NULL,
    key TEXT,
    queued_at REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


class StateError(StacwatchdError):
    """The state file cannot be opened or is from an incompatible version."""


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
class ItemRecord:
    collection: str
    id: str
    origin: str
    partition: str
    created: str
    hash: str


def compress(data: bytes) -> bytes:
    return zlib.compress(data, 1)


def decompress(data: bytes) -> bytes:
    return zlib.decompress(data)


_SOURCE_COLUMNS = (
    "SELECT path, watch, collection, size, mtime_ns, inode, device, status, role, item_id, error_kind, error "
)


class State:
    """One connection to the state file; not shared between threads."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        try:
            if readonly:
                if not path.exists():
                    raise StateError(path, "no state file (has the catalog been created yet?)")
                self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, isolation_level=None, check_same_thread=False)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.executescript(_SCHEMA)
                self._check_version()
            self.db.execute("PRAGMA foreign_keys=OFF")
            self.db.execute("PRAGMA cache_size=-16000")
        except sqlite3.DatabaseError as exc:
            raise StateError(path, f"cannot open state file: {exc}") from None
        self._lock = threading.Lock()

    def _check_version(self) -> None:
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise StateError(self.path, f"state schema version {row[0]} is not {SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic change: everything inside commits together or not at all."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # -- sources -------------------------------------------------------------------

    def source(self, path: str) -> SourceRecord | None:
        row = self.db.execute(
            _SOURCE_COLUMNS + 
            "FROM sources WHERE path = ?",
            (path,),
        ).fetchone()
        return SourceRecord(*row) if row else None

    def sources_under(self, prefix: str) -> Iterator[SourceRecord]:
        """Every source whose path is ``prefix`` or below it, in path order."""
        prefix = prefix.rstrip("/")
        yield from (
            SourceRecord(*row)
            for row in self.db.execute(
                _SOURCE_COLUMNS + 
                "FROM sources WHERE path = ? OR (path >= ? AND path < ?) ORDER BY path",
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
                _SOURCE_COLUMNS + 
                "FROM sources WHERE status = 'rejected' ORDER BY changed_at DESC LIMIT ?",
                (limit,),
            )
        ]

    # -- items ---------------------------------------------------------------------

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
        row = self.db.execute(
            "SELECT thumbnail FROM items WHERE collection = ? AND id = ?", (collection, item_id)
        ).fetchone()
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
            for row in self.db.execute(
                "SELECT partition FROM partitions WHERE collection = ? ORDER BY partition", (collection,)
            )
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
            agg[f"{kind}_west"] = q("SELECT min(west) FROM items WHERE collection = ? AND xkind = ?", (collection, kind)).fetchone()[0]
            agg[f"{kind}_east"] = q("SELECT max(east) FROM items WHERE collection = ? AND xkind = ?", (collection, kind)).fetchone()[0]
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


def value_rows(collection: str, item_id: str, values: dict[str, Iterable[str]]) -> list[tuple[str, str, str, str]]:
    return [(collection, field, value, item_id) for field, vals in values.items() for value in sorted(set(vals))]
