"""Watcher + Settler on real folders with real inotify (and polling): what a pipeline sees.

Every test acts like a user or a pipeline would (copy, write slowly, rename, move folders,
overwrite with rasterio, delete and recreate roots) and asserts on the ``Ready`` decisions
and the watcher's callbacks. Waiting is always on a condition with a deadline; "nothing
else happened" is checked after a sentinel file, published after the actions, has come
out and nothing is pending any more.

What a test cannot do to its own process (make the kernel drop inotify events, lower
inotify limits, mount over a root) is done to a watcher in a process of its own
(``support.watch_probe``): stopped with SIGSTOP, or in private user and mount namespaces,
so that no setting of the machine changes.
"""

from __future__ import annotations

import itertools
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import IN_CI
from support.watch_probe import Probe, namespaces_available, quote

from stacwatchd import testing
from stacwatchd.engine import watch as watch_module
from stacwatchd.engine.settle import Ready, Settler
from stacwatchd.engine.watch import (
    FileEvent,
    ScanEntry,
    Watcher,
    filesystem_type,
    scan_tree,
)
from stacwatchd.model.items import Rules
from stacwatchd.testing import capture_logs, wait_until

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
    #: Every event the watcher handed over, with the name of the thread it came in.
    handed: list[tuple[FileEvent, str]]
    changed: list[Path] = field(default_factory=list)
    rescans: list[Path] = field(default_factory=list)

    @property
    def events(self) -> list[FileEvent]:
        return [event for event, _ in list(self.handed)]

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
        report_changes: bool = False,
        **watcher_kw: object,
    ) -> World:
        """A watcher feeding a settler, wired as the daemon wires them.

        With ``report_changes`` root changes go to ``World.changed`` (the daemon reconciles
        them); without, the watcher reports the files of a changed root as ``found``.
        """
        root = tmp_path / f"watched{len(started)}"
        root.mkdir()
        outside = tmp_path / f"outside{len(started)}"
        outside.mkdir()
        out = Recorder()
        handed: list[tuple[FileEvent, str]] = []
        changed: list[Path] = []
        rescans: list[Path] = []
        watcher: Watcher
        settler = Settler(out, settle, root_intact=lambda r: watcher.intact(r), rescan=rescans.append)

        def sink(event: FileEvent) -> None:
            handed.append((event, threading.current_thread().name))
            settler.feed(event)

        kw = {"polling_interval": POLL, "check_interval": 0.1, "retry_initial": 0.1, "retry_max": 0.4}
        kw.update(watcher_kw)
        if report_changes:
            kw["on_root_changed"] = changed.append
        watcher = Watcher(sink, observer=observer, **kw)  # type: ignore[arg-type]
        watcher.watch(root, recursive=recursive, accepts=accept_rasters)
        world = World(root.resolve(), outside, raster, settler, watcher, out, handed, changed, rescans)
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


@pytest.mark.parametrize("observer", ["inotify", "polling"])
def test_a_gdal_overwrite_is_one_upsert_never_a_delete_and_an_add(make_world: Callable[..., World], observer: str) -> None:
    """rasterio writing over an existing path unlinks the old file before creating the new one."""
    world = make_world(observer=observer)
    target = testing.write_raster(world.root / "scene.tif", width=64, height=64)
    world.wait(lambda: world.out.upserts().count(target) == 1)
    for _ in range(3):
        testing.write_raster(target, width=96, height=64)
    world.wait(lambda: world.out.upserts().count(target) == 2)
    world.drain()
    assert world.out.ops() == [("upsert", target), ("upsert", target)]
    assert world.out.all()[-1].size == target.stat().st_size
    if observer == "inotify":
        assert "deleted" in [e.kind for e in world.events if e.path == target]  # GDAL did unlink it


# --- departures and renames ------------------------------------------------------------


