"""How stacwatchd serialises STAC JSON: deterministic bytes, NaN forbidden."""

from __future__ import annotations

import json
import re
from typing import Any

# An innermost array holding only numbers, as ``json.dumps(indent=2)`` spreads it
# over one line per number; coordinates and transforms read better on one line.
_NUMBER_ARRAY = re.compile(r"\[\n\s+(-?[0-9][-+0-9.eE]*(?:,\n\s+-?[0-9][-+0-9.eE]*)*)\n\s*\]")


def _one_line(match: re.Match[str]) -> str:
    return "[" + ", ".join(part.strip() for part in match.group(1).split(",")) + "]"


def dumps(obj: Any) -> bytes:
    """Indented UTF-8 JSON with a final newline; raises ValueError on NaN or infinity.

    The same object always gives the same bytes, which is what lets the writer skip
    files whose content did not change.
    """
    text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False)
    return (_NUMBER_ARRAY.sub(_one_line, text) + "\n").encode("utf-8")


def loads(data: bytes | str) -> Any:
    """Parse JSON, refusing the NaN/Infinity literals Python would otherwise accept."""
    return json.loads(data, parse_constant=_reject_constant)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")
