"""The catalog writer against a floor and naive pystac: backfill, add one, remove one.

    python bench/catalog.py                 # backfill 10,000 and 50,000; add at 1k/10k/100k; remove at 100k
    python bench/catalog.py --quick         # backfill 1,000; add at 1k/10k; remove at 10k
    python bench/catalog.py --skip add remove   # the backfill alone
    python bench/catalog.py --profile       # also cProfile build() and the adds at the largest N
    python bench/catalog.py --keep          # keep the scratch folder (printed) for inspection

Every measured method runs in a fresh subprocess (``--child``), watched from here: its
peak RSS is the highest sum of VmRSS over that process and all its descendants (its build
processes), sampled every 0.2 s,
and beside it the same sum of PSS (which splits pages shared between processes instead
of counting them once per process). The children import a copy of the stacwatchd
package taken at the start, so commits landing during a long run cannot mix code
versions (git HEAD and a source hash are recorded).

1. backfill — for each N of --backfill-n, N distinct rasters in ONE folder
   (``_common.distinct_rasters``: 20 CRSes, sizes, data types, band counts, COG / tiled /
   striped, compression, nodata, pixels; never copies of one template; the smaller sets
   are hard links of the first N files of the largest), page cache warm. Every method
   reads that same set (its hash is in the JSON):
   floor        SERIAL, one thread: rasterio.open under GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR,
                transform_bounds, a ~3 KB json.dumps written per file (bench/items.py's floor);
                run first and last, the ratio uses their mean.
   scan         PARALLEL: stacwatchd.engine.scan.scan(workers=--workers) into an empty
                catalog, builds in that many child processes, one writer.
   scan_threads (smallest N) the same with no Builder: the engine's threads call build
                themselves, in one process (threads only, as before the Builder).
   scan_chunked (smallest N) the same files hard-linked into sub-folders of --chunk files:
                isolates the cost that grows with the size of the folder a file sits in.
   pystac       (smallest N, ≤ 10,000) rio_stac.create_stac_item(with_proj) per file,
                Collection.add_item, update_extent_from_items, normalize_hrefs, save.
2. add one — a catalog of N Items (many_cogs in sub-folders of --chunk files + one untimed
   scan, whose duration is reported); one
   process opens the CatalogWriter, builds --adds Items (untimed) dated inside an
   existing month partition and inside the spatial extent, applies one untimed warm-up
   add, then times ``writer.apply([op])`` per add; then one add that creates a new
   partition (2031/03). Files rewritten = len(result.written), new partition catalogs
   excluded and counted apart. The adds are removed again (untimed) afterwards.
   pystac at the naive N: tutorial (Catalog.from_file, add_item, normalize_hrefs, save)
   and save-only (catalog loaded once, then add_item + save), the file count from
   mtimes before/after.
3. remove — every catalog holds one "outlier" COG west and north of the grid, so it alone
   holds the collection's west and north bounds. Its source file is deleted and
   ``apply([Remove(path)])`` timed; then an Item that alone holds another bound is
   removed the same way. After each, collection.json's extent must equal the min/max
   recomputed here from every remaining Item JSON on disk, and must have shrunk.

``main(argv)`` returns the results dict (also written to bench/out/catalog.json).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import math
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "out" / "catalog.json"
QUICK_OUT = BENCH_DIR / "out" / "catalog-quick.json"
PACKAGES = ("stacwatchd", "rasterio", "pystac", "rio-stac", "antimeridian", "shapely", "numpy")
GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
COLLECTION = "bench"

# Geometry and dates of the synthetic data (many_cogs' defaults, spelled out).
START = datetime(2024, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=1096)
ORIGIN = (500000.0, 5000000.0)  # EPSG:32633, the grid runs east and south of it
TILE = 256 * 10.0  # many_cogs' size × pixel_size, metres
OUTLIER_ORIGIN = (300000.0, 5200000.0)  # west and north of every grid tile
OUTLIER_WHEN = datetime(2025, 6, 15, 12, tzinfo=UTC)  # inside the date range: no new partition
ADD_WHEN = datetime(2025, 6, 3, tzinfo=UTC)  # the adds all land in partition 2025/06
ADD_ORIGIN = (ORIGIN[0] + 5 * TILE, ORIGIN[1] - 5 * TILE)  # inside the grid: extent unchanged
NEW_PARTITION_WHEN = datetime(2031, 3, 15, tzinfo=UTC)  # creates 2031/ and 2031/03/
OUTLIER_NAME = f"outlier_000000_{OUTLIER_WHEN:%Y%m%dT%H%M%S}.tif"

TARGET_BACKFILL_RATIO = 1.0
TARGET_ADD_MS = 50.0
TARGET_ADD_FILES = 4
TARGET_GROWTH = 2.0
TARGET_RSS_MIB = 150.0
TARGET_BACKFILL_RSS_MB = 200.0  # at the largest backfill N, all processes summed

_STAMP = re.compile(r"_(\d{8}T\d{6})")

Log = Callable[[str], None]


class BenchError(RuntimeError):
    """A step did not produce what it should; the numbers would be meaningless."""


# ======================================================================================
# Child side: one measured method per process
# ======================================================================================


def _child_setup() -> None:
    warnings.simplefilter("ignore")  # rio-stac/pystac deprecation chatter
    from stacwatchd.log import configure

    configure(format="json", level="warning", stream=sys.stderr)


def _cogs_in(folder: Path) -> list[Path]:
    """Every benchmark COG below ``folder`` (not the adds), sorted."""
    return sorted(p for p in folder.rglob("*.tif") if "_adds" not in p.parts)


def _watch(src: Path) -> Any:
    from stacwatchd.config import CollectionSettings, WatchSettings

    return WatchSettings(path=src, collection=CollectionSettings(id=COLLECTION))


def _writer(root: Path) -> Any:
    from stacwatchd.config import CatalogSettings, CollectionSettings
    from stacwatchd.engine.writer import CatalogWriter

    return CatalogWriter(CatalogSettings(root=root), {COLLECTION: CollectionSettings(id=COLLECTION)})


class _Progress:
    """scan's progress hook for long untimed set-ups: a line on stderr every 30 s."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.t0, self.last = total, 0, time.monotonic(), 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= 30 or self.done == self.total:
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate else 0.0
            print(f"    scan {self.done:,}/{self.total:,}  {rate:,.0f}/s  ETA {eta:,.0f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def task_floor(p: dict[str, Any]) -> dict[str, Any]:
    import items as items_bench  # bench/items.py: the same floor as the Items benchmark

    src, out = Path(p["src"]), Path(p["out"])
    paths = _cogs_in(src)
    out.mkdir(parents=True, exist_ok=True)
    work = items_bench._floor(p["floor_bytes"])(src, out)
    t0 = time.perf_counter()
    total = 0
    for path in paths:
        total += work(path)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "n": len(paths), "files_written": len(paths), "bytes_written": total}