def test_a_deleted_file_is_deleted_exactly_once_after_settle_seconds(world: World) -> None:
    target = world.copy_in("a.tif")
    world.wait(lambda: world.out.has("upsert", target))
    target.unlink()
    unlinked = time.monotonic()
    world.wait(lambda: world.out.has("delete", target))
    world.drain()
    assert world.out.ops() == [("upsert", target), ("delete", target)]
    assert world.out.all()[-1].at - unlinked >= SETTLE


def test_rename_inside_the_tree_deletes_the_old_name_and_upserts_the_new(world: World) -> None:
    old = world.copy_in("old.tif")
    world.wait(lambda: world.out.has("upsert", old))
    new = world.root / "sub" / "new.tif"
    new.parent.mkdir()
    old.rename(new)
    world.wait(lambda: world.out.has("upsert", new) and world.out.has("delete", old))
    world.drain()
    assert sorted(world.out.ops()) == sorted([("upsert", old), ("delete", old), ("upsert", new)])


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
    assert not [e for e in world.events if e.path.name == "b.tif"]


def test_folder_renamed_inside_the_tree_moves_its_files(world: World) -> None:
    files = [world.copy_in("2024/a.tif"), world.copy_in("2024/x/b.tif")]
    world.wait(lambda: set(files) <= set(world.out.upserts()))
    (world.root / "2024").rename(world.root / "2025")
    moved = {world.root / "2025" / "a.tif", world.root / "2025" / "x" / "b.tif"}
    world.wait(lambda: moved <= set(world.out.upserts()))
    world.drain()
    assert world.out.ops()[2] == ("delete_tree", world.root / "2024")
    assert sorted(map(str, world.out.upserts()[2:])) == sorted(map(str, moved))


def test_a_folder_deleted_and_recreated_within_settle_is_rescanned_not_removed(world: World) -> None:
    """``rm -rf out; mkdir out``, then one file back: one upsert, and a rescan for the rest."""
    files = [world.copy_in("out/a.tif"), world.copy_in("out/b.tif")]
    world.wait(lambda: set(files) <= set(world.out.upserts()))
    shutil.rmtree(world.root / "out")
    again = world.copy_in("out/a.tif")
    world.wait(lambda: world.out.upserts().count(again) == 2)
    world.wait(lambda: world.rescans == [world.root])
    world.drain()
    assert [op for op, _ in world.out.ops()] == ["upsert", "upsert", "upsert"]


def test_files_of_a_folder_that_arrived_are_listed_by_the_watcher_thread_not_the_observer(
    world: World,
) -> None:
    """Handlers do no I/O: the listing of a folder moved in happens in the watcher's thread."""
    staging = world.outside / "delivery"
    staging.mkdir()
    shutil.copy(world.raster, staging / "a.tif")
    staging.rename(world.root / "delivery")
    target = world.root / "delivery" / "a.tif"
    world.wait(lambda: world.out.has("upsert", target))
    handed = list(world.handed)
    assert [thread for event, thread in handed if event.kind == "found"] == ["stacwatchd-watch"]
    assert "stacwatchd-watch" not in [thread for event, thread in handed if event.kind != "found"]


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


# --- polling ----------------------------------------------------------------------------------


def test_polling_observer_sees_a_copied_file(make_world: Callable[..., World]) -> None:
    world = make_world(observer="polling")
    assert world.watcher.status() == {world.root: "polling"}
    target = world.copy_in("polled/a.tif")
    world.wait(lambda: world.out.has("upsert", target))
    world.drain()
    assert world.out.ops() == [("upsert", target)]
    assert world.out.all()[0].size == world.raster.stat().st_size


def test_polling_observer_deletes_a_file_once_after_settle_seconds(make_world: Callable[..., World]) -> None:
    world = make_world(observer="polling")
    target = world.copy_in("a.tif")
    world.wait(lambda: world.out.has("upsert", target))
    target.unlink()
    world.wait(lambda: world.out.has("delete", target))
    world.drain()
    assert world.out.ops() == [("upsert", target), ("delete", target)]


def test_auto_polls_roots_on_network_filesystems(make_world: Callable[..., World], monkeypatch: pytest.MonkeyPatch) -> None:
    """No NFS server here: the filesystem type is the one thing stood in for."""
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


