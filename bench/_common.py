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


def discard(path: Path) -> None:
    """Move a measured method's output aside instead of deleting it; the run's scratch
    folder goes as a whole at the end.

    On ext4 without a journal (as on these machines), every inode allocation skips the
    inodes freed in the last 60 to 360 seconds, reading their inode table blocks to tell.
    Deleting one method's 10,000 files right before the next method creates its own
    made the next one pay that scan on every mkdir and file (measured here: a third of the
    scan process's CPU, and the floor's second run up to a quarter slower than its first). No
    method should pay for the clean-up of another.
    """
    if path.exists():
        path.rename(path.with_name(f".discarded-{path.name}-{time.monotonic_ns()}"))


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


# -- distinct rasters ------------------------------------------------------------------

# Where each CRS may put a tile: (x range, y range, pixel sizes), in the CRS's units.
_UTM_N = ((250_000.0, 750_000.0), (4_000_000.0, 6_500_000.0), (10.0, 20.0, 30.0, 60.0))
_UTM_S = ((250_000.0, 750_000.0), (6_000_000.0, 9_000_000.0), (10.0, 20.0, 30.0, 60.0))
RASTER_CRSES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, ...]]] = {
    **{f"EPSG:{32600 + z}": _UTM_N for z in range(29, 39)},
    **{f"EPSG:{32700 + z}": _UTM_S for z in range(19, 24)},
    "EPSG:25832": _UTM_N,
    "EPSG:3035": ((3_500_000.0, 5_000_000.0), (2_500_000.0, 3_500_000.0), (10.0, 25.0, 100.0)),
    "EPSG:3857": ((0.0, 2_000_000.0), (5_000_000.0, 7_000_000.0), (10.0, 30.0)),
    "EPSG:2154": ((400_000.0, 900_000.0), (6_300_000.0, 6_900_000.0), (5.0, 20.0)),
    "EPSG:4326": ((0.0, 20.0), (40.0, 55.0), (0.0001, 0.0005)),
}
# (weight, value) palettes: mostly small single-band files, as sensor pipelines write them.
_SIZES = ((6, (256, 256)), (2, (512, 512)), (1, (300, 200)), (1, (200, 450)))
_DTYPES = ((4, "uint8"), (3, "uint16"), (1, "int16"), (2, "float32"))
_BANDS = ((6, 1), (3, 3), (1, 4))
_LAYOUTS = ((5, "cog"), (3, "tiled"), (2, "striped"))
_COMPRESS = ((5, "deflate"), (3, "lzw"), (2, None))


def _pick(rng: Any, palette: Sequence[tuple[int, Any]]) -> Any:
    total = sum(w for w, _ in palette)
    x = rng.random() * total
    for weight, value in palette:
        x -= weight
        if x < 0:
            return value
    return palette[-1][1]


def raster_name(prefix: str, i: int, when: datetime) -> str:
    return f"{prefix}_{i:06d}_{when:%Y%m%dT%H%M%S}.tif"


