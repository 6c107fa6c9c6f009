"""``stacwatchd publish --all --sink object_store``: make the bucket equal the local catalog.

The prefix is listed once; what is missing or different (size and MD5/ETag; the bytes
themselves where the store's ETag is no MD5) is uploaded, and objects under the prefix
that look like ours (the root ``catalog.json``, anything inside one of our collections'
folders) but are no longer in the catalog are deleted — never anything outside the
prefix, never other files beside the catalog. Uploads go leaves first, then Items, then
catalogs from the deepest up; deletions the other way round, so the walk from the root
finds every link resolvable throughout. Running it again changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from stacwatchd.sinks.base import SinkError
from stacwatchd.sinks.object_store._assets import Upload
from stacwatchd.sinks.object_store._sink import ObjectStoreSink, content_type_of, is_catalog_file
from stacwatchd.sinks.object_store._store import ObjectInfo, SourceGone, StoreFailure, etag_of_file
from stacwatchd.stac.names import CATALOG_FILE
from stacwatchd.state.store import State

__all__ = ["MirrorCounts", "mirror"]


@dataclass(slots=True)
class MirrorCounts:
    uploaded: int = 0
    deleted: int = 0
    unchanged: int = 0
    refused: int = 0
    #: The file stream's last row the bucket now reflects.
    through: int = 0
    #: MD5 of what the bucket now holds, per catalog file.
    held: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {"uploaded": self.uploaded, "deleted": self.deleted, "unchanged": self.unchanged, "refused": self.refused}


@dataclass(frozen=True, slots=True)
class _Local:
    """A catalog file as the bucket should hold it. Catalogs keep their bytes as read;
    Items only their size and digest (read again when uploaded), so memory does not grow
    with the number of Items."""

    size: int
    md5: str
    data: bytes | None = None


Wanted = _Local | Upload


def mirror(sink: ObjectStoreSink, state: State) -> MirrorCounts:
    """Make the bucket equal the catalog on disk; raises :class:`SinkError` on failure.

    ``through`` in the counts is the last file change queued before the comparison
    began: those are in the bucket now (the caller moves the sink's cursor past them).
    """
    end = state.stream_end("files")
    counts = MirrorCounts()
    try:
        listing = {info.key: info for info in sink.bucket.list_all()}
        wanted: dict[str, Wanted] = {}
        collections = set(state.known_collections())
        rels = [rel for rel, _ in state.files()]
        # Catalogs are read before Items: every Item a catalog links existed when it was
        # read (the writer writes Items first), so the snapshot never links what it lacks.
        for rel in sorted(rels, key=lambda r: not is_catalog_file(r)):
            data = _bucket_bytes(sink, rel, counts, wanted, state)
            if data is None:
                continue  # deleted meanwhile: the stream brings its removal
            collections.add(rel.split("/", 1)[0])
            digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
            wanted[rel] = _Local(len(data), digest, data if is_catalog_file(rel) else None)
        uploads = [key for key, want in wanted.items() if not _same(sink, listing.get(key), want)]
        orphans = [key for key in listing if key not in wanted and _ours(key, collections)]
        asyncio.run(_apply(sink, wanted, uploads, orphans))
    except StoreFailure as failure:
        raise SinkError(sink.describe(), failure.reason, kind=failure.kind) from None
    counts.unchanged = len(wanted) - len(uploads)
    counts.uploaded, counts.deleted, counts.through = len(uploads), len(orphans), end
    counts.held = {key: want.md5 for key, want in wanted.items() if isinstance(want, _Local)}
    return counts


def _bucket_bytes(
    sink: ObjectStoreSink,
    rel: str,
    counts: MirrorCounts | None = None,
    wanted: dict[str, Wanted] | None = None,
    state: State | None = None,
) -> bytes | None:
    """A catalog file's bytes as the bucket gets them (with uploads: the Item pointing at
    its copies, whose keys are added to ``wanted``); None when the file is gone."""
    try:
        data = (Path(sink.catalog_root) / rel).read_bytes()
    except FileNotFoundError:
        return None
    if sink.uploads is None or not rel.endswith(".json") or is_catalog_file(rel):
        return data
    plan = sink.uploads.plan(rel, data)
    if counts is not None:
        counts.refused += len(plan.refused)
        for refusal in plan.refused:
            sink.log.warning("asset_refused", sink=sink.name, path=refusal.path, item=rel, reason=refusal.reason)
            sink.note_refused(rel, f"{refusal.path} not uploaded: {refusal.reason}", state)
    if wanted is not None:
        for upload in plan.uploads:
            wanted[upload.key] = upload
    return plan.data


async def _apply(sink: ObjectStoreSink, wanted: dict[str, Wanted], uploads: list[str], orphans: list[str]) -> None:
    """Upload then delete, wave by wave; a wave finishes whole before a failure is raised."""
    limit = asyncio.Semaphore(sink.settings.concurrency)

    async def put(key: str) -> None:
        want = wanted[key]
        async with limit:
            if isinstance(want, Upload):
                with contextlib.suppress(SourceGone):
                    await sink.bucket.put_file(
                        key, want.path, content_type=want.media_type, cache_control=sink.settings.cache_control_items
                    )
                return
            data = want.data if want.data is not None else _bucket_bytes(sink, key)
            if data is not None:
                await sink.bucket.put_bytes(key, data, content_type=content_type_of(key), cache_control=sink.cache_control(key))

    async def delete(key: str) -> None:
        async with limit:
            await sink.bucket.delete(key)

    for action, waves in ((put, _waves(uploads, upward=True)), (delete, _waves(orphans, upward=False))):
        for _, keys in waves:
            outcomes = await asyncio.gather(*(action(key) for key in keys), return_exceptions=True)
            failures = [o for o in outcomes if isinstance(o, BaseException)]
            for failure in failures:
                if not isinstance(failure, StoreFailure):
                    raise failure
                sink.log.debug(
                    "object_request_failed", sink=sink.name, key=failure.key, error=failure.kind, reason=failure.reason
                )
            if failures:
                raise failures[0]


def _waves(keys: list[str], *, upward: bool) -> list[tuple[tuple[int, int], list[str]]]:
    """Keys grouped so that each wave only links to what earlier waves made (uploads:
    data and thumbnails, Items, then catalogs deepest first) or unlinks what later waves
    remove (deletions: the reverse)."""
    waves: dict[tuple[int, int], list[str]] = {}
    for key in keys:
        if is_catalog_file(key):
            rank = (2, -key.count("/"))
        elif key.endswith(".json") and posixpath.basename(posixpath.dirname(key)) + ".json" == posixpath.basename(key):
            rank = (1, 0)
        else:
            rank = (0, 0)
        waves.setdefault(rank, []).append(key)
    order = sorted(waves.items())
    if not upward:
        order = [(rank, waves[rank]) for rank in [(1, 0), (0, 0)] if rank in waves] + [
            (rank, keys) for rank, keys in order if rank[0] == 2
        ]
    return order


def _same(sink: ObjectStoreSink, found: ObjectInfo | None, want: Wanted) -> bool:
    if found is None:
        return False
    if isinstance(want, Upload):
        try:
            size = want.path.stat().st_size
        except OSError:
            return True  # gone: nothing to upload, its removal follows
        if found.size != size:
            return False
        return found.etag is None or not _is_s3_etag(found.etag) or found.etag == etag_of_file(want.path, size)
    if found.size != want.size:
        return False
    if found.etag and _is_s3_etag(found.etag):
        return found.etag == want.md5
    held = sink.bucket.read(found.key)
    return held is not None and hashlib.md5(held, usedforsecurity=False).hexdigest() == want.md5


def _is_s3_etag(etag: str) -> bool:
    digest = etag.split("-", 1)[0]
    return len(digest) == 32 and all(c in "0123456789abcdef" for c in digest)


def _ours(key: str, collections: set[str]) -> bool:
    """Objects stacwatchd owns under the prefix: the root catalog and our collections' folders."""
    first, _, rest = key.partition("/")
    return key == CATALOG_FILE or (bool(rest) and first in collections)
