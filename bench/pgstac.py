"""Items/s into PgSTAC: stacwatchd's PgSTAC sink against pypgstac's Loader, same run.

    python bench/pgstac.py                  # N = 10,000, 3 repeats
    python bench/pgstac.py --quick          # N = 1,000, 1 repeat: a smoke run
    python bench/pgstac.py --n 20000 --repeats 5 --batch-size 1000
    python bench/pgstac.py --sql-function   # also pgstac.upsert_items(jsonb) in batches

Set-up (untimed): N small real COGs (``stacwatchd.testing.many_cogs``, dates spread over
three years), cataloged by the writer with a cursor for the PgSTAC sink, so the state
holds N Items and N + N/500 rows of the change stream; a throwaway PostgreSQL + PostGIS + pgstac cluster
(``tests/support/pg.py``; ``fsync=off``, ``synchronous_commit=on``).

Methods, each on an emptied pgstac database (``PgCluster.reset``) and in a seeded,
shuffled order per repeat:

outbox
    ``SinkRunner.drain()`` of the PgSTAC sink on a fresh copy of the state: read the
    change stream in batches of ``--batch-size`` rows, render the collection, rewrite
    hrefs, one transaction per batch. What the daemon does; the number the target is
    about.
publish_all
    ``stacwatchd.sinks.pgstac.publish_all`` (``stacwatchd publish --all``) into the
    empty database; ``publish_all_again`` repeats it on the loaded one (nothing changes).
loader_upsert / loader_insert
    ``pypgstac.load.Loader.load_items(items, Methods.upsert | insert)`` over the very
    same PgSTAC-ready Item dicts (absolute hrefs, generated untimed beforehand), after
    ``load_collections`` (untimed), with pypgstac's default chunk of 10,000.
upsert_items (``--sql-function``)
    ``SELECT pgstac.upsert_items(%s::jsonb)`` per batch: pgstac's SQL path, which
    dehydrates in PL/pgSQL.

Each pass is checked: N Items, N distinct ids. ``× loader`` is the method's Items/s over
the faster Loader mode's in the same run; the target for ``outbox`` is ≥ 0.5. The
end-to-end delay from file close to searchable is measured with the daemon, not here.
``main(argv)`` returns the results dict.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
for extra in (str(BENCH_DIR), str(REPO), str(REPO / "tests")):
    if extra not in sys.path:
        sys.path.insert(0, extra)

import _common  # noqa: E402
import orjson  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from support.pg import PgCluster, new_cluster_dir  # noqa: E402

from stacwatchd.config import CatalogSettings, CollectionSettings, ItemRules, PgstacSettings  # noqa: E402
from stacwatchd.engine.writer import op_for, open_writer  # noqa: E402
from stacwatchd.model.items import Rules, build  # noqa: E402
from stacwatchd.sinks.base import SinkRunner  # noqa: E402
from stacwatchd.sinks.pgstac import PgstacSink, publish_all  # noqa: E402
from stacwatchd.state.store import State  # noqa: E402
from stacwatchd.testing import capture_logs, many_cogs  # noqa: E402

DEFAULT_OUT = BENCH_DIR / "out" / "pgstac.json"
QUICK_OUT = BENCH_DIR / "out" / "pgstac-quick.json"
DEFAULT_N = 10_000
QUICK_N = 1_000
TARGET_RATIO = 0.5
COLLECTION = "scenes"
BASE_URL = "https://data.example.test/stac"
PACKAGES = ("stacwatchd", "pypgstac", "psycopg", "orjson", "rasterio")


class BenchError(RuntimeError):
    """A pass did not leave exactly N distinct Items in PgSTAC."""


class _Cursor:
    """The PgSTAC sink as the writer sees it (its settings need the cluster, made later)."""

    name = PgstacSink.name
    stream = PgstacSink.stream


# -- set-up -----------------------------------------------------------------------------------


def build_catalog(workdir: Path, n: int, log: Callable[[str], None]) -> tuple[CatalogSettings, Path, float]:
    """N COGs → a static catalog with its outbox; returns its settings, a pristine state copy, seconds."""
    src = workdir / "cogs"
    log(f"writing {n:,} COGs …")
    paths = sorted(many_cogs(src, n))
    catalog = CatalogSettings(root=workdir / "catalog")
    rules = Rules(
        collection_id=COLLECTION,
        root=src.resolve(),
        collection=CollectionSettings(id=COLLECTION),
        items=ItemRules(statistics="off", thumbnail=False, checksum=False),
    )
    log(f"cataloging {n:,} Items (change stream on) …")
    started = time.perf_counter()
    with (
        open_writer(catalog, {COLLECTION: rules.collection}, [_Cursor()], durability="none") as writer,
        ThreadPoolExecutor() as pool,
    ):
        for start in range(0, n, 500):
            built = pool.map(lambda p: op_for(build(p, rules), rules), paths[start : start + 500])
            result = writer.apply(list(built))
            if result.rejections:
                raise BenchError(f"rejected: {result.rejections[:3]}")
        state_path = writer.state.path
    seconds = time.perf_counter() - started
    pristine = workdir / "pristine-state.db"
    shutil.copyfile(state_path, pristine)  # the writer closed: the WAL is checkpointed
    return catalog, pristine, seconds


def fresh_state(pristine: Path, workdir: Path, tag: str) -> Path:
    copy = workdir / "states" / f"{tag}.db"
    copy.parent.mkdir(exist_ok=True)
    shutil.copyfile(pristine, copy)
    return copy


# -- the methods --------------------------------------------------------------------------------


class Context:
    def __init__(self, cluster: PgCluster, catalog: CatalogSettings, pristine: Path, workdir: Path, batch_size: int) -> None:
        self.cluster = cluster
        self.catalog = catalog
        self.pristine = pristine
        self.workdir = workdir
        self.settings = PgstacSettings(
            dsn=SecretStr(f"postgresql://{cluster.user}@{cluster.host}:{cluster.port}/{cluster.dbname}"),
            password_env="STACWATCHD_BENCH_PGPASSWORD",
            batch_size=batch_size,
            public_base_url=BASE_URL,
        )
        os.environ["STACWATCHD_BENCH_PGPASSWORD"] = cluster.password
        self.passes = 0
        sink = PgstacSink(self.settings, catalog)
        state = State(pristine, readonly=True)
        try:
            ids = [row[1] for row in state.all_items()]
            self.collection = sink.collection_document(state, COLLECTION)
            self.items_json = [orjson.dumps(sink.item_document(state, COLLECTION, i)) for i in ids]
            self.outbox_rows = state.backlog(sink.name)
        finally:
            state.close()

    def runner(self) -> SinkRunner:
        """The PgSTAC sink's runner on a fresh copy of the pristine state."""
        self.passes += 1
        sink = PgstacSink(self.settings, self.catalog)
        return SinkRunner(sink, fresh_state(self.pristine, self.workdir, f"p{self.passes}"))