# --- roots that vanish, come back, or are replaced ----------------------------------------------


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
        world.drain()
    lost = next(e for e in logs if e["event"] == "watch_root_lost")
    assert lost["log_level"] == "warning" and lost["path"] == str(world.root)
    assert any(e["event"] == "watch_root_restored" for e in logs)
    assert not [op for op, _ in world.out.ops() if op != "upsert"]
    assert world.watcher.status() == {world.root: observer}


@pytest.mark.parametrize("observer", ["inotify", "polling"])
def test_a_root_deleted_and_recreated_is_reported_and_followed_again(make_world: Callable[..., World], observer: str) -> None:
    """``rm -rf root; mkdir root``: the daemon must compare the state with the new folder.

    inotify always sees the root deleted. A poll may not: the new folder often gets the
    inode number of the old one, and then looks like the same folder emptied; its files'
    removals then come through settling instead, which leaves the catalog just as right.
    """
    world = make_world(observer=observer, report_changes=True)
    old = [world.copy_in("a.tif"), world.copy_in("sub/b.tif")]
    world.wait(lambda: set(old) <= set(world.out.upserts()))
    shutil.rmtree(world.root)
    world.root.mkdir()

    def removed(path: Path) -> bool:
        return any(op != "upsert" and (p == path or p in path.parents) for op, p in world.out.ops())

    if observer == "inotify":
        world.wait(lambda: world.changed == [world.root], message=f"root changes: {world.changed}")
    else:
        world.wait(lambda: world.changed == [world.root] or all(map(removed, old)))
    fresh = [world.copy_in("c.tif"), world.copy_in("sub/d.tif")]
    world.wait(lambda: set(fresh) <= set(world.out.upserts()))
    world.drain()
    assert world.changed in ([world.root], [])
    upserts = world.out.upserts()
    assert set(upserts[:2]) == set(old) and sorted(upserts[2:]) == sorted(fresh)
    # What the events said was removed may be applied (it is gone); the reconcile that the
    # root change asks for removes the rest. Nothing else may be removed.
    assert {path for op, path in world.out.ops() if op != "upsert"} <= {*old, world.root / "sub"}
    assert world.watcher.status() == {world.root: observer}


@pytest.mark.parametrize("observer", ["inotify", "polling"])
def test_a_root_replaced_by_rename_is_reported_and_the_old_folder_is_not_followed(
    make_world: Callable[..., World], observer: str
) -> None:
    world = make_world(observer=observer, report_changes=True)
    before = world.copy_in("a.tif")
    world.wait(lambda: world.out.has("upsert", before))
    staging = world.outside / "next"
    staging.mkdir()
    shutil.copy(world.raster, staging / "b.tif")
    world.root.rename(world.outside / "previous")
    staging.rename(world.root)
    world.wait(lambda: world.changed == [world.root])
    (world.outside / "previous" / "a.tif").unlink()
    shutil.copy(world.raster, world.outside / "previous" / "stale.tif")
    after = world.copy_in("c.tif")
    world.wait(lambda: world.out.has("upsert", after))
    world.drain()
    assert world.changed == [world.root]
    assert ("upsert", world.root / "stale.tif") not in world.out.ops()
    assert world.out.ops()[0] == ("upsert", before)
    assert ("upsert", after) in world.out.ops()


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


# --- kernel limits, overflows and mounts: a watcher in a process of its own -------------------------

needs_namespaces = pytest.mark.skipif(
    not IN_CI and not namespaces_available(), reason="user namespaces are not available on this machine"
)


@pytest.fixture
def probes() -> Iterator[list[Probe]]:
    started: list[Probe] = []
    yield started
    for probe in started:
        probe.close()


def churn(folder: Path, events: int) -> None:
    """Produce ``events`` inotify events that the kernel cannot merge (two files, alternately)."""
    a, b = (os.open(folder / name, os.O_CREAT | os.O_WRONLY) for name in ("churn-a.txt", "churn-b.txt"))
    try:
        for _ in range(events // 2 + 1):
            os.write(a, b"x")
            os.write(b, b"x")
    finally:
        os.close(a)
        os.close(b)


def kernel_queue_size() -> int:
    return int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())


