"""Items/s of stacwatchd against a floor and rio-stac, on N small COGs in one folder.

    python bench/items.py                       # N = 1,000 and 10,000, 3 repeats each
    python bench/items.py --n 1000 --repeats 5
    python bench/items.py --quick               # N = 200, 1 repeat: a smoke run
    python bench/items.py --profile             # also cProfile one stacwatchd pass

Methods, each single-threaded, each writing one JSON file per input to an output folder:

floor
    rasterio.open inside rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), read
    bounds and CRS, rasterio.warp.transform_bounds to EPSG:4326, write a ~3 KB
    json.dumps of a dict: the least any Item builder must do per file.
stacwatchd
    items.build(path, rules) (statistics, thumbnail and checksum off) +
    documents.item_document(...) + stacjson.dumps(doc) written to a file.
rio_stac_proj_raster / rio_stac_proj
    rio_stac.create_stac_item(path, with_proj=True[, with_raster=True]) +
    item.to_dict() + json.dumps written to a file.  with_raster reads pixels for
    statistics and a histogram; stacwatchd's statistics stay off.

The sample COGs are written with stacwatchd.testing.many_cogs (untimed) and read once
before timing so the page cache holds them.  Each method runs ``--repeats`` times per N
in a seeded random order; the table shows the median total, items/s from it, the ratio
to the floor's items/s (stacwatchd's target: ≥ 0.8), per-item median and p99 over all
repeats, and the peak RSS of the worst repeat.  ``main(argv)`` returns the results dict.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import random
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import rasterio  # noqa: E402
import rasterio.warp  # noqa: E402
from rasterio.crs import CRS  # noqa: E402

from stacwatchd.config import ItemRules  # noqa: E402
from stacwatchd.model.items import Rejection, Rules, build, item_to_dict  # noqa: E402
from stacwatchd.stac.documents import item_document  # noqa: E402
from stacwatchd.stac.json import dumps  # noqa: E402
from stacwatchd.stac.layout import Layout, partition_of  # noqa: E402
from stacwatchd.testing import many_cogs  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "out" / "items.json"
QUICK_OUT = BENCH_DIR / "out" / "items-quick.json"
DEFAULT_N = (1000, 10000)
QUICK_N = 200
TARGET_RATIO = 0.8
GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
WGS84 = CRS.from_epsg(4326)
PACKAGES = ("stacwatchd", "rasterio", "pystac", "shapely", "antimeridian", "numpy", "rio-stac")

Work = Callable[[Path], int]  # one input file → bytes written


class BenchError(RuntimeError):
    """A method did not produce what it should (a rejection, a missing output)."""


class Method(NamedTuple):
    key: str
    label: str
    make: Callable[[Path, Path], Work]  # (source folder, output folder) → per-file work


# -- the methods -----------------------------------------------------------------------


def _floor(floor_bytes: int) -> Callable[[Path, Path], Work]:
    def make(src_dir: Path, out_dir: Path) -> Work:
        # Pad once so every document lands near floor_bytes (bounds vary by a few chars).
        probe = {
            "type": "Feature",
            "id": "scene_000000_20240101T000000",
            "crs": "EPSG:32633",
            "bbox": [15.2273352, 44.9918691, 15.2599155, 45.0149833],
            "pad": "",
        }
        pad = "x" * max(0, floor_bytes - len(json.dumps(probe)))

        def work(path: Path) -> int:
            with rasterio.Env(**GDAL_ENV), rasterio.open(path) as src:
                bounds = src.bounds
                crs = src.crs
                bbox = rasterio.warp.transform_bounds(crs, WGS84, *bounds)
            name = path.name.rsplit(".", 1)[0]
            doc = {"type": "Feature", "id": name, "crs": crs.to_string(), "bbox": list(bbox), "pad": pad}
            data = json.dumps(doc).encode("utf-8")
            (out_dir / f"{name}.json").write_bytes(data)
            return len(data)

        return work

    return make


def _stacwatchd(src_dir: Path, out_dir: Path) -> Work:
    base = Rules.for_folder(src_dir)
    rules = replace(base, items=ItemRules(statistics="off", thumbnail=False, checksum=False))
    layout = Layout(out_dir.parent / "catalog")
    collection_id = rules.collection_id
    collection_title = rules.collection.title or collection_id
    partition = rules.collection.partition

    def work(path: Path) -> int:
        result = build(path, rules)
        if isinstance(result, Rejection):
            raise BenchError(f"stacwatchd rejected {result}")
        _, doc = item_document(
            item_to_dict(result.item),
            layout=layout,
            collection_id=collection_id,
            parts=partition_of(result.timing.first, partition),
            root_title="Benchmark catalog",
            collection_title=collection_title,
        )
        data = dumps(doc)
        (out_dir / f"{result.id}.json").write_bytes(data)
        return len(data)

    return work


def _rio_stac(with_raster: bool) -> Callable[[Path, Path], Work]:
    def make(src_dir: Path, out_dir: Path) -> Work:
        from rio_stac import create_stac_item

        def work(path: Path) -> int:
            with rasterio.Env(**GDAL_ENV):
                item = create_stac_item(str(path), with_proj=True, with_raster=with_raster)
            data = json.dumps(item.to_dict()).encode("utf-8")
            (out_dir / f"{item.id}.json").write_bytes(data)
            return len(data)

        return work

    return make


def methods(floor_bytes: int, wanted: Sequence[str] | None, notes: list[str]) -> list[Method]:
    """The methods to run, floor first; rio-stac ones dropped (with a note) if missing."""
    available = [
        Method("floor", "floor (open+transform_bounds+3KB json)", _floor(floor_bytes)),
        Method("stacwatchd", "stacwatchd build+item_document+dumps", _stacwatchd),
    ]
    try:
        import rio_stac  # noqa: F401
    except ImportError as exc:
        notes.append(f"rio-stac not importable ({exc}); its methods were skipped")
    else:
        available += [
            Method("rio_stac_proj_raster", "rio-stac with_proj+with_raster", _rio_stac(True)),
            Method("rio_stac_proj", "rio-stac with_proj", _rio_stac(False)),
        ]
    if wanted:
        keep = {"floor", *wanted}  # the floor is what every ratio is measured against
        available = [m for m in available if m.key in keep]
    return available


# -- running -----------------------------------------------------------------------------


def _fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def _check_outputs(key: str, out_dir: Path, paths: Sequence[Path]) -> None:
    """Untimed sanity check after warm-up: one parsable JSON per input."""
    written = sorted(out_dir.glob("*.json"))
    if len(written) != len(paths):
        raise BenchError(f"{key}: wrote {len(written)} files for {len(paths)} inputs")
    doc = json.loads(written[0].read_bytes())
    if "bbox" not in doc:
        raise BenchError(f"{key}: output has no bbox: {written[0]}")


def measure_n(
    n: int,
    chosen: Sequence[Method],
    *,
    repeats: int,
    seed: int,
    workdir: Path,
    warmup: int,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Every method on the same N files, ``repeats`` times in shuffled order."""
    src_dir = workdir / f"cogs-{n}"
    log(f"[N={n}] writing {n} COGs to {src_dir} …")
    paths = sorted(many_cogs(src_dir, n))
    out_root = workdir / f"out-{n}"

    log(f"[N={n}] warm-up ({warmup} files per method) and output check …")
    warm = paths[: max(1, min(warmup, n))]
    for method in chosen:
        out_dir = _fresh(out_root / f"warmup-{method.key}")
        work = method.make(src_dir, out_dir)
        for path in warm:
            work(path)
        _check_outputs(method.key, out_dir, warm)
        shutil.rmtree(out_dir)

    runs: dict[str, list[_common.Run]] = {m.key: [] for m in chosen}
    rng = random.Random(seed + n)
    orders: list[list[str]] = []
    for rep in range(repeats):
        order = list(chosen)
        rng.shuffle(order)
        orders.append([m.key for m in order])
        for method in order:
            out_dir = _fresh(out_root / f"{method.key}-{rep}")
            work = method.make(src_dir, out_dir)
            _common.warm_page_cache(paths)
            _common.settle()
            run, sizes = _common.timed_pass(work, paths)
            run.extra["bytes_per_item"] = sum(sizes) / len(sizes)
            runs[method.key].append(run)
            log(f"[N={n}] rep {rep + 1}/{repeats} {method.key:<22} {run.total_s:8.2f} s  {n / run.total_s:9.1f} items/s")
            shutil.rmtree(out_dir)
    shutil.rmtree(out_root, ignore_errors=True)
    shutil.rmtree(src_dir, ignore_errors=True)

    floor_total = _common.median(r.total_s for r in runs["floor"])
    rows = []
    for method in chosen:
        rs = runs[method.key]
        totals = [r.total_s for r in rs]
        total = _common.median(totals)
        pooled_ms = [ns / 1e6 for r in rs for ns in r.per_item_ns]
        peak = max(r.peak_rss for r in rs)
        start = [r.start_rss for r in rs if r.start_rss is not None]
        ratio = floor_total / total
        rows.append(
            {
                "method": method.key,
                "label": method.label,
                "n": n,
                "repeats": repeats,
                "total_s": total,
                "totals_s": totals,
                "spread_pct": 100.0 * (max(totals) - min(totals)) / total,
                "items_per_s": n / total,
                "ratio_to_floor": ratio,
                "median_ms": _common.median(pooled_ms),
                "p99_ms": _common.percentile(pooled_ms, 99.0),
                "max_ms": max(pooled_ms),
                "peak_rss_mb": _common.mib(peak),
                "rss_growth_mb": _common.mib(peak - min(start)) if start else None,
                "peak_rss_per_run": all(r.rss_reset for r in rs),
                "bytes_per_item": _common.median(r.extra["bytes_per_item"] for r in rs),
                "meets_target": (ratio >= TARGET_RATIO) if method.key == "stacwatchd" else None,
            }
        )
    rows.append({"method": "_order", "n": n, "orders": orders})
    return rows


