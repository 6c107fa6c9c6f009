"""The Builder runs Item builds in child processes (or threads) and survives hung and crashing builds."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from dataclasses import replace
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

import pytest

from stacwatchd.config import CollectionSettings, ItemRules, Provider
from stacwatchd.engine.answers import pickle_answers_compactly
from stacwatchd.engine.build_process import build_safely
from stacwatchd.engine.builders import Builder, BuilderClosed
from stacwatchd.model.items import BuiltItem, Rejection, Rules, build
from stacwatchd.stac.placed import Placement
from stacwatchd.testing import many_cogs, sample_set, wait_until

HUNG_NAME = "hung_20240101.tif"


def comparable(result: BuiltItem | Rejection) -> Any:
    """A result without what legitimately differs between two builds: raster facts and the build time."""
    if isinstance(result, Rejection):
        return result
    item = dict(result.item, properties={k: v for k, v in result.item["properties"].items() if k not in ("created", "updated")})
    placed = result.placed and (result.placed.placement, result.placed.partition, result.placed.index)
    return replace(result, item=item, facts=(), placed=placed)


def hung_raster(folder: Path) -> Path:
    """A real file that hangs GDAL: a VRT (named like a GeoTIFF) whose pixels come from a named pipe.

    Opening the pipe blocks until a writer appears, exactly like a read from a dead
    network mount; it only happens when pixels are read (thumbnail or statistics on).
    """
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "source.pipe")
    path = folder / HUNG_NAME
    path.write_text(
        '<VRTDataset rasterXSize="16" rasterYSize="16"><SRS>EPSG:32633</SRS>'
        "<GeoTransform>500000, 10, 0, 5000000, 0, -10</GeoTransform>"
        '<VRTRasterBand dataType="Byte" band="1"><SimpleSource>'
        '<SourceFilename relativeToVRT="1">source.pipe</SourceFilename><SourceBand>1</SourceBand>'
        "</SimpleSource></VRTRasterBand></VRTDataset>"
    )
    return path


def release(folder: Path) -> None:
    """Give a hung reader (a thread left behind) its writer, so it can finish."""
    try:
        fd = os.open(folder / "source.pipe", os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.close(fd)


def blocked_on_pipe(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/wchan").read_text().strip() == "wait_for_partner"
    except OSError:
        return False


def process_gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Every kind of sample (good and broken) plus a few plain COGs."""
    folder = tmp_path_factory.mktemp("builder-samples")
    return sorted(sample_set(folder).values()) + many_cogs(folder, 4)


@pytest.fixture
def thumbnail_rules(tmp_path: Path) -> Rules:
    return replace(Rules.for_folder(tmp_path), items=ItemRules(thumbnail=True))


@pytest.mark.parametrize("placed", [False, True], ids=["unplaced", "placed"])
@pytest.mark.parametrize("mode", ["process", "thread"])
def test_builder_results_equal_the_in_process_build(files: list[Path], mode: str, placed: bool, tmp_path: Path):
    rules = Rules.for_folder(files[0].parent)
    if placed:  # rendered by the build, as scan and run ask for
        rules = replace(rules, placement=Placement(tmp_path / "catalog", "Catalog", "Scenes", "year/month"))
    with Builder(2, 60, mode=mode) as builder:  # type: ignore[arg-type]
        results = [builder.build(path, rules) for path in files]
    expected = [build_safely(path, rules) for path in files]
    assert [comparable(r) for r in results] == [comparable(e) for e in expected]
    as_built = [comparable(b).item for b in (build(path, rules) for path in files) if isinstance(b, BuiltItem)]
    assert [comparable(r).item for r in results if isinstance(r, BuiltItem)] == as_built  # not the rendered JSON
    assert any(isinstance(r, Rejection) for r in results) and any(isinstance(r, BuiltItem) for r in results)
    assert all((r.placed is not None) == placed for r in results if isinstance(r, BuiltItem))


