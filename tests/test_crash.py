"""kill -9 at random points during large scans: nothing lost, duplicated, invalid or dangling."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_catalog import item_docs

from stacwatchd import testing
from stacwatchd.validate.schemas import validate_catalog

KILLS = 20
TRANSIENT = ("leftover temporary file", "orphan ")


def start_scan(data: Path, catalog: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stacwatchd",
            "scan",
            str(data),
            "--catalog",
            str(catalog),
            "--batch-size",
            "16",
            "--workers",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def items_in_state(catalog: Path) -> int:
    state = catalog / ".stacwatchd" / "state.db"
    if not state.exists():
        return -1
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT count(*) FROM items").fetchone()[0]
    except sqlite3.OperationalError:
        return -1
    finally:
        db.close()


def assert_consistent_after_kill(catalog: Path, schema_store) -> None:
    """What a reader may see right after a kill: every JSON parses, every link resolves.

    Only two things are allowed to be transient: an Item file written before the
    catalog that links to it, and a temp file of the write in progress.
    """
    for path in catalog.rglob("*.json"):
        if not any(part.startswith(".") for part in path.relative_to(catalog).parts):
            json.loads(path.read_bytes())
    report = validate_catalog(catalog, schema_store)
    lasting = [p for p in report.problems if not any(t in p.message for t in TRANSIENT)]
    assert not lasting, "\n".join(str(p) for p in lasting)


def keep_busy(data: Path, round_: int, rng: random.Random) -> None:
    """New files, deleted files and overwritten files, so the next scan has all kinds of work."""
    testing.many_cogs(data, 150, prefix=f"round{round_:02}")
    existing = sorted(data.glob("*.tif"))
    for path in rng.sample(existing, 20):
        path.unlink()
    for path in rng.sample(sorted(data.glob("*.tif")), 10):
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))


@pytest.mark.slow
def test_kill_9_during_scans_loses_duplicates_and_corrupts_nothing(tmp_path, schema_store):
    data = tmp_path / "data"
    catalog = tmp_path / "catalog"
    testing.many_cogs(data, 600)
    rng = random.Random(20261121)
    kills = completed = 0
    while kills < KILLS:
        before = items_in_state(catalog)
        process = start_scan(data, catalog)
        try:
            # Kill only once the writer is at work, at a random instant inside a batch.
            testing.wait_until(
                lambda process=process, before=before: process.poll() is not None or items_in_state(catalog) > before,
                timeout=120,
                interval=0.01,
                message="the scan never started writing",
            )
            if process.poll() is not None:
                raise subprocess.TimeoutExpired(process.args, 0)
            time.sleep(rng.uniform(0.0, 0.4))  # the random kill point, not a wait for a condition
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
        except subprocess.TimeoutExpired:
            process.wait()
            completed += 1
            keep_busy(data, completed, rng)
            continue
        assert_consistent_after_kill(catalog, schema_store)

    final = start_scan(data, catalog)
    assert final.wait(timeout=600) == 0
    report = validate_catalog(catalog, schema_store)
    assert report.ok, "\n".join(str(p) for p in report.problems[:20])
    ids = [doc["id"] for doc in item_docs(catalog)]
    assert len(ids) == len(set(ids)), "an Item was cataloged twice"
    assert sorted(ids) == sorted(p.stem for p in data.glob("*.tif")), "an Item was lost or is stale"
    assert report.items == len(ids)
    assert kills == KILLS
