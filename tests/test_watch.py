"""Watcher + Settler on real folders with real inotify (and polling): what a pipeline sees.

Every test acts like a user or a pipeline would (copy, write slowly, rename, move folders)
and asserts on the ``Ready`` decisions. Waiting is always on a condition with a deadline;
"nothing else happened" is checked after a sentinel file, published after the actions,
has come out and nothing is pending any more.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from watchdog.observers import inotify_c

from stacwatchd import testing
from stacwatchd.engine import watch as watch_module
from stacwatchd.model.items import Rules
from stacwatchd.engine.settle import Ready, Settler
from stacwatchd.testing import capture_logs, wait_until
from stacwatchd.engine.watch import FileEvent, ScanEntry, Watcher, filesystem_type, scan_tree

SETTLE = 0.3
POLL = 0.1
SENTINEL = "zz_sentinel"
_sentinels = itertools.count()


@dataclass
class Emitted:
    at: float
    ready: Ready
    size: int | None


@dataclass
class Recorder:
    """The pipeline's side: every Ready, when it came, and how big the file was then."""

    items: list[Emitted] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, ready: Ready) -> None:
        try:
            size: int | None = ready.path.stat().st_size
        except OSError:
            size = None
        with self.lock:
            self.items.append(Emitted(time.monotonic(), ready, size))

    def all(self) -> list[Emitted]:
        with self.lock:
            return [e for e in self.items if not e.ready.path.name.startswith(SENTINEL)]

    def ops(self) -> list[tuple[str, Path]]:
        return [(e.ready.op, e.ready.path) for e in self.all()]

    def upserts(self) -> list[Path]:
        return [p for op, p in self.ops() if op == "upsert"]

    def has(self, op: str, path: Path) -> bool:
        return (op, path) in self.ops()


@dataclass
class World:
    root: Path
    outside: Path
    raster: Path
    settler: Settler
    watcher: Watcher
    out: Recorder
    events: list[FileEvent]

    def copy_in(self, relative: str) -> Path:
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.raster, target)
        return target

    def wait(self, predicate: Callable[[], object], timeout: float = 10.0, message: str = "") -> None:
        wait_until(predicate, timeout=timeout, message=message or f"emitted so far: {self.out.ops()}")

    def drain(self, folder: Path | None = None, timeout: float = 10.0) -> None:
        """Publish a sentinel after everything done so far and wait until all is decided."""
        sentinel = (folder or self.root) / f"{SENTINEL}_{next(_sentinels)}.tif"
        testing.write_then_rename(b"sentinel", sentinel)
        wait_until(
            lambda: any(e.ready.path == sentinel for e in list(self.out.items)),
            timeout=timeout,
            message=f"sentinel {sentinel.name} never came out",
        )
        wait_until(lambda: self.settler.pending() == 0, timeout=timeout, message="settler never drained")


_RULES = Rules(collection_id="test", root=Path("/"))


def accept_rasters(path: Path) -> bool:
    """The default include/exclude globs, as the daemon's filter applies them."""
    return _RULES.is_data(path)


@pytest.fixture(scope="module")
def raster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return testing.write_raster(tmp_path_factory.mktemp("src") / "source.tif", width=128, height=128)


@pytest.fixture
def make_world(tmp_path: Path, raster: Path) -> Iterator[Callable[..., World]]:
    started: list[World] = []

    def make(
        observer: str = "inotify",
        settle: float = SETTLE,
        recursive: bool = True,
        start: bool = True,
        **watcher_kw: object,
    ) -> World:
        root = tmp_path / f"watched{len(started)}"
        root.mkdir()
        outside = tmp_path / f"outside{len(started)}"
        outside.mkdir()
        out = Recorder()
        events: list[FileEvent] = []
        settler = Settler(out, settle)

        def sink(event: FileEvent) -> None:
            events.append(event)
            settler.feed(event)

        kw = {"polling_interval": POLL, "check_interval": 0.1, "retry_initial": 0.1, "retry_max": 0.4}
        kw.update(watcher_kw)
        watcher = Watcher(sink, observer=observer, **kw)  # type: ignore[arg-type]
        watcher.watch(root, recursive=recursive, accepts=accept_rasters)
        world = World(root.resolve(), outside, raster, settler, watcher, out, events)
        settler.start()
        if start:
            watcher.start()
        started.append(world)
        return world

    yield make
    for world in started:
        world.watcher.stop(timeout=5)
        world.settler.stop(timeout=5)


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    return make_world()


