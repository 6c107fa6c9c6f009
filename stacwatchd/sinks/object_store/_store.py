"""The bucket as obstore sees it: keys under one prefix, failures sorted into kinds.

Every key is checked before it reaches obstore: nothing is ever written outside the
configured prefix, whatever the Item ids or file names. Error messages are cut to the
part that says what failed (server bodies can echo request details) and never carry a
credential.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from stacwatchd.errors import ConfigError, StacwatchdError

if TYPE_CHECKING:
    from stacwatchd.config import ObjectStoreSettings

__all__ = ["MULTIPART_CHUNK", "Bucket", "ObjectInfo", "OutsidePrefix", "SourceGone", "StoreFailure", "etag_of_file", "safe_key"]

#: Part size of multipart uploads. Files above it are streamed in parts of this size;
#: the same size lets us predict the ETag S3 gives such an upload (``md5-of-md5s-N``).
MULTIPART_CHUNK = 8 * 1024 * 1024
_PART_CONCURRENCY = 4

_SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_KEY", "AZURE_CLIENT_SECRET", "GOOGLE_SERVICE_ACCOUNT_KEY",
)  # fmt: skip
_STATUS = re.compile(r"(Server returned non-2xx status code: \d{3}[^:]*)")


class OutsidePrefix(StacwatchdError):
    """A key would leave the configured prefix; refused whatever the names."""


class SourceGone(StacwatchdError):
    """A local file to upload vanished (its removal is on its way through the stream)."""


class StoreFailure(Exception):
    """One request failed. ``poison``: this key can never be written (retrying is useless)."""

    def __init__(self, key: str, reason: str, *, kind: str = "unavailable", poison: bool = False) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason
        self.kind = kind
        self.poison = poison


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    etag: str | None


def safe_key(rel: str) -> str:
    """The object key (relative to the prefix) of a catalog-relative path, or
    :class:`OutsidePrefix` when the path could reach outside the prefix."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
        raise OutsidePrefix(rel, "refusing an object key that could leave the prefix")
    return rel


def etag_of_file(path: Path, size: int) -> str:
    """The ETag S3 gives ``path`` uploaded by :class:`Bucket`: its MD5, or for a
    multipart upload the MD5 of the parts' MD5s and the part count. Read in chunks."""
    if size <= MULTIPART_CHUNK:
        digest = hashlib.md5(usedforsecurity=False)
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()
    parts = []
    with path.open("rb") as fh:
        while True:
            part = hashlib.md5(usedforsecurity=False)
            left = MULTIPART_CHUNK
            while left and (chunk := fh.read(min(left, 1 << 20))):
                part.update(chunk)
                left -= len(chunk)
            if left == MULTIPART_CHUNK:
                break
            parts.append(part.digest())
    return f"{hashlib.md5(b''.join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}"


