"""The bucket under stress: a store that hangs, dies and comes back during a burst, a
daemon killed mid-upload, and a reader walking the bucket while a burst lands."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import urljoin

import pytest
from daemon_support import DaemonProcess
from s3_support import BUCKET, S3Server, local_files
from test_object_store import PREFIX, bucket_equals_local, item_keys, run_cli, store_daemon

from stacwatchd import testing
from stacwatchd.testing import wait_until

pytestmark = pytest.mark.slow

BURST = 500
PAUSE_SECONDS = 20


@pytest.fixture
def s3(tmp_path: Path):
    server = S3Server(tmp_path / "s3").start()
    server.create_bucket()
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/*"}],
    }
    server.client().put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))
    yield server
    server.close()


def burst(prepared: Path, watched: Path, n: int) -> set[str]:
    """``n`` finished rasters moved into the watched folder at once; their Item ids."""
    made = testing.many_cogs(prepared, n, size=64)
    move_in(made, watched)
    return {path.stem for path in made}


def move_in(paths: list[Path], watched: Path) -> None:
    for path in paths:
        os.rename(path, watched / path.name)


def failed_requests(daemon: DaemonProcess) -> Counter[str]:
    return Counter(e["key"] for e in daemon.events("object_request_failed"))


def sink_status(daemon: DaemonProcess) -> dict:
    """The object-store sink as ``stacwatchd status`` shows it (from the daemon's heartbeat)."""
    report = json.loads(run_cli("status", "--json", "--config", str(daemon.config)).stdout)
    return report.get("daemon", {}).get("sinks", {}).get("object_store", {})


def test_store_hung_then_killed_during_a_burst_ends_equal_with_no_upload_beyond_retries(tmp_path, s3):
    daemon = store_daemon(tmp_path, s3, timeout_seconds=3, retry_max_seconds=5)
    try:
        made = testing.many_cogs(tmp_path / "prepared", BURST, size=64)
        ids = {path.stem for path in made}
        during_outage = made[-100:]  # files keep arriving while the store hangs
        daemon.start()
        move_in(made[:-100], daemon.watched)
        wait_until(lambda: len(item_keys(s3.keys(prefix=PREFIX))) >= 20, timeout=60, interval=0.1, message="uploads under way")
        s3.pause()
        paused = time.monotonic()
        try:
            local_at_pause = len(daemon.items())
            move_in(during_outage, daemon.watched)
            daemon.wait_events("sink_failing", timeout=PAUSE_SECONDS)
            failing = wait_until(
                lambda: (st := sink_status(daemon)).get("last_error") and st, timeout=PAUSE_SECONDS, interval=0.5
            )
            assert failing["backlog"] > 0 and failing["failing_for_s"] >= 0
            time.sleep(max(0.0, PAUSE_SECONDS - (time.monotonic() - paused)))  # the outage itself lasts 20 s
            local_at_resume = len(daemon.items())
        finally:
            s3.resume()
        assert local_at_resume > local_at_pause, "cataloging went on while the store hung"
        in_bucket = len(item_keys(s3.keys(prefix=PREFIX)))
        wait_until(lambda: len(item_keys(s3.keys(prefix=PREFIX))) > in_bucket, timeout=90, interval=0.05, message="draining")
        at_kill = len(item_keys(s3.keys(prefix=PREFIX)))
        s3.restart()  # SIGKILL and a fresh start while the backlog drains
        daemon.wait_items(ids, timeout=180)
        wait_until(
            lambda: bucket_equals_local(s3, daemon.catalog), timeout=180, interval=1.0, message="bucket == local after the outage"
        )
        assert at_kill < BURST, "the store was killed while uploads were still due"
        assert len(item_keys(s3.keys(prefix=PREFIX))) == BURST
        uploads = s3.uploads(prefix=PREFIX)
        failures = failed_requests(daemon)
        assert sum(failures.values()) > 0, "the outage was seen"
        items = item_keys(set(uploads))
        beyond = {key: (uploads[key], failures[key]) for key in items if uploads[key] > 1 + failures[key]}
        assert beyond == {}, "an Item uploaded more often than its failed attempts require"
        assert daemon.stop() == 0
    finally:
        daemon.close()


def test_daemon_killed_during_uploads_converges_after_restart(tmp_path, s3):
    daemon = store_daemon(tmp_path, s3)
    try:
        daemon.start()
        ids = burst(tmp_path / "prepared", daemon.watched, 300)
        wait_until(lambda: len(item_keys(s3.keys(prefix=PREFIX))) >= 30, timeout=60, interval=0.05, message="uploads under way")
        daemon.kill()
        assert len(item_keys(s3.keys(prefix=PREFIX))) < 300, "killed while uploads were still due"
        daemon.start()
        daemon.wait_items(ids, timeout=180)
        wait_until(
            lambda: bucket_equals_local(s3, daemon.catalog),
            timeout=120,
            interval=1.0,
            message="bucket == local after the restart",
        )
        assert dangling_links(s3.endpoint) == []
        assert daemon.stop() == 0
    finally:
        daemon.close()


# -- a reader walking the bucket ------------------------------------------------------------------


def fetch(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        if error.code in (403, 404):
            return None
        raise


def dangling_links(endpoint: str) -> list[str]:
    """Walk the published catalog with plain GETs from its root, as a browser would;
    every link (and thumbnail) that does not resolve."""
    root = f"{endpoint}/{BUCKET}/{PREFIX}catalog.json"
    seen: set[str] = set()
    exists: set[str] = set()
    problems = []
    queue = [root]
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        body = fetch(url)
        if body is None:
            problems.append(f"missing {url}")
            continue
        exists.add(url)
        doc = json.loads(body)
        targets = [
            (link["rel"], urljoin(url, link["href"]))
            for link in doc.get("links", [])
            if link["rel"] in ("child", "item", "parent", "root", "collection", "preview")
        ]
        targets += [
            ("asset", urljoin(url, a["href"])) for a in doc.get("assets", {}).values() if "thumbnail" in a.get("roles", [])
        ]
        for rel, target in targets:
            if rel in ("child", "item"):
                queue.append(target)
            elif target not in exists:
                if fetch(target) is None:
                    problems.append(f"{url} -> {rel} {target}")
                else:
                    exists.add(target)
    return problems


def test_a_reader_walking_the_bucket_during_a_burst_never_meets_a_dangling_link(tmp_path, s3):
    daemon = store_daemon(tmp_path, s3, watch_extra="[watch.items]\nthumbnail = true\n")
    problems: list[str] = []
    walks = 0
    done = threading.Event()

    def reader() -> None:
        nonlocal walks
        while not done.is_set():
            if fetch(f"{s3.endpoint}/{BUCKET}/{PREFIX}catalog.json") is not None:
                problems.extend(dangling_links(s3.endpoint))
                walks += 1

    try:
        daemon.start()
        walker = threading.Thread(target=reader, daemon=True)
        walker.start()
        ids = burst(tmp_path / "prepared", daemon.watched, 200)
        daemon.wait_items(ids, timeout=180)
        wait_until(lambda: bucket_equals_local(s3, daemon.catalog), timeout=120, interval=0.5, message="bucket == local")
        done.set()
        walker.join(120)
        assert walks >= 3, "the reader walked while the burst landed"
        assert problems == []
        assert dangling_links(s3.endpoint) == []
        assert len(local_files(daemon.catalog)) > 400
    finally:
        done.set()
        daemon.close()
