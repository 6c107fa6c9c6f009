"""Where the catalog's documents are published, and their hrefs made absolute there.

The static catalog links with relative hrefs; a document sent away from its folder (a
notification, a row of a STAC API) needs absolute ones. With the URL where the catalog
root is published, each relative href is resolved against the document's own published
URL, as a client reading the static catalog over HTTP would; without one, against the
file's ``file://`` URL, which is only meaningful on this machine.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from stacwatchd.stac.layout import Layout, Partitioning, partition_of, path_to_href

__all__ = ["PublishedUrls", "absolute", "item_parts"]


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


def item_parts(item: dict[str, Any], scheme: Partitioning) -> tuple[str, ...]:
    """The partition folders an Item JSON was written into (its first instant decides)."""
    props = item.get("properties") or {}
    when = props.get("datetime") or props.get("start_datetime")
    if not when:
        return ()
    return partition_of(datetime.fromisoformat(when), scheme)


class PublishedUrls:
    """The published URL of each catalog document, and its hrefs made absolute."""

    def __init__(self, layout: Layout, public_base_url: str | None) -> None:
        self.layout = layout
        self.base = None if not public_base_url else public_base_url.rstrip("/") + "/"

    def url(self, path: Path) -> str:
        """The URL of a file under the catalog root (``file://`` without a base URL)."""
        if self.base is None:
            return path.as_uri()
        return self.base + path_to_href(path.relative_to(self.layout.root).as_posix())

    def item_url(self, collection: str, parts: tuple[str, ...], item_id: str) -> str:
        return self.url(self.layout.item_file(collection, parts, item_id))

    def collection_url(self, collection: str) -> str:
        return self.url(self.layout.collection_file(collection))

    def resolve(self, doc: dict[str, Any], url: str, media_type: str) -> dict[str, Any]:
        """Every asset and link href of ``doc`` made absolute against ``url`` (its own
        published URL), with a ``self`` link to it; ``doc`` is changed and returned."""
        for asset in (doc.get("assets") or {}).values():
            if "href" in asset:
                asset["href"] = absolute(asset["href"], url)
        links = [dict(link, href=absolute(link["href"], url)) for link in doc.get("links") or [] if link.get("rel") != "self"]
        links.insert(0, {"rel": "self", "href": url, "type": media_type})
        doc["links"] = links
        return doc