class Bucket:
    """One prefix of one bucket (or container, or folder), through obstore."""

    def __init__(self, settings: ObjectStoreSettings) -> None:
        try:
            import obstore  # noqa: F401
        except ImportError:  # pragma: no cover - depends on the installation
            raise ConfigError(None, "[object_store] needs obstore: pip install 'stacwatchd[object-store]'") from None
        self.settings = settings
        self.url = settings.url if settings.url.endswith("/") else settings.url + "/"
        self.store = _open(settings, self.url)
        # A folder (file://) keeps no Content-Type or Cache-Control: the web server in
        # front of it decides those.
        self.attributes = urlsplit(self.url).scheme not in ("file", "memory")

    def describe(self) -> str:
        endpoint = f" via {self.settings.endpoint}" if self.settings.endpoint else ""
        return f"{self.url}{endpoint}"

    # -- requests ------------------------------------------------------------------------------

    async def put_bytes(self, key: str, data: bytes, *, content_type: str, cache_control: str) -> None:
        import obstore

        try:
            attributes = _attributes(content_type, cache_control) if self.attributes else None
            await obstore.put_async(self.store, safe_key(key), data, attributes=attributes, use_multipart=False)
        except OutsidePrefix:
            raise
        except Exception as exc:  # noqa: BLE001 - sorted into kinds below
            raise failure(key, exc) from exc

    async def put_file(self, key: str, path: Path, *, content_type: str, cache_control: str) -> None:
        """Stream a local file (multipart above :data:`MULTIPART_CHUNK`, never read whole)."""
        import obstore

        try:
            await obstore.put_async(
                self.store, safe_key(key), path, attributes=_attributes(content_type, cache_control) if self.attributes else None,
                chunk_size=MULTIPART_CHUNK, max_concurrency=_PART_CONCURRENCY,
            )  # fmt: skip
        except OutsidePrefix:
            raise
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc, FileNotFoundError) and not path.exists():
                raise SourceGone(path, "the file to upload is gone") from exc
            raise failure(key, exc) from exc

    async def delete(self, key: str) -> None:
        """Delete one object; one already gone is fine."""
        import obstore

        try:
            await obstore.delete_async(self.store, safe_key(key))
        except FileNotFoundError:
            return
        except OutsidePrefix:
            raise
        except Exception as exc:  # noqa: BLE001
            raise failure(key, exc) from exc

    async def head(self, key: str) -> ObjectInfo | None:
        import obstore

        try:
            meta = await obstore.head_async(self.store, safe_key(key))
        except FileNotFoundError:
            return None
        except OutsidePrefix:
            raise
        except Exception as exc:  # noqa: BLE001
            raise failure(key, exc) from exc
        return _info(meta)

    async def list_async(self, prefix: str) -> list[ObjectInfo]:
        """Every object under ``prefix`` (a folder of the catalog, ending with ``/``)."""
        import obstore

        found: list[ObjectInfo] = []
        try:
            async for chunk in obstore.list(self.store, safe_key(prefix.rstrip("/")) + "/"):
                found.extend(_info(meta) for meta in chunk)
        except OutsidePrefix:
            raise
        except Exception as exc:  # noqa: BLE001
            raise failure(prefix, exc) from exc
        return found

    def read(self, key: str) -> bytes | None:
        """One object's bytes (small ones: catalog JSON), None when it does not exist."""
        import obstore

        try:
            return bytes(obstore.get(self.store, safe_key(key)).bytes())
        except FileNotFoundError:
            return None
        except OutsidePrefix:
            raise
        except Exception as exc:  # noqa: BLE001
            raise failure(key, exc) from exc

    def list_all(self) -> Iterator[ObjectInfo]:
        """Every object under the configured prefix, listed once (``publish --all``)."""
        import obstore

        try:
            for chunk in obstore.list(self.store, None):
                for meta in chunk:
                    yield _info(meta)
        except Exception as exc:  # noqa: BLE001
            raise failure("", exc) from exc


def _info(meta: Any) -> ObjectInfo:
    etag = meta.get("e_tag")
    return ObjectInfo(str(meta["path"]), int(meta["size"]), etag.strip('"') if etag else None)


def _attributes(content_type: str, cache_control: str) -> dict[str, str]:
    attributes = {"Content-Type": content_type}
    if cache_control:
        attributes["Cache-Control"] = cache_control
    return attributes


def failure(key: str, exc: BaseException) -> StoreFailure:
    """Sort an obstore error: credentials refused, a key the store rejects, or the store
    being unreachable/unwell (everything else, retried)."""
    from obstore import exceptions as errors

    reason = clean_reason(exc)
    if isinstance(exc, errors.PermissionDeniedError | errors.UnauthenticatedError):
        return StoreFailure(key, reason, kind="refused")
    if isinstance(exc, errors.InvalidPathError | ValueError):
        return StoreFailure(key, reason, kind="invalid_key", poison=True)
    return StoreFailure(key, reason)


def clean_reason(exc: BaseException) -> str:
    """The first line of an error, without response bodies, never with a credential."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    status = _STATUS.search(text)
    if status:
        text = text[: status.end()].rstrip(": ")
    for name in _SECRET_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text[:300]


def _open(settings: ObjectStoreSettings, url: str) -> Any:
    from obstore.store import from_url

    scheme = urlsplit(url).scheme
    if scheme in ("file", "memory"):
        return from_url(url, mkdir=True) if scheme == "file" else from_url(url)
    client: dict[str, Any] = {
        "timeout": timedelta(seconds=settings.timeout_seconds),
        "connect_timeout": timedelta(seconds=settings.connect_timeout_seconds),
    }
    config: dict[str, Any] = {}
    if settings.endpoint:
        client["allow_http"] = settings.endpoint.startswith("http://")
        config["base_url" if scheme == "gs" else "endpoint"] = settings.endpoint.rstrip("/")
    if settings.region and scheme in ("s3", "s3a"):
        config["region"] = settings.region
    # No retries inside obstore: every retry is the sink runner's (capped backoff, visible
    # in status and the logs), and a retry resends only what did not get through.
    retry = {"max_retries": 0, "retry_timeout": timedelta(seconds=settings.timeout_seconds)}
    try:
        return from_url(url, config=config or None, client_options=client, retry_config=retry)
    except Exception as exc:  # noqa: BLE001 - obstore raises its own types for bad configuration
        raise ConfigError(None, f"[object_store] {url}: {clean_reason(exc)}") from None