def task_scan(p: dict[str, Any]) -> dict[str, Any]:
    from stacwatchd.config import CatalogSettings
    from stacwatchd.engine.heap import freeze_startup_objects
    from stacwatchd.engine.scan import scan

    src, root = Path(p["src"]), Path(p["root"])
    freeze_startup_objects()  # as `stacwatchd scan` does
    t0 = time.perf_counter()
    mode = p.get("mode", "process")
    build: Any = None
    if mode == "inline":  # the engine's threads call build themselves, as before the Builder
        from stacwatchd.model.items import build
    summary = scan(
        CatalogSettings(root=root),
        [_watch(src)],
        workers=p["workers"],
        progress=_Progress if p.get("progress") else None,
        build=build,
        build_mode="process" if mode == "inline" else mode,
    )
    seconds = time.perf_counter() - t0
    if summary.rejected or summary.added != p["n"]:
        reasons = "; ".join(str(r) for r in summary.rejections[:3])
        raise BenchError(f"scan added {summary.added} of {p['n']}, rejected {summary.rejected}: {reasons}")
    return {"seconds": seconds, "n": summary.added, "files_written": summary.files_written, "workers": p["workers"]}


def _rio_stac_item(path: Path, item_id: str | None = None) -> Any:
    import rasterio
    from rio_stac import create_stac_item

    stamp = _STAMP.search(path.name)
    when = datetime.strptime(stamp.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC) if stamp else None
    with rasterio.Env(**GDAL_ENV):
        return create_stac_item(str(path), input_datetime=when, id=item_id or path.stem, with_proj=True)


def task_naive_backfill(p: dict[str, Any]) -> dict[str, Any]:
    import pystac

    src, out = Path(p["src"]), Path(p["out"])
    paths = _cogs_in(src)
    t0 = time.perf_counter()
    catalog = pystac.Catalog(id="naive", description="naive pystac + rio-stac")
    collection = pystac.Collection(
        id=COLLECTION,
        description="naive",
        extent=pystac.Extent(pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]), pystac.TemporalExtent([[None, None]])),
        license="other",
    )
    catalog.add_child(collection)
    for path in paths:
        collection.add_item(_rio_stac_item(path))
    collection.update_extent_from_items()
    catalog.normalize_hrefs(str(out))
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "n": len(paths), "files_written": len(paths) + 2}


def _op(path: Path, rules: Any) -> Any:
    from stacwatchd.engine.writer import Upsert, op_for
    from stacwatchd.model.items import build

    op = op_for(build(path, rules), rules)
    if not isinstance(op, Upsert):
        raise BenchError(f"build rejected {path}: {op.rejection}")
    return op


def _partition_files(when: datetime) -> list[str]:
    """The partition catalogs (year, year/month) an Item dated ``when`` lives under."""
    return [f"{COLLECTION}/{when:%Y}/catalog.json", f"{COLLECTION}/{when:%Y}/{when:%m}/catalog.json"]


def task_adds(p: dict[str, Any]) -> dict[str, Any]:
    from stacwatchd.engine.writer import Remove
    from stacwatchd.model.items import Rules

    rss_imports = _common.rss_bytes()
    root, src = Path(p["root"]), Path(p["src"])
    t0 = time.perf_counter()
    writer = _writer(root)
    open_s = time.perf_counter() - t0
    rss_open = _common.rss_bytes()
    rules = Rules.from_watch(_watch(src))
    adds = [Path(x) for x in p["adds"]]
    profile_adds = [Path(x) for x in p.get("profile_adds", [])]
    new_part = Path(p["new_partition"])
    # Built beforehand, outside every timing.
    warm_op, *ops = [_op(path, rules) for path in adds]
    new_op = _op(new_part, rules)
    profile_ops = [_op(path, rules) for path in profile_adds]
    items_before = writer.state.count_items(COLLECTION)

    def timed(op: Any) -> tuple[float, Any]:
        gc.collect()
        t = time.perf_counter_ns()
        result = writer.apply([op])
        return (time.perf_counter_ns() - t) / 1e6, result

    timed(warm_op)
    existing_partitions = {rel for rel in _partition_files(ADD_WHEN) if (root / rel).exists()}
    records = []
    for op in ops:
        ms, result = timed(op)
        if result.added != 1:
            raise BenchError(f"add did not add: {result}")
        new = [rel for rel in result.written if rel.endswith("/catalog.json") and rel not in existing_partitions]
        records.append({"ms": ms, "written": result.written, "new_partitions": new, "bytes_written": result.bytes_written})
    fresh = [rel for rel in _partition_files(NEW_PARTITION_WHEN) if not (root / rel).exists()]
    ms, result = timed(new_op)
    new_partition = {
        "ms": ms,
        "written": result.written,
        "new_partitions": [rel for rel in result.written if rel in fresh],
        "bytes_written": result.bytes_written,
    }
    profile_text = None
    if profile_ops:
        profiler = cProfile.Profile()
        for op in profile_ops:
            gc.collect()
            profiler.enable()
            writer.apply([op])
            profiler.disable()
        profiler.dump_stats(p["profile_out"])
        profile_text = _profile_listing(profiler, p.get("profile_top", 30))
    peak = _common.peak_rss_bytes()
    # Put the catalog back to N Items (untimed): the remove benchmark reuses it.
    every = [warm_op, *ops, new_op, *profile_ops]
    cleanup = writer.apply([Remove(op.built.sources.primary) for op in every])
    items_after = writer.state.count_items(COLLECTION)
    writer.close()
    if cleanup.removed != len(every) or items_after != items_before:
        raise BenchError(f"clean-up removed {cleanup.removed} of {len(every)}; {items_after} Items left, expected {items_before}")
    return {
        "n_items": items_before,
        "adds": records,
        "new_partition": new_partition,
        "writer_open_s": open_s,
        "rss_after_imports": rss_imports,
        "rss_after_open": rss_open,
        "peak_rss": peak,
        "cleanup_deleted": len(cleanup.deleted),
        "profile": profile_text,
    }


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """path → (mtime_ns, size) of every file below ``root``."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            st = os.stat(os.path.join(folder, name))
            out[os.path.join(folder, name)] = (st.st_mtime_ns, st.st_size)
    return out


def _changed(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> tuple[int, int]:
    paths = [p for p, sig in after.items() if before.get(p) != sig]
    return len(paths), sum(after[p][1] for p in paths)


def task_naive_adds(p: dict[str, Any]) -> dict[str, Any]:
    import pystac

    rss_imports = _common.rss_bytes()
    root = Path(p["root"])
    catalog_file = str(root / "catalog.json")
    mode = p["mode"]
    records = []
    catalog = collection = None
    if mode == "save_only":  # the catalog already in memory, every Item resolved
        catalog = pystac.Catalog.from_file(catalog_file)
        collection = catalog.get_child(COLLECTION)
        catalog.normalize_hrefs(str(root))
        sum(1 for _ in catalog.get_items(recursive=True))
    for i, path in enumerate(Path(x) for x in p["adds"]):
        item = _rio_stac_item(path, f"{path.stem}-{mode}-{i}")  # built beforehand
        before = _snapshot(root)
        gc.collect()
        t = time.perf_counter_ns()
        if mode == "tutorial":
            catalog = pystac.Catalog.from_file(catalog_file)
            collection = catalog.get_child(COLLECTION)
            collection.add_item(item)
            catalog.normalize_hrefs(str(root))
            catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
        else:
            collection.add_item(item)
            catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
        ms = (time.perf_counter_ns() - t) / 1e6
        files, nbytes = _changed(before, _snapshot(root))
        records.append({"ms": ms, "files": files, "bytes_written": nbytes})
        if mode == "tutorial":
            catalog = collection = None
    return {"adds": records, "rss_after_imports": rss_imports, "peak_rss": _common.peak_rss_bytes()}


def task_remove(p: dict[str, Any]) -> dict[str, Any]:
    from stacwatchd.engine.writer import Remove
    from stacwatchd.model.items import Rules

    root, path = Path(p["root"]), Path(p["path"])
    writer = _writer(root)
    before = writer.state.count_items(COLLECTION)
    # Untimed warm-up, as a long-running writer would be: add and remove an Item that
    # leaves extent and partitions as they were, so SQLite's cache holds the hot pages.
    warm = Path(p["warm"])
    rules = Rules.from_watch(_watch(Path(p["src"])))
    writer.apply([_op(warm, rules)])
    writer.apply([Remove(warm)])
    if writer.state.count_items(COLLECTION) != before:
        raise BenchError("the warm-up add/remove changed the Item count")
    gc.collect()
    t = time.perf_counter_ns()
    result = writer.apply([Remove(path)])
    ms = (time.perf_counter_ns() - t) / 1e6
    after = writer.state.count_items(COLLECTION)
    writer.close()
    if result.removed != 1 or after != before - 1:
        raise BenchError(f"Remove({path}) removed {result.removed}; {before} → {after} Items")
    return {
        "ms": ms,
        "written": result.written,
        "deleted": result.deleted,
        "bytes_written": result.bytes_written,
        "peak_rss": _common.peak_rss_bytes(),
    }


def task_profile_build(p: dict[str, Any]) -> dict[str, Any]:
    """build() single-threaded under cProfile (scan's workers are threads cProfile cannot see)."""
    from stacwatchd.model.items import Rules, build

    rules = Rules.from_watch(_watch(Path(p["src"])))
    paths = _cogs_in(Path(p["src"]))[: p["count"]]
    for path in paths[:10]:
        build(path, rules)
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    for path in paths:
        build(path, rules)
    profiler.disable()
    seconds = time.perf_counter() - t0
    profiler.dump_stats(p["profile_out"])
    return {"seconds": seconds, "count": len(paths), "profile": _profile_listing(profiler, p.get("profile_top", 30))}


def _profile_listing(profiler: cProfile.Profile, top: int) -> str:
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top // 2)
    return text.getvalue()


TASKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "floor": task_floor,
    "scan": task_scan,
    "naive_backfill": task_naive_backfill,
    "adds": task_adds,
    "naive_adds": task_naive_adds,
    "remove": task_remove,
    "profile_build": task_profile_build,
}


