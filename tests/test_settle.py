"""The settle state machine, driven by a fake clock and a fake stat: no sleeps, no disk."""

from __future__ import annotations

import stat
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from stacwatchd.engine.settle import MAX_STAT_FAILURES, Ready, Settler
from stacwatchd.engine.watch import EventKind, FileEvent
from stacwatchd.testing import capture_logs, wait_until

WATCH = Path("/data/in")
SETTLE = 0.3


class FakeFiles:
    """A stat() over an in-memory table: path → (size, mtime_ns), or an error to raise."""

    def __init__(self) -> None:
        self.table: dict[Path, tuple[int, int] | OSError | str] = {}
        self.calls: list[Path] = []
        self.before_stat: list = []

    def write(self, path: Path, size: int, mtime_ns: int | None = None) -> None:
        self.table[path] = (size, size if mtime_ns is None else mtime_ns)

    def stat(self, path: Path) -> SimpleNamespace:
        self.calls.append(path)
        for hook in self.before_stat:
            hook(path)
        value = self.table.get(path)
        if value is None:
            raise FileNotFoundError(2, "No such file or directory", str(path))
        if isinstance(value, OSError):
            raise value
        if value == "dir":
            return SimpleNamespace(st_mode=stat.S_IFDIR | 0o755, st_size=4096, st_mtime_ns=0)
        size, mtime_ns = value
        return SimpleNamespace(st_mode=stat.S_IFREG | 0o644, st_size=size, st_mtime_ns=mtime_ns)


class Harness:
    def __init__(self, settle: float = SETTLE, debounce: float = 0.05) -> None:
        self.now = 0.0
        self.files = FakeFiles()
        self.out: list[Ready] = []
        self.settler = Settler(self.out.append, settle, clock=lambda: self.now, stat=self.files.stat, debounce=debounce)

    def event(self, kind: EventKind, name: str, at: float | None = None, watch: Path = WATCH) -> Path:
        path = watch / name
        self.settler.feed(FileEvent(kind, path, watch, self.now if at is None else at))
        return path

    def at(self, t: float) -> list[Ready]:
        """Advance the clock to ``t``, flush, and return what was emitted by that flush."""
        self.now = t
        before = len(self.out)
        self.settler.flush_due()
        return self.out[before:]


@pytest.fixture
def h() -> Harness:
    return Harness()


def upsert(path: Path) -> Ready:
    return Ready("upsert", path, WATCH)


def test_closed_file_is_upserted_once_quiet_for_settle_seconds(h: Harness) -> None:
    path = h.event("closed", "a.tif", at=0.0)
    h.files.write(path, 100)
    assert h.at(SETTLE - 0.01) == []
    assert h.at(SETTLE) == [upsert(path)]
    assert h.at(10.0) == []
    assert h.settler.pending() == 0


def test_modify_after_close_restarts_the_wait(h: Harness) -> None:
    path = h.event("closed", "a.tif", at=0.0)
    h.files.write(path, 100)
    h.event("modified", "a.tif", at=0.2)
    assert h.at(0.35) == []  # the close alone would have been due at 0.3
    assert h.at(0.5) == []  # no close since the modify: first look
    assert h.at(0.8) == [upsert(path)]  # second look, unchanged


def test_a_second_close_restarts_the_wait(h: Harness) -> None:
    path = h.event("closed", "a.tif", at=0.0)
    h.files.write(path, 100)
    h.event("closed", "a.tif", at=0.25)
    assert h.at(0.3) == []
    assert h.at(0.55) == [upsert(path)]


def test_moved_in_file_is_ready_after_the_debounce_not_the_settle_time() -> None:
    h = Harness(settle=10.0)
    path = h.event("moved_in", "a.tif", at=1.0)
    h.files.write(path, 100)
    assert h.at(1.0) == []
    assert h.at(1.05) == [upsert(path)]


def test_moved_in_with_zero_debounce_is_ready_at_once() -> None:
    h = Harness(settle=10.0, debounce=0.0)
    path = h.event("moved_in", "a.tif", at=1.0)
    h.files.write(path, 100)
    assert h.at(1.0) == [upsert(path)]