def test_a_kernel_queue_overflow_is_reported_and_events_keep_coming(tmp_path: Path, probes: list[Probe]) -> None:
    """The probe is stopped while more events happen than the kernel queues for it."""
    root = tmp_path / "root"
    root.mkdir()
    probe = Probe(root)
    probes.append(probe)
    probe.pause()
    churn(root, kernel_queue_size() + 4096)
    probe.resume()
    probe.wait_for(lambda: probe.saw("overflow"), what="an overflow report")
    assert probe.said_so_far("overflow") == [{"event": "overflow", "root": str(root), "overflows": 1}]
    assert [e["path"] for e in probe.logged("inotify_overflow")] == [str(root)]
    target = testing.write_then_rename(b"after", root / "after.tif")
    probe.wait_for(lambda: probe.saw("upsert", target), what="the file after the overflow")
    nested = root / "made" / "meanwhile"
    nested.mkdir(parents=True)
    late = testing.write_then_rename(b"late", nested / "late.tif")
    probe.wait_for(lambda: probe.saw("upsert", late), what="a file in a folder made after the overflow")


@pytest.mark.slow
def test_an_overflow_storm_is_reported_twice_not_once_per_overflow(tmp_path: Path, probes: list[Probe]) -> None:
    """Once at once (reconcile now), once after the burst (reconcile what the burst lost)."""
    root = tmp_path / "root"
    root.mkdir()
    cooldown = 4.0
    probe = Probe(root, overflow_cooldown=cooldown)
    probes.append(probe)
    for count in (1, 2, 3):
        probe.pause()
        churn(root, kernel_queue_size() + 4096)
        probe.resume()
        probe.wait_for(lambda n=count: any(e["count"] >= n for e in probe.said_so_far("overflows")), what=f"overflow {count}")
    burst_over = time.monotonic()
    reports = probe.said_so_far("overflow")
    assert len(reports) == 1, "the first overflow is reported at once, the rest are held"
    probe.wait_for(lambda: len(probe.said_so_far("overflow")) == 2, timeout=cooldown + 5, what="the report after the burst")
    time.sleep(0.5)  # a third report, if any, would come right after the second one
    assert [r["root"] for r in probe.said_so_far("overflow")] == [str(root), str(root)]
    assert probe.said_so_far("overflow")[1]["overflows"] == 3
    assert time.monotonic() - burst_over < cooldown + 5


@needs_namespaces
@pytest.mark.parametrize("observer", ["inotify", "polling"])
def test_a_root_bind_mounted_over_is_reported_and_its_new_content_followed(
    tmp_path: Path, probes: list[Probe], raster: Path, observer: str
) -> None:
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    shutil.copy(raster, root / "a.tif")
    probe = Probe(root, observer=observer, isolated=True)
    probes.append(probe)
    probe.shell(f"mount --bind {quote(elsewhere)} {quote(root)}")
    probe.wait_for(lambda: probe.saw("root_changed"), what="the root change")
    shutil.copy(raster, elsewhere / "b.tif")  # the same folder the probe now sees as root/b.tif
    probe.wait_for(lambda: probe.saw("upsert", root / "b.tif"), what="a file in the mounted folder")
    assert probe.said_so_far("root_changed") == [{"event": "root_changed", "root": str(root)}]
    assert probe.status() == {str(root): observer}


