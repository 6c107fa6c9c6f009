"""The object-store mirror: backfill into a bucket, PUTs per Item, add-one latency.

    python bench/object_store.py                 # backfill 10,000 (reference and upload); 10 files/s for 30 s
    python bench/object_store.py --quick         # backfill 500; 10 files/s for 10 s
    python bench/object_store.py --n 2000 --skip upload

A plain moto S3 server (``python -m moto.server``) runs on 127.0.0.1 in a subprocess; every
request it answers is read from its log as it happens and stamped with the wall clock on
arrival here, which gives both the request counts and the moment an object became
readable (S3 reads after a successful PUT see the object).

1. backfill — ``--n`` COGs (``stacwatchd.testing.many_cogs``, 256×256, dated over three
   years: ~37 partitions) are cataloged by ``stacwatchd scan --config`` with an
   ``[object_store]`` section; ``scan`` writes the local catalog, then delivers the file
   stream to the bucket. Reported: the scan's own seconds for the local catalog, the wall
   time until the command returned with bucket == local (checked afterwards: every local
   file is in the bucket with an MD5 ETag equal to the file's), PUTs per Item (all object
   PUTs / N; the target is ≤ 1 + the partition's share, i.e. one Item JSON plus the
   partition, collection and root rewrites spread over the Items of a batch), and the
   catalog's files. Run twice: ``assets = "reference"`` and ``assets = "upload"`` (each
   data file copied next to its Item after a HEAD: expect ~2 PUTs + 1 HEAD per Item).
   A bucket without the root catalog is filled by one comparison first (the sink's
   seeding), so a fresh scan uploads each file once. Then the same N files are moved into
   a folder a running daemon watches (**reference (daemon)**): cataloging and uploads
   overlap and the file stream is replayed as it comes (new partitions as stubs, the
   partition rewritten per batch), which is where "≤ 1 + the partition's share" bites.
2. latency — a fresh ``stacwatchd run`` with the object store on; files are written into
   the watched folder at ``--rate`` files/s (absolute schedule) for ``--duration`` s, in two
   modes: **renamed** (write a hidden temp file, close, ``os.rename``: ready at once) and
   **closed** (write the final name and close: ready after ``settle_seconds`` =
   ``--settle``). t0 = right after the close (renamed: after the rename). Visible = the
   server's log line of the 200 answering the PUT of that Item's JSON. p50/p99 over the
   files after the first ``--warmup``. Target: p99 ≤ settle (closed mode) + 500 ms.

``main(argv)`` returns the results dict (also written to bench/out/object_store.json).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))

from _common import environment, format_table, percentile, write_json  # noqa: E402

BUCKET = "bench-catalog"
PREFIX = "stac/"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench-key", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_DEFAULT_REGION": "us-east-1"}
_REQUEST = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})')


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the S3 server --------------------------------------------------------------------------------


class Server:
    """``python -m moto.server`` with every answered request recorded as (time, method, key, status)."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.requests: list[tuple[float, str, str, int]] = []
        self.lock = threading.Lock()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ, **CREDENTIALS),
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        self.client().create_bucket(Bucket=BUCKET)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            now = time.time()
            match = _REQUEST.search(raw.decode(errors="replace"))
            if match:
                path = match["path"].split("?", 1)[0]
                key = path[len(f"/{BUCKET}/{PREFIX}") :] if path.startswith(f"/{BUCKET}/{PREFIX}") else ""
                with self.lock:
                    self.requests.append((now, match["method"], key, int(match["status"])))

    def mark(self) -> int:
        with self.lock:
            return len(self.requests)

    def since(self, mark: int) -> list[tuple[float, str, str, int]]:
        with self.lock:
            return self.requests[mark:]

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"], aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])  # fmt: skip

    def listing(self, prefix: str) -> dict[str, str]:
        """key (relative to ``PREFIX``) → ETag of every object under ``prefix``."""
        found = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX + prefix):
            for entry in page.get("Contents", []):
                found[entry["Key"][len(PREFIX) :]] = entry["ETag"].strip('"')
        return found

    def clear(self, prefix: str) -> None:
        client = self.client()
        keys = list(self.listing(prefix))
        for i in range(0, len(keys), 1000):
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": PREFIX + k} for k in keys[i : i + 1000]]})

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