# --- arrivals -----------------------------------------------------------------------


def test_copied_file_is_upserted_once(world: World) -> None:
    target = world.copy_in("a.tif")
    world.wait(lambda: world.out.has("upsert", target))
    world.drain()
    assert world.out.ops() == [("upsert", target)]
    assert world.out.all()[0].size == world.raster.stat().st_size


def test_slow_writer_is_upserted_once_only_after_its_last_chunk(make_world: Callable[..., World]) -> None:
    """Six chunks 0.25 s apart take 1.25 s, far longer than settle (0.5 s): a settler that
    let the creation or any chunk start an uninterrupted timer would emit mid-write."""
    world = make_world(settle=0.5)
    target = world.root / "slow.tif"
    started = time.monotonic()
    writer = testing.slow_write_in_thread(world.raster, target, chunks=6, pause=0.25)
    writer.join(timeout=10)
    finished = time.monotonic()
    assert finished - started >= 1.25
    world.wait(lambda: world.out.has("upsert", target))
    world.drain()
    [emitted] = world.out.all()
    assert emitted.ready == Ready("upsert", target, world.root)
    assert emitted.at > finished
    assert emitted.at - finished >= 0.45
    assert emitted.size == world.raster.stat().st_size


def test_write_then_rename_upserts_only_the_final_name(world: World) -> None:
    target = testing.write_then_rename(world.raster, world.root / "final.tif")
    world.wait(lambda: world.out.has("upsert", target))
    world.drain()
    assert world.out.ops() == [("upsert", target)]
    assert [e.kind for e in world.events if e.path == target] == ["moved_in"]
    assert all(not e.path.name.startswith(".") for e in world.events)


def test_renamed_into_place_is_ready_without_waiting_to_settle(make_world: Callable[..., World]) -> None:
    world = make_world(settle=5.0)
    target = testing.write_then_rename(world.raster, world.root / "quick.tif")
    world.wait(lambda: world.out.has("upsert", target), timeout=3)


def test_two_hundred_files_copied_at_once_are_each_upserted_once(world: World) -> None:
    targets = {world.copy_in(f"burst/scene_{i:03d}.tif") for i in range(200)}
    world.wait(lambda: targets <= set(world.out.upserts()), timeout=20)
    world.drain()
    upserts = world.out.upserts()
    assert len(upserts) == 200
    assert set(upserts) == targets
    assert all(e.size == world.raster.stat().st_size for e in world.out.all())


def test_file_moved_in_from_outside_is_upserted(world: World) -> None:
    staged = shutil.copy(world.raster, world.outside / "staged.tif")
    target = world.root / "staged.tif"
    os.rename(staged, target)
    world.wait(lambda: world.out.has("upsert", target))
    world.drain()
    assert world.out.ops() == [("upsert", target)]


def test_overwrite_in_place_upserts_again(world: World) -> None:
    target = world.copy_in("a.tif")
    world.wait(lambda: world.out.upserts().count(target) == 1)
    shutil.copy(world.raster, target)
    world.wait(lambda: world.out.upserts().count(target) == 2)
    world.drain()
    assert world.out.ops() == [("upsert", target), ("upsert", target)]


# --- departures and renames ------------------------------------------------------------


def test_deleted_file_is_deleted(world: World) -> None:
    target = world.copy_in("a.tif")
    world.wait(lambda: world.out.has("upsert", target))
    target.unlink()
    world.wait(lambda: world.out.has("delete", target))
    world.drain()
    assert world.out.ops() == [("upsert", target), ("delete", target)]


def test_rename_inside_the_tree_deletes_the_old_name_and_upserts_the_new(world: World) -> None:
    old = world.copy_in("old.tif")
    world.wait(lambda: world.out.has("upsert", old))
    new = world.root / "sub" / "new.tif"
    new.parent.mkdir()
    old.rename(new)
    world.wait(lambda: world.out.has("upsert", new))
    world.drain()
    assert world.out.ops() == [("upsert", old), ("delete", old), ("upsert", new)]