@needs_namespaces
@pytest.mark.parametrize("observer", ["inotify", "polling"])
def test_a_share_unmounted_from_under_a_root_removes_nothing_until_it_is_back(
    tmp_path: Path, probes: list[Probe], raster: Path, observer: str
) -> None:
    """Unmounting leaves the empty mount point: it must not look like every file deleted."""
    root = tmp_path / "share"
    root.mkdir()
    probe = Probe(root, observer=observer, isolated=True)
    probes.append(probe)
    probe.shell(f"mount -t tmpfs share {quote(root)}")
    probe.wait_for(lambda: probe.saw("root_changed"), what="the share mounted over the root")
    probe.shell(f"cp {quote(raster)} {quote(root / 'a.tif')}")
    probe.wait_for(lambda: probe.saw("upsert", root / "a.tif"), what="a file on the share")
    probe.shell(f"umount {quote(root)}")
    probe.wait_for(lambda: probe.status() == {str(root): "lost: unmounted"}, what="the root lost as unmounted")
    time.sleep(1.0)  # several settle periods and checks: nothing may be removed meanwhile
    assert [op for op, _ in probe.decisions()] == ["upsert"]
    assert len(probe.said_so_far("root_changed")) == 1
    probe.shell(f"mount -t tmpfs share {quote(root)}")
    probe.wait_for(lambda: len(probe.said_so_far("root_changed")) == 2, what="the share back")
    probe.shell(f"cp {quote(raster)} {quote(root / 'c.tif')}")
    probe.wait_for(lambda: probe.saw("upsert", root / "c.tif"), what="a file on the share that is back")
    assert "delete" not in [op for op, _ in probe.decisions()]


@needs_namespaces
def test_auto_falls_back_to_polling_when_inotify_watches_run_out(tmp_path: Path, probes: list[Probe], raster: Path) -> None:
    root = tmp_path / "root"
    for name in ("one", "two", "three/deep"):
        (root / name).mkdir(parents=True)
    probe = Probe(root, observer="auto", user_limits={"max_inotify_watches": 2})
    probes.append(probe)
    assert probe.status() == {str(root): "polling"}
    [warning] = probe.logged("inotify_limit_reached")
    assert warning["level"] == "warning" and warning["path"] == str(root)
    shutil.copy(raster, root / "three" / "deep" / "a.tif")
    probe.wait_for(lambda: probe.saw("upsert", root / "three" / "deep" / "a.tif"), what="a file in a deep folder")


@needs_namespaces
def test_auto_switches_a_live_root_to_polling_when_a_new_folder_cannot_be_watched(
    tmp_path: Path, probes: list[Probe], raster: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    probe = Probe(root, observer="auto", user_limits={"max_inotify_watches": 1})
    probes.append(probe)
    assert probe.status() == {str(root): "inotify"}
    (root / "deep").mkdir()
    probe.wait_for(lambda: probe.status() == {str(root): "polling"}, what="the switch to polling")
    assert probe.logged("inotify_limit_reached")
    shutil.copy(raster, root / "deep" / "a.tif")
    probe.wait_for(lambda: probe.saw("upsert", root / "deep" / "a.tif"), what="a file in the new folder")


@needs_namespaces
def test_inotify_mode_reports_folders_it_cannot_watch_and_keeps_the_rest(
    tmp_path: Path, probes: list[Probe], raster: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    probe = Probe(root, observer="inotify", user_limits={"max_inotify_watches": 1})
    probes.append(probe)
    (root / "deep").mkdir()
    probe.wait_for(lambda: probe.logged("inotify_limit_reached"), what="the limit reported")
    assert probe.logged("inotify_limit_reached")[0]["level"] == "error"
    assert probe.status() == {str(root): "inotify"}
    shutil.copy(raster, root / "top.tif")
    probe.wait_for(lambda: probe.saw("upsert", root / "top.tif"), what="a file in the watched folder")


@needs_namespaces
def test_auto_falls_back_to_polling_when_inotify_cannot_start(tmp_path: Path, probes: list[Probe], raster: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    probe = Probe(root, observer="auto", user_limits={"max_inotify_instances": 0})
    probes.append(probe)
    assert probe.status() == {str(root): "polling"}
    assert [e["event"] for e in probe.logs if e.get("level") == "warning"] == ["inotify_unavailable"]
    shutil.copy(raster, root / "a.tif")
    probe.wait_for(lambda: probe.saw("upsert", root / "a.tif"), what="a polled file")


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