def run_outbox(ctx: Context) -> dict[str, Any]:
    runner = ctx.runner()
    try:
        with capture_logs() as logs:
            started = time.perf_counter()
            rows = runner.drain()
            seconds = time.perf_counter() - started
    finally:
        close(runner)
    batches = [e["seconds"] * 1000 for e in logs if e["event"] == "pgstac_batch_published"]
    return {"seconds": seconds, "batches": len(batches), "batch_p50_ms": _common.median(batches),
            "batch_p99_ms": _common.percentile(batches, 99), "outbox_rows": rows}  # fmt: skip


def run_publish_all(ctx: Context, *, again: bool = False) -> dict[str, Any]:
    runner = ctx.runner()
    sink = runner.sink
    assert isinstance(sink, PgstacSink)
    try:
        with capture_logs():
            if again:
                publish_all(sink, runner.state)
            started = time.perf_counter()
            counts = publish_all(sink, runner.state)
            seconds = time.perf_counter() - started
    finally:
        close(runner)
    return {"seconds": seconds, "items_changed": counts.items_changed}


def close(runner: SinkRunner) -> None:
    runner.sink.close()
    runner.state.close()


def run_loader(ctx: Context, mode: str) -> dict[str, Any]:
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods

    items = [orjson.loads(data) for data in ctx.items_json]  # untimed: a fresh copy per pass
    db = PgstacDB(dsn=ctx.cluster.dsn)
    try:
        loader = Loader(db)
        loader.load_collections(iter([ctx.collection]), Methods.upsert)
        started = time.perf_counter()
        loader.load_items(iter(items), Methods[mode])
        seconds = time.perf_counter() - started
    finally:
        db.close()
    return {"seconds": seconds}


def run_upsert_items(ctx: Context) -> dict[str, Any]:
    import psycopg

    conn = psycopg.connect(ctx.cluster.dsn, autocommit=False)
    try:
        conn.execute("SELECT pgstac.upsert_collection(%s::jsonb)", (orjson.dumps(ctx.collection).decode(),))
        conn.commit()
        size = ctx.settings.batch_size
        started = time.perf_counter()
        for start in range(0, len(ctx.items_json), size):
            chunk = b"[" + b",".join(ctx.items_json[start : start + size]) + b"]"
            with conn.transaction():
                conn.execute("SELECT pgstac.upsert_items(%s::jsonb)", (chunk.decode(),))
        seconds = time.perf_counter() - started
    finally:
        conn.close()
    return {"seconds": seconds}


METHODS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "outbox": run_outbox,
    "publish_all": run_publish_all,
    "publish_all_again": lambda ctx: run_publish_all(ctx, again=True),
    "loader_upsert": lambda ctx: run_loader(ctx, "upsert"),
    "loader_insert": lambda ctx: run_loader(ctx, "insert"),
    "upsert_items": run_upsert_items,
}
LOADERS = ("loader_upsert", "loader_insert")


def check(cluster: PgCluster, n: int, key: str) -> None:
    with cluster.connect() as conn:
        total, distinct = conn.execute("SELECT count(*), count(DISTINCT id) FROM pgstac.items").fetchone()
    if (total, distinct) != (n, n):
        raise BenchError(f"{key}: {total} Items ({distinct} distinct) in PgSTAC, expected {n}")