# -- configuration and commands ---------------------------------------------------------------------


def config(base: Path, server: Server, watched: Path, catalog: Path, *, assets: str, settle: float, workers: int) -> Path:
    path = base / f"config-{catalog.name}.toml"
    path.write_text(
        f"workers = {workers}\nsettle_seconds = {settle}\nreconcile_interval = 0\n"
        f'[log]\nformat = "json"\nlevel = "info"\n'
        f'[catalog]\nroot = "{catalog}"\n'
        f'[[watch]]\npath = "{watched}"\n[watch.collection]\nid = "scenes"\n'
        f'[object_store]\nurl = "s3://{BUCKET}/{PREFIX}{catalog.name}/"\nendpoint = "{server.endpoint}"\n'
        f'region = "us-east-1"\nassets = "{assets}"\n'
    )
    return path


def env() -> dict[str, str]:
    return dict(os.environ, **CREDENTIALS, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


def local_files(catalog: Path) -> dict[str, Path]:
    out = {}
    for folder, dirs, names in os.walk(catalog):
        dirs[:] = [d for d in dirs if d != ".stacwatchd"]
        for name in names:
            out[(Path(folder) / name).relative_to(catalog).as_posix()] = Path(folder) / name
    return out


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def compare(
    server: Server, catalog: Path, sources: Path, n: int, assets: str
) -> tuple[bool, list[str], list[str], dict[str, Path], set[str]]:
    """Whether the bucket equals the local catalog: every file there with its MD5 as ETag
    (with ``upload``: Items by key, every data object equal to its source)."""
    files = local_files(catalog)
    bucket = server.listing(catalog.name + "/")
    bucket = {k[len(catalog.name) + 1 :]: v for k, v in bucket.items()}
    missing = [rel for rel in files if rel not in bucket]
    items = {rel for rel in files if rel.endswith(".json") and not rel.endswith(("catalog.json", "collection.json"))}
    differ = [
        rel
        for rel, path in files.items()
        if rel in bucket and rel not in (items if assets == "upload" else ()) and bucket[rel] != md5(path)
    ]
    data = {k: v for k, v in bucket.items() if k not in files}
    if assets == "upload":
        by_name = {p.name: p for p in sources.iterdir()}
        differ += [k for k, etag in data.items() if etag != md5(by_name[k.rsplit("/", 1)[1]])]
    equal = not missing and not differ and (assets == "upload" or not data) and (assets == "reference" or len(data) == n)
    return equal, missing, differ, files, items


def start_daemon(base: Path, name: str, cfg: Path) -> subprocess.Popen[bytes]:
    log_path = base / f"daemon-{name}.log"
    daemon = subprocess.Popen([sys.executable, "-m", "stacwatchd", "run", "--config", str(cfg)],
                              stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env=env())  # fmt: skip
    deadline = time.monotonic() + 60
    while b"daemon_started" not in log_path.read_bytes():
        if time.monotonic() > deadline or daemon.poll() is not None:
            raise RuntimeError(f"daemon did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.1)
    return daemon


def stop_daemon(daemon: subprocess.Popen[bytes]) -> None:
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(120)
    except subprocess.TimeoutExpired:
        daemon.kill()


# -- 1b. backfill through the daemon -------------------------------------------------------------------


def daemon_backfill(base: Path, server: Server, sources: Path, n: int, workers: int) -> dict[str, Any]:
    """The same N files moved into a folder the daemon watches: cataloging and uploads
    overlap; the file stream is replayed live (stubs, per-batch partition rewrites)."""
    staging, watched, catalog = base / "staging-daemon", base / "watched-daemon", base / "catalog-daemon"
    staging.mkdir()
    watched.mkdir()
    for path in sources.iterdir():
        os.link(path, staging / path.name)
    daemon = start_daemon(
        base, "backfill", config(base, server, watched, catalog, assets="reference", settle=1.0, workers=workers)
    )
    try:
        mark = server.mark()
        started = time.time()
        for path in list(staging.iterdir()):
            os.rename(path, watched / path.name)
        prefix = catalog.name + "/"
        while True:
            time.sleep(1.0)
            requests = [r for r in server.since(mark) if r[2].startswith(prefix)]
            items = {
                r[2]
                for r in requests
                if r[1] == "PUT" and r[2].endswith(".json") and not r[2].endswith(("catalog.json", "collection.json"))
            }
            if len(items) >= n and requests and time.time() - requests[-1][0] > 3.0:
                break
            if daemon.poll() is not None:
                raise RuntimeError("daemon exited")
    finally:
        stop_daemon(daemon)
    requests = [r for r in server.since(mark) if r[2].startswith(prefix)]
    puts = sum(1 for _, method, _, status in requests if method == "PUT" and status == 200)
    heads = sum(1 for _, method, _, _ in requests if method == "HEAD")
    equal, missing, differ, files, items = compare(server, catalog, sources, n, "reference")
    return {
        "part": "backfill", "assets": "reference (daemon)", "n": n, "bucket_equal_s": round(requests[-1][0] - started, 2),
        "upload_s": round(requests[-1][0] - requests[0][0], 2), "puts": puts, "heads": heads, "puts_per_item": round(puts / n, 4),
        "catalog_files": len(files), "catalogs": sum(1 for rel in files if rel.endswith(("catalog.json", "collection.json"))),
        "items": len(items), "bucket_equals_local": equal, "missing": len(missing), "different": len(differ),
    }  # fmt: skip


# -- 1. backfill ------------------------------------------------------------------------------------


def backfill(base: Path, server: Server, sources: Path, n: int, assets: str, workers: int) -> dict[str, Any]:
    catalog = base / f"catalog-{assets}"
    cfg = config(base, server, sources, catalog, assets=assets, settle=1.0, workers=workers)
    mark = server.mark()
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "stacwatchd", "scan", "--config", str(cfg)], capture_output=True, text=True, env=env(), check=False
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"scan failed: {done.stderr[-2000:]}")
    requests = [r for r in server.since(mark) if r[2]]
    puts = sum(1 for _, method, _, status in requests if method == "PUT" and status == 200)
    heads = sum(1 for _, method, _, _ in requests if method == "HEAD")
    upload_s = requests[-1][0] - requests[0][0] if requests else 0.0
    equal, missing, differ, files, items = compare(server, catalog, sources, n, assets)
    catalogs = sum(1 for rel in files if rel.endswith(("catalog.json", "collection.json")))
    return {
        "part": "backfill", "assets": assets, "n": n, "bucket_equal_s": round(wall, 2), "upload_s": round(upload_s, 2),
        "puts": puts, "heads": heads, "puts_per_item": round(puts / n, 4),
        "catalog_files": len(files), "catalogs": catalogs, "items": len(items), "bucket_equals_local": equal,
        "missing": len(missing), "different": len(differ),
    }  # fmt: skip