def child_main(task: str, params_file: str) -> None:
    _child_setup()
    params = json.loads(Path(params_file).read_text())
    result = TASKS[task](params)
    result.setdefault("peak_rss", _common.peak_rss_bytes())
    import stacwatchd

    result["stacwatchd_file"] = stacwatchd.__file__
    Path(params["result"]).write_text(json.dumps(result))


# ======================================================================================
# Parent side
# ======================================================================================


class Runner:
    """Starts one child process per measured method and collects its JSON result."""

    def __init__(self, workdir: Path, log: Log, code: Path | None = None) -> None:
        self.workdir = workdir
        self.log = log
        self.count = 0
        self.env = dict(os.environ)
        self.code = code
        if code is not None:  # children import the snapshot, not the live tree
            self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), os.environ.get("PYTHONPATH")]))

    def __call__(self, task: str, **params: Any) -> dict[str, Any]:
        self.count += 1
        if "profile_out" in params:
            Path(params["profile_out"]).parent.mkdir(parents=True, exist_ok=True)
        stem = self.workdir / "ipc" / f"{self.count:03d}-{task}"
        stem.parent.mkdir(parents=True, exist_ok=True)
        params["result"] = str(stem.with_suffix(".result.json"))
        stem.with_suffix(".params.json").write_text(json.dumps(params, default=str))
        _common.settle()  # earlier writes must not be flushed by this child's syncfs
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", task, str(stem.with_suffix(".params.json"))],
            env=self.env,
        )
        monitor = _common.TreeMonitor(proc.pid)
        code = proc.wait()
        tree = monitor.stop()
        if code != 0:
            raise BenchError(f"child {task} failed with exit status {code} (see stderr above)")
        result = json.loads(Path(params["result"]).read_text())
        result["tree"] = tree
        if self.code is not None and not Path(result["stacwatchd_file"]).is_relative_to(self.code):
            raise BenchError(f"child {task} imported {result['stacwatchd_file']}, not the snapshot in {self.code}")
        return result


