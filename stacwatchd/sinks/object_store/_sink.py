"""The object-store sink: replays the catalog's file stream into a bucket, in order.

The writer's file stream is already in the safe order (an object before any link to
it, a link removed before its target). Rows are replayed in that order; to be fast
without breaking it, a run of consecutive Item files (Item JSON, thumbnails, copies of
data) is sent concurrently — their copies and thumbnails first, then the Item JSON
that links them — while each catalog (root, collection, partition) is a barrier of its
own. Deletions mirror that: Item JSON first, then what it linked.

Delivery is at least once, but a retry resends only what did not get through: rows
after a failure that did land are remembered and skipped on the next attempt.

A bucket without the root ``catalog.json`` (a store just configured for a catalog that
already has Items, or emptied) is first made equal to the local catalog, once per start,
so that the stream's changes never land in a bucket missing what they link to.
"""

from __future__ import annotations

import asyncio
import hashlib
import posixpath
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from stacwatchd.log import get_logger
from stacwatchd.sinks.base import Row, Sink, SinkError, note_refused
from stacwatchd.sinks.object_store._assets import AssetPlanner, Upload
from stacwatchd.sinks.object_store._store import (
    Bucket,
    OutsidePrefix,
    SourceGone,
    StoreFailure,
    etag_of_file,
)
from stacwatchd.stac.names import CATALOG_FILE, COLLECTION_FILE
from stacwatchd.state.store import FileChange, State

if TYPE_CHECKING:
    from stacwatchd.config import ObjectStoreSettings, Settings
    from stacwatchd.sinks.object_store._mirror import MirrorCounts

__all__ = ["ObjectStoreSink", "content_type_of", "is_catalog_file"]

JSON = "application/json"
Step = Callable[[], Awaitable[None]]
_KNOWN_UPLOADS = 100_000


def is_catalog_file(rel: str) -> bool:
    """Root, collection and partition catalogs (not Items)."""
    return posixpath.basename(rel) in (CATALOG_FILE, COLLECTION_FILE)


def content_type_of(rel: str) -> str:
    if rel.endswith(".json"):
        return JSON
    if rel.endswith(".png"):
        return "image/png"
    return "application/octet-stream"


@dataclass(slots=True)
class _Group:
    """Rows that may travel concurrently: one catalog, or a run of Item files."""

    put: bool
    rows: list[FileChange] = field(default_factory=list)
    paths: set[str] = field(default_factory=set)