# -- 2. latency --------------------------------------------------------------------------------------


def latency(
    base: Path, server: Server, template: bytes, mode: str, rate: float, duration: float, settle: float, warmup: int, workers: int
) -> dict[str, Any]:
    watched = base / f"watched-{mode}"
    catalog = base / f"catalog-{mode}"
    watched.mkdir()
    cfg = config(base, server, watched, catalog, assets="reference", settle=settle, workers=workers)
    daemon = start_daemon(base, mode, cfg)
    try:
        count = int(rate * duration)
        closed: dict[str, float] = {}
        begin = time.monotonic() + 0.5
        for i in range(count):
            delay = begin + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            stem = f"lat_{i:05d}_20250615T{i // 3600 % 24:02d}{i // 60 % 60:02d}{i % 60:02d}"
            target = watched / f"{stem}.tif"
            if mode == "renamed":
                tmp = watched / f".{stem}.tif.tmp"
                tmp.write_bytes(template)
                os.rename(tmp, target)
            else:
                target.write_bytes(template)
            closed[f"scenes/2025/06/{stem}/{stem}.json"] = time.time()
        wait_until = time.monotonic() + 30 + settle
        seen: dict[str, float] = {}
        while time.monotonic() < wait_until and len(seen) < count:
            for at, method, key, status in server.since(0):
                if method == "PUT" and status == 200 and key.startswith(catalog.name + "/"):
                    rel = key[len(catalog.name) + 1 :]
                    if rel in closed and rel not in seen:
                        seen[rel] = at
            time.sleep(0.2)
    finally:
        stop_daemon(daemon)
    ordered = sorted(closed, key=closed.get)
    samples = [(seen[k] - closed[k]) * 1000 for k in ordered[warmup:] if k in seen]
    return {
        "part": "latency", "mode": mode, "rate": rate, "files": count, "visible": len(seen), "settle_s": settle,
        "p50_ms": round(percentile(samples, 50), 1), "p99_ms": round(percentile(samples, 99), 1), "max_ms": round(max(samples), 1),
    }  # fmt: skip