def make_cogs(folder: Path, n: int, chunk: int | None) -> dict[str, Any]:
    """``n`` COGs: n − 1 grid scenes (one folder, or sub-folders of ``chunk``) + 1 outlier.

    Dates spread over three years from 2024-01-01 in both layouts; tiles never overlap.
    """
    from stacwatchd.testing import many_cogs

    t0 = time.perf_counter()
    grid = n - 1
    if chunk is None or grid <= chunk:
        many_cogs(folder, grid, start=START, span=SPAN, origin=ORIGIN)
        layout = "one folder"
    else:
        step = SPAN / grid
        chunks = math.ceil(grid / chunk)
        per_row = math.ceil(math.sqrt(chunks))
        cols = math.ceil(math.sqrt(chunk))
        width, height = cols * TILE, math.ceil(chunk / cols) * TILE
        for k in range(chunks):
            count = min(chunk, grid - k * chunk)
            origin = (ORIGIN[0] + (k % per_row) * width, ORIGIN[1] - (k // per_row) * height)
            many_cogs(
                folder / f"part{k:04d}",
                count,
                start=START + k * chunk * step,
                span=count * step,
                origin=origin,
                prefix=f"scene{k:04d}",
            )
        layout = f"{chunks} sub-folders of ≤{chunk}"
    outlier = many_cogs(folder, 1, start=OUTLIER_WHEN, origin=OUTLIER_ORIGIN, prefix="outlier")[0]
    if outlier.name != OUTLIER_NAME:
        raise BenchError(f"many_cogs named the outlier {outlier.name}, expected {OUTLIER_NAME}")
    return {"seconds": time.perf_counter() - t0, "layout": layout, "outlier": str(outlier.resolve())}


def chunked_links(src: Path, dst: Path, chunk: int) -> None:
    """Hard links of ``src``'s COGs into sub-folders of ``chunk`` files (same bytes, no copy)."""
    for i, path in enumerate(_cogs_in(src)):
        folder = dst / f"part{i // chunk:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        os.link(path, folder / path.name)


def make_adds(src: Path, count: int) -> tuple[list[Path], Path]:
    """``count`` COGs dated in 2025-06 inside the grid, and one dated 2031-03, under src/_adds."""
    from stacwatchd.testing import many_cogs

    folder = src / "_adds"
    shutil.rmtree(folder, ignore_errors=True)
    adds = many_cogs(folder, count, start=ADD_WHEN, span=timedelta(days=20), origin=ADD_ORIGIN, prefix="added")
    new = many_cogs(folder, 1, start=NEW_PARTITION_WHEN, origin=ADD_ORIGIN, prefix="newpart")[0]
    return [p.resolve() for p in adds], new.resolve()


# -- backfill ------------------------------------------------------------------------------


def bench_backfill(args: argparse.Namespace, run: Runner, workdir: Path, log: Log, state: dict[str, Any]) -> list[dict[str, Any]]:
    """Floor (serial) and scan (parallel) over one set of distinct rasters per N, each in one folder."""
    largest = max(args.backfill_n)
    pool = workdir / f"rasters-{largest}"
    log(f"[backfill] writing {largest:,} distinct rasters into one folder ({os.cpu_count()} processes) …")
    t0 = time.perf_counter()
    every = _common.distinct_rasters(pool, largest)
    made_s = time.perf_counter() - t0
    log(f"[backfill] {made_s:.0f} s, {sum(p.stat().st_size for p in every) / 1e6:,.0f} MB")
    rows: list[dict[str, Any]] = []
    for n in sorted(args.backfill_n):
        rows += _backfill_n(n, every, pool, args, run, workdir, log, state, made_s)
    _common.discard(pool)
    return rows


def _backfill_n(
    n: int,
    every: list[Path],
    pool: Path,
    args: argparse.Namespace,
    run: Runner,
    workdir: Path,
    log: Log,
    state: dict[str, Any],
    made_s: float,
) -> list[dict[str, Any]]:
    smallest = n == min(args.backfill_n)
    src = pool if n == len(every) else workdir / f"rasters-{n}"
    paths = every if src == pool else _common.link_subset(every[:n], src)
    digest = _common.fileset_digest(paths)
    log(f"[backfill N={n:,}] file set {digest} in {src}")
    rows: list[dict[str, Any]] = []

    def method(key: str, label: str, side: str, task: str, **params: Any) -> dict[str, Any]:
        _common.warm_page_cache(paths)
        log(f"[backfill N={n:,}] {key} …")
        res = run(task, n=n, **params)
        rate = n / res["seconds"]
        tree = res["tree"]
        log(
            f"[backfill N={n:,}] {key:<13} {res['seconds']:9.2f} s  {rate:9.1f} items/s  peak RSS Σ {tree['peak_rss_sum_mib']:.0f} MiB, "
            f"PSS Σ {tree['peak_pss_sum_mib']:.0f} MiB over ≤ {tree['peak_processes']} processes"
        )
        row = {
            "part": "backfill",
            "method": key,
            "label": label,
            "side": side,
            "n": n,
            "seconds": res["seconds"],
            "items_per_s": rate,
            "peak_rss_mb": tree["peak_rss_sum_mib"],
            "peak_pss_mb": tree["peak_pss_sum_mib"],
            "processes": tree["peak_processes"],
            "cpu_main_s": tree["cpu_main_s"],
            "cpu_children_s": tree["cpu_others_s"],
            "cpu_us_per_item": (tree["cpu_main_s"] + tree["cpu_others_s"]) / n * 1e6,
            "files_written": res.get("files_written"),
            "fileset": digest,
            "load_after": os.getloadavg()[0],
            "pss_by_role": tree["at_peak_pss"],
        }
        rows.append(row)
        return res

    floor_out = workdir / "floor-out"
    shutil.rmtree(floor_out, ignore_errors=True)
    method("floor", "floor (first)", "serial: 1 thread", "floor", src=str(src), out=str(floor_out), floor_bytes=args.floor_bytes)
    _common.discard(floor_out)
    root = workdir / f"catalog-{n}"
    method(
        "scan",
        f"stacwatchd scan, {args.workers} build processes",
        f"parallel: {args.workers} processes + 1 writer",
        "scan",
        src=str(src),
        root=str(root),
        workers=args.workers,
    )
    _common.discard(root)
    if smallest and not args.no_thread_mode:
        method(
            "scan_threads",
            f"stacwatchd scan, {args.workers} engine threads calling build",
            f"{args.workers} threads, 1 process",
            "scan",
            src=str(src),
            root=str(root),
            workers=args.workers,
            mode="inline",
        )
        _common.discard(root)
    if smallest:
        chunked = workdir / f"rasters-{n}-chunked"
        chunked_links(src, chunked, args.chunk)
        chunk_root = workdir / f"catalog-{n}-chunked"
        method(
            "scan_chunked",
            f"stacwatchd scan, {args.workers} build processes, sub-folders of {args.chunk}",
            f"parallel: {args.workers} processes + 1 writer",
            "scan",
            src=str(chunked),
            root=str(chunk_root),
            workers=args.workers,
        )
        _common.discard(chunk_root)
        _common.discard(chunked)
    if smallest and n <= 10_000 and not args.no_pystac:
        naive_root = workdir / f"naive-backfill-{n}"
        method(
            "pystac",
            "pystac + rio-stac (create, add_item, normalize, save)",
            "serial: 1 thread",
            "naive_backfill",
            src=str(src),
            out=str(naive_root),
        )
        _common.discard(naive_root)
    method("floor", "floor (last)", "serial: 1 thread", "floor", src=str(src), out=str(floor_out), floor_bytes=args.floor_bytes)
    _common.discard(floor_out)
    if src != pool:
        _common.discard(src)

    floors = [r["seconds"] for r in rows if r["method"] == "floor"]
    floor_rate = n / (sum(floors) / len(floors))
    for r in rows:
        r["ratio_to_floor"] = r["items_per_s"] / floor_rate
        r["floor_spread_pct"] = 100.0 * (max(floors) - min(floors)) / min(floors) if r["method"] == "floor" else None
        r["meets_target"] = (r["ratio_to_floor"] >= TARGET_BACKFILL_RATIO) if r["method"] == "scan" else None
        r["rasters_written_s"] = made_s
    if args.profile and smallest:
        log(f"[profile] build() over {min(args.profile_files, n)} files of the {n:,}-file set …")
        prof = args.out.with_suffix(".build.prof")
        res = run(
            "profile_build", src=str(pool), count=min(args.profile_files, n), profile_out=str(prof), profile_top=args.profile_top
        )
        state["profiles"]["build"] = {"file": str(prof), "count": res["count"], "seconds": res["seconds"], "text": res["profile"]}
    return rows


# -- add one -------------------------------------------------------------------------------


def ensure_catalog(
    n: int, args: argparse.Namespace, run: Runner, workdir: Path, log: Log, state: dict[str, Any]
) -> dict[str, Any]:
    if n in state["catalogs"]:
        return state["catalogs"][n]
    src = workdir / f"cogs-{n}"
    root = workdir / f"catalog-{n}"
    if args.reuse and (root / ".stacwatchd" / "state.db").is_file() and src.is_dir():
        log(f"[setup N={n:,}] reusing {root} (--reuse): no COGs written, no scan")
        entry = {"root": root, "src": src, "outlier": str(src / OUTLIER_NAME), "setup_s": None, "setup": f"reused {root}"}
        state["catalogs"][n] = entry
        return entry
    log(f"[setup N={n:,}] writing {n:,} COGs …")
    made = make_cogs(src, n, args.chunk)
    log(f"[setup N={n:,}] {made['layout']} in {made['seconds']:.1f} s; scanning into {root} (untimed set-up) …")
    res = run("scan", n=n, src=str(src), root=str(root), workers=args.workers, progress=True)
    log(
        f"[setup N={n:,}] scan took {res['seconds']:.1f} s ({n / res['seconds']:.0f} items/s), peak RSS {_common.mib(res['peak_rss']):.0f} MiB"
    )
    entry = {
        "root": root,
        "src": src,
        "outlier": made["outlier"],
        "setup_s": res["seconds"],
        "cogs_s": made["seconds"],
        "setup": f"many_cogs ({made['layout']}) + one scan",
        "setup_peak_rss_mb": _common.mib(res["peak_rss"]),
    }
    state["catalogs"][n] = entry
    return entry


def ensure_naive(n: int, run: Runner, workdir: Path, log: Log, state: dict[str, Any]) -> Path:
    if n in state["naive"]:
        return state["naive"][n]
    src = state["catalogs"][n]["src"]
    out = workdir / f"naive-{n}"
    log(f"[setup N={n:,}] naive pystac catalog of {n:,} Items (untimed set-up) …")
    _common.warm_page_cache(_cogs_in(src))
    res = run("naive_backfill", src=str(src), out=str(out))
    log(f"[setup N={n:,}] naive backfill took {res['seconds']:.1f} s")
    state["naive"][n] = out
    return out


def live_package() -> Path:
    """Where ``import stacwatchd`` finds the package, without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("stacwatchd")
    if spec is None or not spec.submodule_search_locations:
        raise BenchError("stacwatchd is not importable")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def snapshot_code(workdir: Path, live: Path) -> Path:
    """Copy the stacwatchd package into the scratch folder; every child imports that copy.

    Other people commit while a long run is going: without the copy, children started
    at different times would measure different code. The copy is compiled to bytecode,
    as an installed package is: where ``PYTHONDONTWRITEBYTECODE`` is set, every build
    process would otherwise compile the sources again as it starts.
    """
    import compileall

    dest = workdir / "code"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(live, dest / "stacwatchd", ignore=shutil.ignore_patterns("__pycache__"))
    if not compileall.compile_dir(dest / "stacwatchd", quiet=1):
        raise BenchError(f"cannot compile the copy of stacwatchd in {dest}")
    return dest


def code_version(package: Path, live: Path) -> dict[str, Any]:
    """git HEAD (with a dirty flag for the package) and a hash of the package's sources."""
    import hashlib

    digest = hashlib.sha256()
    for file in sorted(package.rglob("*.py")):
        digest.update(str(file.relative_to(package)).encode() + b"\0" + file.read_bytes())
    out: dict[str, Any] = {"sources_sha256": digest.hexdigest()[:16], "git_head": None, "git_dirty": None}
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=live, capture_output=True, text=True, check=True).stdout.strip()  # noqa: E731
        out["git_head"] = run("rev-parse", "--short", "HEAD")
        out["git_dirty"] = bool(run("status", "--porcelain", "--", "."))
    except (OSError, subprocess.CalledProcessError):
        pass
    return out


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {"median": _common.median(values), "p95": _common.percentile(values, 95.0), "max": max(values), "min": min(values)}


def bench_add(args: argparse.Namespace, run: Runner, workdir: Path, log: Log, state: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    largest = max(args.add_n)
    for n in args.add_n:
        cat = ensure_catalog(n, args, run, workdir, log, state)
        profile_n = args.adds if (args.profile and n == largest) else 0
        adds, new_part = make_adds(cat["src"], args.adds + 1 + profile_n)
        timed_adds, profile_adds = adds[: args.adds + 1], adds[args.adds + 1 :]
        log(f"[add N={n:,}] stacwatchd: 1 warm-up + {args.adds} timed adds + 1 new partition …")
        params: dict[str, Any] = {
            "root": str(cat["root"]),
            "src": str(cat["src"]),
            "adds": [str(p) for p in timed_adds],
            "new_partition": str(new_part),
        }
        if profile_adds:
            prof = args.out.with_suffix(f".add-{n}.prof")
            params |= {"profile_adds": [str(p) for p in profile_adds], "profile_out": str(prof), "profile_top": args.profile_top}
        res = run("adds", **params)
        if res["n_items"] != n:
            raise BenchError(f"catalog holds {res['n_items']} Items, expected {n}")
        if res["profile"]:
            state["profiles"][f"add-{n}"] = {"file": params["profile_out"], "count": len(profile_adds), "text": res["profile"]}
        ms = [a["ms"] for a in res["adds"]]
        files = [len(a["written"]) - len(a["new_partitions"]) for a in res["adds"]]
        created = sum(len(a["new_partitions"]) for a in res["adds"])
        nbytes = [a["bytes_written"] for a in res["adds"]]
        st = _stats(ms)
        row = {
            "part": "add",
            "n": n,
            "method": "stacwatchd",
            "label": "writer.apply([op]), same partition",
            "count": len(ms),
            "median_ms": st["median"],
            "p95_ms": st["p95"],
            "max_ms": st["max"],
            "min_ms": st["min"],
            "files_median": _common.median(files),
            "files_max": max(files),
            "new_partitions": created,
            "bytes_median": _common.median(nbytes),
            "peak_rss_mb": _common.mib(res["peak_rss"]),
            "rss_after_imports_mb": _common.mib(res["rss_after_imports"]),
            "rss_after_open_mb": _common.mib(res["rss_after_open"]),
            "writer_open_s": res["writer_open_s"],
            "written_example": res["adds"][0]["written"],
            "setup": cat["setup"],
            "setup_s": cat["setup_s"],
        }
        row["meets_target"] = st["median"] <= TARGET_ADD_MS and max(files) <= TARGET_ADD_FILES
        rows.append(row)
        npart = res["new_partition"]
        rows.append(
            {
                "part": "add",
                "n": n,
                "method": "stacwatchd_new_partition",
                "label": "writer.apply([op]), new year+month",
                "count": 1,
                "median_ms": npart["ms"],
                "p95_ms": npart["ms"],
                "max_ms": npart["ms"],
                "min_ms": npart["ms"],
                "files_median": len(npart["written"]) - len(npart["new_partitions"]),
                "files_max": len(npart["written"]) - len(npart["new_partitions"]),
                "files_total": len(npart["written"]),
                "new_partitions": len(npart["new_partitions"]),
                "bytes_median": npart["bytes_written"],
                "peak_rss_mb": None,
                "written_example": npart["written"],
                "meets_target": npart["ms"] <= TARGET_ADD_MS
                and len(npart["written"]) - len(npart["new_partitions"]) <= TARGET_ADD_FILES,
            }
        )
        log(
            f"[add N={n:,}] stacwatchd median {st['median']:.1f} ms, p95 {st['p95']:.1f} ms, files {max(files)}, "
            f"{_common.median(nbytes):,.0f} B; new partition {npart['ms']:.1f} ms; peak RSS {_common.mib(res['peak_rss']):.0f} MiB"
        )
        if n in args.naive_n:
            naive_root = ensure_naive(n, run, workdir, log, state)
            for mode, label in (
                ("tutorial", "from_file, add_item, normalize_hrefs, save"),
                ("save_only", "in memory: add_item + save"),
            ):
                k = args.naive_repeats
                log(f"[add N={n:,}] pystac {mode}: {k} adds …")
                picks = adds[:k] if mode == "tutorial" else adds[k : 2 * k]
                nres = run("naive_adds", root=str(naive_root), mode=mode, adds=[str(p) for p in picks])
                nms = [a["ms"] for a in nres["adds"]]
                nst = _stats(nms)
                nfiles = [a["files"] for a in nres["adds"]]
                rows.append(
                    {
                        "part": "add",
                        "n": n,
                        "method": f"pystac_{mode}",
                        "label": f"pystac {label}",
                        "count": len(nms),
                        "median_ms": nst["median"],
                        "p95_ms": nst["p95"],
                        "max_ms": nst["max"],
                        "min_ms": nst["min"],
                        "files_median": _common.median(nfiles),
                        "files_max": max(nfiles),
                        "bytes_median": _common.median(a["bytes_written"] for a in nres["adds"]),
                        "peak_rss_mb": _common.mib(nres["peak_rss"]),
                        "rss_after_imports_mb": _common.mib(nres["rss_after_imports"]),
                    }
                )
                log(f"[add N={n:,}] pystac {mode}: median {nst['median']:.0f} ms, {max(nfiles):,} files")
        shutil.rmtree(cat["src"] / "_adds", ignore_errors=True)
    return rows


# -- remove one ----------------------------------------------------------------------------


def read_items(collection_dir: Path) -> dict[str, dict[str, Any]]:
    """Every Item JSON on disk (``<id>/<id>.json`` below the collection), independently of stacwatchd."""
    out: dict[str, dict[str, Any]] = {}
    for folder, _, names in os.walk(collection_dir):
        base = os.path.basename(folder)
        if base + ".json" not in names:
            continue
        file = os.path.join(folder, base + ".json")
        with open(file, "rb") as fh:
            doc = json.loads(fh.read())
        if doc.get("type") != "Feature":
            continue
        props = doc["properties"]
        data = next(a for a in doc["assets"].values() if "data" in a.get("roles", ()))
        out[doc["id"]] = {
            "bbox": doc["bbox"],
            "start": props.get("start_datetime") or props["datetime"],
            "end": props.get("end_datetime") or props["datetime"],
            "source": os.path.normpath(os.path.join(folder, data["href"])),
            "file": file,
        }
    return out


def expected_extent(items: dict[str, dict[str, Any]]) -> tuple[list[float], list[datetime]]:
    """Plain min/max over the Items' bboxes and times (valid: no Item crosses the antimeridian)."""
    import pystac

    boxes = [i["bbox"] for i in items.values()]
    if any(b[0] > b[2] for b in boxes):
        raise BenchError("an Item crosses the antimeridian: plain min/max would be wrong")
    bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    times = [
        min(pystac.utils.str_to_datetime(i["start"]) for i in items.values()),
        max(pystac.utils.str_to_datetime(i["end"]) for i in items.values()),
    ]
    return bbox, times


def collection_extent(root: Path) -> tuple[list[float], list[datetime]]:
    import pystac

    doc = json.loads((root / COLLECTION / "collection.json").read_bytes())
    interval = doc["extent"]["temporal"]["interval"][0]
    return doc["extent"]["spatial"]["bbox"][0], [pystac.utils.str_to_datetime(v) for v in interval]


SIDES = (("west", 0, min), ("south", 1, min), ("east", 2, max), ("north", 3, max))


def sole_holders(items: dict[str, dict[str, Any]]) -> dict[str, str]:
    """side → id of the only Item attaining that bound (sides attained by several are left out)."""
    out = {}
    for side, i, fn in SIDES:
        bound = fn(v["bbox"][i] for v in items.values())
        holders = [k for k, v in items.items() if v["bbox"][i] == bound]
        if len(holders) == 1:
            out[side] = holders[0]
    return out


def bench_remove(args: argparse.Namespace, run: Runner, workdir: Path, log: Log, state: dict[str, Any]) -> list[dict[str, Any]]:
    n = args.remove_n
    cat = ensure_catalog(n, args, run, workdir, log, state)
    root = cat["root"]
    rows = []
    log(f"[remove N={n:,}] reading every Item JSON …")
    items = read_items(root / COLLECTION)
    if len(items) != n:
        raise BenchError(f"{len(items)} Item files on disk, expected {n}")
    outlier_id = Path(cat["outlier"]).stem
    holders = sole_holders(items)
    first_sides = sorted(side for side, k in holders.items() if k == outlier_id)
    if not first_sides:
        raise BenchError(f"the outlier {outlier_id} holds no bound alone: {holders}")
    steps = [(outlier_id, first_sides)]
    from stacwatchd.testing import many_cogs

    for step in range(2):
        victim, sides = steps[step]
        warm = many_cogs(cat["src"] / "_adds", 1, start=ADD_WHEN, origin=ADD_ORIGIN, prefix=f"warm{step}")[0].resolve()
        before_bbox, _ = collection_extent(root)
        source = items[victim]["source"]
        item_file = items[victim]["file"]
        Path(source).unlink(missing_ok=True)  # the source file is gone; the writer is told (untimed)
        log(f"[remove N={n:,}] Remove({Path(source).name}), sole holder of {', '.join(sides)} …")
        res = run("remove", root=str(root), src=str(cat["src"]), path=source, warm=str(warm))
        shutil.rmtree(warm.parent, ignore_errors=True)
        remaining = read_items(root / COLLECTION)
        want_bbox, want_times = expected_extent(remaining)
        got_bbox, got_times = collection_extent(root)
        diff = max(abs(a - b) for a, b in zip(got_bbox, want_bbox, strict=True))
        checks = {
            "extent_equals_recomputed": got_bbox == want_bbox,
            "temporal_equals_recomputed": got_times == want_times,
            "extent_shrank": got_bbox != before_bbox,
            "item_file_deleted": not os.path.exists(item_file) and victim not in remaining,
            "items_left": len(remaining) == len(items) - 1,
        }
        ok = all(checks.values())
        rows.append(
            {
                "part": "remove",
                "n": len(items),
                "method": "stacwatchd",
                "case": f"sole holder of {'+'.join(sides)}",
                "item": victim,
                "ms": res["ms"],
                "files_written": len(res["written"]),
                "files_deleted": len(res["deleted"]),
                "written": res["written"],
                "deleted": res["deleted"],
                "bytes_written": res["bytes_written"],
                "extent_before": before_bbox,
                "extent_after": got_bbox,
                "extent_recomputed": want_bbox,
                "max_abs_diff": diff,
                "checks": checks,
                "correct": "pass" if ok else "FAIL",
                "peak_rss_mb": _common.mib(res["peak_rss"]),
            }
        )
        log(
            f"[remove N={n:,}] {res['ms']:.1f} ms, wrote {len(res['written'])}, deleted {len(res['deleted'])}: "
            f"{'pass' if ok else 'FAIL ' + str(checks)}"
        )
        items = remaining
        if step == 0:
            holders = sole_holders(items)
            if not holders:
                log(f"[remove N={n:,}] no bound is held by a single Item any more; one removal only")
                break
            side = sorted(holders)[0]
            steps.append((holders[side], sorted(s for s, k in holders.items() if k == holders[side])))
    return rows


# -- command line --------------------------------------------------------------------------

BACKFILL_COLUMNS = (
    ("n", "N", ","),
    ("method", "method", ""),
    ("side", "side", ""),
    ("seconds", "total s", ".2f"),
    ("items_per_s", "items/s", ",.1f"),
    ("ratio_to_floor", "× floor", ".3f"),
    ("peak_rss_mb", "peak RSS Σ MiB", ".0f"),
    ("peak_pss_mb", "peak PSS Σ MiB", ".0f"),
    ("processes", "procs", ""),
    ("cpu_us_per_item", "CPU µs/item", ",.0f"),
    ("files_written", "files", ","),
)
ADD_COLUMNS = (
    ("n", "N", ","),
    ("method", "method", ""),
    ("count", "adds", ""),
    ("median_ms", "median ms", ",.1f"),
    ("p95_ms", "p95 ms", ",.1f"),
    ("max_ms", "max ms", ",.1f"),
    ("files_max", "files (max)", ","),
    ("new_partitions", "+new part.", ""),
    ("bytes_median", "bytes (median)", ",.0f"),
    ("peak_rss_mb", "peak RSS MiB", ".0f"),
)
REMOVE_COLUMNS = (
    ("n", "N", ","),
    ("case", "case", ""),
    ("ms", "ms", ",.1f"),
    ("files_written", "written", ""),
    ("files_deleted", "deleted", ""),
    ("bytes_written", "bytes", ","),
    ("max_abs_diff", "|Δ extent|", ".1e"),
    ("correct", "extent check", ""),
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="backfill 1,000; add at 1k/10k (pystac at 1k); remove at 10k; fewer repeats"
    )
    parser.add_argument(
        "--backfill-n", type=int, nargs="+", help="sizes of the backfill benchmark (default 10000 50000; quick 1000)"
    )
    parser.add_argument("--no-thread-mode", action="store_true", help="backfill: leave out scan with build threads")
    parser.add_argument("--no-pystac", action="store_true", help="backfill: leave out pystac + rio-stac")
    parser.add_argument("--add-n", type=int, nargs="+", help="catalog sizes of the add benchmark (default 1000 10000 100000)")
    parser.add_argument(
        "--naive-n", type=int, nargs="*", help="sizes at which pystac adds are timed too (default 1000 10000; quick 1000)"
    )
    parser.add_argument("--remove-n", type=int, help="catalog size of the remove benchmark (default 100,000; quick 10,000)")
    parser.add_argument("--adds", type=int, help="timed stacwatchd adds per N (default 20; quick 10)")
    parser.add_argument("--naive-repeats", type=int, help="timed pystac adds per N and mode (default 3; quick 2)")
    parser.add_argument(
        "--chunk", type=int, default=1000, help="files per sub-folder for large set-up catalogs and scan_chunked (default 1000)"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="scan workers (default: CPU count)")
    parser.add_argument("--floor-bytes", type=int, default=3072, help="size of the floor's JSON document (default 3072)")
    parser.add_argument("--skip", nargs="+", choices=["backfill", "add", "remove"], default=[], help="parts to leave out")
    parser.add_argument(
        "--out", type=Path, help=f"JSON results (default {DEFAULT_OUT.relative_to(BENCH_DIR.parent)}; --quick: {QUICK_OUT.name})"
    )
    parser.add_argument("--no-out", action="store_true", help="do not write JSON results")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a new one under /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --workdir: reuse catalog-N/ and cogs-N/ a kept run left there (no backfill reuse)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile build() and the adds at the largest N (.prof next to the JSON)"
    )
    parser.add_argument("--profile-files", type=int, default=500, help="files of the build() profile (default 500)")
    parser.add_argument("--profile-top", type=int, default=30, help="rows of each profile listing (default 30)")
    parser.add_argument("--quiet", action="store_true", help="print only the tables")
    args = parser.parse_args(argv)
    q = args.quick
    args.backfill_n = args.backfill_n or ([1000] if q else [10000, 50000])
    args.add_n = args.add_n or ([1000, 10000] if q else [1000, 10000, 100000])
    args.naive_n = args.naive_n if args.naive_n is not None else ([1000] if q else [1000, 10000])
    args.naive_n = [n for n in args.naive_n if n in args.add_n]
    args.remove_n = args.remove_n or (10000 if q else 100000)
    args.adds = args.adds or (10 if q else 20)
    args.naive_repeats = args.naive_repeats or (2 if q else 3)
    args.out = args.out or (QUICK_OUT if q else DEFAULT_OUT)
    if min([*args.backfill_n, args.remove_n, *args.add_n]) < 100 or args.adds < 2 or args.chunk < 10:
        parser.error("N must be ≥ 100, --adds ≥ 2, --chunk ≥ 10")
    if args.naive_n and args.adds + 1 < 2 * args.naive_repeats:
        parser.error("--naive-repeats needs 2 × that many add files: raise --adds")
    return args


def _targets(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    scans = [r for r in rows if r["part"] == "backfill" and r["method"] == "scan"]
    for r in scans:
        lines.append(
            f"backfill N={r['n']:,}: scan {r['ratio_to_floor']:.3f}× floor — {'meets' if r['meets_target'] else 'MISSES'} "
            f"the ≥ {TARGET_BACKFILL_RATIO}× target"
        )
    if scans:
        r = max(scans, key=lambda r: r["n"])
        lines.append(
            f"backfill N={r['n']:,}: peak RSS Σ {r['peak_rss_mb']:.0f} MiB, PSS Σ {r['peak_pss_mb']:.0f} MiB over "
            f"{r['processes']} processes — RSS {'meets' if r['peak_rss_mb'] * 1.048576 <= TARGET_BACKFILL_RSS_MB else 'MISSES'}, "
            f"PSS {'meets' if r['peak_pss_mb'] * 1.048576 <= TARGET_BACKFILL_RSS_MB else 'MISSES'} ≤ {TARGET_BACKFILL_RSS_MB:.0f} MB "
            "(RSS Σ counts each shared page once per process)"
        )
    adds = {r["n"]: r for r in rows if r["part"] == "add" and r["method"] == "stacwatchd"}
    for n, r in adds.items():
        lines.append(
            f"add N={n:,}: median {r['median_ms']:.1f} ms, ≤ {r['files_max']} files — "
            f"{'meets' if r['meets_target'] else 'MISSES'} ≤ {TARGET_ADD_MS:.0f} ms and ≤ {TARGET_ADD_FILES} files"
        )
    if len(adds) >= 2:
        lo, hi = min(adds), max(adds)
        growth = adds[hi]["median_ms"] / adds[lo]["median_ms"]
        lines.append(
            f"add growth {lo:,} → {hi:,}: {growth:.2f}× — {'meets' if growth <= TARGET_GROWTH else 'MISSES'} ≤ {TARGET_GROWTH:.0f}×"
        )
        rss = adds[hi]["peak_rss_mb"]
        lines.append(
            f"add RSS at N={hi:,}: peak {rss:.0f} MiB (after imports {adds[hi]['rss_after_imports_mb']:.0f}) — "
            f"{'meets' if rss <= TARGET_RSS_MIB else 'MISSES'} ≤ {TARGET_RSS_MIB:.0f} MB"
        )
    for r in rows:
        if r["part"] == "remove":
            lines.append(f"remove N={r['n']:,} ({r['case']}): {r['ms']:.1f} ms, extent {r['correct']}")
    return lines


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the tables, write JSON; returns the results dict."""
    args = parse_args(argv)
    log: Log = (lambda _msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    own = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="stacwatchd-bench-catalog-", dir="/tmp")) if own else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    workdir = workdir.resolve()
    log(f"scratch folder: {workdir}")
    live = live_package()  # before the snapshot goes on sys.path
    code = snapshot_code(workdir, live)
    sys.path.insert(0, str(code))  # the parent's own imports (many_cogs) use it too
    run = Runner(workdir, log, code)
    state: dict[str, Any] = {"catalogs": {}, "naive": {}, "profiles": {}}
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    load_before = os.getloadavg()
    version_before = code_version(code / "stacwatchd", live)
    dirty = " + uncommitted changes" if version_before["git_dirty"] else ""
    log(f"stacwatchd {version_before['git_head']}{dirty} (sources {version_before['sources_sha256']}), snapshot in {code}")
    try:
        if "backfill" not in args.skip:
            rows += bench_backfill(args, run, workdir, log, state)
        if "add" not in args.skip:
            rows += bench_add(args, run, workdir, log, state)
        if "remove" not in args.skip:
            rows += bench_remove(args, run, workdir, log, state)
    finally:
        if own and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.keep:
            log(f"kept {workdir}")

    version_after = code_version(live, live)
    code_changed = version_after["sources_sha256"] != version_before["sources_sha256"]
    notes = [
        "each method ran in its own subprocess; peak RSS Σ / PSS Σ are the highest sums over that process and all its "
        "descendants (its build processes), sampled every 0.2 s; RSS Σ counts shared pages "
        "once per process, PSS Σ splits them",
        "backfill: one set of distinct rasters (_common.distinct_rasters) per N, all in one folder, the same files for every "
        "method (file set hash in the JSON), page cache warm; floor ran first and last (serial), × floor uses their mean",
        "pystac backfill and adds use rio-stac create_stac_item(with_proj=True) (no pixel statistics), "
        "pystac adds do not update the collection extent (stacwatchd's do)",
        "stacwatchd adds: Items built before timing, one untimed warm-up add, durability='batch' (syncfs per batch)",
        f"machine load average before/after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} (2 CPUs are easily disturbed)",
        f"stacwatchd measured: {version_before['git_head']}{' (dirty)' if version_before['git_dirty'] else ''} "
        f"sources {version_before['sources_sha256']}, a snapshot copied at the start",
    ]
    if code_changed:
        notes.append(
            f"the live stacwatchd changed during the run (now {version_after['git_head']}, sources "
            f"{version_after['sources_sha256']}); every child imported the snapshot, so the numbers are of one version"
        )
    setups = {str(n): {k: (str(v) if isinstance(v, Path) else v) for k, v in c.items()} for n, c in state["catalogs"].items()}
    results: dict[str, Any] = {
        "benchmark": "catalog",
        "schema": 1,
        "environment": _common.environment(PACKAGES),
        "code": {"measured": version_before, "live_at_end": version_after, "live_changed_during_run": code_changed},
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "targets": {
            "backfill_min_ratio_to_floor": TARGET_BACKFILL_RATIO,
            "backfill_max_rss_mb": TARGET_BACKFILL_RSS_MB,
            "add_max_ms": TARGET_ADD_MS,
            "add_max_files": TARGET_ADD_FILES,
            "add_max_growth": TARGET_GROWTH,
            "add_max_rss_mib": TARGET_RSS_MIB,
        },
        "verdicts": _targets(rows),
        "results": rows,
        "setup": setups,
        "profiles": {k: {kk: vv for kk, vv in v.items() if kk != "text"} for k, v in state["profiles"].items()},
        "wall_s": time.monotonic() - started,
        "notes": notes,
    }
    for part, columns in (("backfill", BACKFILL_COLUMNS), ("add", ADD_COLUMNS), ("remove", REMOVE_COLUMNS)):
        part_rows = [r for r in rows if r["part"] == part]
        if part_rows:
            print(f"\n== {part} ==")
            print(_common.format_table(part_rows, columns))
    print()
    for n, c in state["catalogs"].items():
        if c.get("setup_s"):
            print(
                f"set-up N={n:,}: {c['setup']}: COGs {c['cogs_s']:.0f} s, scan {c['setup_s']:.0f} s ({n / c['setup_s']:.0f} items/s)"
            )
    for line in results["verdicts"]:
        print(line)
    for note in notes:
        print(f"note: {note}")
    for name, prof in state["profiles"].items():
        print(f"\n== profile: {name} ({prof['file']}) ==\n{prof['text']}")
    if not args.no_out:
        print(f"results: {_common.write_json(args.out, results)}")
    return results


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child_main(sys.argv[2], sys.argv[3])
    else:
        main()
