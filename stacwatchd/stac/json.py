"""How stacwatchd serialises STAC JSON: deterministic bytes, NaN forbidden."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dumps", "loads", "pretty"]

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_PRETTY = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=2)


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON with a final newline; raises ValueError on NaN or infinity.

    The same object always gives the same bytes, which is what lets the writer skip
    files whose content did not change. Compact, because Python's fast (C) encoder
    only runs without indentation and the catalog is written for machines first.
    """
    return (_ENCODER.encode(obj) + "\n").encode("utf-8")


def pretty(obj: Any) -> bytes:
    """Indented JSON for people (the ``item`` command); same content as :func:`dumps`."""
    return (_PRETTY.encode(obj) + "\n").encode("utf-8")


def loads(data: bytes | str) -> Any:
    """Parse JSON, refusing the NaN/Infinity literals Python would otherwise accept."""
    return json.loads(data, parse_constant=_reject_constant)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")
