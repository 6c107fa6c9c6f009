"""Self-healing: damaged catalog files, a lost or corrupt state, and stalls are noticed,
repaired or reported, by a real daemon on real files."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from daemon_support import DaemonProcess
from test_catalog import assert_catalog_ok

from stacwatchd import testing
from stacwatchd.config import CatalogSettings
from stacwatchd.engine.writer import op_for, open_writer
from stacwatchd.model.items import Rules, build
from stacwatchd.sinks.base import Sink, SinkError, SinkRunner
from stacwatchd.state.store import Change, State
from stacwatchd.testing import wait_until

#: Dates that make two years and three month partitions.
DATES = ("20240105T100000", "20240320T100000", "20250611T100000")
ITEM = "scene_{}"


def stacwatchd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stacwatchd", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("prepared")
    return [testing.cog(folder / f"{ITEM.format(d)}.tif") for d in DATES]


def item_rel(date: str) -> str:
    item_id = ITEM.format(date)
    return f"scenes/{date[:4]}/{date[4:6]}/{item_id}/{item_id}.json"


def remove(rel: str) -> Callable[[Path], None]:
    def damage(catalog: Path) -> None:
        (catalog / rel).unlink()

    damage.__name__ = f"rm {rel}"
    return damage


def truncate_half(rel: str) -> Callable[[Path], None]:
    def damage(catalog: Path) -> None:
        data = (catalog / rel).read_bytes()
        (catalog / rel).write_bytes(data[: len(data) // 2])

    return damage


DAMAGE = {
    "partition_catalog_removed": ("scenes/2024/03/catalog.json", remove("scenes/2024/03/catalog.json")),
    "item_removed": (item_rel(DATES[0]), remove(item_rel(DATES[0]))),
    "collection_removed": ("scenes/collection.json", remove("scenes/collection.json")),
    "root_catalog_removed": ("catalog.json", remove("catalog.json")),
    "item_truncated_to_half": (item_rel(DATES[2]), truncate_half(item_rel(DATES[2]))),
}


def cataloged(daemon: DaemonProcess, prepared: list[Path]) -> dict[str, bytes]:
    """Copy the prepared rasters in, wait for their Items; every catalog file's bytes."""
    for path in prepared:
        shutil.copy(path, daemon.watched / path.name)
    daemon.wait_items({p.stem for p in prepared})
    wait_until(lambda: daemon.events("catalog_scrubbed") and _journal_empty(daemon), timeout=60, message="settled")
    return snapshot(daemon.catalog)


def _journal_empty(daemon: DaemonProcess) -> bool:
    state = State(daemon.catalog / ".stacwatchd" / "state.db", readonly=True)
    try:
        return state.counts()["journal"] == 0
    finally:
        state.close()


def snapshot(root: Path) -> dict[str, bytes]:
    """Every catalog file's bytes, as a reader finds them now (temp files of a write in
    progress are not part of the catalog)."""
    out = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith(".stacwatchd-"):
                continue
            try:
                out[os.path.relpath(Path(folder, name), root)] = Path(folder, name).read_bytes()
            except FileNotFoundError:
                continue
    return out


# -- while the daemon runs ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_catalog_file_damaged_while_running_is_repaired_at_the_next_pass_with_one_line(tmp_path, prepared, schema_store, case):
    daemon = DaemonProcess(tmp_path, reconcile=2.0)
    try:
        daemon.start()
        before = cataloged(daemon, prepared)
        rel, damage = DAMAGE[case]
        passes = len(daemon.events("catalog_scrubbed"))
        damage(daemon.catalog)
        damaged_at = time.monotonic()
        repaired = daemon.wait_events("catalog_repaired", timeout=60)
        took = time.monotonic() - damaged_at
        assert repaired[0]["paths"] == [rel] and repaired[0]["count"] == 1
        # the pass that found it is the first one that started after the damage
        assert len(daemon.events("catalog_scrubbed")) <= passes + 2, f"repaired after {took:.1f} s"
        wait_until(lambda: snapshot(daemon.catalog) == before, timeout=30, message="every file as it was")
        daemon.wait_events("catalog_scrubbed", count=len(daemon.events("catalog_scrubbed")) + 1)
        assert len(daemon.events("catalog_repaired")) == 1
        assert_catalog_ok(daemon.catalog, schema_store)
        assert daemon.stop() == 0
    finally:
        daemon.close()