def test_many_threads_share_the_process_slots(files: list[Path]):
    rules = Rules.for_folder(files[0].parent)
    paths = files * 3
    results: dict[int, Any] = {}
    with Builder(2, 60) as builder:
        threads = [
            threading.Thread(target=lambda i=i: results.__setitem__(i, builder.build(paths[i], rules))) for i in range(len(paths))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(builder.pids()) == 2
    assert [comparable(results[i]) for i in range(len(paths))] == [comparable(build(p, rules)) for p in paths]


def test_process_builder_needs_no_pystac_objects_to_hand_back_an_item(files: list[Path]):
    rules = Rules.for_folder(files[0].parent)
    with Builder(1, 60) as builder:
        result = builder.build(files[-1], rules)
    assert isinstance(result, BuiltItem) and isinstance(result.item, dict)
    assert result.id == files[-1].stem and result.facts == ()


def test_an_answer_whose_item_crossed_packed_reads_compares_and_pickles_as_the_built_one(files: list[Path]):
    rules = Rules.for_folder(files[0].parent)
    with Builder(1, 60) as builder:
        result = builder.build(files[0], rules)
    expected = build(files[0], rules)
    assert result.id == expected.id == files[0].stem
    assert comparable(result) == comparable(expected)
    again = pickle.loads(pickle.dumps(result))
    assert type(again) is BuiltItem and again == result and again.item == result.item


@pytest.mark.parametrize("placed", [False, True], ids=["unplaced", "placed"])
def test_a_build_process_answer_carries_its_item_as_marshal_bytes(
    files: list[Path], placed: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Pickled as a build process pickles it: the Item as one bytes object, which the
    parent decodes only if it needs the Item, not a tree of dicts pickled node by node."""
    monkeypatch.setattr(ForkingPickler, "_extra_reducers", dict(ForkingPickler._extra_reducers))
    pickle_answers_compactly()
    rules = Rules.for_folder(files[0].parent)
    if placed:
        rules = replace(rules, placement=Placement(tmp_path / "catalog", "Catalog", "Scenes", "year/month"))
    answer = build_safely(files[-1], rules)
    frame = bytes(ForkingPickler.dumps(answer))
    assert b"_built_item" in frame and b"BuiltItem" not in frame
    again = pickle.loads(frame)
    assert again == answer and (again.placed is not None) == placed


def test_build_process_serves_configured_rules_without_loading_the_configuration_library(files: list[Path]):
    provider = Provider(name="Example Space Agency", roles=("producer",), url="https://example.org")
    collection = CollectionSettings(platform="sentinel-2a", keywords=("optical",), providers=(provider,))
    rules = replace(Rules.for_folder(files[0].parent), items=ItemRules(checksum=True), collection=collection)
    with Builder(1, 60) as builder:
        result = builder.build(files[-1], rules)
        (child,) = builder.pids()
        mapped = Path(f"/proc/{child}/maps").read_text()
    assert comparable(result) == comparable(build(files[-1], rules))
    assert result.item["properties"]["providers"] == [
        {"name": "Example Space Agency", "roles": ["producer"], "url": "https://example.org"}
    ]
    assert "libgdal" in mapped and "pydantic_core" not in mapped


def test_a_build_process_runs_one_thread(files: list[Path], monkeypatch: pytest.MonkeyPatch):
    """numpy's BLAS starts a thread per core in each process that loads it, and spins them:
    W build processes on W cores would start W × (W - 1) threads that do no build work."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    rules = replace(Rules.for_folder(files[0].parent), items=ItemRules(thumbnail=True, statistics="approx"))
    with Builder(1, 60) as builder:
        assert isinstance(builder.build(files[-1], rules), BuiltItem)
        (child,) = builder.pids()
        threads = os.listdir(f"/proc/{child}/task")
    assert threads == [str(child)]


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_hung_build_is_refused_with_timeout_and_the_builder_keeps_working(
    tmp_path: Path, thumbnail_rules: Rules, files: list[Path], mode: str
):
    hung = hung_raster(tmp_path)
    good = files[-1]
    try:
        with Builder(1, 2.0, mode=mode) as builder:  # type: ignore[arg-type]
            before = builder.pids()
            started = time.monotonic()
            result = builder.build(hung, thumbnail_rules)
            elapsed = time.monotonic() - started
            assert isinstance(result, Rejection), result
            assert result.kind == "timeout"
            assert result.path == hung and HUNG_NAME in result.reason and "2 s" in result.reason
            assert result.signature is not None and result.signature.size == hung.stat().st_size
            assert 2.0 <= elapsed < 10.0
            after = builder.build(good, Rules.for_folder(good.parent))
            assert isinstance(after, BuiltItem) and after.id == good.stem
            assert builder.timeouts == 1
            if mode == "process":
                assert builder.pids() and builder.pids() != before
                assert process_gone(before[0])
    finally:
        release(tmp_path)


def test_child_killed_mid_build_is_refused_as_crashed_once(tmp_path: Path, thumbnail_rules: Rules, files: list[Path]):
    hung = hung_raster(tmp_path)
    good = files[-1]
    outcome: list[Any] = []
    try:
        with Builder(1, 60) as builder:
            (child,) = builder.pids()
            caller = threading.Thread(target=lambda: outcome.append(builder.build(hung, thumbnail_rules)))
            caller.start()
            wait_until(lambda: blocked_on_pipe(child), timeout=30, message="the build never reached the pipe")
            os.kill(child, signal.SIGKILL)
            caller.join(30)
            assert len(outcome) == 1
            result = outcome[0]
            assert isinstance(result, Rejection) and result.kind == "crashed"
            assert HUNG_NAME in result.reason and "SIGKILL" in result.reason
            assert result.signature is not None
            assert builder.crashes == 1
            (replacement,) = builder.pids()
            assert replacement != child
            after = builder.build(good, Rules.for_folder(good.parent))
            assert isinstance(after, BuiltItem)
            assert builder.crashes == 1 and builder.pids() == [replacement]
    finally:
        release(tmp_path)


def test_build_children_ignore_the_stop_signals_their_parent_handles(files: list[Path]):
    rules = Rules.for_folder(files[0].parent)
    with Builder(1, 60) as builder:
        assert isinstance(builder.build(files[-1], rules), BuiltItem)  # the child is up and serving
        (child,) = builder.pids()
        os.kill(child, signal.SIGTERM)
        os.kill(child, signal.SIGINT)
        result = builder.build(files[-1], rules)
        assert isinstance(result, BuiltItem)
        assert builder.pids() == [child] and builder.crashes == 0


def test_child_that_died_while_idle_is_replaced_without_refusing_the_next_file(files: list[Path]):
    rules = Rules.for_folder(files[0].parent)
    with Builder(1, 60) as builder:
        (child,) = builder.pids()
        os.kill(child, signal.SIGKILL)
        wait_until(lambda: process_gone(child), timeout=10)
        result = builder.build(files[-1], rules)
        assert isinstance(result, BuiltItem)
        assert builder.crashes == 0 and builder.pids() != [child]


def test_closed_builder_ends_its_children_and_refuses_work(files: list[Path]):
    builder = Builder(2, 60)
    children = builder.pids()
    assert len(children) == 2
    builder.close()
    for pid in children:
        wait_until(lambda pid=pid: process_gone(pid), timeout=10, message=f"child {pid} outlived close()")
    with pytest.raises(BuilderClosed):
        builder.build(files[-1], Rules.for_folder(files[-1].parent))


def test_file_queued_behind_a_hung_build_is_built_by_the_fresh_child(tmp_path: Path, thumbnail_rules: Rules, files: list[Path]):
    hung = hung_raster(tmp_path)
    good = files[-1]
    try:
        with Builder(1, 2.0, depth=2) as builder:
            first = builder.submit(hung, thumbnail_rules)
            second = builder.submit(good, Rules.for_folder(good.parent))
            refused, built = first.result(timeout=30), second.result(timeout=30)
            assert isinstance(refused, Rejection) and refused.kind == "timeout"
            assert isinstance(built, BuiltItem) and built.id == good.stem
            assert builder.timeouts == 1 and builder.crashes == 0
    finally:
        release(tmp_path)


def test_crash_refuses_only_the_file_being_built(tmp_path: Path, thumbnail_rules: Rules, files: list[Path]):
    hung = hung_raster(tmp_path)
    queued = files[-2:]
    try:
        with Builder(1, 60, depth=3) as builder:
            (child,) = builder.pids()
            first = builder.submit(hung, thumbnail_rules)
            behind = [builder.submit(p, Rules.for_folder(p.parent)) for p in queued]
            wait_until(lambda: blocked_on_pipe(child), timeout=30, message="the build never reached the pipe")
            os.kill(child, signal.SIGKILL)
            crashed = first.result(timeout=30)
            assert isinstance(crashed, Rejection) and crashed.kind == "crashed"
            assert [f.result(timeout=30).id for f in behind] == [p.stem for p in queued]
            assert builder.crashes == 1
    finally:
        release(tmp_path)


def test_answer_that_cannot_be_decoded_refuses_its_file_alone(files: list[Path], monkeypatch: pytest.MonkeyPatch):
    """A fault injected where nothing real produces one: the first answer fails to decode."""
    import pickle

    import stacwatchd.engine.builders as builders

    failed: list[object] = []

    class FirstAnswerUnreadable:
        @staticmethod
        def loads(data: bytes) -> object:
            message = pickle.loads(data)
            if isinstance(message, tuple) and not failed:
                failed.append(message)
                raise pickle.UnpicklingError("a class this process cannot load")
            return message

    monkeypatch.setattr(builders, "pickle", FirstAnswerUnreadable)
    good = [p for p in files if isinstance(build(p, Rules.for_folder(p.parent)), BuiltItem)][:3]
    with Builder(1, 60) as builder:
        (child,) = builder.pids()
        results = [builder.submit(p, Rules.for_folder(p.parent)) for p in good]
        refused, *built = [f.result(timeout=30) for f in results]
        assert isinstance(refused, Rejection) and refused.kind == "build_failed" and refused.path == good[0]
        assert "could not be read" in refused.reason and "UnpicklingError" in refused.reason
        assert [b.id for b in built] == [p.stem for p in good[1:]], "the files behind it are built"
        assert builder.pids() == [child] and builder.crashes == 0, "the build process itself was fine"
