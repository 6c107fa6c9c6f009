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
import errno
import json
import os
import random
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any, Literal

from stacwatchd.config import CatalogSettings, CollectionSettings
from stacwatchd.errors import IdClash, StacwatchdError
from stacwatchd.log import get_logger
from stacwatchd.model.results import BuiltItem, Rejection, copy_item
from stacwatchd.model.sources import Signature
from stacwatchd.stac.documents import relink_item
from stacwatchd.stac.json import dumps, loads
from stacwatchd.stac.layout import Layout, item_file_stem
from stacwatchd.stac.names import CATALOG_FILE, COLLECTION_FILE, THUMBNAIL_FILE
from stacwatchd.stac.placed import PlacedItem, Placement, render_placed
from stacwatchd.stac.render import Renderer
from stacwatchd.stac.summaries import DEFAULT_SUMMARIES
from stacwatchd.state.packed import compress
from stacwatchd.state.store import ItemRecord, SourceRecord, State, StateUnwritable, Tx

__all__ = [
    "BatchResult",
    "CatalogUnwritable",
    "CatalogWriter",
    "Durability",
    "Op",
    "OutsideRoot",
    "Reject",
    "Remove",
    "RemoveTree",
    "Repaired",
    "TEMP_PREFIX",
    "TEMP_SUFFIX",
    "Upsert",
    "op_for",
    "open_writer",
]

Durability = Literal["batch", "file", "none"]

#: Temp file names: unique enough beside one writer (and O_EXCL catches the rest), without
#: the system call, and the GIL given up, that ``secrets`` makes for every file.
_TEMP_NAMES = random.Random()

#: Bytes of Items (JSON and thumbnails) the writer keeps between commit and flush, for a
#: flush that fails for a while; beyond, the flush reads them from the state.
_MAX_FRESH_BYTES = 32 * 1024 * 1024


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
class Repaired:
    """What :meth:`CatalogWriter.repair` did: files journaled to be written again,
    stray files removed, and recorded files that belong to nothing (forgotten)."""

    rewritten: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)


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


# -- failures ---------------------------------------------------------------------------

#: errno values that mean "this file name or these bytes", not "this disk": retrying the
#: same write can never succeed, so the operation that wants it is refused alone.
_CONTENT_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EILSEQ})

#: Our temp files: ``.stacwatchd-<random>.tmp`` (short, whatever the target's name).
TEMP_PREFIX = ".stacwatchd-"
TEMP_SUFFIX = ".tmp"


class CatalogUnwritable(StacwatchdError):
    """Catalog files could not be written for a reason outside them (disk full, read-only,
    permissions, I/O, a vanished folder): the journal keeps the work, retried later."""

    def __init__(self, path: Path | str, reason: str, errno_name: str | None = None) -> None:
        super().__init__(path, reason)
        self.errno_name = errno_name


class _PoisonOp(Exception):
    """An operation of a batch committed without savepoints failed: run it again isolated."""


class _UnwritableFile(Exception):
    """One file whose own name or bytes the filesystem refuses."""

    def __init__(self, rel: str, error: OSError) -> None:
        super().__init__(rel)
        self.rel = rel
        self.error = error
        self.owner: tuple[int, str, str | None, str | None] | None = None  # the journal entry it belongs to


def _errno_name(exc: OSError) -> str | None:
    return errno.errorcode.get(exc.errno) if exc.errno else None


# -- the writer -------------------------------------------------------------------------


