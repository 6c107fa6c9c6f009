"""How stacwatchd serialises STAC JSON: deterministic bytes, NaN forbidden."""

from __future__ import annotations

import json
from typing import Any


def dumps(obj: Any) -> bytes:
    """Indented UTF-8 JSON with a final newline; raises ValueError on NaN or infinity.

    The same object always gives the same bytes, which is what lets the writer skip
    files whose content did not change.
    """
    return (json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def loads(data: bytes | str) -> Any:
    """Parse JSON, refusing the NaN/Infinity literals Python would otherwise accept."""
    return json.loads(data, parse_constant=_reject_constant)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")
