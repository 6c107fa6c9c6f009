"""End-to-end delay from a file's close to its Item being in PgSTAC, p50/p99.

    python bench/pgstac_e2e.py [--files 200] [--rate 10] [--settle 1.0] [--mode renamed|closed]

A throwaway PostgreSQL + PostGIS + pgstac cluster (``tests/support/pg.py``) and a real
``stacwatchd run`` daemon with ``[pgstac]`` configured. Small COGs are dropped into the
watched folder at a steady rate, either written to a hidden temp name and renamed into
place (ready at once) or written and closed in place (ready after ``settle_seconds``);
the time each Item id first appears in ``pgstac.items`` (polled every 10 ms) minus the
time its file was closed is the delay. ``main(argv)`` returns the results dict.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from _common import environment, percentile, write_json  # noqa: E402
from support.pg import PgCluster, new_cluster_dir  # noqa: E402

from stacwatchd import testing  # noqa: E402

PASSWORD_ENV = "STACWATCHD_BENCH_PGPASSWORD"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="files per second")
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument("--mode", choices=["renamed", "closed"], default="renamed")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "pgstac_e2e.json")
    parser.add_argument("--no-out", action="store_true")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="stacwatchd-e2e-"))
    cluster = PgCluster.start(new_cluster_dir())
    daemon = None
    try:
        prepared = testing.many_cogs(work / "prepared", args.files)
        watched, catalog = work / "incoming", work / "catalog"
        watched.mkdir()
        config = work / "config.toml"
        config.write_text(
            f"settle_seconds = {args.settle}\nworkers = 2\nreconcile_interval = 0\n"
            f'[log]\nformat = "json"\nlevel = "warning"\n'
            f'[catalog]\nroot = "{catalog}"\n[[watch]]\npath = "{watched}"\n'
            f'[pgstac]\ndsn = "postgresql://{cluster.user}@{cluster.host}:{cluster.port}/{cluster.dbname}"\n'
            f'password_env = "{PASSWORD_ENV}"\n'
        )
        env = dict(os.environ, **{PASSWORD_ENV: cluster.password})
        daemon = subprocess.Popen(
            [sys.executable, "-m", "stacwatchd", "run", "--config", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        testing.wait_until(lambda: (catalog / "catalog.json").exists(), timeout=60)
        closed: dict[str, float] = {}
        seen: dict[str, float] = {}
        done = threading.Event()

        def poll() -> None:
            with cluster.connect() as conn:
                while not done.is_set():
                    now = time.monotonic()
                    for (item_id,) in conn.execute("SELECT id FROM pgstac.items"):
                        seen.setdefault(item_id, now)
                    time.sleep(0.01)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        interval = 1.0 / args.rate
        start = time.monotonic()
        for i, path in enumerate(prepared):
            time.sleep(max(0.0, start + i * interval - time.monotonic()))  # the steady drop rate
            target = watched / path.name
            if args.mode == "renamed":
                testing.write_then_rename(path, target)
            else:
                shutil.copyfile(path, target)
            closed[path.stem] = time.monotonic()
        testing.wait_until(lambda: set(closed) <= set(seen), timeout=300, message="every Item published")
        done.set()
        delays = [seen[k] - closed[k] for k in closed]
        result = {
            "benchmark": "pgstac_e2e",
            "environment": environment(["pypgstac"]),
            "config": vars(args) | {"out": str(args.out)},
            "files": len(delays),
            "p50_ms": round(percentile(delays, 50) * 1000, 1),
            "p99_ms": round(percentile(delays, 99) * 1000, 1),
            "max_ms": round(max(delays) * 1000, 1),
        }
        print(
            f"file close → searchable in PgSTAC ({args.mode}, settle {args.settle} s, {args.rate:g} files/s, "
            f"{len(delays)} files): p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, max {result['max_ms']} ms"
        )
        if not args.no_out:
            write_json(args.out, result)
        return result
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(60)
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