@pytest.mark.parametrize("kind", ["found", "created", "modified"])
def test_without_a_close_two_equal_looks_settle_apart_are_needed(h: Harness, kind: EventKind) -> None:
    path = h.event(kind, "a.tif", at=0.0)
    h.files.write(path, 100)
    assert h.at(SETTLE) == []
    assert h.files.calls == [path]
    assert h.at(2 * SETTLE - 0.01) == []
    assert h.at(2 * SETTLE) == [upsert(path)]
    assert h.files.calls == [path, path]


def test_a_size_change_between_looks_restarts_the_wait(h: Harness) -> None:
    path = h.event("found", "a.tif", at=0.0)
    h.files.write(path, 100, mtime_ns=1)
    assert h.at(0.3) == []
    h.files.write(path, 200, mtime_ns=1)
    assert h.at(0.6) == []
    assert h.at(0.9) == [upsert(path)]


def test_an_mtime_change_alone_restarts_the_wait(h: Harness) -> None:
    path = h.event("found", "a.tif", at=0.0)
    h.files.write(path, 100, mtime_ns=1)
    assert h.at(0.3) == []
    h.files.write(path, 100, mtime_ns=2)
    assert h.at(0.6) == []
    assert h.at(0.9) == [upsert(path)]


def test_slow_appender_is_never_emitted_before_it_closes(h: Harness) -> None:
    """One chunk every 0.25 s for a minute (settle 0.3): every modify restarts the timer."""
    path = h.event("created", "slow.tif", at=0.0)
    t, size = 0.0, 0
    while t < 60.0:
        t = round(t + 0.25, 2)
        size += 10
        h.files.write(path, size)
        assert h.at(t - 0.01) == []
        h.event("modified", "slow.tif", at=t)
    h.event("closed", "slow.tif", at=t)
    assert h.at(t + SETTLE - 0.01) == []
    assert h.at(t + SETTLE) == [upsert(path)]


def test_growing_file_under_polling_waits_until_size_stops_changing(h: Harness) -> None:
    """Polling gives no close: each look that differs from the previous one restarts the wait."""
    path = h.event("created", "grow.tif", at=0.0)
    for step in range(1, 20):
        h.files.write(path, step * 10)
        assert h.at(step * SETTLE) == []
    assert h.at(20 * SETTLE) == [upsert(path)]


def test_a_delete_replaces_the_pending_upsert_and_waits_until_the_path_stayed_absent(h: Harness) -> None:
    path = h.event("closed", "a.tif", at=0.0)
    h.files.write(path, 100)
    h.event("deleted", "a.tif", at=0.1)
    del h.files.table[path]
    assert h.at(0.1) == []
    assert h.at(0.1 + SETTLE - 0.01) == []
    assert h.at(0.1 + SETTLE) == [Ready("delete", path, WATCH)]
    assert h.at(5.0) == []
    assert h.settler.pending() == 0


def test_a_file_deleted_and_not_recreated_is_deleted_exactly_once_after_settle_seconds(h: Harness) -> None:
    path = h.event("deleted", "gone.tif", at=7.0)
    assert h.settler.pending() == 1
    assert h.at(7.0) == []
    assert h.at(7.0 + SETTLE - 0.01) == []
    assert h.at(7.0 + SETTLE) == [Ready("delete", path, WATCH)]
    assert h.at(100.0) == []
    assert h.settler.pending() == 0


def test_a_gdal_overwrite_is_one_upsert_and_no_delete() -> None:
    """GDAL unlinks the old file, creates the new one, writes and closes it."""
    h = Harness()
    path = WATCH / "scene.tif"
    h.files.write(path, 100, 1)
    h.settler.feed(FileEvent("deleted", path, WATCH, 0.0, closes=True))
    del h.files.table[path]
    h.settler.feed(FileEvent("created", path, WATCH, 0.01, closes=True))
    h.files.write(path, 0, 2)
    h.settler.feed(FileEvent("modified", path, WATCH, 0.02, closes=True))
    h.files.write(path, 120, 3)
    h.settler.feed(FileEvent("closed", path, WATCH, 0.05, closes=True))
    assert h.at(0.05 + SETTLE - 0.01) == []
    assert h.at(0.05 + SETTLE) == [upsert(path)]
    assert h.at(10.0) == []
    assert h.settler.pending() == 0


def test_a_file_back_without_an_event_by_the_time_its_delete_is_due_is_upserted(h: Harness) -> None:
    path = h.event("deleted", "a.tif", at=0.0)
    h.files.write(path, 100)
    assert h.at(SETTLE) == []
    assert h.at(2 * SETTLE) == [upsert(path)]
    assert h.settler.pending() == 0