# -- main --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, help="rasters to backfill (default 10,000; --quick 500)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--duration", type=float, help="seconds of steady adds per mode (default 30; --quick 10)")
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--skip", nargs="*", default=[], choices=["reference", "upload", "daemon", "latency"])
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "object_store.json")
    parser.add_argument("--no-out", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)
    n = args.n or (500 if args.quick else 10_000)
    duration = args.duration or (10.0 if args.quick else 30.0)

    from stacwatchd import testing

    base = Path(tempfile.mkdtemp(prefix="stacwatchd-bench-s3-"))
    server = Server()
    rows: list[dict[str, Any]] = []
    try:
        sources = base / "sources"
        log(f"writing {n} COGs to {sources}")
        made = testing.many_cogs(sources, n)
        for assets in ("reference", "upload"):
            if assets not in args.skip:
                log(f"backfill of {n} with assets = {assets!r}")
                rows.append(backfill(base, server, sources, n, assets, args.workers))
                log(json.dumps(rows[-1]))
        if "daemon" not in args.skip:
            log(f"backfill of {n} moved into a folder the daemon watches")
            rows.append(daemon_backfill(base, server, sources, n, args.workers))
            log(json.dumps(rows[-1]))
        if "latency" not in args.skip:
            template = made[0].read_bytes()
            for mode in ("renamed", "closed"):
                log(f"latency at {args.rate} files/s for {duration} s ({mode})")
                rows.append(latency(base, server, template, mode, args.rate, duration, args.settle, args.warmup, args.workers))
                log(json.dumps(rows[-1]))
    finally:
        server.close()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            log(f"kept {base}")
    backfills = [r for r in rows if r["part"] == "backfill"]
    if backfills:
        print(format_table(backfills, [
            ("assets", "assets", ""), ("n", "N", ""), ("bucket_equal_s", "bucket == local s", ".1f"), ("upload_s", "upload s", ".1f"),
            ("puts_per_item", "PUTs/Item", ".3f"), ("heads", "HEADs", ""), ("catalogs", "catalogs", ""),
            ("bucket_equals_local", "equal", ""),
        ]))  # fmt: skip
    latencies = [r for r in rows if r["part"] == "latency"]
    if latencies:
        print(format_table(latencies, [
            ("mode", "mode", ""), ("rate", "files/s", ".0f"), ("files", "files", ""), ("settle_s", "settle s", ".1f"),
            ("p50_ms", "p50 ms", ".0f"), ("p99_ms", "p99 ms", ".0f"), ("max_ms", "max ms", ".0f"), ("visible", "visible", ""),
        ]))  # fmt: skip
    result = {
        "environment": environment(["obstore", "moto"]),
        "args": {"n": n, "workers": args.workers, "rate": args.rate, "duration": duration, "settle": args.settle},
        "results": rows,
    }
    if not args.no_out:
        write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