def _write_distinct(folder: str, prefix: str, seed: int, start_ts: float, step_s: float, indexes: Sequence[int]) -> list[str]:
    """Write the rasters ``indexes`` of the set; each one's parameters follow from (seed, index) alone."""
    import random

    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    out = []
    crses = sorted(RASTER_CRSES)
    with rasterio.Env(GDAL_NUM_THREADS="1"):
        for i in indexes:
            rng = random.Random(seed * 1_000_003 + i)
            crs = crses[rng.randrange(len(crses))]
            (x0, x1), (y0, y1), pixels = RASTER_CRSES[crs]
            width, height = _pick(rng, _SIZES)
            dtype, count = _pick(rng, _DTYPES), _pick(rng, _BANDS)
            layout, compress = _pick(rng, _LAYOUTS), _pick(rng, _COMPRESS)
            if compress is None and (dtype != "uint8" or count > 1):
                compress = "deflate"  # uncompressed only where it stays small
            pixel = rng.choice(pixels)
            nodata: float | None = rng.choice(
                [None, 0.0, -9999.0 if dtype in ("int16", "float32") else None, float("nan") if dtype == "float32" else None]
            )
            when = datetime.fromtimestamp(start_ts + i * step_s, UTC).replace(microsecond=0)
            # Blocks of random values: every file holds its own pixels, yet they compress well.
            gen = np.random.default_rng(seed * 1_000_003 + i)
            coarse = gen.integers(1, 200, size=(count, height // 32 + 1, width // 32 + 1)).astype(dtype)
            data = coarse.repeat(32, axis=1).repeat(32, axis=2)[:, :height, :width]
            profile: dict[str, Any] = {
                "driver": "GTiff",
                "width": width,
                "height": height,
                "count": count,
                "dtype": dtype,
                "crs": crs,
                "transform": from_origin(rng.uniform(x0, x1), rng.uniform(y0, y1), pixel, pixel),
                "nodata": nodata,
            }
            if compress:
                profile["compress"] = compress
            if layout == "cog":
                profile.update(driver="COG", blocksize=256, overview_resampling="nearest")
            elif layout == "tiled":
                profile.update(tiled=True, blockxsize=256, blockysize=256)
            path = Path(folder) / raster_name(prefix, i, when)
            with rasterio.open(path, "w", **profile) as ds:
                ds.write(data)
                if rng.random() < 0.3:
                    ds.update_tags(TIFFTAG_DATETIME=f"{when:%Y:%m:%d %H:%M:%S}")
            out.append(str(path))
    return out


def distinct_rasters(
    folder: Path,
    n: int,
    *,
    seed: int = 8,
    prefix: str = "scene",
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC),
    span_days: float = 1096.0,
    processes: int | None = None,
) -> list[Path]:
    """``n`` GeoTIFFs in one folder, each written by GDAL with its own parameters.

    Not copies of one template: CRS (20 of them, UTM north and south, LAEA Europe, Web
    Mercator, Lambert-93, WGS 84), size, data type, band count, layout (COG, tiled,
    striped), compression, nodata and pixels vary from file to file, so no cache of a
    reader sees the same file twice. Deterministic for a given ``seed``; written by
    ``processes`` forked workers (default: every CPU).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    folder.mkdir(parents=True, exist_ok=True)
    step = span_days * 86400.0 / max(n, 1)
    chunks = [range(k, min(n, k + 250)) for k in range(0, n, 250)]
    workers = max(1, min(processes or os.cpu_count() or 1, len(chunks)))
    paths: list[str] = []
    if workers == 1:
        for chunk in chunks:
            paths += _write_distinct(str(folder), prefix, seed, start.timestamp(), step, chunk)
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(_write_distinct, str(folder), prefix, seed, start.timestamp(), step, c) for c in chunks]
            for future in futures:
                paths += future.result()
    return [Path(p) for p in paths]


def link_subset(paths: Sequence[Path], folder: Path) -> list[Path]:
    """Hard links of ``paths`` in a fresh folder: the very same files (bytes, inodes) in another directory."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in paths:
        target = folder / path.name
        if not target.exists():
            os.link(path, target)
        out.append(target)
    return out


def fileset_digest(paths: Iterable[Path]) -> str:
    """A short hash of (name, size, inode) of every file: proves two measurements saw the same set."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        st = path.stat()
        digest.update(f"{path.name}\0{st.st_size}\0{st.st_ino}\n".encode())
    return digest.hexdigest()[:16]


# -- a process and its descendants -----------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _kb(path: str, key: str) -> int | None:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cpu_s(pid: int) -> float | None:
    return stat_cpu_s(f"/proc/{pid}/stat")


def stat_cpu_s(stat_path: str) -> float | None:
    """User + system CPU seconds in a /proc ``stat`` file (a process's, or a thread's under
    ``/proc/PID/task/``); None when it is gone."""
    try:
        with open(stat_path, "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class TreeMonitor:
    """Samples a process tree: summed RSS and PSS (peaks), process count, CPU seconds per process.

    RSS summed over processes counts every shared page (the GDAL and Python libraries)
    once per process; PSS
    divides each shared page among the processes sharing it, so summed PSS is the
    memory the tree really holds. Both are reported.
    """

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        import threading

        self.pid = pid
        self.peak_rss_kb = 0
        self.peak_pss_kb = 0
        self.peak_processes = 0
        self.peak_main_kb = 0
        self.samples = 0
        self.cpu: dict[int, float] = {}
        self.roles: dict[int, str] = {}
        self.peak_breakdown: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _role(self, pid: int) -> str:
        if pid == self.pid:
            return "main"
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return "other"
        if b"stacwatchd.engine.build_process" in cmdline:
            return "build process"
        return "other"

    def sample(self) -> None:
        rss = pss = alive = 0
        seen: dict[str, dict[str, float]] = {}
        for p in descendants(self.pid):
            r = _kb(f"/proc/{p}/status", "VmRSS:")
            if r is None:
                continue
            alive += 1
            q = _kb(f"/proc/{p}/smaps_rollup", "Pss:") or 0
            rss += r
            pss += q
            cpu = _cpu_s(p)
            if cpu is not None:
                self.cpu[p] = cpu
            if p not in self.roles:
                self.roles[p] = self._role(p)
            role = seen.setdefault(self.roles[p], {"processes": 0, "rss_mib": 0.0, "pss_mib": 0.0})
            role["processes"] += 1
            role["rss_mib"] += r / 1024
            role["pss_mib"] += q / 1024
        self.samples += 1
        # The root's own peak from its VmHWM, which starts at its exec: getrusage's
        # ru_maxrss of a child also counts the image of the process that started it.
        self.peak_main_kb = max(self.peak_main_kb, _kb(f"/proc/{self.pid}/status", "VmHWM:") or 0)
        self.peak_rss_kb = max(self.peak_rss_kb, rss)
        if pss > self.peak_pss_kb:
            self.peak_pss_kb = pss
            self.peak_breakdown = seen
        self.peak_processes = max(self.peak_processes, alive)

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.sample()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        main_cpu = self.cpu.get(self.pid, 0.0)
        return {
            "peak_main_rss_mib": self.peak_main_kb / 1024,
            "peak_rss_sum_mib": self.peak_rss_kb / 1024,
            "peak_pss_sum_mib": self.peak_pss_kb / 1024,
            "peak_processes": self.peak_processes,
            "samples": self.samples,
            "cpu_main_s": main_cpu,
            "cpu_others_s": sum(v for p, v in self.cpu.items() if p != self.pid),
            "at_peak_pss": {k: {kk: round(vv, 1) for kk, vv in v.items()} for k, v in self.peak_breakdown.items()},
        }
