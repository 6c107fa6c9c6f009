"""``assets = "upload"``: which local files an Item's assets name, where their copies go
in the bucket, and the Item JSON the bucket gets (asset hrefs pointing at the copies).

A copy lies next to its Item (``<item folder>/<file name>``). Only files inside a
watched folder are published; a symlink whose target lies outside its watched folder is
refused with a reason unless the watch says ``follow_symlinks = true``, so whoever can
drop a link into a watched folder cannot publish arbitrary files of the host.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from stacwatchd.config import WatchSettings
from stacwatchd.stac.json import dumps, loads
from stacwatchd.stac.layout import href_to_path, path_to_href
from stacwatchd.stac.names import THUMBNAIL_FILE

__all__ = ["AssetPlanner", "ItemPlan", "Refusal", "Upload"]


@dataclass(frozen=True, slots=True)
class Upload:
    """One local file copied to ``key`` (relative to the prefix)."""

    key: str
    path: Path
    media_type: str


@dataclass(frozen=True, slots=True)
class Refusal:
    path: str
    reason: str


@dataclass(slots=True)
class ItemPlan:
    """The Item JSON as the bucket gets it and the copies it needs first."""

    data: bytes
    uploads: list[Upload] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Watch:
    root: str  # absolute, as the Items' source paths are written
    real: str  # the same, symlinks resolved
    follow_symlinks: bool
    href_base: str | None


class AssetPlanner:
    """Rewrites Item JSON for a bucket that holds copies of the data."""

    def __init__(self, catalog_root: Path, watches: Sequence[WatchSettings], public_base_url: str | None) -> None:
        self.root = os.path.realpath(catalog_root)
        self.watches = [
            _Watch(str(w.path.resolve()), os.path.realpath(w.path), w.follow_symlinks,
                   w.items.asset_href_base.rstrip("/") + "/" if w.items.asset_href_base else None)
            for w in watches
        ]  # fmt: skip
        self.public_base_url = public_base_url.rstrip("/") + "/" if public_base_url else None

    def plan(self, rel: str, data: bytes) -> ItemPlan:
        """What to upload for the Item at ``rel`` and its JSON for the bucket."""
        doc = loads(data)
        folder = posixpath.dirname(rel)
        taken = {posixpath.basename(rel), THUMBNAIL_FILE}
        plan = ItemPlan(b"")
        hrefs: dict[str, str | None] = {}  # local path -> href in the bucket (None: refused)
        for name, asset in list(doc.get("assets", {}).items()):
            local = self._local(asset.get("href", ""), folder)
            if local is None:
                continue
            if local not in hrefs:
                hrefs[local] = self._publish(local, name, folder, taken, asset, plan)
            if hrefs[local] is None:
                del doc["assets"][name]
            else:
                asset["href"] = hrefs[local]
        links = []
        for link in doc.get("links", []):
            local = self._local(link.get("href", ""), folder)
            if local is not None and local in hrefs:
                if hrefs[local] is None:
                    continue
                link = dict(link, href=hrefs[local])
            links.append(link)
        doc["links"] = links
        plan.data = dumps(doc)
        return plan

    def _publish(self, local: str, name: str, folder: str, taken: set[str], asset: dict[str, Any], plan: ItemPlan) -> str | None:
        watch = self._watch_of(local)
        if watch is None:
            plan.refused.append(Refusal(local, "not inside a watched folder"))
            return None
        real = os.path.realpath(local)
        if not watch.follow_symlinks and not _inside(real, watch.real):
            plan.refused.append(Refusal(
                local, f"a symlink to {real}, outside the watched folder {watch.root} "
                       "(set follow_symlinks = true on the watch to publish it)",
            ))  # fmt: skip
            return None
        file_name = posixpath.basename(local)
        if file_name in taken:
            file_name = f"{name}-{file_name}"
        while file_name in taken:
            file_name = f"_{file_name}"
        taken.add(file_name)
        key = f"{folder}/{file_name}"
        plan.uploads.append(Upload(key, Path(local), str(asset.get("type") or "application/octet-stream")))
        if self.public_base_url:
            return self.public_base_url + path_to_href(key)
        return "./" + path_to_href(file_name)

    def _local(self, href: str, folder: str) -> str | None:
        """The local file an href names, or None for URLs and files of the catalog itself."""
        parts = urlsplit(href)
        if parts.scheme == "file":
            candidates = [href_to_path(href)]
        elif parts.scheme:
            candidates = [
                os.path.join(w.root, unquote(href[len(w.href_base) :]))
                for w in self.watches if w.href_base and href.startswith(w.href_base)
            ]  # fmt: skip
        else:
            base = os.path.join(self.root, folder)
            # Percent-encoded URI references; Items written by older versions held raw paths.
            candidates = [os.path.join(base, href_to_path(href)), os.path.join(base, href)]
        candidates = [os.path.normpath(c) for c in candidates]
        if not candidates:
            return None
        local = next((c for c in candidates if os.path.lexists(c)), candidates[0])
        if _inside(local, self.root):
            return None
        return local

    def _watch_of(self, local: str) -> _Watch | None:
        best = None
        for watch in self.watches:
            if _inside(local, watch.root) and (best is None or len(watch.root) > len(best.root)):
                best = watch
        return best


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")
