"""The catalog keeps following the disk: hostile names, failing writes, clashes, overwrites.

Each test drives a real ``stacwatchd run`` process over real files. Faults are real too:
immutable files (``chattr +i``), a read-only bind mount, a full tmpfs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from daemon_support import DaemonProcess
from test_catalog import assert_catalog_ok

from stacwatchd import testing
from stacwatchd.testing import wait_until

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    process = DaemonProcess(tmp_path)
    yield process
    process.close()


def _privileged(*command: str) -> None:
    """Run a command that needs root and a capable kernel; skip (fail in CI) without."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        message = f"{' '.join(command)} is not permitted here: {result.stderr.strip()}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    _privileged("chattr", "+i", str(path))
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    _privileged("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def daemon_on(volume: Path, tmp_path: Path) -> DaemonProcess:
    """A daemon whose catalog and state live on ``volume`` (its watched folder does not)."""
    daemon = DaemonProcess(tmp_path)
    daemon.catalog = volume / "catalog"
    daemon.config.write_text(daemon.config.read_text().replace(str(tmp_path / "catalog"), str(daemon.catalog)))
    return daemon


def fill(volume: Path) -> Path:
    """Fill a volume to its last block; returns the file to delete to free it again."""
    filler = volume / "filler"
    # Unbuffered: a buffered file would keep the bytes that found no room and raise
    # ENOSPC again when closed.
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def status(daemon: DaemonProcess) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "stacwatchd", "status", "--config", str(daemon.config), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(result.stdout)


def item_links(partition: Path) -> set[str]:
    doc = json.loads(partition.read_text())
    return {link["title"] for link in doc["links"] if link["rel"] == "item"}


def temp_files(root: Path) -> list[Path]:
    """Temp files left behind by writes (ours are hidden ``.*.tmp`` files)."""
    return [p for p in root.rglob(".*.tmp")]


# -- names -------------------------------------------------------------------------------


def test_file_names_of_240_to_255_bytes_are_cataloged_and_nothing_wedges(daemon, schema_store):
    daemon.start()
    stems = []
    for length in (240, 245, 250, 255):
        stem = "n" * (length - len("_20240517.tif")) + "_20240517"
        testing.utm(daemon.watched / f"{stem}.tif")
        stems.append(stem)
    testing.utm(daemon.watched / "after_20240517.tif")
    items = daemon.wait_items({*stems, "after_20240517"})
    assert {doc["id"] for doc in items.values()} == {*stems, "after_20240517"}, "ids are the file stems, whole"
    assert all(len(name.encode()) <= 255 for path in daemon.catalog.rglob("*") for name in [path.name])
    assert not daemon.events("catalog_write_failed") and not daemon.events("item_unwritable")
    assert daemon.stop() == 0
    daemon.start()  # the restart replays nothing and refuses nothing
    testing.utm(daemon.watched / "later_20240517.tif")
    daemon.wait_items({*stems, "after_20240517", "later_20240517"})
    assert daemon.stop() == 0
    assert not [e for e in daemon.events() if e.get("level") == "error"]
    assert_catalog_ok(daemon.catalog, schema_store)


# -- failing writes converge without another event -------------------------------------------


def test_an_immutable_partition_catalog_is_retried_until_it_can_be_written(daemon, schema_store):
    daemon.start()
    testing.utm(daemon.watched / "a_20240517.tif")
    daemon.wait_items({"a_20240517"})
    partition = daemon.catalog / "scenes" / "2024" / "05" / "catalog.json"
    with immutable(partition):
        testing.utm(daemon.watched / "b_20240518.tif")
        failed = daemon.wait_events("catalog_write_failed")
        assert str(partition) in failed[0]["paths"] and failed[0]["reason"]
        report = wait_until(lambda: (s := status(daemon)).get("daemon", {}).get("writer_error") and s, timeout=30)
        assert report["daemon"]["journal"] >= 1 and report["daemon"]["writer_error"]["error"]
        assert item_links(partition) == {"a_20240517"}
    # No other event comes: the retry alone lands it.
    wait_until(lambda: item_links(partition) == {"a_20240517", "b_20240518"}, timeout=60)
    daemon.wait_events("catalog_write_recovered")
    wait_until(lambda: "writer_error" not in status(daemon).get("daemon", {"writer_error": 1}), timeout=30)
    assert daemon.stop() == 0
    assert not temp_files(daemon.catalog)
    assert_catalog_ok(daemon.catalog, schema_store)


def test_a_read_only_catalog_for_a_while_loses_nothing(daemon, schema_store):
    daemon.start()
    testing.utm(daemon.watched / "a_20240517.tif")
    daemon.wait_items({"a_20240517"})
    _privileged("mount", "--bind", str(daemon.catalog), str(daemon.catalog))
    try:
        _privileged("mount", "-o", "remount,ro,bind", str(daemon.catalog))
        for name in ("b_20240518", "c_20240601", "d_20250101"):
            testing.utm(daemon.watched / f"{name}.tif")
        daemon.wait_events("catalog_write_failed")
        assert set(daemon.items()) == {"a_20240517"}
    finally:
        subprocess.run(["umount", str(daemon.catalog)], check=False)
    daemon.wait_items({"a_20240517", "b_20240518", "c_20240601", "d_20250101"})
    assert daemon.stop() == 0
    assert_catalog_ok(daemon.catalog, schema_store)


def test_a_full_disk_neither_kills_the_daemon_nor_loses_files(tmp_path, schema_store):
    with tmpfs(tmp_path / "small", "4m") as volume:
        daemon = daemon_on(volume, tmp_path)
        try:
            daemon.start()
            testing.utm(daemon.watched / "first_20240517.tif")
            daemon.wait_items({"first_20240517"})
            filler = fill(volume)
            made = [testing.utm(daemon.watched / f"full{i:02d}_20240601.tif") for i in range(20)]
            wait_until(lambda: daemon.events("catalog_write_failed") or daemon.events("state_write_failed"), timeout=60)
            assert daemon.process.poll() is None, "still running"
            filler.unlink()  # space comes back; no other event follows
            daemon.wait_items({"first_20240517", *(p.stem for p in made)}, timeout=120)
            assert daemon.process.poll() is None
            assert daemon.stop() == 0
            assert not temp_files(daemon.catalog)
            assert not daemon.events("writer_error")
            assert_catalog_ok(daemon.catalog, schema_store)
        finally:
            daemon.close()


def test_a_start_on_a_full_disk_with_a_pending_journal_still_starts_and_converges(tmp_path, schema_store):
    with tmpfs(tmp_path / "small", "4m") as volume:
        daemon = daemon_on(volume, tmp_path)
        try:
            daemon.start()
            testing.utm(daemon.watched / "a_20240517.tif")
            daemon.wait_items({"a_20240517"})
            partition = daemon.catalog / "scenes" / "2024" / "05" / "catalog.json"
            with immutable(partition):  # leaves a journal entry that cannot be finished
                testing.utm(daemon.watched / "b_20240518.tif")
                daemon.wait_events("catalog_write_failed")
                daemon.kill()  # killed in the middle of the retry loop
            filler = fill(volume)
            daemon.start()  # journal replay fails with ENOSPC: it must not stop the start
            wait_until(lambda: daemon.events("journal_replay_deferred") or daemon.events("catalog_write_failed"), timeout=60)
            assert daemon.process.poll() is None
            filler.unlink()
            wait_until(lambda: item_links(partition) == {"a_20240517", "b_20240518"}, timeout=90)
            assert daemon.stop() == 0
            assert not temp_files(daemon.catalog)
            assert_catalog_ok(daemon.catalog, schema_store)
        finally:
            daemon.close()


# -- ids -------------------------------------------------------------------------------------


def test_two_files_with_one_id_keep_the_first_and_refuse_the_other_naming_both(tmp_path):
    daemon = DaemonProcess(tmp_path, reconcile=1)
    try:
        daemon.start()
        first = testing.utm(daemon.watched / "a_20240101.tif")
        items = daemon.wait_items({"a_20240101"})
        second = testing.utm(daemon.watched / "a_20240101.TIF")
        refused = daemon.wait_events("item_rejected")
        assert refused[0]["path"] == str(second) and refused[0]["error"] == "id_clash"
        assert str(first) in refused[0]["reason"] and "a_20240101" in refused[0]["reason"]
        daemon.wait_events("reconciled", 3)  # reconciles see it again and again: nothing moves
        assert daemon.items()["a_20240101"]["assets"] == items["a_20240101"]["assets"]
        assert len(daemon.events("item_rejected")) == 1 and not daemon.events("item_updated")
        assert daemon.stop() == 0
        daemon.start()
        daemon.wait_events("reconciled", 5)
        assert daemon.items()["a_20240101"]["assets"] == items["a_20240101"]["assets"]
        assert len(daemon.events("item_rejected")) == 1
    finally:
        daemon.close()


def test_the_refused_file_takes_the_id_once_its_holder_is_deleted(daemon):
    daemon.start()
    first = testing.utm(daemon.watched / "a_20240101.tif")
    daemon.wait_items({"a_20240101"})
    testing.utm(daemon.watched / "a_20240101.TIF")
    daemon.wait_events("item_rejected")
    first.unlink()

    def from_second() -> bool:
        doc = daemon.items().get("a_20240101")
        return doc is not None and any(a["href"].endswith("a_20240101.TIF") for a in doc["assets"].values())

    wait_until(from_second, timeout=60, message="the Item now describes a_20240101.TIF")
    report = status(daemon)
    assert report["failed_files"] == 0


# -- changes the way tools make them -------------------------------------------------------


def test_a_gdal_overwrite_is_an_update_that_keeps_created(tmp_path):
    daemon = DaemonProcess(tmp_path, settle=1.0)  # the window in which a vanished file may come back
    try:
        _overwrite_keeps_created(daemon)
    finally:
        daemon.close()


def _overwrite_keeps_created(daemon: DaemonProcess) -> None:
    daemon.start()
    path = testing.utm(daemon.watched / "o_20240517.tif")
    before = daemon.wait_items({"o_20240517"})["o_20240517"]
    testing.utm(path, width=80, height=60)  # rasterio (GDAL) unlinks the old file, then creates the new
    daemon.wait_events("item_updated")
    after = daemon.items()["o_20240517"]
    assert after["properties"]["created"] == before["properties"]["created"]
    assert after["properties"]["proj:shape"] != before["properties"]["proj:shape"]
    assert not daemon.events("item_removed") and len(daemon.events("item_added")) == 1


def test_a_collection_title_changed_in_the_configuration_is_applied_at_restart(daemon, schema_store):
    daemon.start()
    testing.utm(daemon.watched / "a_20240517.tif")
    daemon.wait_items({"a_20240517"})
    assert daemon.stop() == 0
    daemon.config.write_text(
        daemon.config.read_text() + 'title = "Renamed scenes"\ndescription = "Now described"\nkeywords = ["ndvi"]\n'
    )
    daemon.start()
    collection = daemon.catalog / "scenes" / "collection.json"

    def titles() -> tuple[str, list[str], list[str]]:
        root = json.loads((daemon.catalog / "catalog.json").read_text())
        item = daemon.items()["a_20240517"]
        return (
            json.loads(collection.read_text())["title"],
            [link["title"] for link in root["links"] if link["rel"] == "child"],
            [link["title"] for link in item["links"] if link["rel"] == "collection"],
        )

    # the writer rewrites the Item, the collection, then the root catalog: wait for the last of them
    wait_until(lambda: titles() == ("Renamed scenes", ["Renamed scenes"], ["Renamed scenes"]), timeout=60)
    doc = json.loads(collection.read_text())
    assert doc["description"] == "Now described" and doc["keywords"] == ["ndvi"]
    assert daemon.stop() == 0
    assert_catalog_ok(daemon.catalog, schema_store)


def test_a_deleted_and_recreated_root_is_rescanned_at_once(daemon, tmp_path):
    daemon.start()
    testing.utm(daemon.watched / "a_20240517.tif")
    testing.utm(daemon.watched / "b_20240517.tif")
    daemon.wait_items({"a_20240517", "b_20240517"})
    shutil.rmtree(daemon.watched)
    daemon.watched.mkdir()
    testing.utm(daemon.watched / "c_20240601.tif")
    daemon.wait_items({"c_20240601"}, timeout=60)


# -- kill -9 where recovery itself is running ---------------------------------------------


@pytest.mark.slow
def test_kill_9_during_the_retry_loop_and_during_journal_replay_loses_nothing(daemon, schema_store):
    source = daemon.base / "prepared"
    source.mkdir()
    made = testing.many_cogs(source, 200)
    daemon.start()
    testing.utm(daemon.watched / "a_20240517.tif")
    daemon.wait_items({"a_20240517"})
    collection = daemon.catalog / "scenes" / "collection.json"
    with immutable(collection):  # every batch commits, and its files wait in the journal
        for path in made:
            shutil.copy(path, daemon.watched / path.name)
        wait_until(lambda: status(daemon)["journal_pending"] >= 50, timeout=120, message="a long journal")
        daemon.kill()  # in the middle of the retry loop
    daemon.start(wait_ready=False)
    wait_until(lambda: daemon.events("journal_replay"), timeout=60, interval=0.005)
    daemon.kill()  # in the middle of the replay (or just after it)
    daemon.start()
    daemon.wait_items({"a_20240517", *(p.stem for p in made)}, timeout=180)
    assert daemon.stop() == 0
    assert not temp_files(daemon.catalog)
    assert_catalog_ok(daemon.catalog, schema_store)


def test_a_file_name_that_is_not_utf8_is_refused_once_and_the_rest_goes_on(tmp_path):
    daemon = DaemonProcess(tmp_path, reconcile=1)
    try:
        daemon.start()
        bad = os.fsencode(daemon.watched) + b"/caf\xe9_20240517.tif"
        good = testing.utm(tmp_path / "made.tif")
        shutil.copy(good, bad)
        testing.utm(daemon.watched / "fine_20240517.tif")
        daemon.wait_items({"fine_20240517"})
        refused = daemon.wait_events("item_rejected")
        assert refused[0]["error"] == "bad_file_name" and "caf" in refused[0]["path"]
        daemon.wait_events("reconciled", 3)
        assert len(daemon.events("item_rejected")) == 1 and daemon.process.poll() is None
    finally:
        daemon.close()
