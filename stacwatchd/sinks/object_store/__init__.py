"""A mirror of the static catalog in object storage (S3 and compatibles, GCS, Azure).

:class:`ObjectStoreSink` replays the writer's file stream into a bucket in the safe
order; :func:`mirror` (``stacwatchd publish --all --sink object_store``) makes the
bucket equal the local catalog; :func:`public_root_url` says where readers find it.
obstore is imported only when a bucket is actually opened.
"""

from __future__ import annotations

from stacwatchd.sinks.object_store._urls import public_root_url

__all__ = ["MirrorCounts", "ObjectStoreSink", "mirror", "public_root_url"]


def __getattr__(name: str) -> object:
    if name == "ObjectStoreSink":
        from stacwatchd.sinks.object_store._sink import ObjectStoreSink

        return ObjectStoreSink
    if name in ("mirror", "MirrorCounts"):
        from stacwatchd.sinks.object_store import _mirror

        return getattr(_mirror, name)
    raise AttributeError(name)