# -- while it is stopped ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_catalog_file_damaged_while_stopped_is_repaired_at_start(tmp_path, prepared, schema_store, case):
    daemon = DaemonProcess(tmp_path)
    try:
        daemon.start()
        before = cataloged(daemon, prepared)
        assert daemon.stop() == 0
        rel, damage = DAMAGE[case]
        damage(daemon.catalog)
        result = stacwatchd("validate", str(daemon.catalog), "--schemas", str(schema_store.directory))
        assert result.returncode == 1 and "stacwatchd scrub --repair" in result.stderr, result
        daemon.start()
        wait_until(lambda: snapshot(daemon.catalog) == before, timeout=60, message="every file as it was")
        assert_catalog_ok(daemon.catalog, schema_store)
        assert daemon.stop() == 0
    finally:
        daemon.close()


def test_stray_files_of_ours_are_removed_and_foreign_files_left_alone_and_reported_once(tmp_path, prepared, schema_store):
    daemon = DaemonProcess(tmp_path, reconcile=1.0)
    try:
        daemon.start()
        before = cataloged(daemon, prepared)
        catalog = daemon.catalog
        orphan = catalog / "scenes/2024/01/scene_gone/scene_gone.json"
        orphan.parent.mkdir()
        orphan.write_bytes((catalog / item_rel(DATES[0])).read_bytes().replace(b"scene_2024", b"scene_gone"))
        stale_partition = catalog / "scenes/2023/catalog.json"
        stale_partition.parent.mkdir()
        stale_partition.write_bytes((catalog / "scenes/2024/catalog.json").read_bytes())
        (catalog / "scenes/2024/.stacwatchd-0badc0de.tmp").write_bytes(b"{")
        (catalog / "scenes/2024/03/.catalog.json.1234.tmp").write_bytes(b"{")
        (catalog / "README.md").write_text("published by the team\n")
        (catalog / "scenes/notes.json").write_text('{"note": "ours, not the daemon\'s"}')
        wait_until(lambda: sum(e["removed"] for e in daemon.events("catalog_repaired")) == 4, timeout=60, message="4 removed")
        assert sum(e["count"] for e in daemon.events("catalog_repaired")) == 4
        foreign = daemon.wait_events("catalog_foreign_files")
        assert sorted(foreign[0]["paths"]) == ["README.md", "scenes/notes.json"]
        wait_until(lambda: not orphan.parent.exists() and not stale_partition.parent.exists(), timeout=10)
        daemon.wait_events("catalog_scrubbed", count=len(daemon.events("catalog_scrubbed")) + 2)
        assert len(daemon.events("catalog_foreign_files")) == 1, "reported once, not at every pass"
        assert (catalog / "README.md").read_text() == "published by the team\n"
        after = snapshot(catalog)
        assert {k: v for k, v in after.items() if k not in ("README.md", "scenes/notes.json")} == before
        assert daemon.stop() == 0
    finally:
        daemon.close()


# -- the scrub command ------------------------------------------------------------------


def test_scrub_command_reports_damage_exits_1_and_repairs_it_with_repair(tmp_path, prepared, schema_store):
    source = tmp_path / "scenes"
    source.mkdir()
    for path in prepared:
        shutil.copy(path, source / path.name)
    catalog = tmp_path / "catalog"
    assert stacwatchd("scan", str(source), "--catalog", str(catalog)).returncode == 0
    before = snapshot(catalog)
    (catalog / "scenes/2024/catalog.json").unlink()
    truncate_half(item_rel(DATES[1]))(catalog)
    (catalog / "index.html").write_text("<html></html>")

    warned = json.loads(stacwatchd("status", "--catalog", str(catalog), "--json").stdout)["warnings"]
    assert warned == ["1 catalog files missing (e.g. scenes/2024/catalog.json): run 'stacwatchd scrub --repair'"]
    found = stacwatchd("scrub", "--catalog", str(catalog))
    assert found.returncode == 1, found
    assert "missing  scenes/2024/catalog.json" in found.stdout
    assert f"damaged  {item_rel(DATES[1])}" in found.stdout
    assert "foreign  index.html" in found.stdout
    assert "to repair: stacwatchd scrub --repair" in found.stdout

    fixed = stacwatchd("scrub", "--repair", "--catalog", str(catalog))
    assert fixed.returncode == 0, fixed
    assert "repaired: 2 rewritten" in fixed.stdout
    assert {k: v for k, v in snapshot(catalog).items() if k != "index.html"} == before
    again = stacwatchd("scrub", "--quick", "--catalog", str(catalog))
    assert again.returncode == 0 and "0 missing, 0 damaged, 0 stray, 1 foreign" in again.stdout, again
    assert_catalog_ok(catalog, schema_store)


