"""The writer: apply a batch of add/update/remove to the state index and the JSON on disk.

Invariants kept here (see ARCHITECTURE.md): the state is the truth and the JSON its
projection; a batch is one state transaction that also records a journal of the files
to (re)write; files are then written atomically, Items before the catalogs linking
them, links removed before the files they pointed to; only files whose bytes change
are written. A restart replays an unfinished journal.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any, Literal

from stacwatchd.config import STATE_DIRNAME, CatalogSettings, CollectionSettings
from stacwatchd.stac.documents import item_document, relink_item
from stacwatchd.errors import IdClash, StacwatchdError
from stacwatchd.model.items import BuiltItem, Rejection, item_to_dict
from stacwatchd.stac.layout import Layout, partition_of
from stacwatchd.log import get_logger
from stacwatchd.model.sources import Signature
from stacwatchd.stac.json import dumps, loads
from stacwatchd.state.store import State, compress, decompress, value_rows
from stacwatchd.stac.render import Renderer
from stacwatchd.stac.summaries import DEFAULT_SUMMARIES, index_item

Durability = Literal["batch", "file", "none"]
THUMBNAIL = "thumbnail.png"


class OutsideRoot(StacwatchdError):
    """A computed path would leave the catalog root; refused whatever the names."""


# -- operations ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Upsert:
    """Catalog (or re-catalog) an Item the workers built."""

    built: BuiltItem
    watch: Path


@dataclass(frozen=True, slots=True)
class Remove:
    """A source file is gone."""

    path: Path


@dataclass(frozen=True, slots=True)
class RemoveTree:
    """Every source file under a folder is gone."""

    prefix: Path


@dataclass(frozen=True, slots=True)
class Reject:
    """A file cannot be cataloged; remember why, so it is not retried until it changes."""

    rejection: Rejection
    watch: Path
    collection: str


Op = Upsert | Remove | RemoveTree | Reject


@dataclass(slots=True)
class Tally:
    """Running counts of what batches did (the daemon's status, scan's summary)."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    rejected: int = 0

    def absorb(self, result: BatchResult) -> None:
        self.added += result.added
        self.updated += result.updated
        self.removed += result.removed
        self.unchanged += result.unchanged
        self.rejected += result.rejected