class CatalogWriter:
    """The only thing that changes the state index and the catalog files.

    ``commit`` records a batch in the state (one transaction); ``flush`` projects the
    journal onto files. Both raise only environmental failures
    (:class:`~stacwatchd.state.store.StateUnwritable`, :class:`CatalogUnwritable`), which
    the caller retries; an operation or file that fails because of its own content is
    refused alone and the rest lands.
    """

    def __init__(
        self,
        settings: CatalogSettings,
        collections: Mapping[str, CollectionSettings] | None = None,
        *,
        durability: Durability = "batch",
        summaries: Sequence[str] = DEFAULT_SUMMARIES,
        outbox: bool = False,
        file_outbox: bool = False,
    ) -> None:
        self.settings = settings
        self.root = settings.root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.layout = Layout(self.root)
        self.collections = dict(collections or {})
        self.durability = durability
        self.summary_fields = tuple(summaries)
        self.state = State(settings.state_path)
        self.outbox = outbox
        self.file_outbox = file_outbox
        self.render = Renderer(self.state, self.layout, settings, self.collections, tuple(summaries))
        self.log = get_logger()
        self.modes = _Modes.of(settings)
        #: ``created`` of Items the catalog held before the state was lost, by
        #: (collection, id): a rebuilt state keeps them (see stacwatchd.state.recover).
        self.created_hints: dict[tuple[str, str], str] = {}
        self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        #: Items committed since the last flush, as committed: (partition, JSON, sha256,
        #: thumbnail) by (collection, id). The flush writes them without reading them back
        #: from the state; anything missing here is read from the state.
        self._fresh: dict[tuple[str, str], tuple[str, bytes, str, bytes | None]] = {}
        self._fresh_bytes = 0
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

    def placement(self, collection: str) -> Placement:
        """How this catalog places ``collection``'s Items now, for the build processes
        to render them (a stale placement only costs the writer a render of its own)."""
        return _placement(self, collection, self.applied_meta(collection)[0])

    def applied_meta(self, collection: str) -> tuple[dict[str, Any], dict[str, Any] | None, str | None]:
        """(metadata that applies, metadata stored, configured partitioning not applied).

        The configuration wins (the stored metadata stands for a collection nobody
        configures), except the partitioning of a collection that already has Items.
        """
        configured = self.collections.get(collection)
        stored = self.state.collection_settings(collection)
        if configured is None:
            return stored or CollectionSettings(id=collection).model_dump(mode="json"), stored, None
        meta = configured.model_dump(mode="json")
        refused = None
        if stored is not None and stored.get("partition") != meta.get("partition") and self.state.has_items(collection):
            refused, meta["partition"] = meta.get("partition"), stored.get("partition")
        return meta, stored, refused

    def collection_meta(self, collection: str) -> dict[str, Any]:
        return self.render.collection_meta(collection)

    def pending(self) -> int:
        """Journal entries not yet projected onto files."""
        return len(self.state.journal())

    # -- public operations ---------------------------------------------------------------

    def recover(self) -> BatchResult:
        """Finish what a killed process left behind; never stops a start.

        Temp files of interrupted writes are removed, and the journal is replayed. When
        the environment still fails (a full disk), the journal is left for the retries
        of whoever drives the writer.
        """
        result = BatchResult()
        entries = self.state.journal()
        self._remove_temp_files(self._folders_of(entries))
        if entries:
            self.log.warning("journal_replay", entries=len(entries))
        else:
            with contextlib.suppress(StateUnwritable):
                if not self.layout.root_catalog.exists():
                    with self.state.transaction() as tx:
                        tx.append_journal([("root", None, None)])
        try:
            self.flush(result)
        except (CatalogUnwritable, StateUnwritable) as error:
            self.log.error(
                "journal_replay_deferred", path=str(error.path), error=error.kind, reason=error.reason,
                pending=self.pending(), hint="retried until it succeeds",
            )  # fmt: skip
        return result

    def apply(self, ops: Iterable[Op]) -> BatchResult:
        """``commit`` then ``flush``: the state and the files of one batch."""
        result = self.commit(ops)
        self.flush(result)
        return result

    def commit(self, ops: Iterable[Op]) -> BatchResult:
        """One state transaction for the whole batch; an operation that fails is isolated.

        Operations apply in the order given (a file written then deleted is gone). One
        that fails because of its own content is undone alone and its file refused.
        """
        ops = list(ops)
        if not ops:
            return BatchResult()
        try:
            result = self._commit(ops, isolate=False)
        except _PoisonOp:
            result = self._commit(ops, isolate=True)
        result.requeue = [p for p in dict.fromkeys(result.requeue) if p.exists()]
        return result

    def _commit(self, ops: list[Op], *, isolate: bool) -> BatchResult:
        """The batch in one transaction. Without ``isolate`` an operation that fails
        undoes the whole transaction (``_PoisonOp``), to be run again with a savepoint
        per operation: batches with no bad operation pay no savepoints."""
        result = BatchResult()
        with self.state.transaction() as tx:
            batch = _Batch(self, tx, result)
            batch.learn_new(ops)
            for op in ops:
                if not isolate:
                    try:
                        batch.apply(op)
                    except StateUnwritable:
                        raise
                    except Exception as exc:  # noqa: BLE001 - retried with the operation isolated
                        raise _PoisonOp from exc
                    continue
                try:
                    with tx.savepoint():
                        batch.apply(op)
                except StateUnwritable:
                    raise
                except Exception as exc:  # noqa: BLE001 - one poison operation must not sink the batch
                    batch.refuse(op, exc)
            batch.write_journal()
        self._adopt(batch)
        return result

    def _adopt(self, batch: _Batch) -> None:
        """Keep the Items a committed batch rendered, for the flush."""
        for key, value in batch.fresh.items():
            if value is None:
                self._fresh.pop(key, None)
            else:
                self._fresh[key] = value
                self._fresh_bytes += len(value[1]) + len(value[3] or b"")
        if self._fresh_bytes > _MAX_FRESH_BYTES:  # a long outage: the state has them all anyway
            self._forget_fresh()

    def _forget_fresh(self) -> None:
        self._fresh.clear()
        self._fresh_bytes = 0

    def flush(self, result: BatchResult | None = None) -> BatchResult:
        """Write (and delete) the files the journal names, in the order that keeps every
        link resolvable. A file refused for its own name refuses its Item alone."""
        result = result if result is not None else BatchResult()
        for _ in range(1000):
            try:
                self._apply_journal(result)
                return result
            except _UnwritableFile as bad:
                self._refuse_unwritable(bad, result)
        raise CatalogUnwritable(self.root, "too many unwritable files in one flush")

    def rebuild(self) -> BatchResult:
        """Regenerate every catalog file from the state index alone, byte for byte."""
        result = BatchResult()
        self._forget_fresh()
        with self.state.transaction() as tx:
            previous = tx.forget_files()
            batch = _Batch(self, tx, result)
            for collection, item_id, partition in list(self.state.all_items()):
                batch.relink(collection, item_id, partition)
                batch.dirty_partition(collection, partition)
            batch.dirty_root = True
            batch.write_journal(outbox=False)
        self.flush(result)
        stale = sorted(previous - self.state.file_paths())
        for rel in stale:
            self._unlink(rel)
        self._prune_dirs(stale)
        result.deleted.extend(stale)
        self._repair_modes()
        return result

    def repair(self, rewrite: Iterable[str], remove: Iterable[str] = ()) -> Repaired:
        """Put catalog files right that changed behind the writer's back (``scrub``).

        A file to rewrite is journaled through what it belongs to (the root, a
        collection, a partition, an Item) and its recorded hash forgotten, so the next
        ``flush`` writes it from the state; one that belongs to nothing the state holds
        is forgotten. Files to remove (strays of ours the state does not list) are
        deleted now, Items before catalogs; a removed Item JSON whose id the state does
        not hold is announced to the sinks as removed.
        """
        done = Repaired()
        owners: dict[tuple[str, str | None, str | None], None] = {}
        for rel in sorted(set(rewrite)):
            owner = self._owner(rel)
            if owner is None:
                done.forgotten.append(rel)
            else:
                owners[owner] = None
                done.rewritten.append(rel)
        strays = sorted((rel for rel in set(remove) if self.state.file_record(rel) is None), key=_deletion_order)
        gone: list[tuple[str, str | None, str, str | None, bytes | None]] = []
        for rel in strays:
            try:
                data = (self.root / rel).read_bytes() if rel.endswith(".json") else None
                os.unlink(self.root / rel)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise CatalogUnwritable(self.root / rel, f"cannot remove: {exc.strerror or exc}", _errno_name(exc)) from exc
            done.removed.append(rel)
            removed_item = _stray_item(data, rel)
            if removed_item is not None and self.state.item(*removed_item) is None:
                gone.append(("delete_item", "item.removed", *removed_item, compress(data or b"")))
        self._prune_dirs(done.removed)
        with self.state.transaction() as tx:
            tx.forget_file_hashes([*done.rewritten, *done.forgotten])
            tx.append_journal(sorted(owners, key=_journal_order))
            if self.outbox and gone:
                tx.append_changes(gone)
            if self.file_outbox and done.removed:
                tx.append_files([(rel, None) for rel in done.removed])
        return done

    def _owner(self, rel: str) -> tuple[str, str | None, str | None] | None:
        """The journal entry that renders the catalog file ``rel``, if the state has one."""
        if rel == self._rel(self.layout.root_catalog):
            return ("root", None, None)
        parts = rel.split("/")
        collection = parts[0]
        if len(parts) < 2 or self.state.collection_settings(collection) is None:
            return None
        if parts[1:] == [COLLECTION_FILE]:
            return ("collection", collection, None)
        if parts[-1] == CATALOG_FILE:
            return ("partition", collection, "/".join(parts[1:-1]))
        folder, partition = parts[-2] if len(parts) > 2 else "", "/".join(parts[1:-2])
        if parts[-1] not in (f"{folder}.json", THUMBNAIL_FILE):
            return None
        found = self.state.item(collection, folder)
        if found is not None and found.partition == partition and item_file_stem(folder) == folder:
            return ("item", collection, folder)
        for item_id in self.state.items_in_partition(collection, partition):
            if item_file_stem(item_id) == folder:
                return ("item", collection, item_id)
        return None

    def _repair_modes(self) -> None:
        """Give every catalog file and folder its mode (catalogs of older versions were
        written 0600, which a web server cannot serve)."""
        files = self.state.file_paths()
        folders = {self.root} | {(self.root / rel).parent for rel in files}
        for folder in list(folders):
            folders.update(p for p in folder.parents if p.is_relative_to(self.root))
        for path, mode in [*((f, self.modes.dir) for f in folders), *((self.root / r, self.modes.file) for r in files)]:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_IMODE(path.stat().st_mode) != mode:
                    os.chmod(path, mode)

    def sync_collections(self, configured: Mapping[str, CollectionSettings]) -> list[str]:
        """Apply the configured metadata of each collection (the configuration wins).

        The partitioning of a collection that has Items is kept (changing it means
        moving every Item: ``rebuild`` after removing the catalog). Returns the
        collections whose stored metadata changed; their files are rewritten.
        """
        self.collections.update(configured)
        changed = []
        self._forget_fresh()
        with self.state.transaction() as tx:
            batch = _Batch(self, tx, BatchResult())
            for collection in sorted(configured):
                before = self.state.collection_settings(collection)
                meta = batch.collection(collection)
                if before is None or before == meta:
                    continue
                changed.append(collection)
                if not self.state.has_items(collection):
                    continue
                self.log.info(
                    "collection_changed", collection=collection, fields=sorted(k for k in meta if meta.get(k) != before.get(k))
                )
                if meta.get("title") != before.get("title"):
                    for item_id, partition in self.state.items_with_partitions(collection):
                        batch.relink(collection, item_id, partition)
                        batch.dirty_partition(collection, partition)
                batch.collections.add(collection)
                batch.changed_collections.add(collection)
                batch.dirty_root = True
            batch.write_journal()
        return changed

    def ensure_collection(self, collection: str, settings: CollectionSettings | None = None) -> None:
        """Remember a collection's configured metadata (used when its first Item arrives)."""
        if settings is not None:
            self.collections[collection] = settings

    # -- journal application -----------------------------------------------------------------

    def _apply_journal(self, result: BatchResult) -> None:
        entries = self.state.journal()
        if not entries:
            return
        intents: dict[str, bytes | None] = {}
        owners: dict[str, tuple[int, str, str | None, str | None]] = {}
        hashes: dict[str, str] = {}
        for entry in entries:
            for rel, data, digest in self._entry_files(entry):
                intents.pop(rel, None)
                intents[rel] = data
                owners[rel] = entry
                if digest is not None:
                    hashes[rel] = digest
        writes = [(rel, data) for rel, data in intents.items() if data is not None]
        deletes = [rel for rel, data in intents.items() if data is None]
        for rel, data in writes:
            if rel not in hashes:
                hashes[rel] = sha256(data).hexdigest()
        recorded = self.state.file_hashes([rel for rel, _ in writes])
        writes = [(rel, data) for rel, data in writes if recorded.get(rel) != hashes[rel]]
        stubs = self._stubs(writes, deletes)
        try:
            self._write_files(stubs)
            self._write_files(writes)
            deletes.sort(key=_deletion_order)
            deleted = [rel for rel in deletes if self._unlink(rel)]
            self._prune_dirs(deletes)
            if deleted:
                self._sync()
        except _UnwritableFile as bad:
            bad.owner = owners.get(bad.rel)
            raise
        except OSError as exc:
            where = exc.filename or self.root
            raise CatalogUnwritable(where, f"cannot change {where}: {exc.strerror or exc}", _errno_name(exc)) from exc
        with self.state.transaction() as tx:
            tx.finish_journal(entries[-1][0], [(rel, hashes[rel], len(data)) for rel, data in writes], deletes)
            if self.file_outbox:
                tx.append_files([*stubs, *writes, *((rel, None) for rel in deleted)])
        self._forget_fresh()
        result.written.extend(rel for rel, _ in writes)
        result.bytes_written += sum(len(data) for _, data in writes)
        result.deleted.extend(deleted)

    def _refuse_unwritable(self, bad: _UnwritableFile, result: BatchResult) -> None:
        """Refuse the Item whose own file the filesystem will never take; keep the rest."""
        owner = bad.owner
        reason = f"cannot write {bad.rel}: {bad.error.strerror or bad.error}"
        if owner is None or owner[1] not in ("item", "delete_item") or owner[2] is None:
            raise CatalogUnwritable(self.root / bad.rel, reason, _errno_name(bad.error))
        seq, kind, collection, key = owner
        item_id = key if kind == "item" else json.loads(key or "[]")[1]
        self.log.error("item_unwritable", path=str(self.root / bad.rel), collection=collection, item_id=item_id, reason=reason)
        self._forget_fresh()
        with self.state.transaction() as tx:
            batch = _Batch(self, tx, result)
            records = [self.state.source(path) for path, _ in self.state.item_sources(collection, item_id)]
            batch.remove_item(collection, item_id)
            for record in records:
                if record is None:
                    continue
                signature = (record.size, record.mtime_ns, record.inode, record.device)
                rejection = Rejection(Path(record.path), reason, "unwritable", Signature(*signature))
                batch.reject(Reject(rejection, Path(record.watch), record.collection))
            tx.drop_journal_entry(seq)
            batch.write_journal()

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

    def _entry_files(self, entry: tuple[int, str, str | None, str | None]) -> list[tuple[str, bytes | None, str | None]]:
        """The files one journal entry stands for, rendered from the committed state:
        (path, bytes or None to delete, sha256 when known)."""
        _, kind, collection, key = entry
        if kind == "root":
            return [(self._rel(self.layout.root_catalog), self.render.root(), None)]
        assert collection is not None
        if kind == "collection":
            return [(self._rel(self.layout.collection_file(collection)), self.render.collection(collection), None)]
        if kind == "partition":
            assert key is not None
            parts = tuple(key.split("/"))
            return [(self._rel(self.layout.partition_file(collection, parts)), self.render.partition(collection, key), None)]
        if kind == "item":
            fresh = self._fresh.get((collection, key or ""))
            if fresh is not None:
                partition, doc, digest, thumbnail = fresh
            else:
                row = self.state.item_files_row(collection, key or "")
                if row is None:
                    return []
                (partition, doc, thumbnail), digest = row, None
            rel = self.layout.item_rel(collection, _parts(partition), key or "") or self._rel(
                self.layout.item_file(collection, _parts(partition), key or "")
            )
            files: list[tuple[str, bytes | None, str | None]] = [(rel, doc, digest)]
            if thumbnail is not None:
                files.append((f"{rel.rpartition('/')[0]}/{THUMBNAIL_FILE}", thumbnail, None))
            return files
        assert kind == "delete_item" and key is not None
        partition, item_id = json.loads(key)
        current = self.state.item(collection, item_id)
        if current is not None and current.partition == partition:
            return []
        path = self.layout.item_file(collection, _parts(partition), item_id)
        return [(self._rel(path.parent / THUMBNAIL_FILE), None, None), (self._rel(path), None, None)]

    # -- files ----------------------------------------------------------------------------

    def _rel(self, path: Path) -> str:
        resolved = os.path.normpath(path)
        if not resolved.startswith(str(self.root) + os.sep):
            raise OutsideRoot(path, f"refusing to write outside the catalog root {self.root}")
        return resolved[len(str(self.root)) + 1 :]

    def _write_files(self, writes: list[tuple[str, bytes]]) -> None:
        """Temp file beside the target, flushed, then renamed in order, then the folders flushed.

        A temp file never outlives a failed write: it is removed before the error leaves.
        """
        if not writes:
            return
        staged: list[tuple[str, str, str]] = []
        target = str(self.root)
        folders: set[str] = set()
        try:
            for rel, data in writes:
                target = f"{self.root}/{rel}"
                folder = target.rpartition("/")[0]
                if folder not in folders:
                    self._make_dirs(folder, rel)
                    folders.add(folder)
                tmp = f"{folder}/{TEMP_PREFIX}{_TEMP_NAMES.getrandbits(32):08x}{TEMP_SUFFIX}"
                staged.append((tmp, target, rel))
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, self.modes.file)
                self._fill(fd, data)
            target = str(self.root)
            self._sync()
            for tmp, target, rel in staged:
                try:
                    os.replace(tmp, target)
                except OSError as exc:
                    if exc.errno in _CONTENT_ERRNOS:
                        raise _UnwritableFile(rel, exc) from exc
                    raise
                if self.durability == "file":
                    _fsync_dir(target.rpartition("/")[0])
            staged = []
            target = str(self.root)
            self._sync()
        except OSError as exc:
            raise CatalogUnwritable(target, f"cannot write {target}: {exc.strerror or exc}", _errno_name(exc)) from exc
        finally:
            for tmp, _, _ in staged:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _fill(self, fd: int, data: bytes) -> None:
        """Write ``data`` to a file just created (and close it), with its mode."""
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.durability == "file":
                os.fsync(fd)
            if self.modes.exact_file:
                os.fchmod(fd, self.modes.file)
        finally:
            os.close(fd)

    def _make_dirs(self, folder: str, rel: str) -> None:
        """``mkdir -p``: one syscall when the parent exists (a new Item's folder)."""
        try:
            try:
                os.mkdir(folder, self.modes.dir)
            except FileExistsError:
                return
            except FileNotFoundError:
                _make_tree(Path(folder), self.modes.dir, exact=self.modes.exact_dir)
                return
            if self.modes.exact_dir:
                os.chmod(folder, self.modes.dir)
        except OSError as exc:
            if exc.errno in _CONTENT_ERRNOS:
                raise _UnwritableFile(rel, exc) from exc
            raise

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

    def _folders_of(self, entries: list[tuple[int, str, str | None, str | None]]) -> set[Path]:
        """Where interrupted writes may have left temp files: the journal's folders and
        every catalog (not Item) folder."""
        folders = {self.root}
        for entry in entries:
            with contextlib.suppress(Exception):
                folders.update((self.root / rel).parent for rel, _, _ in self._entry_files(entry))
        folders.update((self.root / rel).parent for rel in self.state.file_paths() if _is_catalog(rel))
        return folders

    def _remove_temp_files(self, folders: Iterable[Path]) -> None:
        """Temp files of writes a kill interrupted (ours, and those of older versions)."""
        for folder in folders:
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX) and entry.is_file():
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)