def test_same_size_damage_is_found_by_the_hash_and_a_quick_scrub_once_the_mtime_moves(tmp_path, prepared):
    source = tmp_path / "scenes"
    source.mkdir()
    shutil.copy(prepared[0], source / prepared[0].name)
    catalog = tmp_path / "catalog"
    assert stacwatchd("scan", str(source), "--catalog", str(catalog)).returncode == 0
    assert stacwatchd("scrub", "--repair", "--catalog", str(catalog)).returncode == 0  # records the mtimes found right
    item = catalog / item_rel(DATES[0])
    data = item.read_bytes()
    stamp = item.stat().st_mtime_ns
    item.write_bytes(data.replace(b'"Feature"', b'"Featurx"'))
    os.utime(item, ns=(stamp, stamp))
    assert stacwatchd("scrub", "--quick", "--catalog", str(catalog)).returncode == 0, "same size, same mtime: not looked at"
    full = stacwatchd("scrub", "--catalog", str(catalog))
    assert full.returncode == 1 and f"damaged  {item_rel(DATES[0])}" in full.stdout
    os.utime(item)
    quick = stacwatchd("scrub", "--quick", "--catalog", str(catalog))
    assert quick.returncode == 1 and f"damaged  {item_rel(DATES[0])}" in quick.stdout


def test_state_of_schema_version_2_is_migrated_and_learns_file_sizes(tmp_path, prepared):
    source = tmp_path / "scenes"
    source.mkdir()
    shutil.copy(prepared[0], source / prepared[0].name)
    catalog = tmp_path / "catalog"
    assert stacwatchd("scan", str(source), "--catalog", str(catalog)).returncode == 0
    state_path = catalog / ".stacwatchd" / "state.db"
    state = State(state_path)
    with state.transaction() as tx:  # what version 2 wrote
        tx.db.execute("ALTER TABLE files DROP COLUMN size")
        tx.db.execute("ALTER TABLE files DROP COLUMN mtime_ns")
        tx.db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    state.close()
    for _ in range(2):  # a migration that runs again changes nothing
        State(state_path).close()
    state = State(state_path, readonly=True)
    assert state.meta("schema_version") == "3"
    assert {r.size for r in state.file_records()} == {None}
    state.close()
    item = catalog / item_rel(DATES[0])
    item.write_bytes(item.read_bytes()[:100])
    found = stacwatchd("scrub", "--quick", "--catalog", str(catalog))
    assert found.returncode == 1 and f"damaged  {item_rel(DATES[0])}" in found.stdout, "no size yet: hashed"
    assert stacwatchd("scrub", "--repair", "--catalog", str(catalog)).returncode == 0
    state = State(state_path, readonly=True)
    try:
        sizes = {r.path: r.size for r in state.file_records()}
    finally:
        state.close()
    assert all(size == (catalog / rel).stat().st_size for rel, size in sizes.items())


# -- a lost or corrupt state -------------------------------------------------------------


def fresh_scan(daemon: DaemonProcess, where: Path) -> Path:
    """The catalog a fresh ``scan`` of the daemon's folder makes, at the same depth."""
    result = stacwatchd("scan", "--config", str(daemon.config), "--catalog", str(where))
    assert result.returncode == 0, result
    return where