def test_folder_moved_out_of_the_tree_is_deleted_as_a_tree(world: World) -> None:
    files = [world.copy_in("batch/a.tif"), world.copy_in("batch/deeper/b.tif")]
    world.wait(lambda: set(files) <= set(world.out.upserts()))
    (world.root / "batch").rename(world.outside / "batch")
    world.wait(lambda: world.out.has("delete_tree", world.root / "batch"))
    world.drain()
    assert world.out.ops()[2:] == [("delete_tree", world.root / "batch")]


def test_a_folder_moved_out_is_no_longer_watched_under_its_old_name(world: World) -> None:
    """Changes in the moved-away folder must not be reported for a new folder of that name."""
    old = world.copy_in("batch/a.tif")
    world.wait(lambda: world.out.has("upsert", old))
    (world.root / "batch").rename(world.outside / "batch")
    world.wait(lambda: world.out.has("delete_tree", world.root / "batch"))
    new = world.copy_in("batch/a.tif")
    world.wait(lambda: world.out.upserts().count(new) == 2)
    (world.outside / "batch" / "a.tif").unlink()
    shutil.copy(world.raster, world.outside / "batch" / "b.tif")
    world.drain()
    assert world.out.ops() == [("upsert", old), ("delete_tree", world.root / "batch"), ("upsert", new)]


def test_folder_renamed_inside_the_tree_moves_its_files(world: World) -> None:
    files = [world.copy_in("2024/a.tif"), world.copy_in("2024/x/b.tif")]
    world.wait(lambda: set(files) <= set(world.out.upserts()))
    (world.root / "2024").rename(world.root / "2025")
    moved = {world.root / "2025" / "a.tif", world.root / "2025" / "x" / "b.tif"}
    world.wait(lambda: moved <= set(world.out.upserts()))
    world.drain()
    assert world.out.ops()[2] == ("delete_tree", world.root / "2024")
    assert sorted(map(str, world.out.upserts()[2:])) == sorted(map(str, moved))


def test_folder_filled_elsewhere_then_moved_in_is_upserted_entirely(world: World) -> None:
    staging = world.outside / "delivery"
    names = ["a.tif", "b.tif", "nested/c.tif", "nested/deeper/d.tif"]
    for name in names:
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(world.raster, staging / name)
    (staging / "readme.txt").write_text("not a raster")
    staging.rename(world.root / "delivery")
    expected = {world.root / "delivery" / n for n in names}
    world.wait(lambda: expected <= set(world.out.upserts()))
    world.drain()
    assert sorted(world.out.upserts()) == sorted(expected)
    assert {e.kind for e in world.events if e.path in expected} == {"found"}


def test_folder_created_then_quickly_filled_loses_nothing(world: World) -> None:
    folder = world.root / "fresh" / "nested"
    folder.mkdir(parents=True)
    targets = {world.copy_in(f"fresh/nested/f{i}.tif") for i in range(20)}
    targets |= {world.copy_in(f"fresh/g{i}.tif") for i in range(5)}
    world.wait(lambda: targets <= set(world.out.upserts()))
    world.drain()
    assert sorted(world.out.upserts()) == sorted(targets)


# --- what is ignored ---------------------------------------------------------------------


def test_hidden_folders_and_excluded_names_produce_nothing(world: World) -> None:
    for name in (
        ".hidden/a.tif",
        ".hidden/deeper/b.tif",
        ".c.tif",
        "d.tmp",
        "e.tif.part",
        "f.tif.partial",
        "~g.tif",
        ".~h.tif",
        "i.tif.aux.xml",
        "notes.txt",
    ):
        world.copy_in(name)
    staging = world.outside / ".cache"
    staging.mkdir()
    shutil.copy(world.raster, staging / "j.tif")
    staging.rename(world.root / ".cache")
    world.drain()
    assert world.out.ops() == []
    assert [e for e in world.events if not e.path.name.startswith(SENTINEL)] == []


def test_non_recursive_root_ignores_subfolders(make_world: Callable[..., World]) -> None:
    world = make_world(recursive=False)
    top = world.copy_in("top.tif")
    world.copy_in("sub/below.tif")
    world.wait(lambda: world.out.has("upsert", top))
    world.drain()
    assert world.out.ops() == [("upsert", top)]