# -- one batch inside the state transaction ------------------------------------------------


class _Batch:
    """The bookkeeping of one ``commit``: state rows now, journal entries at the end."""

    def __init__(self, writer: CatalogWriter, tx: Tx, result: BatchResult) -> None:
        self.w = writer
        self.tx = tx
        self.state = writer.state
        self.result = result
        self.items: dict[tuple[str, str], None] = {}
        self.partitions: set[tuple[str, str]] = set()
        self.published: list[tuple[str, str | None, str, str | None, bytes | None]] = []
        self.collections: set[str] = set()
        self.changed_collections: set[str] = set()
        self.had_items: dict[str, bool] = {}
        self.deletes: list[tuple[str, str, str]] = []
        self.dirty_root = False
        self._meta: dict[str, dict[str, Any]] = {}
        #: Items and files the state knew nothing of when the batch began, and nothing in
        #: the batch has written since (a backfill: all of them): no lookups for them.
        self._new_items: set[tuple[str, str]] = set()
        self._new_sources: set[str] = set()
        #: Items this batch rendered (None: changed otherwise, read them from the state).
        self.fresh: dict[tuple[str, str], tuple[str, bytes, str, bytes | None] | None] = {}

    def learn_new(self, ops: Sequence[Op]) -> None:
        """Ask the state once which of the batch's Items and files it does not know,
        instead of three lookups per upsert."""
        ids: dict[str, set[str]] = {}
        paths: set[str] = set()
        for op in ops:
            if isinstance(op, Upsert):
                ids.setdefault(op.built.collection_id, set()).add(op.built.id)
                paths.update(str(path) for path, _ in op.built.signatures)
        for collection, wanted in ids.items():
            self._new_items.update((collection, item_id) for item_id in wanted - self.state.known_items(collection, wanted))
        self._new_sources = paths - self.state.known_sources(paths) if paths else set()

    def _source(self, path: str) -> SourceRecord | None:
        return None if path in self._new_sources else self.state.source(path)

    def _put_source(
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
        self._new_sources.discard(path)
        if item_id is not None:
            self._new_items.discard((collection, item_id))
        self.tx.put_source(path, watch, collection, signature, status, role, item_id, error_kind, error)

    def apply(self, op: Op) -> None:
        if isinstance(op, Remove):
            self.remove_path(str(op.path))
        elif isinstance(op, RemoveTree):
            for record in list(self.state.sources_under(str(op.prefix))):
                self.remove_path(record.path)
        elif isinstance(op, Reject):
            self.reject(op)
        else:
            self.upsert(op)

    def refuse(self, op: Op, error: Exception) -> None:
        """An operation that failed because of its own content: record the refusal."""
        self._meta.clear()
        if isinstance(op, Upsert):
            path, watch, collection = op.built.sources.primary, op.watch, op.built.collection_id
            signature = dict(op.built.signatures).get(path)
        elif isinstance(op, Reject):
            path, watch, collection, signature = op.rejection.path, op.watch, op.collection, op.rejection.signature
        else:
            path = op.path if isinstance(op, Remove) else op.prefix
            self.w.log.exception("operation_failed", path=str(path), error=type(error).__name__)
            return
        reason = f"cannot catalog it: {type(error).__name__}: {error}"
        self.w.log.error("item_unwritable", path=str(path), reason=reason, error=type(error).__name__)
        with self.tx.savepoint():
            self.reject(Reject(Rejection(path, reason, "unwritable", signature), watch, collection))

    # -- removals ----------------------------------------------------------------------

    def remove_path(self, path: str) -> None:
        record = self.state.source(path)
        if record is None:
            return
        self.tx.delete_source(path)
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
        self._touch(collection)
        last = self.state.item_publish_row(collection, item_id)
        self.tx.delete_item_sources(collection, item_id)
        self.tx.delete_item(collection, item_id)
        self.fresh[(collection, item_id)] = None
        self.tx.count_partition(collection, current.partition, -1)
        self.deletes.append((collection, current.partition, item_id))
        self.dirty_partition(collection, current.partition)
        self.items.pop((collection, item_id), None)
        self.published.append(("delete_item", "item.removed", collection, item_id, last[1] if last else None))
        self.result.removed += 1
        self.result.changes.append(("removed", collection, item_id, path))
        for waiter in self.state.clash_waiters(collection, item_id):
            # The id is free again: the file refused for wanting it is built now.
            self.tx.delete_source(waiter)
            self.result.requeue.append(Path(waiter))

    # -- rejections --------------------------------------------------------------------

    def reject(self, op: Reject, item_id: str | None = None) -> None:
        rejection = op.rejection
        path = str(rejection.path)
        previous = self.state.source(path)
        if previous is not None and previous.status == "cataloged":
            self.remove_path(path)
        self._put_source(
            path, str(op.watch), op.collection, rejection.signature, "rejected", "data", item_id,
            rejection.kind, rejection.reason,
        )  # fmt: skip
        self.result.rejected += 1
        self.result.rejections.append(rejection)

    # -- upserts ---------------------------------------------------------------------

    def upsert(self, op: Upsert) -> None:
        built = op.built
        collection, item_id = built.collection_id, built.id
        meta = self.collection(collection)
        new = (collection, item_id) in self._new_items
        existing = None if new else self.state.item(collection, item_id)
        if existing is not None:
            holders = [p for p, role in self.state.item_sources(collection, item_id) if role == "data"]
            mine = {str(p) for _, p in built.sources.data}
            if holders and not mine.intersection(holders):
                alive = [p for p in holders if os.path.exists(p)]
                if alive:
                    self._refuse_clash(op, alive[0])
                    return
                # The holder is gone (its removal not yet settled): the id moves over.
                self.remove_item(collection, item_id)
                self.result.removed -= 1
                self.result.changes.pop()
                existing = None
        self._touch(collection)
        for path, _ in built.signatures:
            record = self._source(str(path))
            if (
                record is not None
                and record.status == "cataloged"
                and (record.collection, record.item_id) != (collection, item_id)
            ):
                self.remove_path(str(path))
        hint = existing.created if existing else self.w.created_hints.get((collection, item_id))
        placement = _placement(self.w, collection, meta)
        placed = built.placed
        # Rendered by the build for this same placement: the same bytes the writer would make.
        if placed is not None and existing is None and hint is None and placed.placement == placement:
            self._put(op, placed, existing, new=new)
            return
        doc, placed = render_placed(
            copy_item(built.item), collection_id=collection, first=built.timing.first, placement=placement, created=hint
        )
        if existing is not None and existing.partition == placed.partition and self._same_but_updated(collection, item_id, doc):
            self._write_sources(built, op.watch)
            self.result.unchanged += 1
            return
        self._put(op, placed, existing, new=new)

    def _put(self, op: Upsert, placed: PlacedItem, existing: ItemRecord | None, *, new: bool = False) -> None:
        """Store an Item's new JSON, its index row and its sources; journal its files."""
        built = op.built
        collection, item_id = built.collection_id, built.id
        partition, data, packed, digest = placed.partition, placed.data, placed.packed, placed.digest
        origin = f"{built.sources.primary.parent}/{built.sources.key}"
        if existing is not None:
            self.tx.drop_values(collection, item_id)
            if existing.partition != partition:
                self.tx.count_partition(collection, existing.partition, -1)
                self.tx.count_partition(collection, partition, +1)
                self.deletes.append((collection, existing.partition, item_id))
                self.dirty_partition(collection, existing.partition)
        else:
            self.tx.count_partition(collection, partition, +1)
        self._new_items.discard((collection, item_id))
        self.tx.put_item(
            collection,
            item_id,
            origin,
            partition,
            placed.index,
            placed.created,
            data,
            built.thumbnail,
            packed=packed,
            digest=digest,
        )
        self._write_sources(built, op.watch, new=new)
        self.items[(collection, item_id)] = None
        self.dirty_partition(collection, partition)
        kind = "updated" if existing is not None else "added"
        self.published.append(("item", f"item.{kind}", collection, item_id, packed))
        setattr(self.result, kind, getattr(self.result, kind) + 1)
        self.result.changes.append((kind, collection, item_id, str(built.sources.primary)))
        self.fresh[(collection, item_id)] = (partition, data, digest, built.thumbnail)

    def _refuse_clash(self, op: Upsert, holder: str) -> None:
        built = op.built
        error = IdClash(built.sources.primary, holder, built.id, built.collection_id)
        signature = dict(built.signatures).get(built.sources.primary)
        rejection = Rejection.from_error(error, built.sources.primary, signature)
        # The id it wanted is kept with the refusal: it is built again once the id is free.
        self.reject(Reject(rejection, op.watch, built.collection_id), item_id=built.id)

    def _same_but_updated(self, collection: str, item_id: str, doc: dict[str, Any]) -> bool:
        """Whether the new JSON equals the stored one except for ``updated``."""
        old = self.state.item_doc(collection, item_id)
        if old is None:
            return False
        previous = loads(old)
        candidate = dict(doc, properties=dict(doc["properties"], updated=previous["properties"].get("updated")))
        return dumps(candidate) == old

    def relink(self, collection: str, item_id: str, partition: str) -> None:
        """Refresh an Item's structural links from current titles (``rebuild``, a new title)."""
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
            self.tx.set_item_doc(collection, item_id, data)
            self.fresh[(collection, item_id)] = None
        self.items[(collection, item_id)] = None

    # -- bookkeeping helpers ------------------------------------------------------------

    def collection(self, collection: str) -> dict[str, Any]:
        """The collection's metadata: the configuration's, stored for renderers and sinks.
        Worked out once per batch (a read and a JSON parse each time otherwise); forgotten
        when an operation is refused, since its savepoint may have undone the storing."""
        known = self._meta.get(collection)
        if known is not None:
            return known
        meta, stored, refused = self.w.applied_meta(collection)
        if refused is not None:
            self.w.log.warning(
                "partitioning_kept",
                collection=collection,
                configured=refused,
                kept=meta.get("partition"),
                hint="run 'stacwatchd rebuild' after removing the catalog to change partitioning",
            )
        if stored != meta:
            self.tx.put_collection_settings(collection, meta)
            self.collections.add(collection)
            self.dirty_root = True
        self._meta[collection] = meta
        return meta

    def _touch(self, collection: str) -> None:
        if collection not in self.had_items:
            self.had_items[collection] = self.state.has_items(collection)

    def _write_sources(self, built: BuiltItem, watch: Path, *, new: bool = False) -> None:
        """``new``: the Item had no files when the batch began, and none since."""
        collection, item_id = built.collection_id, built.id
        data_paths = {str(p) for _, p in built.sources.data}
        keep = {str(p) for p, _ in built.signatures}
        for path, _ in () if new else self.state.item_sources(collection, item_id):
            if path not in keep:
                self.tx.delete_source(path)
        for path, signature in built.signatures:
            role = "data" if str(path) in data_paths else "metadata"
            self._put_source(str(path), str(watch), collection, signature, "cataloged", role, item_id)

    def dirty_partition(self, collection: str, partition: str) -> None:
        """Mark a partition and all its ancestors up to the collection and the root."""
        parts = _parts(partition)
        for depth in range(len(parts), 0, -1):
            self.partitions.add((collection, "/".join(parts[:depth])))
        self.collections.add(collection)
        self.dirty_root = True

    def write_journal(self, *, outbox: bool = True) -> None:
        """Deepest files first, so every link is written after what it points to."""
        rows: list[tuple[str, str | None, str | None]] = [("item", c, i) for c, i in self.items]
        for collection, partition in sorted(self.partitions, key=lambda p: (-p[1].count("/"), p)):
            rows.append(("partition", collection, partition))
        rows += [("collection", c, None) for c in sorted(self.collections)]
        if self.dirty_root:
            rows.append(("root", None, None))
        rows += [("delete_item", c, json.dumps([p, i])) for c, p, i in self.deletes]
        self.tx.append_journal(rows)
        if outbox and self.w.outbox:
            self._write_outbox()

    def _write_outbox(self) -> None:
        """Changes for the sinks, in the same transaction that records them.

        Collections come first (PgSTAC needs them before their Items); a collection
        left without Items is removed after its Items are.
        """
        rows: list[tuple[str, str | None, str, str | None, bytes | None]] = []
        emptied = []
        for collection in sorted(self.collections | set(self.had_items)):
            has = self.state.has_items(collection)
            # Untouched by Items (only its metadata changed): it had what it has.
            had = self.had_items.get(collection, has)
            if has:
                event = "collection.changed" if had else "collection.created"
                rows.append(("collection", event, collection, None, None))
            elif had:
                emptied.append(collection)
        rows += self.published
        rows += [("delete_collection", "collection.removed", c, None, None) for c in emptied]
        self.tx.append_changes(rows)


def open_writer(
    settings: CatalogSettings, collections: Mapping[str, CollectionSettings], sinks: Sequence[Any], **kwargs: Any
) -> CatalogWriter:
    """The writer with the outbox streams its sinks need, their cursors registered."""
    streams = {sink.name: sink.stream for sink in sinks}
    writer = CatalogWriter(
        settings,
        collections,
        outbox="changes" in streams.values(),
        file_outbox="files" in streams.values(),
        **kwargs,
    )
    for name in writer.state.register_sinks(streams):
        writer.log.warning("sink_backlog_dropped", sink=name, reason="no longer configured")
    return writer


def _placement(writer: CatalogWriter, collection: str, meta: Mapping[str, Any]) -> Placement:
    return Placement(writer.root, writer.root_title, meta.get("title") or collection, meta.get("partition") or "year/month")


def _is_catalog(rel: str) -> bool:
    return rel.endswith(("/catalog.json", "/collection.json"))


def _without_downward_links(data: bytes) -> bytes:
    doc = loads(data)
    doc["links"] = [link for link in doc.get("links", []) if link.get("rel") not in ("child", "item")]
    return dumps(doc)


def _deletion_order(rel: str) -> tuple[int, int]:
    """Item files first, then catalogs from the deepest up."""
    return (1 if _is_catalog(rel) else 0, -rel.count("/"))


_JOURNAL_KINDS = {"item": 0, "partition": 1, "collection": 2, "root": 3}


def _journal_order(entry: tuple[str, str | None, str | None]) -> tuple[int, int, str, str]:
    """Items, then partitions from the deepest up, collections, the root: links last."""
    kind, collection, key = entry
    depth = -(key or "").count("/") if kind == "partition" else 0
    return (_JOURNAL_KINDS[kind], depth, collection or "", key or "")


def _stray_item(data: bytes | None, rel: str) -> tuple[str, str] | None:
    """(collection, id) of a removed Item JSON, when it is one."""
    if data is None:
        return None
    try:
        doc = loads(data)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("type") != "Feature" or not isinstance(doc.get("id"), str):
        return None
    return (rel.split("/")[0], doc["id"])


def _parts(partition: str) -> tuple[str, ...]:
    return tuple(partition.split("/")) if partition else ()


def _fsync_dir(folder: Path | str) -> None:
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


def _process_umask() -> int:
    """The umask, read without changing it (``os.umask`` would, for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


@dataclass(frozen=True, slots=True)
class _Modes:
    """Modes of catalog files and folders: the configured ones, else what the umask allows,
    so a web server can serve the catalog (never the 0600 of a bare temp file)."""

    file: int
    dir: int
    exact_file: bool  # chmod needed: the umask alone does not give the mode
    exact_dir: bool

    @classmethod
    def of(cls, settings: CatalogSettings) -> _Modes:
        umask = _process_umask()
        file_mode = _octal(getattr(settings, "file_mode", None)) or 0o666 & ~umask
        dir_mode = _octal(getattr(settings, "dir_mode", None)) or 0o777 & ~umask
        return cls(file_mode, dir_mode, file_mode != 0o666 & ~umask, dir_mode != 0o777 & ~umask)


def _octal(value: int | str | None) -> int | None:
    return int(value, 8) if isinstance(value, str) else value


def _make_tree(folder: Path, mode: int, *, exact: bool) -> None:
    """``mkdir -p`` whose new folders get ``mode`` (exactly, when asked, despite the umask)."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(new, mode)
            if exact:
                os.chmod(new, mode)
