"""How the state stores an Item's JSON: zlib at its fastest level.

Apart from the store, so that a build process, which packs each Item it renders, loads
neither SQLite nor the store to do it.
"""

from __future__ import annotations

import zlib

__all__ = ["compress", "decompress"]


def compress(data: bytes) -> bytes:
    return zlib.compress(data, 1)


def decompress(data: bytes) -> bytes:
    return zlib.decompress(data)