# --- polling, lost roots, limits -------------------------------------------------------------


def test_polling_observer_sees_a_copied_file(make_world: Callable[..., World]) -> None:
    world = make_world(observer="polling")
    assert world.watcher.status() == {world.root: "polling"}
    target = world.copy_in("polled/a.tif")
    world.wait(lambda: world.out.has("upsert", target))
    world.drain()
    assert world.out.ops() == [("upsert", target)]
    assert world.out.all()[0].size == world.raster.stat().st_size


@pytest.mark.parametrize("observer", ["polling", "inotify"])
def test_vanished_root_is_logged_rewatched_and_rescanned(make_world: Callable[..., World], observer: str) -> None:
    """An unmounted share looks like a vanished folder: warn, retry, never delete."""
    world = make_world(observer=observer)
    before = world.copy_in("before.tif")
    world.wait(lambda: world.out.has("upsert", before))
    with capture_logs() as logs:
        world.root.rename(world.outside / "unmounted")
        wait_until(lambda: any(e["event"] == "watch_root_lost" for e in logs), timeout=5)
        world.root.mkdir()
        back = world.copy_in("back/again.tif")
        world.wait(lambda: world.out.has("upsert", back))
        after = world.copy_in("after.tif")
        world.wait(lambda: world.out.has("upsert", after))
    lost = next(e for e in logs if e["event"] == "watch_root_lost")
    assert lost["log_level"] == "warning" and lost["path"] == str(world.root)
    assert any(e["event"] == "watch_root_restored" for e in logs)
    assert not [op for op, _ in world.out.ops() if op != "upsert"]
    assert world.watcher.status() == {world.root: observer}


def test_share_unmounted_from_under_a_polled_root_deletes_nothing(make_world: Callable[..., World]) -> None:
    """Unmounting leaves the empty mount point: a poll would see every file deleted.

    The keeper's own check is slowed down so that the poll certainly sees the empty folder.
    """
    world = make_world(observer="polling", check_interval=5.0)
    files = [world.copy_in("a.tif"), world.copy_in("sub/b.tif")]
    world.wait(lambda: set(files) <= set(world.out.upserts()))
    with capture_logs() as logs:
        world.root.rename(world.outside / "share")
        world.root.mkdir()
        wait_until(lambda: any(e["event"] == "watch_root_restored" for e in logs), timeout=5)
        world.drain()
    assert [op for op, _ in world.out.ops()] == ["upsert", "upsert"]
    (world.outside / "share" / "a.tif").rename(world.root / "a.tif")
    world.wait(lambda: world.out.upserts().count(world.root / "a.tif") == 2)


def test_auto_polls_roots_on_network_filesystems(
    make_world: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch_module, "filesystem_type", lambda path: "nfs4")
    with capture_logs() as logs:
        world = make_world(observer="auto")
    assert world.watcher.status() == {world.root: "polling"}
    assert any(e["event"] == "watch_network_filesystem" and e["fstype"] == "nfs4" for e in logs)
    target = world.copy_in("a.tif")
    world.wait(lambda: world.out.has("upsert", target))


def test_filesystem_type_is_that_of_the_deepest_mount_point() -> None:
    mounts = "\n".join(
        [
            "/dev/vda1 / ext4 rw 0 0",
            "server:/export /mnt/data nfs4 rw 0 0",
            "//nas/share /mnt/data/My\\040Scenes cifs rw 0 0",
            "tmpfs /mnt/data2 tmpfs rw 0 0",
        ]
    )
    assert filesystem_type(Path("/mnt/data/a/b.tif"), mounts) == "nfs4"
    assert filesystem_type(Path("/mnt/data"), mounts) == "nfs4"
    assert filesystem_type(Path("/mnt/data/My Scenes/x"), mounts) == "cifs"
    assert filesystem_type(Path("/mnt/data2x"), mounts) == "ext4"
    assert filesystem_type(Path("/srv"), "") is None