# -- running ------------------------------------------------------------------------------------


def measure(
    ctx: Context, n: int, methods: Sequence[str], repeats: int, seed: int, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    rng = random.Random(seed)
    orders = []
    for rep in range(repeats):
        order = list(methods)
        rng.shuffle(order)
        orders.append(order)
        for key in order:
            ctx.cluster.reset()
            _common.settle()
            reset = _common.reset_peak_rss()
            run = METHODS[key](ctx)
            run["peak_rss"] = _common.peak_rss_bytes() if reset else None
            check(ctx.cluster, n, key)
            runs[key].append(run)
            log(f"rep {rep + 1}/{repeats} {key:<18} {run['seconds']:8.2f} s  {n / run['seconds']:9,.0f} items/s")
    best_loader = max((n / _common.median(r["seconds"] for r in runs[k]) for k in LOADERS if k in runs), default=None)
    rows = []
    for key in methods:
        totals = [r["seconds"] for r in runs[key]]
        total = _common.median(totals)
        rate = n / total
        row: dict[str, Any] = {
            "method": key,
            "n": n,
            "repeats": repeats,
            "total_s": total,
            "totals_s": totals,
            "spread_pct": 100.0 * (max(totals) - min(totals)) / total,
            "items_per_s": rate,
            "ratio_to_loader": rate / best_loader if best_loader else None,
            "peak_rss_mb": _common.mib(max((r["peak_rss"] or 0) for r in runs[key]) or None),
        }
        if key == "outbox":
            row["batches"] = runs[key][0]["batches"]
            row["batch_p50_ms"] = _common.median(r["batch_p50_ms"] for r in runs[key])
            row["batch_p99_ms"] = _common.median(r["batch_p99_ms"] for r in runs[key])
            row["meets_target"] = row["ratio_to_loader"] is not None and row["ratio_to_loader"] >= TARGET_RATIO
        rows.append(row)
    rows.append({"method": "_order", "orders": orders})
    return rows


COLUMNS = (
    ("n", "N", ","),
    ("method", "method", ""),
    ("total_s", "total s", ".2f"),
    ("items_per_s", "items/s", ",.0f"),
    ("ratio_to_loader", "× loader", ".2f"),
    ("batch_p50_ms", "batch p50 ms", ".0f"),
    ("batch_p99_ms", "batch p99 ms", ".0f"),
    ("peak_rss_mb", "peak RSS MiB", ".0f"),
    ("spread_pct", "spread %", ".1f"),
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, help=f"Items (default {DEFAULT_N:,}; --quick {QUICK_N:,})")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: N={QUICK_N:,}, 1 repeat unless --repeats")
    parser.add_argument("--repeats", type=int, help="timed passes per method; the median is reported (default 3)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=PgstacSettings().batch_size,
        help="outbox rows per batch (default: the setting's default)",
    )
    parser.add_argument("--sql-function", action="store_true", help="also time pgstac.upsert_items(jsonb) per batch")
    parser.add_argument(
        "--out", type=Path, help=f"JSON results (default {DEFAULT_OUT.relative_to(REPO)}; --quick: {QUICK_OUT.name})"
    )
    parser.add_argument("--no-out", action="store_true", help="do not write JSON results")
    parser.add_argument("--seed", type=int, default=0, help="seed of the run-order shuffle")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (COGs, catalog, states)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    n = args.n or (QUICK_N if args.quick else DEFAULT_N)
    repeats = args.repeats or (1 if args.quick else 3)
    methods = [m for m in METHODS if m != "upsert_items" or args.sql_function]

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="stacwatchd-bench-pgstac-"))
    cluster: PgCluster | None = None
    try:
        catalog, pristine, catalog_s = build_catalog(workdir, n, log)
        log(f"cataloged in {catalog_s:.1f} s; starting a PostgreSQL cluster …")
        cluster = PgCluster.start(new_cluster_dir())
        ctx = Context(cluster, catalog, pristine, workdir, args.batch_size)
        log(f"pgstac {cluster.pgstac_version()}; {ctx.outbox_rows:,} outbox rows; batch size {args.batch_size}")
        rows = measure(ctx, n, methods, repeats, args.seed, log)
    finally:
        if cluster is not None:
            cluster.destroy()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    table = [r for r in rows if not r["method"].startswith("_")]
    print(_common.format_table(table, COLUMNS))
    outbox = next(r for r in table if r["method"] == "outbox")
    verdict = "meets" if outbox["meets_target"] else "MISSES"
    print(f"\nPgSTAC sink (outbox): {outbox['ratio_to_loader']:.2f}× pypgstac's Loader ({verdict} the ≥ {TARGET_RATIO}× target)")
    results = {
        "benchmark": "pgstac",
        "n": n,
        "batch_size": args.batch_size,
        "target_ratio": TARGET_RATIO,
        "catalog_seconds": catalog_s,
        "environment": _common.environment(PACKAGES),
        "rows": rows,
    }
    if not args.no_out:
        out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
        _common.write_json(out, results)
        print(f"results: {out}")
    return results


if __name__ == "__main__":
    main()