def comparable(root: Path) -> dict[str, object]:
    """Every catalog file, Items without the times that depend on when they were built."""
    out: dict[str, object] = {}
    for rel, data in snapshot(root).items():
        doc = json.loads(data)
        if doc.get("type") == "Feature":
            doc["properties"] = {k: v for k, v in doc["properties"].items() if k not in ("created", "updated")}
        out[rel] = doc
    return out


def created_times(daemon: DaemonProcess) -> dict[str, str]:
    return {item_id: doc["properties"]["created"] for item_id, doc in daemon.items().items()}


def changed_sources_while_stopped(daemon: DaemonProcess, extra: Path) -> None:
    """One source removed, one added, while the daemon was stopped."""
    (daemon.watched / f"{ITEM.format(DATES[1])}.tif").unlink()
    shutil.copy(extra, daemon.watched / extra.name)


@pytest.mark.slow
def test_state_deleted_while_sources_change_is_rebuilt_keeping_ids_and_created(tmp_path, prepared, schema_store):
    extra = testing.cog(tmp_path / "new_20260101T000000.tif")
    daemon = DaemonProcess(tmp_path / "d")
    try:
        daemon.start()
        cataloged(daemon, prepared)
        created = created_times(daemon)
        assert daemon.stop() == 0
        shutil.rmtree(daemon.catalog / ".stacwatchd")
        changed_sources_while_stopped(daemon, extra)
        time.sleep(0.01)  # a created time the rebuild invented would differ
        daemon.start()
        rebuilt = daemon.wait_events("state_rebuilt", timeout=120)[0]
        assert daemon.events("state_missing")
        assert rebuilt["created_kept"] == 2 and rebuilt["orphans_removed"] == 1 and rebuilt["items"] == 3
        survivors = {ITEM.format(DATES[0]), ITEM.format(DATES[2])}
        assert set(daemon.items()) == survivors | {"new_20260101T000000"}
        assert {k: v for k, v in created_times(daemon).items() if k in survivors} == {k: created[k] for k in survivors}
        assert comparable(daemon.catalog) == comparable(fresh_scan(daemon, tmp_path / "d" / "fresh"))
        assert_catalog_ok(daemon.catalog, schema_store)
        assert daemon.stop() == 0
    finally:
        daemon.close()