def test_missing_root_is_watched_once_it_appears(make_world: Callable[..., World], tmp_path: Path) -> None:
    world = make_world()
    later = tmp_path / "mounted-later"
    with capture_logs() as logs:
        world.watcher.watch(later, accepts=accept_rasters)
        wait_until(lambda: any(e["event"] == "watch_root_lost" for e in logs), timeout=5)
        assert world.watcher.status()[later] == "lost: missing"
        staging = world.outside / "share"
        staging.mkdir()
        shutil.copy(world.raster, staging / "already.tif")
        staging.rename(later)
        world.wait(lambda: world.out.has("upsert", later / "already.tif"))
    assert world.watcher.status()[later] == "inotify"


def test_roots_can_be_added_and_removed_while_running(make_world: Callable[..., World], tmp_path: Path) -> None:
    world = make_world()
    second = tmp_path / "second"
    second.mkdir()
    world.watcher.watch(second, accepts=accept_rasters)
    assert world.watcher.roots == (world.root, second)
    target = shutil.copy(world.raster, second / "b.tif")
    world.wait(lambda: world.out.has("upsert", Path(target)))
    assert world.out.all()[-1].ready.watch == second

    world.watcher.unwatch(world.root)
    assert world.watcher.roots == (second,)
    world.copy_in("ignored.tif")
    world.drain(folder=second)
    assert world.out.ops() == [("upsert", Path(target))]


def test_nested_roots_report_each_file_once_for_the_deepest_root(make_world: Callable[..., World]) -> None:
    world = make_world()
    inner = world.root / "inner"
    inner.mkdir()
    world.watcher.watch(inner, accepts=accept_rasters)
    target = world.copy_in("inner/a.tif")
    world.wait(lambda: world.out.has("upsert", target))
    world.drain()
    assert [(e.ready.op, e.ready.watch) for e in world.out.all()] == [("upsert", inner)]