def test_a_superseded_delete_is_still_owed_if_the_path_is_gone_after_all(h: Harness) -> None:
    """A listing that raced the deletion reports the file as found after its delete."""
    path = h.event("deleted", "a.tif", at=0.0)
    h.event("found", "a.tif", at=0.01)
    assert h.at(SETTLE + 0.01) == [Ready("delete", path, WATCH)]
    assert h.settler.pending() == 0


def test_removals_are_dropped_while_the_root_is_not_intact() -> None:
    """An unmounted share looks like every file deleted: nothing may be removed."""
    h = Harness()
    asked: list[Path] = []

    def unmounted(root: Path) -> bool:
        asked.append(root)
        return False

    h.settler = Settler(h.out.append, SETTLE, clock=lambda: h.now, stat=h.files.stat, root_intact=unmounted)
    h.event("deleted", "a.tif", at=0.0)
    h.event("dir_gone", "sub", at=0.0)
    kept = h.event("closed", "b.tif", at=0.0)
    h.files.write(kept, 10)
    with capture_logs() as logs:
        assert h.at(SETTLE) == [upsert(kept)]
    assert asked == [WATCH]
    assert h.settler.pending() == 0
    assert {e["path"] for e in logs if e["event"] == "settle_removal_held"} == {
        str(WATCH / "a.tif"),
        str(WATCH / "sub"),
    }


def test_a_root_that_is_intact_again_lets_removals_through() -> None:
    h = Harness()
    intact = [False]
    h.settler = Settler(h.out.append, SETTLE, clock=lambda: h.now, stat=h.files.stat, root_intact=lambda root: intact[0])
    h.event("deleted", "a.tif", at=0.0)
    assert h.at(SETTLE) == []
    intact[0] = True
    path = h.event("deleted", "a.tif", at=1.0)
    assert h.at(1.0 + SETTLE) == [Ready("delete", path, WATCH)]


def test_dir_gone_drops_everything_pending_below_it_and_nothing_beside_it(h: Harness) -> None:
    inside = [h.event("closed", "a/x.tif", at=0.0), h.event("found", "a/b/y.tif", at=0.0)]
    beside = h.event("closed", "ab/z.tif", at=0.0)
    for path in (*inside, beside):
        h.files.write(path, 1)
    h.event("dir_gone", "a", at=0.1)
    for path in inside:
        del h.files.table[path]
    assert h.at(0.1) == []
    assert h.at(0.3) == [upsert(beside)]
    assert h.at(0.1 + SETTLE) == [Ready("delete_tree", WATCH / "a", WATCH)]
    assert h.at(5.0) == []
    assert h.settler.pending() == 0


def test_a_folder_removed_and_recreated_within_settle_is_rescanned_not_deleted() -> None:
    """``rm -rf out; mkdir out; write out/a.tif``: a is one upsert, the rest a rescan."""
    h = Harness()
    rescans: list[Path] = []
    h.settler = Settler(h.out.append, SETTLE, clock=lambda: h.now, stat=h.files.stat, rescan=rescans.append)
    h.event("deleted", "out/a.tif", at=0.0)
    h.event("deleted", "out/b.tif", at=0.0)
    h.event("dir_gone", "out", at=0.0)
    h.files.table[WATCH / "out"] = "dir"
    again = h.event("closed", "out/a.tif", at=0.1)
    h.files.write(again, 5)
    assert h.at(SETTLE) == []
    assert h.at(0.1 + SETTLE) == [upsert(again)]
    assert rescans == [WATCH]
    assert h.at(10.0) == []
    assert rescans == [WATCH]
    assert h.settler.pending() == 0


def test_without_rescan_a_recreated_folder_is_removed_before_what_reappeared_in_it(h: Harness) -> None:
    h.event("dir_gone", "out", at=0.0)
    again = h.event("moved_in", "out/a.tif", at=0.1)
    h.files.write(again, 5)
    assert h.at(0.1) == [Ready("delete_tree", WATCH / "out", WATCH)]
    assert h.at(0.2) == [upsert(again)]
    assert h.at(10.0) == []