@dataclass(slots=True)
class BatchResult:
    """What a batch did, for logs, ``scan``'s summary and the benchmarks."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    requeue: list[Path] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    bytes_written: int = 0
    changes: list[tuple[str, str, str, str | None]] = field(default_factory=list)

    def merge(self, other: BatchResult) -> None:
        for name in ("added", "updated", "removed", "unchanged", "rejected", "bytes_written"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("rejections", "requeue", "written", "deleted", "changes"):
            getattr(self, name).extend(getattr(other, name))


# -- the writer -------------------------------------------------------------------------


class CatalogWriter:
    """The only thing that changes the state index and the catalog files."""

    def __init__(
        self,
        settings: CatalogSettings,
        collections: Mapping[str, CollectionSettings] | None = None,
        *,
        durability: Durability = "batch",
        summaries: Sequence[str] = DEFAULT_SUMMARIES,
        outbox: bool = False,
    ) -> None:
        self.settings = settings
        self.root = settings.root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.layout = Layout(self.root)
        self.collections = dict(collections or {})
        self.durability = durability
        self.summary_fields = tuple(summaries)
        self.state = State(settings.state_file or self.root / STATE_DIRNAME / "state.db")
        self.outbox = outbox
        self.render = Renderer(self.state, self.layout, settings, self.collections, tuple(summaries))
        self.log = get_logger()
        self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        self.recover()

    def close(self) -> None:
        self.state.close()
        os.close(self._root_fd)

    def __enter__(self) -> CatalogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def root_title(self) -> str:
        return self.render.root_title

    def collection_meta(self, collection: str) -> dict[str, Any]:
        return self.render.collection_meta(collection)

    # -- public operations ---------------------------------------------------------------

    def recover(self) -> BatchResult:
        """Finish the journal a killed process left behind (idempotent)."""
        result = BatchResult()
        if self.state.journal():
            self.log.warning("journal_replay", entries=len(self.state.journal()))
            self._apply_journal(result, recovering=True)
        else:
            self._create_root_if_missing(result)
        return result

    def apply(self, ops: Iterable[Op]) -> BatchResult:
        """One batch: one state transaction, then the affected files, each written once.

        Operations apply in the order given (a file written then deleted is gone).
        """
        result = BatchResult()
        ops = list(ops)
        if not ops:
            return result
        batch = _Batch(self, result)
        with self.state.transaction():
            for op in ops:
                if isinstance(op, Remove):
                    batch.remove_path(str(op.path))
                elif isinstance(op, RemoveTree):
                    for record in list(self.state.sources_under(str(op.prefix))):
                        batch.remove_path(record.path)
                elif isinstance(op, Reject):
                    batch.reject(op)
                else:
                    batch.upsert(op)
            batch.write_journal()
        self._apply_journal(result)
        result.requeue = [p for p in dict.fromkeys(result.requeue) if p.exists()]
        return result

    def rebuild(self) -> BatchResult:
        """Regenerate every catalog file from the state index alone, byte for byte."""
        result = BatchResult()
        previous = {row[0] for row in self.state.db.execute("SELECT path FROM files")}
        batch = _Batch(self, result)
        with self.state.transaction() as db:
            db.execute("DELETE FROM files")
            for collection, item_id, partition in list(self.state.all_items()):
                batch.relink(collection, item_id, partition)
                batch.dirty_partition(collection, partition)
            batch.dirty_root = True
            batch.write_journal()
        self._apply_journal(result)
        current = {row[0] for row in self.state.db.execute("SELECT path FROM files")}
        stale = sorted(previous - current)
        for rel in stale:
            self._unlink(rel)
        self._prune_dirs(stale)
        result.deleted.extend(stale)
        return result

    def ensure_collection(self, collection: str, settings: CollectionSettings | None = None) -> None:
        """Remember a collection's configured metadata (used when its first Item arrives)."""
        if settings is not None:
            self.collections[collection] = settings

    # -- journal application -----------------------------------------------------------------

    def _apply_journal(self, result: BatchResult, *, recovering: bool = False) -> None:
        entries = self.state.journal()
        if not entries:
            return
        intents: dict[str, bytes | None] = {}
        for _, kind, collection, key in entries:
            for rel, data in self._entry_files(kind, collection, key):
                intents.pop(rel, None)
                intents[rel] = data
        writes = [(rel, data) for rel, data in intents.items() if data is not None]
        deletes = [rel for rel, data in intents.items() if data is None]
        if recovering:
            self._remove_temp_files({rel for rel in intents})
        hashes = {rel: sha256(data).hexdigest() for rel, data in writes}
        writes = [(rel, data) for rel, data in writes if self.state.file_hash(rel) != hashes[rel]]
        self._write_files(self._stubs(writes, deletes))
        self._write_files(writes)
        deletes.sort(key=_deletion_order)
        deleted = [rel for rel in deletes if self._unlink(rel)]
        self._prune_dirs(deletes)
        if deleted:
            self._sync()
        with self.state.transaction() as db:
            db.executemany(
                "INSERT INTO files (path, hash) VALUES (?, ?) ON CONFLICT (path) DO UPDATE SET hash = excluded.hash",
                [(rel, hashes[rel]) for rel, _ in writes],
            )
            db.executemany("DELETE FROM files WHERE path = ?", [(rel,) for rel in deletes])
            db.execute("DELETE FROM journal WHERE seq <= ?", (entries[-1][0],))
        result.written.extend(rel for rel, _ in writes)
        result.bytes_written += sum(len(data) for _, data in writes)
        result.deleted.extend(deleted)

    def _stubs(self, writes: list[tuple[str, bytes]], deletes: list[str]) -> list[tuple[str, bytes]]:
        """Catalogs without their downward links, written before anything else.

        A new partition must exist before the Items whose parent it is, yet it may
        only link them once they exist: it is first written empty, top-down. A
        partition about to go is emptied first, so that deleting its Items never
        leaves it pointing at nothing, nor them pointing at a missing parent.
        """
        stubs = []
        for rel, data in sorted(writes, key=lambda w: w[0].count("/")):
            if _is_catalog(rel) and not (self.root / rel).exists():
                stubs.append((rel, _without_downward_links(data)))
        for rel in deletes:
            if _is_catalog(rel):
                try:
                    stubs.append((rel, _without_downward_links((self.root / rel).read_bytes())))
                except (OSError, ValueError):
                    continue
        return stubs

    def _entry_files(self, kind: str, collection: str | None, key: str | None) -> list[tuple[str, bytes | None]]:
        """The files one journal entry stands for, rendered from the committed state."""
        if kind == "root":
            return [(self._rel(self.layout.root_catalog), self.render.root())]
        assert collection is not None
        if kind == "collection":
            return [(self._rel(self.layout.collection_file(collection)), self.render.collection(collection))]
        if kind == "partition":
            assert key is not None
            parts = tuple(key.split("/"))
            return [(self._rel(self.layout.partition_file(collection, parts)), self.render.partition(collection, key))]
        if kind == "item":
            row = self.state.db.execute(
                "SELECT partition, doc, thumbnail FROM items WHERE collection = ? AND id = ?", (collection, key)
            ).fetchone()
            if row is None:
                return []
            partition, doc, thumbnail = row
            path = self.layout.item_file(collection, _parts(partition), key or "")
            files: list[tuple[str, bytes | None]] = [(self._rel(path), decompress(doc))]
            if thumbnail is not None:
                files.append((self._rel(path.parent / THUMBNAIL), thumbnail))
            return files
        assert kind == "delete_item" and key is not None
        partition, item_id = json.loads(key)
        current = self.state.item(collection, item_id)
        if current is not None and current.partition == partition:
            return []
        path = self.layout.item_file(collection, _parts(partition), item_id)
        return [(self._rel(path.parent / THUMBNAIL), None), (self._rel(path), None)]

    # -- files ----------------------------------------------------------------------------

    def _rel(self, path: Path) -> str:
        resolved = os.path.normpath(path)
        if not resolved.startswith(str(self.root) + os.sep):
            raise OutsideRoot(path, f"refusing to write outside the catalog root {self.root}")
        return resolved[len(str(self.root)) + 1 :]

    def _write_files(self, writes: list[tuple[str, bytes]]) -> None:
        """Temp file beside the target, flushed, then renamed in order, then the folders flushed."""
        if not writes:
            return
        staged = []
        try:
            for rel, data in writes:
                target = self.root / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    if self.durability == "file":
                        fh.flush()
                        os.fsync(fh.fileno())
                staged.append((tmp, target))
            self._sync()
            for tmp, target in staged:
                os.replace(tmp, target)
                if self.durability == "file":
                    _fsync_dir(target.parent)
            staged = []
            self._sync()
        finally:
            for tmp, _ in staged:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _sync(self) -> None:
        """Flush the catalog's filesystem once per batch (syncfs) instead of once per file."""
        if self.durability != "batch":
            return
        if _LIBC is not None and _LIBC.syncfs(self._root_fd) == 0:
            return
        os.sync()

    def _unlink(self, rel: str) -> bool:
        try:
            os.unlink(self.root / rel)
        except FileNotFoundError:
            return False
        return True

    def _prune_dirs(self, rels: Iterable[str]) -> None:
        """Remove folders the deletions left empty, up to (not including) the root."""
        for rel in sorted({str(Path(r).parent) for r in rels}, key=lambda p: -p.count("/")):
            folder = self.root / rel
            while folder != self.root and folder.is_relative_to(self.root):
                try:
                    folder.rmdir()
                except OSError:
                    break
                folder = folder.parent

    def _remove_temp_files(self, rels: set[str]) -> None:
        """Temp files of writes a kill interrupted (only where the journal was writing)."""
        for folder in {(self.root / rel).parent for rel in rels}:
            if not folder.is_dir():
                continue
            for entry in os.scandir(folder):
                if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file():
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    def _create_root_if_missing(self, result: BatchResult) -> None:
        if not self.layout.root_catalog.exists():
            with self.state.transaction() as db:
                db.execute("INSERT INTO journal (kind) VALUES ('root')")
            self._apply_journal(result)


