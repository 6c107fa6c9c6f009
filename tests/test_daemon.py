"""The daemon as users run it: a real process, real inotify, real files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_support import DaemonProcess
from test_catalog import assert_catalog_ok

from stacwatchd import testing
from stacwatchd.testing import wait_until


@pytest.fixture
def daemon(tmp_path: Path):
    process = DaemonProcess(tmp_path)
    yield process
    process.close()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """Rasters prepared outside the watched folder, to be copied or moved in."""
    folder = tmp_path / "prepared"
    folder.mkdir()
    return folder


def test_copied_file_is_cataloged_once_with_a_structured_event(daemon, source, schema_store):
    daemon.start()
    made = testing.cog(source / "a_20240517T103000.tif")
    shutil.copy(made, daemon.watched / made.name)
    items = daemon.wait_items({"a_20240517T103000"})
    assert items["a_20240517T103000"]["properties"]["datetime"] == "2024-05-17T10:30:00Z"
    added = daemon.wait_events("item_added")
    assert len(added) == 1
    assert added[0]["path"] == str(daemon.watched / made.name)
    assert added[0]["collection"] == "scenes" and added[0]["item_id"] == "a_20240517T103000"
    assert added[0]["duration_ms"] >= 0 and added[0]["level"] == "info" and added[0]["timestamp"]
    assert daemon.stop() == 0
    assert_catalog_ok(daemon.catalog, schema_store)


def test_file_still_being_written_is_not_cataloged(tmp_path, source):
    """One chunk a second with the file held open, against a 0.5 s settle time."""
    daemon = DaemonProcess(tmp_path, settle=0.5)
    try:
        daemon.start()
        made = testing.cog(source / "slow_20240517.tif", width=1024, height=1024)
        target = daemon.watched / made.name
        writer = testing.slow_write_in_thread(made, target, chunks=8, pause=1.0)
        daemon.wait_items({"slow_20240517"}, timeout=60)
        assert not writer.is_alive(), "cataloged while the writer was still appending"
        item = daemon.items()["slow_20240517"]
        assert item["assets"]["data"]["file:size"] == made.stat().st_size
        assert len(daemon.wait_events("item_added")) == 1
        assert not daemon.events("item_rejected"), "a partial file must never be looked at as finished"
    finally:
        daemon.close()


def test_write_then_rename_is_cataloged_once_and_the_temp_name_never(daemon, source):
    daemon.start()
    made = testing.utm(source / "r_20240517.tif")
    testing.write_then_rename(made, daemon.watched / made.name)
    daemon.wait_items({"r_20240517"})
    assert [e["item_id"] for e in daemon.wait_events("item_added")] == ["r_20240517"]
    assert not daemon.events("item_rejected")


def test_five_hundred_files_copied_at_once_are_each_cataloged_exactly_once(daemon, source, schema_store):
    made = testing.many_cogs(source, 500)
    daemon.start()
    for path in made:
        shutil.copy(path, daemon.watched / path.name)
    daemon.wait_items({p.stem for p in made}, timeout=180)
    added = [e["item_id"] for e in daemon.wait_events("item_added", len(made))]
    assert sorted(added) == sorted(p.stem for p in made)
    written = [e for e in daemon.events("batch_written")]
    assert len(written) < 250, "a burst must be written in batches, not file by file"
    daemon.stop()
    assert_catalog_ok(daemon.catalog, schema_store)


def test_overwrite_updates_and_delete_removes(daemon, source):
    daemon.start()
    path = daemon.watched / "o_20240517.tif"
    testing.utm(path)
    first = daemon.wait_items({"o_20240517"})["o_20240517"]
    testing.utm(source / "o_20240517.tif", bounds=(600_000, 5_000_000, 600_640, 5_000_640))
    shutil.copy(source / "o_20240517.tif", path)
    wait_until(lambda: daemon.items().get("o_20240517", {}).get("bbox") not in (None, first["bbox"]), timeout=30)
    second = daemon.items()["o_20240517"]
    assert second["properties"]["created"] == first["properties"]["created"]
    path.unlink()
    daemon.wait_items(set())
    assert [e["item_id"] for e in daemon.wait_events("item_removed")] == ["o_20240517"]


def test_on_delete_keep_keeps_the_item(tmp_path):
    daemon = DaemonProcess(tmp_path, watch_extra='on_delete = "keep"')
    try:
        daemon.start()
        path = testing.utm(daemon.watched / "k_20240517.tif")
        daemon.wait_items({"k_20240517"})
        path.unlink()
        testing.utm(daemon.watched / "other_20240517.tif")
        daemon.wait_items({"k_20240517", "other_20240517"})
    finally:
        daemon.close()


def test_rename_inside_the_tree_replaces_the_item(daemon):
    daemon.start()
    path = testing.utm(daemon.watched / "old_20240517.tif")
    daemon.wait_items({"old_20240517"})
    (daemon.watched / "sub").mkdir()
    path.rename(daemon.watched / "sub" / "new_20240517.tif")
    daemon.wait_items({"new_20240517"})


def test_folder_moved_out_removes_all_its_items(daemon, tmp_path):
    daemon.start()
    folder = daemon.watched / "batch"
    folder.mkdir()
    for i in range(3):
        testing.utm(folder / f"f{i}_20240517.tif")
    testing.utm(daemon.watched / "stay_20240517.tif")
    daemon.wait_items({"f0_20240517", "f1_20240517", "f2_20240517", "stay_20240517"})
    folder.rename(tmp_path / "elsewhere")
    daemon.wait_items({"stay_20240517"})


def test_new_folder_with_files_already_inside_is_cataloged(daemon, tmp_path):
    daemon.start()
    outside = tmp_path / "ready"
    (outside / "deep").mkdir(parents=True)
    testing.utm(outside / "x_20240517.tif")
    testing.utm(outside / "deep" / "y_20240517.tif")
    outside.rename(daemon.watched / "ready")
    daemon.wait_items({"x_20240517", "y_20240517"})


def test_corrupt_file_among_good_ones_is_one_error_and_the_rest_are_cataloged(daemon, source):
    daemon.start()
    good = [testing.utm(source / f"g{i}_20240517.tif") for i in range(5)]
    testing.truncated(source / "broken_20240517.tif")
    for path in [*good, source / "broken_20240517.tif"]:
        shutil.copy(path, daemon.watched / path.name)
    daemon.wait_items({p.stem for p in good})
    rejected = daemon.wait_events("item_rejected")
    assert len(rejected) == 1
    assert rejected[0]["path"] == str(daemon.watched / "broken_20240517.tif")
    assert "truncated" in rejected[0]["reason"] and rejected[0]["error"] == "unreadable_raster"
    # Later events, and a restart's reconcile, do not retry the bad file: a file written
    # after them is cataloged, and still only one refusal was logged.
    os.utime(daemon.watched / "g0_20240517.tif")
    testing.utm(daemon.watched / "after_20240518.tif")
    daemon.wait_items({*(p.stem for p in good), "after_20240518"})
    assert daemon.stop() == 0
    daemon.start()
    daemon.wait_events("reconciled", 2)  # the restart's reconcile has looked at every file
    testing.utm(daemon.watched / "later_20240519.tif")
    daemon.wait_items({*(p.stem for p in good), "after_20240518", "later_20240519"})
    status = json.loads(
        subprocess.run(
            [sys.executable, "-m", "stacwatchd", "status", "--config", str(daemon.config), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )
    assert status["failed_files"] == 1 and "truncated" in status["recent_failures"][0]
    assert len(daemon.events("item_rejected")) == 1


def test_hidden_temporary_and_excluded_files_are_ignored(daemon):
    daemon.start()
    for name in (".hidden_20240517.tif", "x_20240517.tif.part", "y_20240517.tmp", "~lock_20240517.tif", "notes.txt"):
        (daemon.watched / name).write_bytes(b"not a raster")
    testing.utm(daemon.watched / "real_20240517.tif")
    daemon.wait_items({"real_20240517"})
    assert not daemon.events("item_rejected")


def test_sigterm_drains_in_flight_work_and_exits_zero(daemon, source):
    made = testing.many_cogs(source, 60)
    daemon.start()
    for path in made:
        shutil.copy(path, daemon.watched / path.name)
    wait_until(lambda: daemon.events("item_added"), timeout=60)
    assert daemon.stop(timeout=60) == 0
    assert daemon.notify.seen("STOPPING=1")
    stopped = daemon.events("daemon_stopped")
    assert stopped and stopped[0]["drained"] is True
    cataloged = set(daemon.items())
    assert cataloged, "in-flight work was flushed"
    daemon.start()  # what was still settling when it stopped comes in through reconcile
    daemon.wait_items({p.stem for p in made}, timeout=120)


def test_reconcile_at_start_picks_up_changes_made_while_stopped(daemon, source):
    daemon.start()
    keep = testing.utm(daemon.watched / "keep_20240517.tif")
    gone = testing.utm(daemon.watched / "gone_20240517.tif")
    daemon.wait_items({keep.stem, gone.stem})
    assert daemon.stop() == 0
    gone.unlink()
    testing.utm(daemon.watched / "new_20240601.tif")
    daemon.start()
    daemon.wait_items({keep.stem, "new_20240601"})


def test_kill_9_during_a_burst_then_restart_catalogs_every_file_exactly_once(daemon, source, schema_store):
    made = testing.many_cogs(source, 300)
    daemon.start()
    for path in made:
        shutil.copy(path, daemon.watched / path.name)
    wait_until(lambda: len(daemon.items()) >= 20, timeout=60)
    daemon.kill()
    daemon.start()
    daemon.wait_items({p.stem for p in made}, timeout=180)
    assert daemon.stop() == 0
    assert_catalog_ok(daemon.catalog, schema_store)


def test_periodic_reconcile_catches_what_no_event_announced(tmp_path):
    daemon = DaemonProcess(tmp_path, reconcile=1, settle=0.3)
    try:
        daemon.start()
        testing.utm(daemon.watched / "seen_20240517.tif")
        daemon.wait_items({"seen_20240517"})
        # Written into a hidden folder (ignored by the watcher), then made visible by
        # hard-linking: a new directory entry that inotify reports as created but never
        # closed, so only a settle-by-stability pass or the reconcile can find it.
        hidden = daemon.watched / ".staging"
        hidden.mkdir()
        staged = testing.utm(hidden / "late_20240517.tif")
        os.link(staged, daemon.watched / "late_20240517.tif")
        daemon.wait_items({"seen_20240517", "late_20240517"})
        assert len(daemon.wait_events("reconciled", 2)) >= 2
    finally:
        daemon.close()


def test_inotify_overflow_is_repaired_by_reconcile(tmp_path, source):
    """A real kernel queue overflow: the daemon is stopped (SIGSTOP) while more events
    happen than the kernel queues for it, then resumed."""
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    daemon = DaemonProcess(tmp_path)
    try:
        daemon.start()
        made = testing.many_cogs(source, 100)
        daemon.signal(signal.SIGSTOP)
        try:
            for path in made:
                shutil.copy(path, daemon.watched / path.name)
            noise = [daemon.watched / "noise_a.txt", daemon.watched / "noise_b.txt"]
            for i in range(limit // 2 + 1000):  # each write-and-close is at least two events
                noise[i % 2].write_bytes(b"x")
        finally:
            daemon.signal(signal.SIGCONT)
        daemon.wait_items({p.stem for p in made}, timeout=120)
        assert daemon.events("events_lost"), "the overflow was noticed"
    finally:
        daemon.close()


def test_sighup_reloads_watches_without_losing_queued_work(daemon, tmp_path):
    daemon.start()
    second = tmp_path / "second"
    second.mkdir()
    testing.utm(second / "s_20240517.tif")
    config = daemon.config.read_text() + f'\n[[watch]]\npath = "{second}"\n[watch.collection]\nid = "more"\n'
    daemon.config.write_text(config)
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: daemon.events("watch_added"), timeout=30)
    wait_until(lambda: (daemon.catalog / "more" / "collection.json").exists(), timeout=60)
    testing.utm(second / "t_20240517.tif")
    wait_until(lambda: len(list((daemon.catalog / "more").rglob("t_20240517.json"))) == 1, timeout=60)
    testing.utm(daemon.watched / "first_20240517.tif")
    daemon.wait_items({"first_20240517"})


def test_sighup_with_a_broken_config_keeps_running(daemon):
    daemon.start()
    daemon.config.write_text("this is not toml = [")
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: daemon.events("reload_failed"), timeout=30)
    testing.utm(daemon.watched / "still_20240517.tif")
    daemon.wait_items({"still_20240517"})


def test_systemd_notifications_ready_status_watchdog_stopping(daemon):
    daemon.start()
    wait_until(lambda: daemon.notify.seen("WATCHDOG=1"), timeout=30)
    assert any("STATUS=" in m for m in daemon.notify.poll())
    daemon.stop()
    assert daemon.notify.seen("STOPPING=1")


def test_status_command_works_while_the_daemon_runs(daemon):
    daemon.start()
    testing.utm(daemon.watched / "a_20240517.tif")
    daemon.wait_items({"a_20240517"})

    def status() -> dict:
        result = subprocess.run(
            [sys.executable, "-m", "stacwatchd", "status", "--config", str(daemon.config), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return json.loads(result.stdout)

    report = wait_until(lambda: (s := status()).get("daemon", {}).get("added") == 1 and s, timeout=30)
    assert report["items"] == 1 and report["daemon"]["running"] is True and "queue" in report["daemon"]


def test_status_warns_of_a_folder_the_reconcile_could_not_read_until_it_can(tmp_path):
    daemon = DaemonProcess(tmp_path, reconcile=1)
    testing.utm(daemon.watched / "a_20240517.tif")
    top = daemon.watched / testing.too_deep_folder(daemon.watched).relative_to(daemon.watched).parts[0]
    try:
        daemon.start()
        daemon.wait_items({"a_20240517"})
        assert "File name too long" in daemon.wait_events("reconcile_incomplete")[0]["error"]

        def unread_warnings() -> list[str] | None:
            """The running daemon's warnings about folders it could not read (None: not running)."""
            result = subprocess.run(
                [sys.executable, "-m", "stacwatchd", "status", "--config", str(daemon.config), "--json"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            report = json.loads(result.stdout)
            if not report.get("daemon", {}).get("running"):
                return None
            return [w for w in report.get("warnings", []) if "could not be read" in w]

        found = wait_until(lambda: unread_warnings() or None, timeout=30)
        assert len(found) == 1 and found[0].startswith(f"1 folder under {daemon.watched} could not be read")
        assert f"{top}/" in found[0] and "nothing under" in found[0]

        shutil.rmtree(top)
        wait_until(lambda: unread_warnings() == [], timeout=30, message="the warning gone once the folder can be read")
    finally:
        daemon.close()


def test_bad_config_is_a_clear_error(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[[watch]]\npath = '/x'\nsettle = 3\n")
    result = subprocess.run(
        [sys.executable, "-m", "stacwatchd", "run", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "watch.0.settle: unknown key" in result.stderr and str(config) in result.stderr