class ObjectStoreSink(Sink):
    """Mirror of the static catalog in a bucket, fed from the ``files`` stream."""

    name = "object_store"
    stream = "files"

    def __init__(self, settings: ObjectStoreSettings, whole: Settings) -> None:
        self.settings = settings
        self.batch_size = settings.batch_size
        self.retry = (settings.retry_initial_seconds, settings.retry_max_seconds)
        self.bucket = Bucket(settings)
        self.catalog_root = whole.catalog.root.resolve()
        self.log = get_logger()
        self.uploads = (
            AssetPlanner(whole.catalog.root, whole.watch, settings.public_base_url) if settings.assets == "upload" else None
        )
        self._landed: set[int] = set()  # rows after a failure that did get through
        self._copies: OrderedDict[str, tuple[int, int, int]] = OrderedDict()  # key -> source signature uploaded
        self._failure: StoreFailure | None = None
        self._seeded = False
        self._through = 0
        # What the seeding left in the bucket (key → MD5), for the rows committed while it
        # ran: those files may already be there with these very bytes.
        self._seed_md5: dict[str, str] = {}
        self._seed_until = 0
        self._state: State | None = None

    def describe(self) -> str:
        return self.bucket.describe()

    def mirror(self, state: State) -> MirrorCounts:
        """Make the bucket equal the local catalog (``publish --all``)."""
        from stacwatchd.sinks.object_store._mirror import mirror

        return mirror(self, state)

    def cache_control(self, rel: str) -> str:
        return self.settings.cache_control_catalogs if is_catalog_file(rel) else self.settings.cache_control_items

    # -- delivery ------------------------------------------------------------------------------

    def deliver(self, rows: Sequence[Row], state: State) -> None:
        files = [row for row in rows if isinstance(row, FileChange)]
        if not files:
            return
        if not self._seeded:
            self._seed(state)
        self._state = state
        landed = asyncio.run(self._deliver(files + self._rest_of_run(files, state)))
        last = None
        for row in files:
            if row.seq not in landed:
                break
            last = row.seq
        self._landed = {seq for seq in landed if last is None or seq > last}
        if last is not None and last >= self._seed_until:
            self._seed_md5 = {}
        if last != files[-1].seq:
            failure = self._failure or StoreFailure("", "not delivered")
            raise SinkError(self.describe(), failure.reason, kind=failure.kind, delivered=last)

    def _seed(self, state: State) -> None:
        """Mirror the whole catalog first when the bucket has no root catalog."""
        try:
            present = asyncio.run(self.bucket.head(CATALOG_FILE)) is not None
        except StoreFailure as failure:
            raise SinkError(self.describe(), failure.reason, kind=failure.kind) from None
        if not present:
            self.log.info("object_store_seeding", sink=self.name, target=self.describe(), reason="no root catalog in the bucket")
            counts = self.mirror(state)
            self._through = counts.through  # rows up to here are in the bucket already
            self._seed_md5, self._seed_until = counts.held, state.stream_end("files")
            self.log.info("object_store_seeded", sink=self.name, **counts.as_dict())
        self._seeded = True

    def _rest_of_run(self, rows: list[FileChange], state: State) -> list[FileChange]:
        """A batch that ends inside a run of Item files is completed up to the next catalog,
        so an Item never lands without its thumbnail (or goes before it does). What is sent
        ahead is remembered and not sent again with the next batch."""
        if is_catalog_file(rows[-1].path) or len(rows) < self.batch_size:
            return []
        more = []
        for row in state.file_changes_after(rows[-1].seq, self.batch_size):
            if is_catalog_file(row.path):
                break
            more.append(row)
        return more

    async def _deliver(self, rows: list[FileChange]) -> set[int]:
        """Send ``rows`` group by group; returns the seqs that landed (stops at the first
        group with a failure, leaving the rest for the retry)."""
        landed = {row.seq for row in rows if row.seq in self._landed or row.seq <= self._through}
        self._failure = None
        limit = asyncio.Semaphore(self.settings.concurrency)
        for group in _groups([row for row in rows if row.seq not in landed]):
            results = await self._send(group, limit)
            landed.update(seq for seq, ok in results.items() if ok)
            if not all(results.values()):
                break
        return landed

    async def _send(self, group: _Group, limit: asyncio.Semaphore) -> dict[int, bool]:
        """One group; which of its rows landed (an Item only once its copies did)."""
        items = [row for row in group.rows if row.path.endswith(".json")]
        leaves = [row for row in group.rows if not row.path.endswith(".json")]
        if group.put:
            plans = {row.seq: self._plan(row) for row in items}
            first: dict[int, list[Step]] = {row.seq: self._put_steps(row, row.data or b"", limit) for row in leaves}
            first |= {row.seq: [self._copy_step(u, limit) for u in plans[row.seq][1]] for row in items}
            results = await self._gather(first)
            second = {row.seq: self._put_steps(row, plans[row.seq][0], limit) for row in items if results[row.seq]}
            results |= await self._gather(second)
        else:
            for row in group.rows:  # gone from the bucket: what the seeding left no longer counts
                self._seed_md5.pop(row.path, None)
            results = await self._gather({row.seq: [self._delete_step(row.path, limit)] for row in items})
            then: dict[int, list[Step]] = {row.seq: [self._delete_step(row.path, limit)] for row in leaves}
            if self.uploads is not None:
                then |= {
                    row.seq: [self._clear_step(row.path, group.paths, limit)]
                    for row in items if results[row.seq] and not is_catalog_file(row.path)
                }  # fmt: skip
            results |= await self._gather(then)
        return results

    def _plan(self, row: FileChange) -> tuple[bytes, list[Upload]]:
        data = row.data or b""
        if self.uploads is None:
            return data, []
        plan = self.uploads.plan(row.path, data)
        for refusal in plan.refused:
            self.log.warning("asset_refused", sink=self.name, path=refusal.path, item=row.path, reason=refusal.reason)
            self.note_refused(row.path, f"{refusal.path} not uploaded: {refusal.reason}")
        return plan.data, plan.uploads

    def note_refused(self, rel: str, error: str, state: State | None = None) -> None:
        """Record the last thing refused, for ``stacwatchd status``."""
        state = state or self._state
        if state is not None:
            collection, _, rest = rel.partition("/")
            item = posixpath.basename(rest).removesuffix(".json") or rest
            note_refused(state, self.name, {"at": _now(), "collection": collection, "id": item, "error": error})

    # -- requests ----------------------------------------------------------------------------------

    def _put_steps(self, row: FileChange, data: bytes, limit: asyncio.Semaphore) -> list[Step]:
        """The PUT of a row's bytes, or nothing when the seeding already left exactly
        these bytes there (a row committed while the seeding ran)."""
        held = self._seed_md5.pop(row.path, None) if row.seq <= self._seed_until else None
        if held is not None and held == hashlib.md5(data, usedforsecurity=False).hexdigest():
            return []
        return [self._put_step(row.path, data, limit)]

    def _put_step(self, rel: str, data: bytes, limit: asyncio.Semaphore) -> Step:
        async def put() -> None:
            async with limit:
                await self.bucket.put_bytes(rel, data, content_type=content_type_of(rel), cache_control=self.cache_control(rel))

        return put

    def _delete_step(self, rel: str, limit: asyncio.Semaphore) -> Step:
        async def delete() -> None:
            async with limit:
                await self.bucket.delete(rel)

        return delete

    def _copy_step(self, upload: Upload, limit: asyncio.Semaphore) -> Step:
        return lambda: self._copy(upload, limit)

    def _clear_step(self, item_rel: str, deleting: set[str], limit: asyncio.Semaphore) -> Step:
        return lambda: self._clear_folder(item_rel, deleting, limit)

    async def _copy(self, upload: Upload, limit: asyncio.Semaphore) -> None:
        """Upload one data file unless the bucket already has these bytes."""
        try:
            st = upload.path.stat()
        except OSError:
            self.log.warning("asset_missing", sink=self.name, path=str(upload.path), key=upload.key, hint="its removal follows")
            return
        signature = (st.st_size, st.st_mtime_ns, st.st_ino)
        if self._copies.get(upload.key) == signature:
            return
        async with limit:
            found = await self.bucket.head(upload.key)
            same = (
                found is not None
                and found.size == st.st_size
                and found.etag == await asyncio.to_thread(etag_of_file, upload.path, st.st_size)
            )
            if not same:
                try:
                    await self.bucket.put_file(
                        upload.key, upload.path, content_type=upload.media_type, cache_control=self.settings.cache_control_items
                    )
                except SourceGone:
                    self.log.warning(
                        "asset_missing", sink=self.name, path=str(upload.path), key=upload.key, hint="its removal follows"
                    )
                    return
        self._copies[upload.key] = signature
        self._copies.move_to_end(upload.key)
        while len(self._copies) > _KNOWN_UPLOADS:
            self._copies.popitem(last=False)

    async def _clear_folder(self, item_rel: str, deleting: set[str], limit: asyncio.Semaphore) -> None:
        """After an Item is gone, the copies of its data go (everything left in its folder)."""
        folder = posixpath.dirname(item_rel)
        async with limit:
            found = await self.bucket.list_async(folder + "/")
        for info in found:
            if info.key not in deleting and posixpath.dirname(info.key) == folder:
                self._copies.pop(info.key, None)
                await self._delete_step(info.key, limit)()

    async def _gather(self, work: dict[int, list[Step]]) -> dict[int, bool]:
        return dict(await asyncio.gather(*(self._run(seq, steps) for seq, steps in work.items())))

    async def _run(self, seq: int, steps: list[Step]) -> tuple[int, bool]:
        """One row's requests, in order; whether the row landed."""
        try:
            for step in steps:
                await step()
        except OutsidePrefix as error:
            self.log.error("object_refused", sink=self.name, path=str(error.path), reason=error.reason)
            self.note_refused(str(error.path), error.reason)
            return seq, True
        except StoreFailure as failure:
            if failure.poison:
                self.log.error("object_refused", sink=self.name, key=failure.key, reason=failure.reason)
                self.note_refused(failure.key, failure.reason)
                return seq, True
            self.log.debug("object_request_failed", sink=self.name, key=failure.key, error=failure.kind, reason=failure.reason)
            if self._failure is None:
                self._failure = failure
            return seq, False
        return seq, True


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _groups(rows: list[FileChange]) -> list[_Group]:
    groups: list[_Group] = []
    current: _Group | None = None
    for row in rows:
        put = row.data is not None
        if is_catalog_file(row.path):
            groups.append(_Group(put, [row], {row.path}))
            current = None
            continue
        if current is None or current.put != put or row.path in current.paths:
            current = _Group(put)
            groups.append(current)
        current.rows.append(row)
        current.paths.add(row.path)
    return groups
