"""Where readers find the published catalog: ``catalog.self_href``, the object store's
``public_base_url``, or the plain HTTPS address of the bucket's prefix."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    from stacwatchd.config import Settings

__all__ = ["public_root_url"]


def public_root_url(settings: Settings) -> str | None:
    """The URL of the published root ``catalog.json``, when one can be told."""
    if settings.catalog.self_href:
        return settings.catalog.self_href
    store = settings.object_store
    if store is None:
        return None
    if store.public_base_url:
        return store.public_base_url.rstrip("/") + "/catalog.json"
    parts = urlsplit(store.url)
    prefix = quote(parts.path.strip("/"))
    path = f"{prefix}/catalog.json" if prefix else "catalog.json"
    if store.endpoint and parts.scheme in ("s3", "s3a"):
        return f"{store.endpoint.rstrip('/')}/{parts.netloc}/{path}"
    if parts.scheme in ("s3", "s3a"):
        region = store.region or "us-east-1"
        host = "s3.amazonaws.com" if region == "us-east-1" else f"s3.{region}.amazonaws.com"
        return f"https://{parts.netloc}.{host}/{path}"
    if parts.scheme == "gs":
        return f"https://storage.googleapis.com/{parts.netloc}/{path}"
    if parts.scheme == "file":
        return f"file://{parts.path.rstrip('/')}/catalog.json"
    return None
