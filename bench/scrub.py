"""The scrub's cost per pass: stat-only and hashing, at 10,000 and 100,000 Items.

    python bench/scrub.py                       # N = 10,000 and 100,000
    python bench/scrub.py --quick               # N = 1,000
    python bench/scrub.py --workdir DIR --reuse # keep and reuse the synthetic catalogs

The catalogs are made through the real writer (``CatalogWriter.apply`` in batches of
1,000) from synthetic Items: one Item is built from a real COG, then cloned N times with
its own id, source path and datetime (spread over three years: 36 month partitions), so
the layout, file sizes and state rows are those of a real catalog without building N
rasters. Sources are not on disk; the scrub never looks at them.

Passes, each timed ``--repeats`` times (median reported), in one process:

* ``hash``   every catalog file stat'ed and hashed (the daemon's first pass, and every
             ``scrub_full_every``-th), page cache warm;
* ``stat``   every file stat'ed, none hashed (the mtimes recorded by a repair match);
* ``hash (data evicted)`` the hashing pass after evicting the catalog files' data (and
             the state's) from the page cache, file by file (``posix_fadvise(DONTNEED)``):
             the bytes come from the disk, the inodes and folders stay cached;
* ``hash (cold)`` / ``stat (cold)`` with ``--drop-caches`` only: after dropping every
             cache of the machine (``/proc/sys/vm/drop_caches``, root). Never on a machine
             others are measuring on.

Also timed: ``quick_check`` of the state (the daemon's start-up check). Peak RSS is the
growth of the process's high-water mark during the pass.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "out" / "scrub.json"
QUICK_OUT = BENCH_DIR / "out" / "scrub-quick.json"
COLLECTION = "bench"
START = datetime(2024, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=1095)
BATCH = 1000
#: "A few seconds of I/O per pass" at 100,000 Items.
TARGET_STAT_S_100K = 3.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000], help="catalog sizes (Items)")
    parser.add_argument("--quick", action="store_true", help="N = 1,000, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="where the catalogs are made (default: a temp folder, removed)")
    parser.add_argument("--reuse", action="store_true", help="reuse catalogs already in --workdir")
    parser.add_argument(
        "--drop-caches",
        action="store_true",
        help="also time passes after dropping the whole page cache (root; disturbs the machine)",
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--no-out", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.repeats = [1_000], 1
    if args.out is None:
        args.out = QUICK_OUT if args.quick else DEFAULT_OUT
    return args


# -- the synthetic catalog -------------------------------------------------------------


def _template(folder: Path) -> Any:
    from stacwatchd import testing
    from stacwatchd.model.items import BuiltItem, Rules, build

    source = testing.many_cogs(folder, 1)[0]
    result = build(source, Rules.for_folder(folder))
    if not isinstance(result, BuiltItem):
        raise RuntimeError(f"the template did not build: {result}")
    return result


def synthetic_ops(template: Any, watch: Path, n: int) -> Iterator[Any]:
    """N Upserts that differ from the template in id, source path and datetime."""
    import pystac

    from stacwatchd.engine.writer import Upsert
    from stacwatchd.model.datetimes import Timing
    from stacwatchd.model.items import item_to_dict
    from stacwatchd.model.sources import Signature, Sources

    base = item_to_dict(template.item)
    old_href = str(template.sources.primary)
    size = template.signatures[0][1].size
    step = SPAN / max(n, 1)
    for i in range(n):
        when = (START + step * i).replace(microsecond=0)
        item_id = f"synth_{i:06d}_{when:%Y%m%dT%H%M%S}"
        source = watch / f"{item_id}.tif"
        doc = copy.deepcopy(base)
        doc["id"] = item_id
        doc["properties"]["datetime"] = when.isoformat().replace("+00:00", "Z")
        for asset in doc["assets"].values():
            if asset["href"] == old_href:
                asset["href"] = str(source)
        for link in doc.get("links", []):
            if link["href"] == old_href:
                link["href"] = str(source)
        built = replace(
            template,
            item=pystac.Item.from_dict(doc),
            sources=Sources(key=item_id, data=(("data", source),)),
            timing=Timing(when),
            collection_id=COLLECTION,
            signatures=((source, Signature(size, 1_700_000_000_000_000_000 + i, i + 1, 1)),),
        )
        yield Upsert(built, watch)


def make_catalog(root: Path, n: int, log: Any) -> float:
    """Write a catalog of ``n`` synthetic Items through the writer; returns seconds."""
    from stacwatchd.config import CatalogSettings, CollectionSettings
    from stacwatchd.engine.writer import CatalogWriter

    template = _template(root.parent / "template")
    watch = root.parent / "sources"
    started = time.monotonic()
    with CatalogWriter(CatalogSettings(root=root), {COLLECTION: CollectionSettings(id=COLLECTION)}) as writer:
        batch: list[Any] = []
        for op in synthetic_ops(template, watch, n):
            batch.append(op)
            if len(batch) == BATCH:
                writer.apply(batch)
                batch = []
                done = writer.state.count_items()
                if done % 10_000 == 0:
                    log(f"    {done:,}/{n:,} Items written ({time.monotonic() - started:.0f} s)")
        writer.apply(batch)
    return time.monotonic() - started


# -- the passes --------------------------------------------------------------------------


def drop_page_cache() -> bool:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def evict(root: Path) -> None:
    """Drop the data of every file under ``root`` (the state included) from the page cache."""
    os.sync()
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def one_pass(root: Path, state_path: Path, *, full: bool, cold: str) -> dict[str, Any]:
    from stacwatchd.engine.scrub import scrub_catalog
    from stacwatchd.state.store import State

    if cold == "evict":
        evict(root)
    elif cold == "drop" and not drop_page_cache():
        return {}
    state = State(state_path, readonly=True)
    try:
        _common.reset_peak_rss()
        before = _common.rss_bytes() or 0
        t0, c0 = time.perf_counter(), time.process_time()
        report = scrub_catalog(root, state, full=full)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        peak = _common.peak_rss_bytes() - before
    finally:
        state.close()
    if report.damage or report.foreign:
        raise RuntimeError(f"the synthetic catalog is not clean: {report.summary()}")
    return {"seconds": seconds, "cpu": cpu, "files": report.checked, "hashed": report.hashed, "peak_rss_growth": peak}


def record_mtimes(root: Path) -> None:
    """A hashing scrub and a repair with nothing to repair: every file's mtime recorded."""
    from stacwatchd.config import CatalogSettings
    from stacwatchd.engine.scrub import repair, scrub_catalog
    from stacwatchd.engine.writer import CatalogWriter

    with CatalogWriter(CatalogSettings(root=root)) as writer:
        repair(writer, scrub_catalog(root, writer.state, full=True))