@pytest.mark.slow
def test_corrupt_state_is_set_aside_and_rebuilt_from_sources_and_catalog(tmp_path, prepared, schema_store):
    extra = testing.cog(tmp_path / "new_20260101T000000.tif")
    daemon = DaemonProcess(tmp_path / "d")
    try:
        daemon.start()
        cataloged(daemon, prepared)
        created = created_times(daemon)
        assert daemon.stop() == 0
        state_path = daemon.catalog / ".stacwatchd" / "state.db"
        size = state_path.stat().st_size
        with state_path.open("r+b") as fh:
            fh.seek(size // 2)
            fh.write(os.urandom(8192))
        assert State.probe(state_path)[0] is not None, "the garbage must be damage SQLite can see"
        changed_sources_while_stopped(daemon, extra)
        daemon.start()
        rebuilt = daemon.wait_events("state_rebuilt", timeout=120)[0]
        corrupt = daemon.events("state_corrupt")
        assert len(corrupt) == 1 and corrupt[0]["level"] == "error" and corrupt[0]["reason"]
        aside = sorted(p.name for p in state_path.parent.glob("state.db.corrupt-*"))
        assert sorted(Path(p).name for p in corrupt[0]["moved_to"]) == aside and aside[0].startswith("state.db.corrupt-")
        assert rebuilt["created_kept"] == 2 and rebuilt["orphans_removed"] == 1
        survivors = {ITEM.format(DATES[0]), ITEM.format(DATES[2])}
        assert {k: v for k, v in created_times(daemon).items() if k in survivors} == {k: created[k] for k in survivors}
        assert comparable(daemon.catalog) == comparable(fresh_scan(daemon, tmp_path / "d" / "fresh"))
        assert State.probe(state_path)[0] is None
        assert_catalog_ok(daemon.catalog, schema_store)
        assert daemon.stop() == 0
    finally:
        daemon.close()


def test_scan_after_the_state_was_lost_keeps_created_removes_orphans_and_a_killed_rebuild_resumes(
    tmp_path, prepared, schema_store
):
    source = tmp_path / "scenes"
    source.mkdir()
    for path in prepared:
        shutil.copy(path, source / path.name)
    catalog = tmp_path / "catalog"
    assert stacwatchd("scan", str(source), "--catalog", str(catalog)).returncode == 0
    created = json.loads((catalog / item_rel(DATES[0])).read_bytes())["properties"]["created"]
    shutil.rmtree(catalog / ".stacwatchd")
    (source / prepared[1].name).unlink()
    rebuilt = stacwatchd("--log-level", "info", "--log-format", "json", "scan", str(source), "--catalog", str(catalog))
    assert rebuilt.returncode == 0, rebuilt
    assert '"event": "state_missing"' in rebuilt.stderr and '"event": "state_rebuilt"' in rebuilt.stderr
    assert not (catalog / item_rel(DATES[1])).exists(), "the Item of the source that is gone"
    assert json.loads((catalog / item_rel(DATES[0])).read_bytes())["properties"]["created"] == created
    assert_catalog_ok(catalog, schema_store)
    # a rebuild killed before it finished leaves its mark in the state: the next start finishes it
    state = State(catalog / ".stacwatchd" / "state.db")
    state.set_meta({"recovery": "missing"})
    state.close()
    orphan = catalog / "scenes/2024/03/scene_gone/scene_gone.json"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes((catalog / item_rel(DATES[0])).read_bytes())
    resumed = stacwatchd("--log-level", "info", "--log-format", "json", "scan", str(source), "--catalog", str(catalog))
    assert '"event": "state_rebuild_resumed"' in resumed.stderr and not orphan.exists(), resumed.stderr
    assert_catalog_ok(catalog, schema_store)


# -- stalls ------------------------------------------------------------------------------


def status(daemon: DaemonProcess) -> dict:
    result = stacwatchd("status", "--config", str(daemon.config), "--json")
    assert result.returncode == 0, result
    return json.loads(result.stdout)


@pytest.mark.slow
def test_writer_that_cannot_write_the_catalog_is_reported_stalled_and_recovers(tmp_path, prepared):
    daemon = DaemonProcess(tmp_path, extra="stall_warning_seconds = 2")
    try:
        daemon.start()
        blocker = daemon.catalog / "scenes" / "2025"
        blocker.parent.mkdir(parents=True, exist_ok=True)
        blocker.write_text("a file where the writer needs a folder\n")
        shutil.copy(prepared[2], daemon.watched / prepared[2].name)
        failed = daemon.wait_events("catalog_write_failed", timeout=60)
        stalled = daemon.wait_events("writer_stalled", timeout=30)[0]
        assert stalled["journal"] >= 1 and stalled["no_progress_for_s"] >= 2
        assert stalled["no_progress_for_s"] < 2 + 5, "warned within the configured time (plus a main-loop tick)"
        assert failed[0]["timestamp"] <= stalled["timestamp"]
        report = wait_until(lambda: (s := status(daemon)).get("warnings") and s, timeout=30)
        assert any(w.startswith("writer stalled") for w in report["warnings"])
        blocker.unlink()
        daemon.wait_items({prepared[2].stem})
        daemon.wait_events("writer_moving_again")
        wait_until(lambda: not any(w.startswith("writer stalled") for w in status(daemon).get("warnings", [])), timeout=30)
        assert len(daemon.events("writer_stalled")) == 1
        assert daemon.stop() == 0
    finally:
        daemon.close()


def hanging_raster(folder: Path, staging: Path, name: str) -> tuple[Path, Path]:
    """A VRT named like a GeoTIFF (written in ``staging``, to be moved into ``folder``)
    whose pixels come from a named pipe in ``folder``: reading them blocks until someone
    writes to the pipe, like a read from a dead network share."""
    pipe = folder / "pixels.pipe"
    os.mkfifo(pipe)
    path = staging / name
    path.write_text(
        '<VRTDataset rasterXSize="8" rasterYSize="8"><SRS>EPSG:32633</SRS>'
        "<GeoTransform>500000, 10, 0, 5000000, 0, -10</GeoTransform>"
        '<VRTRasterBand dataType="Byte" band="1"><SimpleSource>'
        f'<SourceFilename relativeToVRT="1">{pipe.name}</SourceFilename><SourceBand>1</SourceBand>'
        "</SimpleSource></VRTRasterBand></VRTDataset>"
    )
    return path, pipe


def release(pipe: Path) -> None:
    try:
        fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.close(fd)


@pytest.mark.slow
def test_build_running_longer_than_the_stall_time_is_reported(tmp_path):
    source = tmp_path / "prepared"
    source.mkdir()
    daemon = DaemonProcess(tmp_path, extra="stall_warning_seconds = 2", watch_extra="[watch.items]\nthumbnail = true\n")
    pipe = None
    try:
        daemon.start()
        path, pipe = hanging_raster(daemon.watched, source, "hung_20240101.tif")
        os.replace(path, daemon.watched / path.name)
        stalled = daemon.wait_events("build_stalled", timeout=60)[0]
        assert stalled["path"] == str(daemon.watched / path.name) and stalled["running_for_s"] >= 2
        report = wait_until(lambda: (s := status(daemon)).get("warnings") and s, timeout=30)
        assert any(w.startswith(f"build stalled: {daemon.watched / path.name}") for w in report["warnings"])
        # GDAL may open the pipe once per block: give every open a writer until it is done
        wait_until(lambda: release(pipe) or "stalled_builds" not in status(daemon).get("daemon", {}), timeout=60)
        assert len(daemon.events("build_stalled")) == 1
    finally:
        if pipe is not None:
            release(pipe)
        daemon.close()


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers (a hung target)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


class Webhook(Sink):
    """Posts each batch to a local endpoint and waits for its answer."""

    name = "hook"
    stream = "changes"

    def __init__(self, port: int) -> None:
        self.port = port

    def deliver(self, rows: Sequence[Change], state: State) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=60) as conn:
                conn.sendall(b"POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
                answer = conn.recv(1)
        except OSError as exc:
            raise SinkError(f"127.0.0.1:{self.port}", str(exc)) from None
        if not answer:
            raise SinkError(f"127.0.0.1:{self.port}", "closed without an answer")


def test_hung_sink_is_stalled_once_its_backlog_waited_the_stall_time_not_before(tmp_path, prepared):
    server = SilentServer()
    sink = Webhook(server.port)
    writer = open_writer(CatalogSettings(root=tmp_path / "catalog"), {}, [sink])
    runner = SinkRunner(sink, writer.state.path, stall_seconds=1.0)
    try:
        quiet_from = time.monotonic()
        assert not runner.check_stall()
        wait_until(lambda: time.monotonic() - quiet_from >= 1.5, message="a quiet spell longer than the stall time")
        rules = Rules.for_folder(prepared[0].parent)
        op = op_for(build(prepared[0], rules), rules)
        arrived = time.monotonic()
        writer.apply([op])
        runner.start()
        with testing.capture_logs() as logs:
            assert not runner.check_stall(), "rows that just arrived after a quiet spell are not late"
            wait_until(runner.check_stall, timeout=30, message="stalled")
            waited = time.monotonic() - arrived
            assert runner.check_stall()
        stalled = [e for e in logs if e["event"] == "sink_stalled"]
        assert len(stalled) == 1 and stalled[0]["sink"] == "hook" and stalled[0]["backlog"] > 0
        assert 1.0 <= waited <= 1.0 + 5
        assert runner.status()["stalled_for_s"] >= 1.0
    finally:
        server.close()
        runner.stop(timeout=10)
        writer.close()


def test_notify_socket_nobody_reads_never_blocks_the_main_loop(tmp_path, monkeypatch):
    """The main loop that checks stalls sends WATCHDOG=1 every turn: a reader that stopped
    reading (a full queue) costs a dropped datagram, not a hung daemon."""
    from stacwatchd.systemd import notify

    unread = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    unread.bind(str(tmp_path / "notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    try:
        started = time.monotonic()
        sent = [notify("WATCHDOG=1") for _ in range(50)]
        assert time.monotonic() - started < 5
        assert sent[0] and not all(sent), "the first ones arrive, the ones past a full queue are dropped"
    finally:
        unread.close()