@pytest.fixture
def inotify_watch_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the kernel refuse watches on folders named ``deep``, as at max_user_watches."""
    real = inotify_c.inotify_add_watch

    def add_watch(fd: int, path: bytes, mask: int) -> int:
        if os.path.basename(path) == b"deep":
            ctypes.set_errno(errno.ENOSPC)
            return -1
        return real(fd, path, mask)

    monkeypatch.setattr(inotify_c, "inotify_add_watch", add_watch)


@pytest.mark.usefixtures("inotify_watch_limit")
def test_auto_falls_back_to_polling_when_inotify_watches_run_out(
    make_world: Callable[..., World], tmp_path: Path
) -> None:
    world = make_world(observer="auto", start=False)
    (world.root / "deep").mkdir()
    with capture_logs() as logs:
        world.watcher.start()
    assert world.watcher.status() == {world.root: "polling"}
    [warning] = [e for e in logs if e["event"] == "inotify_limit_reached"]
    assert warning["log_level"] == "warning" and warning["path"] == str(world.root)
    target = world.copy_in("deep/a.tif")
    world.wait(lambda: world.out.has("upsert", target))


@pytest.mark.usefixtures("inotify_watch_limit")
def test_auto_switches_a_live_root_to_polling_when_a_new_folder_cannot_be_watched(
    make_world: Callable[..., World],
) -> None:
    world = make_world(observer="auto")
    assert world.watcher.status() == {world.root: "inotify"}
    with capture_logs() as logs:
        (world.root / "deep").mkdir()
        wait_until(lambda: world.watcher.status() == {world.root: "polling"}, timeout=5)
    assert any(e["event"] == "inotify_limit_reached" for e in logs)
    target = world.copy_in("deep/a.tif")
    world.wait(lambda: world.out.has("upsert", target))


def test_auto_falls_back_to_polling_when_inotify_cannot_start(
    make_world: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse() -> int:
        raise OSError(errno.EMFILE, "inotify instance limit reached")

    monkeypatch.setattr(inotify_c.InotifyFD, "_create_inotify_fd", classmethod(lambda cls: refuse()))
    with capture_logs() as logs:
        world = make_world(observer="auto")
    assert world.watcher.status() == {world.root: "polling"}
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["inotify_unavailable"]
    target = world.copy_in("a.tif")
    world.wait(lambda: world.out.has("upsert", target))


def test_inotify_queue_overflow_is_reported(make_world: Callable[..., World]) -> None:
    """Stall watchdog's reader, make the kernel queue (16384 events) overflow, resume."""
    overflowed: list[Path] = []
    world = make_world(on_overflow=overflowed.append)
    fd = world.watcher._inotify._inotify_fd  # type: ignore[union-attr]  # noqa: SLF001
    queued = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    a, b = (os.open(world.root / name, os.O_CREAT | os.O_WRONLY) for name in ("a.txt", "b.txt"))
    with capture_logs() as logs:
        with fd._lock:  # noqa: SLF001 - the reader cannot finish a read while we hold it
            for _ in range(queued // 2 + 2048):  # alternating, so the kernel cannot merge them
                os.write(a, b"x")
                os.write(b, b"x")
        os.close(a)
        os.close(b)
        wait_until(lambda: overflowed, timeout=10)
    assert overflowed == [world.root]
    assert world.watcher.overflows == 1
    assert any(e["event"] == "inotify_overflow" and e["path"] == str(world.root) for e in logs)
    target = world.copy_in("after.tif")
    world.wait(lambda: world.out.has("upsert", target))


def test_an_overflow_storm_is_reported_twice_not_a_thousand_times(make_world: Callable[..., World]) -> None:
    """Once at once (reconcile now), once after the burst (reconcile what the burst lost)."""
    overflowed: list[float] = []
    world = make_world(on_overflow=lambda root: overflowed.append(time.monotonic()))
    fd = world.watcher._inotify._inotify_fd  # type: ignore[union-attr]  # noqa: SLF001
    overflow = inotify_c.InotifyEvent(-1, inotify_c.InotifyConstants.IN_Q_OVERFLOW, 0, b"")
    rebuilds: list[float] = []
    real_rebuild = watch_module._WatchGroup.rebuild  # noqa: SLF001

    def counting_rebuild(group: object) -> None:
        rebuilds.append(time.monotonic())
        real_rebuild(group)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(watch_module._WatchGroup, "rebuild", counting_rebuild)  # noqa: SLF001
        burst_start = time.monotonic()
        for _ in range(1000):
            fd.handle_event(overflow)
        burst_end = time.monotonic()
        wait_until(lambda: len(overflowed) == 2, timeout=5)
    assert world.watcher.overflows == 1000
    assert overflowed[0] <= burst_end < overflowed[1]
    assert overflowed[1] - burst_start >= watch_module.OVERFLOW_COOLDOWN
    assert len(rebuilds) == 2
    target = world.copy_in("after.tif")
    world.wait(lambda: world.out.has("upsert", target))


# --- scan_tree ---------------------------------------------------------------------------------


def test_scan_tree_lists_accepted_files_with_their_stat_facts(tmp_path: Path, raster: Path) -> None:
    for name in ("a.tif", "sub/b.tif", "sub/deeper/c.TIF", ".hidden/d.tif", "e.tmp", "sub/.f.tif"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(raster, tmp_path / name)
    (tmp_path / "link").symlink_to(tmp_path / "sub", target_is_directory=True)
    found = sorted(scan_tree(tmp_path, accept_rasters))
    assert [e.path.relative_to(tmp_path).as_posix() for e in found] == ["a.tif", "sub/b.tif", "sub/deeper/c.TIF"]
    st = (tmp_path / "a.tif").stat()
    assert found[0] == ScanEntry(tmp_path / "a.tif", st.st_size, st.st_mtime_ns, st.st_ino)
    assert [e.path.name for e in scan_tree(tmp_path, accept_rasters, recursive=False)] == ["a.tif"]


def test_scan_tree_refuses_a_missing_root_rather_than_reporting_it_empty(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(scan_tree(tmp_path / "unmounted", accept_rasters))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_scan_tree_reports_unreadable_folders(tmp_path: Path, raster: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    shutil.copy(raster, locked / "a.tif")
    locked.chmod(0)
    try:
        with pytest.raises(PermissionError):
            list(scan_tree(tmp_path, accept_rasters))
        errors: list[Path] = []
        assert list(scan_tree(tmp_path, accept_rasters, on_error=lambda p, e: errors.append(p))) == []
        assert errors == [locked]
    finally:
        locked.chmod(0o755)