def test_a_folder_that_stayed_away_is_removed_once_with_everything_below(h: Harness) -> None:
    h.event("deleted", "out/a.tif", at=0.0)
    h.event("dir_gone", "out/deeper", at=0.0)
    h.event("dir_gone", "out", at=0.01)
    assert h.at(0.01 + SETTLE) == [Ready("delete_tree", WATCH / "out", WATCH)]
    assert h.at(10.0) == []
    assert h.settler.pending() == 0
    assert h.files.calls == [WATCH / "out"], "what a folder removal covers is not even looked at"


def test_one_entry_per_path_and_the_newest_event_wins(h: Harness) -> None:
    path = h.event("created", "a.tif", at=0.0)
    h.event("modified", "a.tif", at=0.01)
    h.event("closed", "a.tif", at=0.02)
    h.event("moved_in", "a.tif", at=0.03)
    h.files.write(path, 100)
    assert h.settler.pending() == 1
    assert h.at(0.08) == [upsert(path)]
    assert h.at(5.0) == []


def test_newest_event_can_also_make_a_path_wait_longer(h: Harness) -> None:
    path = h.event("moved_in", "a.tif", at=0.0)
    h.event("modified", "a.tif", at=0.01)
    h.files.write(path, 100)
    assert h.at(0.1) == []
    assert h.at(0.31) == []
    assert h.at(0.61) == [upsert(path)]


def test_file_that_vanished_before_settling_emits_nothing(h: Harness) -> None:
    h.event("closed", "a.tif", at=0.0)  # never on "disk" by the time it is due
    found = h.event("found", "b.tif", at=0.0)
    h.files.write(found, 5)
    assert h.at(0.3) == []  # b.tif had its first look
    del h.files.table[found]
    assert h.at(0.6) == []
    assert h.settler.pending() == 0


def test_an_event_that_arrives_while_a_file_is_being_looked_at_wins(h: Harness) -> None:
    """The observer thread may feed a delete between the look and the decision."""
    path = h.event("closed", "a.tif", at=0.0)
    h.files.write(path, 100)

    def deleted_meanwhile(p: Path) -> None:
        h.files.before_stat.clear()
        h.event("deleted", "a.tif", at=0.3)

    h.files.before_stat.append(deleted_meanwhile)
    assert h.at(0.3) == []
    del h.files.table[path]
    assert h.at(0.3 + SETTLE) == [Ready("delete", path, WATCH)]
    assert h.at(5.0) == []


def test_a_folder_removed_while_a_file_in_it_is_looked_at_is_removed_after_it(h: Harness) -> None:
    path = h.event("closed", "sub/a.tif", at=0.0)
    h.files.write(path, 100)

    def folder_removed_meanwhile(p: Path) -> None:
        h.files.before_stat.clear()
        h.event("dir_gone", "sub", at=0.3)

    h.files.before_stat.append(folder_removed_meanwhile)
    assert h.at(0.3) == [upsert(path)]  # it was there when looked at
    del h.files.table[path]
    assert h.at(0.3 + SETTLE) == [Ready("delete_tree", WATCH / "sub", WATCH)]
    assert h.settler.pending() == 0


def test_many_files_due_at_once_are_each_emitted_once(h: Harness) -> None:
    paths = [h.event("closed", f"f{i:04d}.tif", at=i * 1e-4) for i in range(2000)]
    for path in paths:
        h.files.write(path, 1)
    assert h.at(1.0) == [upsert(p) for p in paths]
    assert h.settler.pending() == 0


def test_zero_settle_still_takes_two_distinct_looks() -> None:
    h = Harness(settle=0.0)
    path = h.event("found", "a.tif", at=0.0)
    h.files.write(path, 1)
    assert h.at(0.0) == []
    assert h.at(0.0) == [upsert(path)]


def test_stat_errors_retry_then_give_up_with_a_warning(h: Harness) -> None:
    path = h.event("closed", "a.tif", at=0.0)
    h.files.table[path] = PermissionError(13, "Permission denied", str(path))
    with capture_logs() as logs:
        for step in range(1, MAX_STAT_FAILURES + 2):
            assert h.at(step * SETTLE) == []
    assert h.settler.pending() == 0
    assert [e["event"] for e in logs if e["log_level"] == "warning"][-1] == "settle_gave_up"
    assert all(e["path"] == str(path) for e in logs)


