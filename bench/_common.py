"""Shared helpers for the benchmarks in bench/: timing, peak RSS, tables, JSON results.

Standard library only (no psutil): memory comes from /proc/self/status on Linux, with
``resource.getrusage`` as the fallback elsewhere.
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


# -- memory --------------------------------------------------------------------------


def _status_kb(key: str) -> int | None:
    try:
        with _STATUS.open() as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_bytes() -> int | None:
    """Current resident set size, or None where /proc is unavailable."""
    kb = _status_kb("VmRSS")
    return kb * 1024 if kb is not None else None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux ≥ 4.0); False when it cannot be reset.

    When it cannot, ``peak_rss_bytes`` is the process-wide high-water mark since start,
    so per-measurement peaks are only upper bounds.
    """
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """Peak RSS since the last successful ``reset_peak_rss`` (else since process start)."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


# -- timing --------------------------------------------------------------------------


@dataclass
class Run:
    """One timed pass of ``fn`` over a list of inputs."""

    total_s: float
    per_item_ns: list[int]
    peak_rss: int
    start_rss: int | None
    rss_reset: bool
    extra: dict[str, Any] = field(default_factory=dict)


def timed_pass(fn: Callable[[Any], Any], inputs: Sequence[Any]) -> tuple[Run, list[Any]]:
    """Call ``fn`` on every input, timing each call and the whole pass.

    Garbage is collected before (not during) the pass and the peak-RSS mark is reset,
    so each pass reports its own memory peak where the kernel allows it.
    """
    gc.collect()
    reset = reset_peak_rss()
    start_rss = rss_bytes()
    per_item: list[int] = [0] * len(inputs)
    outputs: list[Any] = [None] * len(inputs)
    clock = time.perf_counter_ns
    begin = clock()
    for i, value in enumerate(inputs):
        t0 = clock()
        outputs[i] = fn(value)
        per_item[i] = clock() - t0
    total = (clock() - begin) / 1e9
    return Run(total, per_item, peak_rss_bytes(), start_rss, reset), outputs


def percentile(values: Iterable[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), like numpy's default."""
    data = sorted(values)
    if not data:
        return math.nan
    pos = (len(data) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def median(values: Iterable[float]) -> float:
    return percentile(values, 50.0)


def warm_page_cache(paths: Iterable[Path]) -> int:
    """Read every file once so the timed passes hit the page cache; returns bytes read."""
    total = 0
    for path in paths:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                total += len(chunk)
    return total


def settle() -> None:
    """Flush dirty pages from the previous pass so its writeback does not land in the next."""
    gc.collect()
    if hasattr(os, "sync"):
        os.sync()


# -- reporting -----------------------------------------------------------------------


def environment(packages: Sequence[str] = ()) -> dict[str, Any]:
    """Where the numbers came from: interpreter, machine and package versions."""
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "when": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """A plain-text table; ``columns`` are (key, header, format spec) triples."""
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        line = []
        for key, _, spec in columns:
            value = row.get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                line.append("–")
            else:
                line.append(format(value, spec) if spec else str(value))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    # The first two columns (labels) left-aligned, numbers right-aligned.
    def render(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    out = [render(cells[0]), "  ".join("-" * w for w in widths)]
    out.extend(render(r) for r in cells[1:])
    return "\n".join(out)


def write_json(path: Path, data: Any) -> Path:
    """Write results as indented JSON, creating the folder; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def mib(value: int | None) -> float | None:
    return None if value is None else value / (1024 * 1024)
