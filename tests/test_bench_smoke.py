"""The Item benchmark still runs (numbers are judged on demand, never in the suite)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_item_benchmark_quick_run_measures_every_method():
    sys.path.insert(0, str(BENCH))
    try:
        import items
    finally:
        sys.path.remove(str(BENCH))
    results = items.main(["--quick", "--no-out", "--quiet", "--repeats", "1"])["results"]
    methods = {r["method"] for r in results}
    assert {"floor", "stacwatchd"} <= methods
    for row in results:
        assert row["n"] == 200 and row["items_per_s"] > 0 and row["ratio_to_floor"] > 0
