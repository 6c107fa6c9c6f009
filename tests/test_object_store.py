"""The catalog mirrored into object storage: a real S3 API server (moto) on loopback, the
real daemon and the real command line, observed as a reader of the bucket would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon_support import DaemonProcess
from s3_support import BUCKET, CREDENTIALS, S3Server, local_files
from stacwatchd import testing
from stacwatchd.testing import wait_until

PREFIX = "stac/v1/"
SETTLE = 0.4


@pytest.fixture
def s3(tmp_path: Path):
    server = S3Server(tmp_path / "s3").start()
    server.create_bucket()
    yield server
    server.close()


def store_section(s3: S3Server, **extra: object) -> str:
    lines = [
        "[object_store]",
        f'url = "s3://{BUCKET}/{PREFIX}"',
        f'endpoint = "{s3.endpoint}"',
        'region = "us-east-1"',
        'cache_control_catalogs = "max-age=60"',
        'cache_control_items = "max-age=86400"',
        "timeout_seconds = 5",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def store_daemon(base: Path, s3: S3Server, *, watch_extra: str = "", **extra: object) -> DaemonProcess:
    daemon = DaemonProcess(base, settle=SETTLE, extra=store_section(s3, **extra), watch_extra=watch_extra)
    daemon.env = dict(CREDENTIALS)
    return daemon


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stacwatchd", *args], capture_output=True, text=True, timeout=300,
        env=dict(os.environ, **CREDENTIALS, **(env or {})),
    )  # fmt: skip


def bucket_equals_local(s3: S3Server, catalog: Path) -> bool:
    return s3.objects(prefix=PREFIX) == local_files(catalog)


def item_keys(keys: set[str]) -> set[str]:
    return {k for k in keys if k.endswith(".json") and not k.endswith(("catalog.json", "collection.json"))}


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    folder = tmp_path / "prepared"
    folder.mkdir()
    return folder


# -- the daemon keeps the bucket equal to the local catalog --------------------------------------


def test_dropped_files_are_in_the_bucket_byte_for_byte_within_settle_plus_two_seconds(tmp_path, s3, prepared):
    daemon = store_daemon(tmp_path, s3, watch_extra="[watch.items]\nthumbnail = true\n")
    try:
        daemon.start()
        made = [testing.cog(prepared / f"drop{i}_2024051{i}T103000.tif") for i in range(3)]
        dropped = time.monotonic()
        for path in made:
            testing.write_then_rename(path, daemon.watched / path.name)
        wait_until(
            lambda: len(item_keys(s3.keys(prefix=PREFIX))) == 3 and bucket_equals_local(s3, daemon.catalog),
            timeout=SETTLE + 2, interval=0.1, message="bucket == local catalog",
        )  # fmt: skip
        took = time.monotonic() - dropped
        assert took <= SETTLE + 2
        client = s3.client()
        item = next(iter(item_keys(s3.keys(prefix=PREFIX))))
        head = client.head_object(Bucket=BUCKET, Key=PREFIX + item)
        assert head["ContentType"] == "application/json" and head["CacheControl"] == "max-age=86400"
        head = client.head_object(Bucket=BUCKET, Key=PREFIX + "catalog.json")
        assert head["ContentType"] == "application/json" and head["CacheControl"] == "max-age=60"
        head = client.head_object(Bucket=BUCKET, Key=PREFIX + "scenes/2024/05/catalog.json")
        assert head["CacheControl"] == "max-age=60"
        thumb = PREFIX + item.rsplit("/", 1)[0] + "/thumbnail.png"
        assert client.head_object(Bucket=BUCKET, Key=thumb)["ContentType"] == "image/png"
        assert not [k for k in s3.keys() if not k.startswith(PREFIX)], "nothing outside the prefix"
        assert not [k for k in s3.keys(prefix=PREFIX) if k.startswith(".stacwatchd")], "the state stays local"
    finally:
        daemon.close()


def test_deleted_file_leaves_the_bucket_and_an_overwritten_one_is_updated(tmp_path, s3, prepared):
    daemon = store_daemon(tmp_path, s3)
    try:
        daemon.start()
        keep = testing.cog(prepared / "keep_20240517.tif")
        gone = testing.cog(prepared / "gone_20240601.tif")
        for path in (keep, gone):
            testing.write_then_rename(path, daemon.watched / path.name)
        wait_until(lambda: len(item_keys(s3.keys(prefix=PREFIX))) == 2, timeout=30, message="two Items in the bucket")
        (daemon.watched / gone.name).unlink()
        wait_until(
            lambda: item_keys(s3.keys(prefix=PREFIX)) == {"scenes/2024/05/keep_20240517/keep_20240517.json"}
            and bucket_equals_local(s3, daemon.catalog),
            timeout=SETTLE * 2 + 10, interval=0.1, message="deleted Item gone from the bucket",
        )  # fmt: skip
        assert not [k for k in s3.keys(prefix=PREFIX) if k.startswith("scenes/2024/06")], "its emptied partition too"
        before = json.loads(s3.objects(prefix=PREFIX)["scenes/2024/05/keep_20240517/keep_20240517.json"])
        testing.write_then_rename(testing.utm(prepared / "other.tif", width=300, height=200), daemon.watched / keep.name)

        def updated() -> bool:
            doc = json.loads(s3.objects(prefix=PREFIX)["scenes/2024/05/keep_20240517/keep_20240517.json"])
            return doc["properties"]["proj:shape"] == [200, 300] and bucket_equals_local(s3, daemon.catalog)

        wait_until(updated, timeout=30, interval=0.1, message="overwritten Item updated in the bucket")
        assert before["properties"]["proj:shape"] != [200, 300]
        assert daemon.stop() == 0
        assert bucket_equals_local(s3, daemon.catalog)
    finally:
        daemon.close()