# -- one batch inside the state transaction ------------------------------------------------


class _Batch:
    """The bookkeeping of one ``apply``: state rows now, journal entries at the end."""

    def __init__(self, writer: CatalogWriter, result: BatchResult) -> None:
        self.w = writer
        self.db = writer.state.db
        self.state = writer.state
        self.result = result
        self.items: dict[tuple[str, str], None] = {}
        self.partitions: set[tuple[str, str]] = set()
        self.published: list[tuple[str, str, str | None]] = []
        self.collections: set[str] = set()
        self.deletes: list[tuple[str, str, str]] = []
        self.dirty_root = False

    # -- removals ----------------------------------------------------------------------

    def remove_path(self, path: str) -> None:
        record = self.state.source(path)
        if record is None:
            return
        self.db.execute("DELETE FROM sources WHERE path = ?", (path,))
        if record.status != "cataloged" or record.item_id is None:
            return
        remaining = self.state.item_sources(record.collection, record.item_id)
        data_left = [p for p, role in remaining if role == "data"]
        if data_left:
            self.result.requeue.append(Path(data_left[0]))
            return
        self.remove_item(record.collection, record.item_id, path)

    def remove_item(self, collection: str, item_id: str, path: str | None = None) -> None:
        current = self.state.item(collection, item_id)
        if current is None:
            return
        self.db.execute("DELETE FROM sources WHERE collection = ? AND item_id = ?", (collection, item_id))
        self._drop_values(collection, item_id)
        self.db.execute("DELETE FROM items WHERE collection = ? AND id = ?", (collection, item_id))
        self._count_partition(collection, current.partition, -1)
        self.deletes.append((collection, current.partition, item_id))
        self.dirty_partition(collection, current.partition)
        self.items.pop((collection, item_id), None)
        self.published.append(("delete_item", collection, item_id))
        self.result.removed += 1
        self.result.changes.append(("removed", collection, item_id, path))

    # -- rejections --------------------------------------------------------------------

    def reject(self, op: Reject) -> None:
        rejection = op.rejection
        path = str(rejection.path)
        previous = self.state.source(path)
        if previous is not None and previous.status == "cataloged":
            self.remove_path(path)
        self._write_source(path, op.watch, op.collection, rejection.signature, "rejected", "data", None, rejection)
        self.result.rejected += 1
        self.result.rejections.append(rejection)

    # -- upserts ---------------------------------------------------------------------

    def upsert(self, op: Upsert) -> None:
        built = op.built
        collection, item_id = built.collection_id, built.id
        meta = self._collection(collection)
        origin = f"{built.sources.primary.parent}/{built.sources.key}"
        existing = self.state.item(collection, item_id)
        if existing is not None and existing.origin != origin:
            others = [p for p, role in self.state.item_sources(collection, item_id) if role == "data"]
            alive = [p for p in others if os.path.exists(p)]
            if alive:
                error = IdClash(built.sources.primary, alive[0], item_id, collection)
                signature = dict(built.signatures).get(built.sources.primary)
                self.reject(Reject(Rejection.from_error(error, built.sources.primary, signature), op.watch, collection))
                return
            self.remove_item(collection, item_id)
            self.result.removed -= 1
            existing = None
        for path, _ in built.signatures:
            record = self.state.source(str(path))
            if record is not None and record.status == "cataloged" and (record.collection, record.item_id) != (collection, item_id):
                self.remove_path(str(path))
        parts = partition_of(built.timing.first, meta.get("partition") or "year/month")
        partition = "/".join(parts)
        _, doc = item_document(
            item_to_dict(built.item),
            layout=self.w.layout,
            collection_id=collection,
            parts=parts,
            root_title=self.w.root_title,
            collection_title=meta.get("title") or collection,
            created=existing.created if existing else None,
        )
        data = dumps(doc)
        if existing is not None and existing.partition == partition and self._same_but_updated(collection, item_id, doc):
            self._write_sources(built, op.watch)
            self.result.unchanged += 1
            return
        index = index_item(doc)
        if existing is not None:
            self._drop_values(collection, item_id)
            if existing.partition != partition:
                self._count_partition(collection, existing.partition, -1)
                self._count_partition(collection, partition, +1)
                self.deletes.append((collection, existing.partition, item_id))
                self.dirty_partition(collection, existing.partition)
        else:
            self._count_partition(collection, partition, +1)
        west, south, east, north = index.bbox or (None, None, None, None)
        self.db.execute(
            "INSERT OR REPLACE INTO items (collection, id, origin, partition, xkind, west, south, east, north, "
            "start_us, end_us, gsd, resolution, created, hash, doc, thumbnail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                collection, item_id, origin, partition, index.xkind, west, south, east, north,
                index.start_us, index.end_us, index.gsd, index.resolution,
                doc["properties"]["created"], sha256(data).hexdigest(), compress(data), built.thumbnail,
            ),
        )  # fmt: skip
        self._add_values(collection, item_id, index.values)
        self._write_sources(built, op.watch)
        self.items[(collection, item_id)] = None
        self.dirty_partition(collection, partition)
        self.published.append(("item", collection, item_id))
        kind = "updated" if existing is not None else "added"
        setattr(self.result, kind, getattr(self.result, kind) + 1)
        self.result.changes.append((kind, collection, item_id, str(built.sources.primary)))

    def _same_but_updated(self, collection: str, item_id: str, doc: dict[str, Any]) -> bool:
        """Whether the new JSON equals the stored one except for ``updated``."""
        old = self.state.item_doc(collection, item_id)
        if old is None:
            return False
        previous = loads(old)
        candidate = dict(doc, properties=dict(doc["properties"], updated=previous["properties"].get("updated")))
        return dumps(candidate) == old

    def relink(self, collection: str, item_id: str, partition: str) -> None:
        """Refresh an Item's structural links from current titles (for ``rebuild``)."""
        meta = self.w.collection_meta(collection)
        old = self.state.item_doc(collection, item_id)
        assert old is not None
        doc = relink_item(
            loads(old),
            layout=self.w.layout,
            collection_id=collection,
            parts=_parts(partition),
            root_title=self.w.root_title,
            collection_title=meta.get("title") or collection,
        )
        data = dumps(doc)
        if data != old:
            self.db.execute(
                "UPDATE items SET doc = ?, hash = ? WHERE collection = ? AND id = ?",
                (compress(data), sha256(data).hexdigest(), collection, item_id),
            )
        self.items[(collection, item_id)] = None

    # -- bookkeeping helpers ------------------------------------------------------------

    def _collection(self, collection: str) -> dict[str, Any]:
        configured = self.w.collections.get(collection)
        stored = self.state.collection_settings(collection)
        if configured is None:
            meta = stored or CollectionSettings(id=collection).model_dump(mode="json")
        else:
            meta = configured.model_dump(mode="json")
            if stored is not None and stored.get("partition") != meta.get("partition") and self.state.has_items(collection):
                self.w.log.warning(
                    "partitioning_kept",
                    collection=collection,
                    configured=meta.get("partition"),
                    kept=stored.get("partition"),
                    hint="run 'stacwatchd rebuild' after removing the catalog to change partitioning",
                )
                meta["partition"] = stored.get("partition")
        if stored != meta:
            self.db.execute(
                "INSERT OR REPLACE INTO collections (id, settings) VALUES (?, ?)", (collection, json.dumps(meta))
            )
            self.collections.add(collection)
            self.dirty_root = True
        return meta

    def _write_sources(self, built: BuiltItem, watch: Path) -> None:
        collection, item_id = built.collection_id, built.id
        data_paths = {str(p) for _, p in built.sources.data}
        keep = {str(p) for p, _ in built.signatures}
        for path, _ in self.state.item_sources(collection, item_id):
            if path not in keep:
                self.db.execute("DELETE FROM sources WHERE path = ?", (path,))
        for path, signature in built.signatures:
            role = "data" if str(path) in data_paths else "metadata"
            self._write_source(str(path), watch, collection, signature, "cataloged", role, item_id, None)

    def _write_source(
        self,
        path: str,
        watch: Path,
        collection: str,
        signature: Signature | None,
        status: str,
        role: str,
        item_id: str | None,
        rejection: Rejection | None,
    ) -> None:
        size, mtime_ns, inode, device = signature or (0, 0, 0, 0)
        self.db.execute(
            "INSERT OR REPLACE INTO sources (path, watch, collection, size, mtime_ns, inode, device, status, role, "
            "item_id, error_kind, error, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                path, str(watch), collection, size, mtime_ns, inode, device, status, role, item_id,
                rejection.kind if rejection else None, rejection.reason if rejection else None, time.time(),
            ),
        )  # fmt: skip

    def _add_values(self, collection: str, item_id: str, values: dict[str, list[str]]) -> None:
        rows = value_rows(collection, item_id, values)
        self.db.executemany("INSERT OR IGNORE INTO item_values (collection, field, value, id) VALUES (?, ?, ?, ?)", rows)
        self.db.executemany(
            "INSERT INTO value_counts (collection, field, value, count) VALUES (?, ?, ?, 1) "
            "ON CONFLICT (collection, field, value) DO UPDATE SET count = count + 1",
            [(c, f, v) for c, f, v, _ in rows],
        )

    def _drop_values(self, collection: str, item_id: str) -> None:
        rows = list(
            self.db.execute("SELECT field, value FROM item_values WHERE collection = ? AND id = ?", (collection, item_id))
        )
        self.db.execute("DELETE FROM item_values WHERE collection = ? AND id = ?", (collection, item_id))
        self.db.executemany(
            "UPDATE value_counts SET count = count - 1 WHERE collection = ? AND field = ? AND value = ?",
            [(collection, f, v) for f, v in rows],
        )
        self.db.execute("DELETE FROM value_counts WHERE collection = ? AND count <= 0", (collection,))

    def _count_partition(self, collection: str, partition: str, delta: int) -> None:
        self.db.execute(
            "INSERT INTO partitions (collection, partition, count) VALUES (?, ?, ?) "
            "ON CONFLICT (collection, partition) DO UPDATE SET count = count + excluded.count",
            (collection, partition, delta),
        )
        self.db.execute("DELETE FROM partitions WHERE collection = ? AND partition = ? AND count <= 0", (collection, partition))

    def dirty_partition(self, collection: str, partition: str) -> None:
        """Mark a partition and all its ancestors up to the collection and the root."""
        parts = _parts(partition)
        for depth in range(len(parts), 0, -1):
            self.partitions.add((collection, "/".join(parts[:depth])))
        self.collections.add(collection)
        self.dirty_root = True

    def write_journal(self) -> None:
        """Deepest files first, so every link is written after what it points to."""
        rows: list[tuple[str, str | None, str | None]] = [("item", c, i) for c, i in self.items]
        for collection, partition in sorted(self.partitions, key=lambda p: (-p[1].count("/"), p)):
            rows.append(("partition", collection, partition))
        rows += [("collection", c, None) for c in sorted(self.collections)]
        if self.dirty_root:
            rows.append(("root", None, None))
        rows += [("delete_item", c, json.dumps([p, i])) for c, p, i in self.deletes]
        self.db.executemany("INSERT INTO journal (kind, collection, key) VALUES (?, ?, ?)", rows)
        if self.w.outbox:
            self._write_outbox()

    def _write_outbox(self) -> None:
        """Changes for the PgSTAC publisher, in the same transaction that records them.

        Collections come first (PgSTAC needs them before their Items); a collection
        left without Items is deleted after its Items are.
        """
        now = time.time()
        rows: list[tuple[str, str, str | None, float]] = []
        emptied = []
        for collection in sorted(self.collections):
            if self.state.has_items(collection):
                rows.append(("collection", collection, None, now))
            else:
                emptied.append(collection)
        rows += [(kind, c, key, now) for kind, c, key in self.published]
        rows += [("delete_collection", c, None, now) for c in emptied]
        self.db.executemany("INSERT INTO outbox (kind, collection, key, queued_at) VALUES (?, ?, ?, ?)", rows)


def _is_catalog(rel: str) -> bool:
    return rel.endswith(("/catalog.json", "/collection.json"))


def _without_downward_links(data: bytes) -> bytes:
    doc = loads(data)
    doc["links"] = [link for link in doc.get("links", []) if link.get("rel") not in ("child", "item")]
    return dumps(doc)


def _deletion_order(rel: str) -> tuple[int, int]:
    """Item files first, then catalogs from the deepest up."""
    return (1 if _is_catalog(rel) else 0, -rel.count("/"))


def _parts(partition: str) -> tuple[str, ...]:
    return tuple(partition.split("/")) if partition else ()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_libc() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syncfs.argtypes = [ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _load_libc()


def op_for(result: BuiltItem | Rejection, rules: Any) -> Upsert | Reject:
    """The writer operation for a worker's result."""
    if isinstance(result, Rejection):
        return Reject(result, rules.root, rules.collection_id)
    return Upsert(result, rules.root)