def test_transient_stat_error_then_success_upserts(h: Harness) -> None:
    path = h.event("closed", "a.tif", at=0.0)
    h.files.table[path] = OSError(5, "Input/output error")
    assert h.at(0.3) == []
    h.files.write(path, 100)
    assert h.at(0.6) == [upsert(path)]


def test_directories_named_like_rasters_are_not_upserted(h: Harness) -> None:
    path = h.event("found", "folder.tif", at=0.0)
    h.files.table[path] = "dir"
    assert h.at(0.3) == []
    assert h.settler.pending() == 0


def test_a_failing_consumer_does_not_stop_the_flow(h: Harness) -> None:
    seen: list[Ready] = []

    def flaky(ready: Ready) -> None:
        if ready.path.name == "bad.tif":
            raise RuntimeError("boom")
        seen.append(ready)

    settler = Settler(flaky, SETTLE, clock=lambda: 0.0, stat=h.files.stat)
    for name in ("bad.tif", "good.tif"):
        h.files.write(WATCH / name, 1)
        settler.feed(FileEvent("closed", WATCH / name, WATCH, 0.0))
    with capture_logs() as logs:
        assert settler.flush_due(1.0) == 1
    assert seen == [upsert(WATCH / "good.tif")]
    assert logs[0]["event"] == "settle_emit_failed"


def test_unknown_kind_is_refused(h: Harness) -> None:
    with pytest.raises(ValueError, match="unknown event kind"):
        h.settler.feed(FileEvent("teleported", WATCH / "a.tif", WATCH, 0.0))  # type: ignore[arg-type]


def test_timer_thread_emits_on_time_and_stops(tmp_path: Path) -> None:
    """The real thread with the real clock: wakes for the due entry, not before."""
    import time

    out: list[tuple[float, Ready]] = []
    settler = Settler(lambda r: out.append((time.monotonic(), r)), 0.2)
    target = tmp_path / "a.tif"
    target.write_bytes(b"x")
    settler.start()
    try:
        fed = time.monotonic()
        settler.feed(FileEvent("closed", target, tmp_path, fed))
        settler.feed(FileEvent("deleted", tmp_path / "b.tif", tmp_path, fed))
        wait_until(lambda: len(out) == 2, timeout=5)
        assert sorted((ready.op, ready.path) for _, ready in out) == [
            ("delete", tmp_path / "b.tif"),
            ("upsert", target),
        ]
        assert all(at - fed >= 0.2 for at, _ in out)
    finally:
        settler.stop(timeout=2)
    assert not any(t.name == "stacwatchd-settle" for t in threading.enumerate())


def test_a_write_seen_by_inotify_waits_for_the_close_however_long_the_pause(h: Harness) -> None:
    path = WATCH / "paused.tif"
    h.files.write(path, 100, 1)
    h.settler.feed(FileEvent("modified", path, WATCH, 0.0, closes=True))
    # The writer pauses far longer than settle_seconds without closing: size and mtime
    # stay equal across many looks, yet nothing may be emitted before the close.
    for t in (1.0, 2.0, 5.0, 20.0):
        assert h.at(t) == []
    h.settler.feed(FileEvent("closed", path, WATCH, 20.0, closes=True))
    assert h.at(20.0 + SETTLE / 2) == []
    assert h.at(20.0 + SETTLE) == [upsert(path)]


def test_without_a_close_within_the_grace_period_two_equal_looks_decide() -> None:
    h = Harness()
    h.settler = Settler(h.out.append, SETTLE, clock=lambda: h.now, stat=h.files.stat, close_grace=10.0)
    path = WATCH / "mmapped.tif"
    h.files.write(path, 100, 1)
    h.settler.feed(FileEvent("modified", path, WATCH, 0.0, closes=True))
    assert h.at(9.9) == []
    assert h.at(10.0) == []  # first look
    assert h.at(10.0 + SETTLE) == [upsert(path)]


def test_a_bare_create_is_judged_by_looks_even_where_closes_come(h: Harness) -> None:
    """watchdog reports files already inside a new folder as created, with no close."""
    path = WATCH / "inside-new-folder.tif"
    h.files.write(path, 100, 1)
    h.settler.feed(FileEvent("created", path, WATCH, 0.0, closes=True))
    assert h.at(SETTLE) == []
    assert h.at(2 * SETTLE) == [upsert(path)]
