"""The benchmarks still run (numbers are judged on demand, never in the suite)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def bench(name: str) -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


def test_item_benchmark_quick_run_measures_every_method():
    results = bench("items").main(["--quick", "--no-out", "--quiet", "--repeats", "1"])["results"]
    methods = {r["method"] for r in results}
    assert {"floor", "stacwatchd"} <= methods
    for row in results:
        assert row["n"] == 200 and row["items_per_s"] > 0 and row["ratio_to_floor"] > 0


def test_distinct_rasters_are_not_copies_of_one_template(tmp_path: Path):
    import rasterio

    paths = bench("_common").distinct_rasters(tmp_path, 40, processes=2)
    assert len(paths) == 40 and len({p.read_bytes() for p in paths}) == 40
    profiles = set()
    for path in paths:
        with rasterio.open(path) as src:
            profiles.add((src.crs.to_string(), src.width, src.height, src.count, src.dtypes[0]))
    assert len(profiles) > 10


@pytest.mark.slow
def test_scaling_benchmark_measures_floor_scan_and_threads_on_one_file_set():
    argv = [
        "--n",
        "200",
        "--workers",
        "2",
        "--thread-workers",
        "2",
        "--floor-threads",
        "2",
        "--floor-threads-n",
        "100",
        "--writer-n",
        "100",
        "--no-out",
        "--quiet",
    ]
    results = bench("scaling").main(argv)
    rows = {(r["method"], r["workers"]) for r in results["results"]}
    assert {("floor", 1), ("scan", 2), ("scan_threads", 2), ("floor_threads", 2)} <= rows
    scan = next(r for r in results["results"] if r["method"] == "scan")
    assert scan["n"] == 200 and scan["ratio_to_floor"] > 0
    assert scan["processes"] >= 3  # the scan and its two build processes
    assert scan["peak_pss_sum_mib"] < scan["peak_rss_sum_mib"]
    assert results["writer"]["n"] == 100 and results["writer"]["steps_us"]["dumps"] > 0


@pytest.mark.slow
def test_catalog_backfill_compares_floor_and_scan_on_the_same_files():
    argv = ["--backfill-n", "200", "--skip", "add", "remove", "--no-pystac", "--no-out", "--quiet", "--workers", "2"]
    results = bench("catalog").main(argv)
    rows = [r for r in results["results"] if r["part"] == "backfill"]
    assert {r["method"] for r in rows} == {"floor", "scan", "scan_threads", "scan_chunked"}
    assert len({r["fileset"] for r in rows if r["method"] != "scan_chunked"}) == 1
    assert {r["side"] for r in rows if r["method"] == "floor"} == {"serial: 1 thread"}
