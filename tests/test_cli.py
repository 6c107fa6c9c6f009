"""The command line as a person meets it: options, help, errors, `status`, `scan`, `validate`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import structlog

from stacwatchd import cli as cli_module
from stacwatchd import testing
from stacwatchd.status import render_status

#: The extension schemas a default catalog declares: legacy versions in Items, current ones in the collection.
EXTENSIONS = ("file v2.1.0", "projection v1.2.0", "projection v2.0.0", "raster v1.1.0", "raster v2.0.0")
SUBCOMMANDS = ("item", "run", "scan", "rebuild", "status", "publish", "validate", "config", "demo")


def offline_env(home: Path, **extra: str) -> dict[str, str]:
    """A user with an empty schema cache and no schema mirror configured."""
    env = {k: v for k, v in os.environ.items() if k not in ("STAC_SCHEMA_ROOT", "XDG_CACHE_HOME")}
    return {**env, "HOME": str(home), **extra}


def stacwatchd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stacwatchd", *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two good rasters and one broken file."""
    data = tmp_path_factory.mktemp("scenes")
    testing.cog(data / "a_20240517.tif")
    testing.utm(data / "b_20240518.tif")
    testing.truncated(data / "broken_20240519.tif")
    return data


@pytest.fixture(scope="module")
def catalog(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("catalog")
    stacwatchd("scan", str(folder), "--catalog", str(root))
    assert (root / "catalog.json").is_file()
    return root


# --------------------------------------------------------------------------- options, help, errors


def test_log_options_are_accepted_after_the_subcommand(samples):
    result = stacwatchd("item", str(samples["truncated"]), "--log-format", "json", "--log-level", "debug")
    assert result.returncode == 1
    event = json.loads(result.stderr)
    assert event["event"] == "item_rejected" and event["level"] == "error"


def test_every_subcommand_help_page_has_a_description():
    for name in SUBCOMMANDS:
        result = stacwatchd(name, "--help")
        assert result.returncode == 0, name
        usage, _, rest = result.stdout.partition("\n\n")
        description = rest.split("\n\n", 1)[0].strip()
        assert usage.startswith("usage:") and description and not description.startswith(("positional", "options")), name
    check = stacwatchd("config", "check", "--help")
    assert "environment variables" in check.stdout


def test_exit_statuses_are_documented_in_the_help():
    top = stacwatchd("--help").stdout
    for line in ("0    success", "1    some files were refused", "2    usage", "130  interrupted", "141  the output was closed"):
        assert line in top
    assert (
        "exit status: 0 every file in the folders is cataloged; 1 some files are refused" in stacwatchd("scan", "--help").stdout
    )


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'[[watch]]\npath = "{tmp_path}"\n')
    process = subprocess.Popen(
        [sys.executable, "-m", "stacwatchd", "config", "check", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    process.stdout.close()  # the reader goes away before a line is written, as `| head -0` does
    _, err = process.communicate(timeout=60)
    assert process.returncode == cli_module.EXIT_PIPE_CLOSED
    assert b"Traceback" not in err and b"Exception ignored" not in err, err


def test_validate_on_a_folder_without_a_catalog_is_one_line_and_exit_2(tmp_path):
    result = stacwatchd("validate", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"stacwatchd: {tmp_path}: no STAC root catalog at {tmp_path}" in result.stderr


def test_an_unreadable_state_file_is_one_line_and_exit_2(tmp_path):
    result = stacwatchd("status", "--catalog", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert result.stderr.startswith("stacwatchd: ") and result.stderr.count("\n") == 1
    assert "no state file" in result.stderr


# --------------------------------------------------------------------------- scan


def test_scan_lists_the_files_it_refuses_now_and_those_refused_earlier(folder, tmp_path):
    root = tmp_path / "catalog"
    first = stacwatchd("scan", str(folder), "--catalog", str(root))
    assert first.returncode == 1
    assert "added 2" in first.stdout and "rejected 1" in first.stdout
    listed = [line for line in first.stdout.splitlines() if line.startswith("  ")]
    assert len(listed) == 1 and listed[0].startswith(f"  {folder / 'broken_20240519.tif'}: file is truncated")
    assert "refused earlier" not in listed[0]

    again = stacwatchd("scan", str(folder), "--catalog", str(root))
    assert again.returncode == 1
    assert "nothing changed" in again.stdout
    listed = [line for line in again.stdout.splitlines() if line.startswith("  ")]
    assert len(listed) == 1 and listed[0].endswith("[refused earlier, unchanged since]")


def test_scan_exits_0_once_nothing_is_refused(folder, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(folder, data)
    root = tmp_path / "catalog"
    assert stacwatchd("scan", str(data), "--catalog", str(root)).returncode == 1
    (data / "broken_20240519.tif").unlink()
    result = stacwatchd("scan", str(data), "--catalog", str(root))
    assert result.returncode == 0, result.stdout
    assert "refused" not in result.stdout


def test_scan_names_the_folders_it_could_not_read_exits_1_and_removes_nothing(folder, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(folder, data)
    (data / "broken_20240519.tif").unlink()
    root = tmp_path / "catalog"
    assert stacwatchd("scan", str(data), "--catalog", str(root)).returncode == 0
    testing.too_deep_folder(data)
    (data / "a_20240517.tif").unlink()  # gone, but the view of the folder is partial now

    result = stacwatchd("scan", str(data), "--catalog", str(root))
    assert result.returncode == 1, result.stdout
    assert "removed 0" in result.stdout and "refused" not in result.stdout
    assert "folders not read" in result.stdout
    listed = [line for line in result.stdout.splitlines() if line.startswith("  ")]
    assert len(listed) == 1 and listed[0].startswith(f"  {data}/ddd") and "File name too long" in listed[0]
    assert len(list(root.rglob("a_20240517.json"))) == 1


# --------------------------------------------------------------------------- status


def test_status_is_readable_by_default_and_json_on_request(catalog):
    text = stacwatchd("status", "--catalog", str(catalog))
    assert text.returncode == 0, text.stderr
    assert "items:    2 from 2 source files; 1 files refused" in text.stdout
    assert "daemon:   never ran on this state file" in text.stdout
    assert "broken_20240519.tif: file is truncated" in text.stdout
    assert "{" not in text.stdout
    data = json.loads(stacwatchd("status", "--catalog", str(catalog), "--json").stdout)
    assert set(data) == {"items", "sources", "failed_files", "journal_pending", "outbox_depth", "recent_failures"}
    assert (data["items"], data["failed_files"]) == (2, 1)


def heartbeat(**fields: object) -> dict[str, object]:
    base = {
        "items": 5, "sources": 5, "failed_files": 0, "journal_pending": 0, "outbox_depth": 0, "recent_failures": [],
    }  # fmt: skip
    daemon = {
        "pid": 4242, "version": "1.0", "started_at": 1_000.0, "heartbeat_at": 4_600.0, "running": True,
        "watches": {"/data/in": "inotify", "/mnt/share": "lost: folder is gone"},
        "queue": 3, "building": 1, "added": 7, "updated": 1, "removed": 2, "rejected": 0,
    }  # fmt: skip
    return {**base, "daemon": {**daemon, **fields}}


def test_status_shows_a_running_daemon_in_words_with_relative_times():
    text = render_status(heartbeat(), catalog=Path("/srv/stac"), state=Path("/var/lib/s.db"), now=4_602.0)
    assert "daemon:   running, pid 4242, version 1.0, up 60 min (heartbeat 2 s ago)" in text
    assert "queue 3, building 1; since start: added 7, updated 1, removed 2, refused 0" in text
    assert "watching /data/in: watched (inotify)" in text
    assert "watching /mnt/share: NOT watched (folder is gone)" in text


def test_status_names_a_failing_writer_and_each_sink_in_words():
    report = heartbeat(
        writer_error={"error": "ENOSPC", "paths": [], "attempts": 4, "failing_for_s": 120.0, "retry_in_s": 8.0},
        sinks={"bucket": {"target": "s3://b", "backlog": 12, "delivered": 3, "last_success": None,
                          "last_error": "unavailable", "failing_for_s": 300.0}},
    )  # fmt: skip
    text = render_status(report, catalog=Path("/srv/stac"), state=Path("/s.db"), now=4_602.0)
    assert "WRITER FAILING for 2 min: ENOSPC (attempt 4, next in 8.0 s)" in text
    assert "sink bucket: backlog 12, last delivered never; FAILING for 5 min: unavailable" in text


def test_status_of_a_cleanly_stopped_daemon_says_so_and_lists_no_lost_watches():
    report = heartbeat(running=False, watches={"/data/in": "lost: stopped"})
    text = render_status(report, catalog=Path("/srv/stac"), state=Path("/s.db"), now=4_600.0 + 300)
    assert "daemon:   stopped 5 min ago (cleanly), after running 60 min" in text
    assert "lost" not in text and "NOT watched" not in text


def test_status_of_a_daemon_whose_heartbeat_stopped_says_it_is_not_responding():
    text = render_status(heartbeat(), catalog=Path("/srv/stac"), state=Path("/s.db"), now=4_600.0 + 7_200)
    assert "not responding: last heartbeat 2 h ago (pid 4242" in text


# --------------------------------------------------------------------------- validate


def test_validate_checks_the_bundled_core_and_names_each_missing_extension_once(catalog, tmp_path):
    result = stacwatchd("validate", str(catalog), env=offline_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == f"{catalog}: 3 catalogs, 1 collections, 2 items: valid"
    assert "checked against: STAC catalog v1.1.0, STAC collection v1.1.0, STAC item v1.1.0 (bundled)" in lines
    unavailable = [line for line in lines if "unavailable" in line]
    assert len(unavailable) == 1
    assert unavailable[0].startswith("5 schemas unavailable, not checked: ")
    for name in EXTENSIONS:
        assert unavailable[0].count(f"{name},") + unavailable[0].count(f"{name} ") == 1, name
    assert unavailable[0].endswith("run `stacwatchd validate --network` once to cache them")


def test_validate_strict_fails_when_a_schema_could_not_be_checked(catalog, tmp_path):
    result = stacwatchd("validate", str(catalog), "--strict", env=offline_env(tmp_path))
    assert result.returncode == 1
    assert "unavailable, not checked" in result.stdout


def test_validate_with_the_mirror_checks_every_extension(catalog, tmp_path, schema_store):
    result = stacwatchd("validate", str(catalog), "--strict", "--schemas", str(schema_store.directory), env=offline_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "unavailable" not in result.stdout
    assert f"{', '.join(EXTENSIONS)} (mirror)" in result.stdout


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_network_fetch_failures_are_reported_once_per_url(catalog, tmp_path):
    # Every fetch goes to a proxy on a closed loopback port: it fails at once, and nothing leaves the machine.
    proxy = f"http://127.0.0.1:{closed_port()}"
    env = offline_env(tmp_path, https_proxy=proxy, http_proxy=proxy, no_proxy="")
    result = stacwatchd("validate", str(catalog), "--network", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    failures = [line for line in result.stdout.splitlines() if line.startswith("could not fetch")]
    assert len(failures) == 1 and failures[0].startswith("could not fetch 5 schemas: ")
    for name in EXTENSIONS:
        extension, version = name.split(" ")
        assert result.stdout.count(f"https://stac-extensions.github.io/{extension}/{version}/schema.json") == 1
    assert "download failed" in failures[0]
    assert "run `stacwatchd validate --network`" not in result.stdout


@pytest.fixture
def in_process_logging():
    """``main()`` configures logging for the whole process: put back what the other tests use."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def test_network_fills_the_cache_that_later_offline_runs_use(
    catalog, tmp_path, schema_store, monkeypatch, capsys, in_process_logging
):
    mirror = schema_store.directory
    fetched: list[str] = []

    def from_mirror(request: urllib.request.Request, timeout: float):  # noqa: ANN202 - a urlopen stand-in
        fetched.append(request.full_url)
        host, _, path = request.full_url.removeprefix("https://").partition("/")
        return open(mirror / host / path, "rb")  # noqa: SIM115 - closed by the caller's `with`

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("STAC_SCHEMA_ROOT", raising=False)
    monkeypatch.setattr(urllib.request, "urlopen", from_mirror)
    assert cli_module.main(["validate", str(catalog), "--network"]) == 0
    assert len(fetched) == len(set(fetched)) >= len(EXTENSIONS)
    capsys.readouterr()

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used"))
    assert cli_module.main(["validate", str(catalog), "--strict"]) == 0
    out = capsys.readouterr().out
    assert f"{', '.join(EXTENSIONS)} (cache)" in out
    assert "unavailable" not in out


def test_validate_reads_a_single_item_file(catalog, tmp_path):
    item = next(p for p in catalog.rglob("a_20240517.json"))
    result = stacwatchd("validate", str(item), env=offline_env(tmp_path))
    assert result.returncode == 0
    assert result.stdout.startswith(f"{item}: 1 object: valid")


def test_heartbeat_age_is_computed_from_the_clock():
    now = time.time()
    text = render_status(heartbeat(heartbeat_at=now - 1, started_at=now - 30), catalog=Path("/c"), state=Path("/s"))
    assert "up 30 s (heartbeat 1 s ago)" in text
