"""The static catalog's relative hrefs made absolute, as an API needs them.

With ``public_base_url`` (where the static catalog's root is served) every relative
href is resolved against the document's own published URL, exactly as a client reading
the static catalog over HTTP would. Without it, against the file's ``file://`` URL:
right for a catalog read on this machine only. The static structural links (root,
parent, collection, self, child, item) are dropped, since stac-fastapi makes its own;
with ``canonical_links`` a ``canonical`` link points to the static JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from stacwatchd.stac.hrefs import absolute
from stacwatchd.stac.layout import Layout, item_file_stem
from stacwatchd.stac.names import STRUCTURAL_RELS

__all__ = ["STRUCTURAL_RELS", "Hrefs", "absolute"]

#: Links of the static catalog that only make sense next to its files.


class Hrefs:
    """Turn the static catalog's relative hrefs into the absolute ones an API needs."""

    def __init__(self, layout: Layout, public_base_url: str | None, canonical: bool) -> None:
        self.layout = layout
        self.base = None if not public_base_url else public_base_url.rstrip("/") + "/"
        self.canonical = canonical
        self._folders: dict[tuple[str, str], str] = {}

    def url(self, path: Path) -> str:
        """The published URL of a file under the catalog root (``file://`` without a base)."""
        if self.base is None:
            return path.as_uri()
        return self.base + quote(path.relative_to(self.layout.root).as_posix())

    def item_url(self, collection: str, partition: str, item_id: str) -> str:
        # The partition folder's URL is computed once: pathlib costs more than the rest.
        folder = self._folders.get((collection, partition))
        if folder is None:
            parts = tuple(partition.split("/")) if partition else ()
            path = self.layout.item_file(collection, parts, "_")
            if len(self._folders) > 4096:
                self._folders.clear()
            folder = self._folders[(collection, partition)] = self.url(path.parent.parent)
        name = quote(item_file_stem(item_id))
        return f"{folder}/{name}/{name}.json"

    def collection_url(self, collection: str) -> str:
        return self.url(self.layout.collection_file(collection))

    def item(self, doc: dict[str, Any], collection: str, partition: str) -> dict[str, Any]:
        """The Item for PgSTAC (``doc`` is changed in place and returned)."""
        url = self.item_url(collection, partition, doc["id"])
        return self._rewrite(doc, url, "application/geo+json")

    def collection(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The collection for PgSTAC: no links to partition catalogs or Item files."""
        return self._rewrite(doc, self.collection_url(doc["id"]), "application/json")

    def _rewrite(self, doc: dict[str, Any], url: str, media_type: str) -> dict[str, Any]:
        for asset in (doc.get("assets") or {}).values():
            if "href" in asset:
                asset["href"] = absolute(asset["href"], url)
        links = []
        for link in doc.get("links") or []:
            if link.get("rel") in STRUCTURAL_RELS:
                continue
            links.append(dict(link, href=absolute(link["href"], url)))
        if self.canonical:
            title = doc.get("title") or (doc.get("properties") or {}).get("title")
            canonical = {"rel": "canonical", "href": url, "type": media_type}
            if title:
                canonical["title"] = title
            links.append(canonical)
        doc["links"] = links
        return doc
