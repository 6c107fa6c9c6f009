"""Change notifications: webhook throughput during a backfill, and the latency they add.

    python bench/notify.py                 # backfill 10,000; drain 2,000; 60 s at 10 files/s
    python bench/notify.py --quick         # backfill 1,000; drain 500; 15 s at 10 files/s
    python bench/notify.py --skip drain    # leave a part out (backfill | drain | latency)

Every part runs a real ``stacwatchd run --config …`` (bench/daemon.py's ``Daemon``: inotify,
``workers = --workers``, JSON log at level debug, our own drained ``$NOTIFY_SOCKET``) with one
``[[notify.webhook]]`` target pointing at a receiver in this process: a threading
``http.server`` on 127.0.0.1 speaking HTTP/1.1 keep-alive, which checks each message's
HMAC signature, records its arrival time (``time.time()``) and answers 200.

1. backfill — ``--backfill`` COGs are written to a staging folder beside the watched one,
   dated over three years (~37 partitions), then ``os.rename``d into the watched folder as
   fast as possible. Cataloging rate = Items / (last − first ``item_added`` timestamp).
   Delivery rate = messages / (last − first arrival) — bounded by the cataloging rate when
   the webhook keeps up. Lag = arrival of an Item's ``item.added`` − its ``item_added``
   timestamp (p50 / p99 / max over all Items): how far notifications trail the catalog.
2. drain — the sink's own throughput: the receiver answers 503 while ``--drain`` files are
   cataloged (the backlog builds in the state file), then 200; drain rate = messages /
   (last arrival − first 2xx). Retries are at most 0.2 s apart (``retry_max_seconds``).
3. latency — files written into the watched folder at ``--rate`` files/s (absolute schedule)
   for ``--duration`` s: open the final name, write, close (ready after ``settle_seconds``
   = ``--settle``). t0 = wall clock right after the close. Reported: t0 → ``item_added``
   (the catalog), ``item_added`` → webhook arrival (the **added** latency of notification),
   t0 → arrival (end to end). The first ``--warmup`` files are left out.

The load average is recorded before each part (other jobs may share the machine).
``main(argv)`` returns the results dict (also written to bench/out/notify.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
from daemon import REPO, BenchError, Daemon, load_average  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "out" / "notify.json"
QUICK_OUT = BENCH_DIR / "out" / "notify-quick.json"
PACKAGES = ("stacwatchd", "watchdog", "rasterio")
START = datetime(2024, 1, 1, tzinfo=UTC)
SECRET = "bench-secret"
SECRET_ENV = "STACWATCHD_BENCH_HOOK_SECRET"

Log = Any


class Receiver:
    """A webhook endpoint on 127.0.0.1 recording (arrival time, message) of each 2xx."""

    def __init__(self) -> None:
        from stacwatchd.sinks.notify import SIGNATURE_HEADER, verify

        self.up = threading.Event()
        self.up.set()
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self.refused = 0
        self.bad_signatures = 0
        self.connections = 0
        self.first_ok: float | None = None
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver.connections += 1

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                now = time.time()
                ok = receiver.up.is_set()
                if ok:
                    message = json.loads(body)
                    signed = verify(body, self.headers.get(SIGNATURE_HEADER), SECRET.encode())
                    with receiver._lock:
                        receiver.arrivals.append((now, {k: message[k] for k in ("id", "seq", "event", "item_id")}))
                        receiver.bad_signatures += not signed
                        if receiver.first_ok is None:
                            receiver.first_ok = now
                else:
                    with receiver._lock:
                        receiver.refused += 1
                self.send_response(200 if ok else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="receiver", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def added(self) -> dict[str, float]:
        """Item id → arrival time of its first ``item.added``."""
        with self._lock:
            arrivals = list(self.arrivals)
        out: dict[str, float] = {}
        for at, message in arrivals:
            if message["event"] == "item.added":
                out.setdefault(message["item_id"], at)
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def notifying_daemon(base: Path, receiver: Receiver, args: argparse.Namespace) -> Daemon:
    daemon = Daemon(base, settle=args.settle, workers=args.workers)
    with daemon.config.open("a") as fh:
        fh.write(
            f'[[notify.webhook]]\nurl = "{receiver.url}"\nsecret_env = "{SECRET_ENV}"\n'
            "timeout_seconds = 5\nretry_initial_seconds = 0.05\nretry_max_seconds = 0.2\n"
        )
    os.environ[SECRET_ENV] = SECRET
    return daemon


def _ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def _pcts(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "p50_ms": _common.percentile(values, 50) * 1000,
        "p99_ms": _common.percentile(values, 99) * 1000,
        "max_ms": max(values) * 1000,
    }


def _wait(predicate: Any, timeout: float, what: str, daemon: Daemon) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if daemon.process is not None and daemon.process.poll() is not None:
            raise BenchError(f"daemon exited while waiting for {what}; log {daemon.log_path}")
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}; log {daemon.log_path}")
        time.sleep(0.1)


def _staged(base: Path, n: int, prefix: str) -> list[Path]:
    from stacwatchd.testing import many_cogs

    paths = sorted(many_cogs(base / "staging", n, size=128, start=START, span=timedelta(days=1096), prefix=prefix))
    _common.warm_page_cache(paths)
    _common.settle()
    return paths


def measure_backfill(args: argparse.Namespace, workdir: Path, log: Log) -> dict[str, Any]:
    n = args.backfill
    base = workdir / "backfill"
    log(f"[backfill] writing {n:,} COGs …")
    paths = _staged(base, n, "fill")
    receiver = Receiver()
    daemon = notifying_daemon(base, receiver, args)
    load = load_average()
    daemon.start()
    try:
        daemon.wait_events("reconciled", 1, timeout=60)
        log(f"[backfill] moving {n:,} files into the watched folder …")
        t0 = time.time()
        for path in paths:
            os.rename(path, daemon.watched / path.name)
        added = daemon.wait_events("item_added", n, timeout=max(600, n / 5))
        _wait(lambda: len(receiver.added()) >= n, 600, f"{n} item.added arrivals", daemon)
        code, _ = daemon.stop()
    finally:
        daemon.close()
        receiver.close()
    committed = {e["item_id"]: _ts(e) for e in added}
    arrived = receiver.added()
    times = [at for at, _ in receiver.arrivals]
    first_item, last_item = min(committed.values()), max(committed.values())
    lags = [arrived[i] - committed[i] for i in committed]
    row = {
        "files": n,
        "messages": len(receiver.arrivals),
        "catalog_s": last_item - t0,
        "items_per_s": n / max(last_item - first_item, 1e-9),
        "delivery_s": max(times) - min(times),
        "messages_per_s": len(times) / max(max(times) - min(times), 1e-9),
        "last_arrival_after_last_item_ms": (max(times) - last_item) * 1000,
        "lag": _pcts(lags),
        "connections": receiver.connections,
        "bad_signatures": receiver.bad_signatures,
        "exit_code": code,
        "load_before": load,
        "load_after": load_average(),
    }
    log(f"[backfill] {row['items_per_s']:.0f} Items/s cataloged, {row['messages_per_s']:.0f} messages/s delivered")
    return row


def measure_drain(args: argparse.Namespace, workdir: Path, log: Log) -> dict[str, Any]:
    n = args.drain
    base = workdir / "drain"
    log(f"[drain] writing {n:,} COGs …")
    paths = _staged(base, n, "drain")
    receiver = Receiver()
    receiver.up.clear()
    daemon = notifying_daemon(base, receiver, args)
    load = load_average()
    daemon.start()
    try:
        daemon.wait_events("reconciled", 1, timeout=60)
        for path in paths:
            os.rename(path, daemon.watched / path.name)
        daemon.wait_events("item_added", n, timeout=max(600, n / 5))
        log(f"[drain] {n:,} Items cataloged with the receiver down ({receiver.refused} refusals); receiver up")
        receiver.up.set()
        _wait(lambda: len(receiver.added()) >= n, 600, f"{n} item.added arrivals", daemon)
        code, _ = daemon.stop()
    finally:
        daemon.close()
        receiver.close()
    times = [at for at, _ in receiver.arrivals]
    assert receiver.first_ok is not None
    row = {
        "files": n,
        "messages": len(times),
        "drain_s": max(times) - receiver.first_ok,
        "messages_per_s": len(times) / max(max(times) - receiver.first_ok, 1e-9),
        "refused_while_down": receiver.refused,
        "connections": receiver.connections,
        "bad_signatures": receiver.bad_signatures,
        "exit_code": code,
        "load_before": load,
        "load_after": load_average(),
    }
    log(f"[drain] {row['messages_per_s']:.0f} messages/s")
    return row


def measure_latency(args: argparse.Namespace, workdir: Path, log: Log) -> dict[str, Any]:
    from stacwatchd.testing import many_cogs

    n = max(1, round(args.rate * args.duration))
    base = workdir / "latency"
    staging = base / "staging"
    blobs = [
        (p.name, p.read_bytes())
        for p in sorted(many_cogs(staging, n, size=128, start=START, span=timedelta(days=28), prefix="lat"))
    ]
    shutil.rmtree(staging)
    receiver = Receiver()
    daemon = notifying_daemon(base, receiver, args)
    load = load_average()
    daemon.start()
    closed: dict[str, float] = {}
    try:
        daemon.wait_events("reconciled", 1, timeout=60)
        log(f"[latency] {n} files at {args.rate:g}/s …")
        begin = time.monotonic()
        for i, (name, data) in enumerate(blobs):
            delay = begin + i / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with open(daemon.watched / name, "wb") as fh:
                fh.write(data)
            closed[Path(name).stem] = time.time()
        achieved = n / max(time.monotonic() - begin, 1e-9)
        added = daemon.wait_events("item_added", n, timeout=120)
        _wait(lambda: len(receiver.added()) >= n, 120, f"{n} item.added arrivals", daemon)
        code, _ = daemon.stop()
    finally:
        daemon.close()
        receiver.close()
    committed = {e["item_id"]: _ts(e) for e in added}
    arrived = receiver.added()
    ids = [Path(name).stem for name, _ in blobs][args.warmup :]
    row = {
        "files": n,
        "measured": len(ids),
        "rate_per_s": args.rate,
        "achieved_rate_per_s": achieved,
        "settle_s": args.settle,
        "catalog": _pcts([committed[i] - closed[i] for i in ids]),
        "added": _pcts([arrived[i] - committed[i] for i in ids]),
        "end_to_end": _pcts([arrived[i] - closed[i] for i in ids]),
        "bad_signatures": receiver.bad_signatures,
        "exit_code": code,
        "load_before": load,
        "load_after": load_average(),
    }
    log(f"[latency] added p50 {row['added']['p50_ms']:.1f} ms, p99 {row['added']['p99_ms']:.1f} ms")
    return row


def render(results: dict[str, Any]) -> str:
    out = []
    if "backfill" in results:
        b = results["backfill"]
        out.append(_common.format_table([
            {"part": "backfill", "files": b["files"], "messages": b["messages"], "items_s": b["items_per_s"], "msgs_s": b["messages_per_s"],
             "p50": b["lag"]["p50_ms"], "p99": b["lag"]["p99_ms"], "max": b["lag"]["max_ms"], "tail": b["last_arrival_after_last_item_ms"]},
        ], [("part", "part", ""), ("files", "files", ","), ("messages", "messages", ","), ("items_s", "Items/s", ",.0f"),
            ("msgs_s", "messages/s", ",.0f"), ("p50", "lag p50 ms", ".0f"), ("p99", "lag p99 ms", ".0f"), ("max", "lag max ms", ".0f"),
            ("tail", "last msg after last Item ms", ".0f")]))  # fmt: skip
    if "drain" in results:
        d = results["drain"]
        out.append(_common.format_table(
            [{"part": "drain", "files": d["files"], "messages": d["messages"], "s": d["drain_s"], "msgs_s": d["messages_per_s"]}],
            [("part", "part", ""), ("files", "files", ","), ("messages", "messages", ","), ("s", "drain s", ".2f"), ("msgs_s", "messages/s", ",.0f")],
        ))  # fmt: skip
    if "latency" in results:
        lat = results["latency"]
        rows = [{"what": what, "p50": lat[key]["p50_ms"], "p99": lat[key]["p99_ms"], "max": lat[key]["max_ms"]}
                for key, what in (("catalog", "file closed → item_added"), ("added", "item_added → webhook (added)"),
                                  ("end_to_end", "file closed → webhook"))]  # fmt: skip
        out.append(
            f"latency at {lat['achieved_rate_per_s']:.1f} files/s, settle {lat['settle_s']:g} s, {lat['measured']} files measured"
        )
        out.append(
            _common.format_table(
                rows, [("what", "span", ""), ("p50", "p50 ms", ".1f"), ("p99", "p99 ms", ".1f"), ("max", "max ms", ".1f")]
            )
        )
    return "\n\n".join(out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="backfill 1,000, drain 500, 15 s of latency")
    parser.add_argument("--backfill", type=int, help="backfill: files (default 10,000; --quick 1,000)")
    parser.add_argument("--drain", type=int, help="drain: files (default 2,000; --quick 500)")
    parser.add_argument("--rate", type=float, default=10.0, help="latency: files per second (default 10)")
    parser.add_argument("--duration", type=float, help="latency: seconds (default 60; --quick 15)")
    parser.add_argument("--warmup", type=int, default=10, help="latency: first files left out (default 10)")
    parser.add_argument("--settle", type=float, default=1.0, help="settle_seconds (default 1.0)")
    parser.add_argument("--workers", type=int, default=2, help="daemon workers (default 2)")
    parser.add_argument("--skip", nargs="+", choices=["backfill", "drain", "latency"], default=[])
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--out", type=Path, help=f"JSON results (default {DEFAULT_OUT.relative_to(REPO)})")
    parser.add_argument("--no-out", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    args.backfill = args.backfill or (1000 if args.quick else 10_000)
    args.drain = args.drain or (500 if args.quick else 2000)
    args.duration = args.duration or (15.0 if args.quick else 60.0)
    args.out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    log = (lambda _msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    workdir = Path(tempfile.mkdtemp(prefix="stacwatchd-bench-notify-")).resolve()
    results: dict[str, Any] = {"benchmark": "notify", "schema": 1, "environment": _common.environment(PACKAGES)}
    log(f"scratch folder {workdir}; load average {load_average()} on {os.cpu_count()} CPUs")
    try:
        if "backfill" not in args.skip:
            results["backfill"] = measure_backfill(args, workdir, log)
        if "drain" not in args.skip:
            results["drain"] = measure_drain(args, workdir, log)
        if "latency" not in args.skip:
            results["latency"] = measure_latency(args, workdir, log)
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "quiet"}
    print(render(results))
    if not args.no_out:
        _common.write_json(args.out, results)
        log(f"results: {args.out}")
    return results


if __name__ == "__main__":
    main()