def profile_stacwatchd(n: int, workdir: Path, out_path: Path | None, top: int, log: Callable[[str], None]) -> str:
    """One untimed stacwatchd pass under cProfile; returns the cumulative-time listing."""
    src_dir = workdir / f"profile-cogs-{n}"
    paths = sorted(many_cogs(src_dir, n))
    out_dir = _fresh(workdir / "profile-out")
    work = _stacwatchd(src_dir, out_dir)
    for path in paths[:10]:
        work(path)
    _common.warm_page_cache(paths)
    log(f"[profile] cProfile of stacwatchd over N={n} …")
    profiler = cProfile.Profile()
    profiler.enable()
    for path in paths:
        work(path)
    profiler.disable()
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(out_path)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(top)
    shutil.rmtree(src_dir, ignore_errors=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    return text.getvalue()


# -- command line ------------------------------------------------------------------------

COLUMNS = (
    ("n", "N", ","),
    ("method", "method", ""),
    ("total_s", "total s", ".2f"),
    ("items_per_s", "items/s", ",.0f"),
    ("ratio_to_floor", "× floor", ".3f"),
    ("median_ms", "median ms", ".3f"),
    ("p99_ms", "p99 ms", ".3f"),
    ("peak_rss_mb", "peak RSS MiB", ".0f"),
    ("spread_pct", "spread %", ".1f"),
    ("bytes_per_item", "JSON B", ",.0f"),
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", help=f"file counts (default {' '.join(map(str, DEFAULT_N))})")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: N={QUICK_N}, 1 repeat unless --repeats")
    parser.add_argument("--repeats", type=int, help="timed passes per method and N; the median is reported (default 3)")
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=["stacwatchd", "rio_stac_proj_raster", "rio_stac_proj"],
        help="subset to run (the floor always runs)",
    )
    parser.add_argument(
        "--out", type=Path, help=f"JSON results (default {DEFAULT_OUT.relative_to(BENCH_DIR.parent)}; --quick: {QUICK_OUT.name})"
    )
    parser.add_argument("--no-out", action="store_true", help="do not write JSON results")
    parser.add_argument("--floor-bytes", type=int, default=3072, help="size of the floor's JSON document (default 3072)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed files per method before timing (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the run-order shuffle")
    parser.add_argument("--workdir", type=Path, help="where to write the COGs and outputs (default: a new temp dir)")
    parser.add_argument("--profile", action="store_true", help="also cProfile one stacwatchd pass over the largest N")
    parser.add_argument("--profile-top", type=int, default=40, help="rows of the profile listing (default 40)")
    parser.add_argument("--quiet", action="store_true", help="print only the table")
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = [QUICK_N] if args.quick else list(DEFAULT_N)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.out is None:
        args.out = QUICK_OUT if args.quick else DEFAULT_OUT
    if args.repeats < 1 or any(n < 1 for n in args.n):
        parser.error("--n and --repeats must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table, write JSON; returns the results dict."""
    args = parse_args(argv)
    log: Callable[[str], None] = (lambda _msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    notes: list[str] = []
    chosen = methods(args.floor_bytes, args.methods, notes)
    if not _common.reset_peak_rss():
        notes.append("peak RSS could not be reset per pass: figures are process-wide high-water marks")
    notes.append("peak RSS is of the whole benchmark process (interpreter, rasterio, pystac, …), per pass")
    notes.append("rio-stac with_raster reads pixels (statistics + histogram); stacwatchd runs with statistics off")

    own_workdir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="stacwatchd-bench-")) if own_workdir else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    profile_text = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rio-stac/pystac deprecation chatter is not the subject here
            for n in args.n:
                rows += measure_n(n, chosen, repeats=args.repeats, seed=args.seed, workdir=workdir, warmup=args.warmup, log=log)
            if args.profile:
                prof_path = None if args.no_out else args.out.with_suffix(".stacwatchd.prof")
                profile_text = profile_stacwatchd(max(args.n), workdir, prof_path, args.profile_top, log)
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    table_rows = [r for r in rows if not r["method"].startswith("_")]
    orders = {str(r["n"]): r["orders"] for r in rows if r["method"] == "_order"}
    target = {
        str(r["n"]): {"ratio": r["ratio_to_floor"], "met": r["meets_target"]} for r in table_rows if r["method"] == "stacwatchd"
    }
    results: dict[str, Any] = {
        "benchmark": "items",
        "schema": 1,
        "environment": _common.environment(PACKAGES),
        "config": {
            "n": args.n,
            "repeats": args.repeats,
            "quick": args.quick,
            "floor_bytes": args.floor_bytes,
            "warmup": args.warmup,
            "seed": args.seed,
            "methods": [m.key for m in chosen],
            "gdal_env": GDAL_ENV,
        },
        "target": {"method": "stacwatchd", "min_ratio_to_floor": TARGET_RATIO, "by_n": target},
        "results": table_rows,
        "run_orders": orders,
        "notes": notes,
    }

    print(_common.format_table(table_rows, COLUMNS))
    for n, t in target.items():
        verdict = "meets" if t["met"] else "BELOW"
        print(f"stacwatchd at N={int(n):,}: {t['ratio']:.3f}× floor — {verdict} the {TARGET_RATIO}× target")
    for note in notes:
        print(f"note: {note}")
    if profile_text:
        print("\n" + profile_text)
    if not args.no_out:
        path = _common.write_json(args.out, results)
        print(f"results: {path}")
    return results


if __name__ == "__main__":
    main()