def quick_check_seconds(state_path: Path) -> float:
    """The daemon's start-up check of the state (``State.probe``, SQLite's quick_check)."""
    from stacwatchd.state.store import State

    t0 = time.perf_counter()
    problem, _ = State.probe(state_path)
    if problem:
        raise RuntimeError(problem)
    return time.perf_counter() - t0


def bench_n(n: int, args: argparse.Namespace, workdir: Path, log: Any) -> list[dict[str, Any]]:
    root = workdir / f"n{n}" / "catalog"
    state_path = root / ".stacwatchd" / "state.db"
    made_s = None
    if not (args.reuse and state_path.exists()):
        shutil.rmtree(root.parent, ignore_errors=True)
        root.parent.mkdir(parents=True)
        log(f"  writing a catalog of {n:,} synthetic Items …")
        made_s = make_catalog(root, n, log)
        log(f"  written in {made_s:.0f} s")
    record_mtimes(root)
    files = sum(1 for _ in _walk_files(root))
    db_mib = _common.mib(state_path.stat().st_size)
    rows = []
    passes = [("hash", True, ""), ("stat", False, ""), ("hash (data evicted)", True, "evict")]
    if args.drop_caches:
        passes += [("hash (cold)", True, "drop"), ("stat (cold)", False, "drop")]
    for label, full, cold in passes:
        runs = [one_pass(root, state_path, full=full, cold=cold) for _ in range(args.repeats)]
        runs = [r for r in runs if r]
        if not runs:
            log(f"  {label}: skipped (the page cache cannot be dropped here)")
            continue
        seconds = sorted(r["seconds"] for r in runs)
        row = {
            "n": n,
            "pass": label,
            "files": runs[0]["files"],
            "hashed": runs[0]["hashed"],
            "seconds": _common.median(seconds),
            "min_s": seconds[0],
            "max_s": seconds[-1],
            "us_per_file": _common.median(seconds) / max(runs[0]["files"], 1) * 1e6,
            "cpu_s": _common.median(r["cpu"] for r in runs),
            "peak_rss_growth_mib": _common.mib(max(r["peak_rss_growth"] for r in runs)),
        }
        rows.append(row)
        log(f"  {label:20} {row['seconds']:.2f} s  ({row['files']:,} files, {row['hashed']:,} hashed)")
    rows.append({"n": n, "pass": "quick_check", "files": files, "seconds": quick_check_seconds(state_path), "state_mib": db_mib})
    if made_s is not None:
        rows[-1]["catalog_made_s"] = made_s
    return rows


def _walk_files(root: Path) -> Iterator[str]:
    for _, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        yield from files


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    log = (lambda _m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    own = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="stacwatchd-bench-scrub-", dir="/tmp")) if own else args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    try:
        for n in args.n:
            log(f"N = {n:,}")
            rows += bench_n(n, args, workdir, log)
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
    columns = [
        ("n", "N", ","), ("pass", "pass", ""), ("files", "files", ","), ("hashed", "hashed", ","),
        ("seconds", "median s", ".2f"), ("min_s", "min s", ".2f"), ("max_s", "max s", ".2f"), ("cpu_s", "CPU s", ".2f"),
        ("us_per_file", "µs/file", ".1f"), ("peak_rss_growth_mib", "RSS +MiB", ".1f"),
    ]  # fmt: skip
    if not args.quiet:
        print(_common.format_table(rows, columns))
    results = {
        "benchmark": "scrub",
        "schema": 1,
        "environment": _common.environment(("stacwatchd",)),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "targets": {"stat_pass_max_s_at_100k": TARGET_STAT_S_100K},
        "notes": [
            "catalogs written through CatalogWriter.apply from one real Item cloned N times (ids, sources, datetimes differ)",
            "one folder per Item, 36 month partitions; thumbnails off",
            f"machine load average before/after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f}",
        ],
        "results": rows,
    }
    if not args.no_out:
        path = _common.write_json(args.out, results)
        log(f"results: {path}")
    return results


if __name__ == "__main__":
    main()
