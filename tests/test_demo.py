"""The README's first command: `python -m stacwatchd demo` runs the daemon on sample rasters."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_catalog import assert_catalog_ok

STEPS = ("copy a COG", "slow writer", "rename into place", "a burst of", "overwrite", "delete a file")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The demo run once, from a folder of its own, by a user with no schema cache or mirror."""
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if k not in ("STAC_SCHEMA_ROOT", "XDG_CACHE_HOME")}
    result = subprocess.run(
        [sys.executable, "-m", "stacwatchd", "demo", "--dir", "demo"],
        capture_output=True, text=True, timeout=300, cwd=home, env={**env, "HOME": str(home)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return home / "demo", result


def sections(stdout: str) -> dict[str, list[str]]:
    """The output's lines under each step heading."""
    found: dict[str, list[str]] = {"": []}
    current = ""
    for line in stdout.splitlines():
        if line.startswith("== "):
            current = next(step for step in STEPS if step in line)
            found[current] = []
        else:
            found[current].append(line)
    return found


def test_every_step_shows_its_own_log_lines(demo):
    _, result = demo
    parts = sections(result.stdout)
    assert list(parts)[1:] == list(STEPS)
    assert sum("item_rejected" in line for line in parts["a burst of"]) == 5
    assert not any("item_rejected" in line for step in STEPS if step != "a burst of" for line in parts[step])
    assert any("item_updated" in line for line in parts["overwrite"])
    assert any("item_removed" in line for line in parts["delete a file"])
    for step in STEPS:
        assert re.search(r"^   catalog now holds \d+ Items?$", "\n".join(parts[step]), re.M), step


def test_the_demo_counts_what_it_does(demo):
    base, result = demo
    copied = len(list((base / "staging").glob("*.tif"))) - 3  # the first three steps' files are not in the burst
    assert f"== a burst of {copied} files, 5 of them broken or without date/location" in result.stdout
    assert "catalog now holds 1 Item\n" in result.stdout
    assert not re.search(r"\b1 Items\b", result.stdout)


def test_the_demo_shows_short_paths_and_keeps_log_lines_whole(demo):
    base, result = demo
    assert str(base) not in result.stdout
    for line in result.stdout.splitlines():
        assert line.count("[info") + line.count("[warning") <= 1, line
    assert "path=incoming/truncated.tif" in result.stdout


def test_the_demo_says_what_was_and_was_not_checked(demo):
    _, result = demo
    lines = result.stdout.splitlines()
    assert "validation: no problems found in links, structure or the schemas checked" in lines
    assert "checked against: STAC catalog v1.1.0, STAC collection v1.1.0, STAC item v1.1.0 (bundled)" in lines
    unavailable = [line for line in lines if "unavailable, not checked" in line]
    assert len(unavailable) == 1 and "projection v1.2.0" in unavailable[0]
    assert "validation: valid" not in result.stdout


def test_the_demo_leaves_a_valid_catalog(demo, schema_store):
    base, _ = demo
    catalog = base / "catalog"
    assert_catalog_ok(catalog, schema_store)
    root = json.loads((catalog / "catalog.json").read_text())
    assert [link["href"] for link in root["links"] if link["rel"] == "child"] == ["./demo/collection.json"]


def test_the_demo_folder_is_ignored_by_git():
    ignored = (Path(__file__).resolve().parents[1] / ".gitignore").read_text().splitlines()
    assert "/stacwatchd-demo/" in ignored


def test_a_log_event_reaches_the_stream_in_one_write():
    """The demo prints its own lines between the daemon's: a log line written in two
    pieces (text, then newline) let one of them land inside it."""
    import io

    import structlog

    from stacwatchd.log import configure, get_logger

    class Recording(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.writes: list[str] = []

        def write(self, text: str) -> int:
            self.writes.append(text)
            return super().write(text)

    saved = structlog.get_config()
    stream = Recording()
    try:
        configure("console", "info", stream=stream)
        get_logger().info("item_added", item_id="a_20240517")
        get_logger().info("item_added", item_id="b_20240517")
    finally:
        structlog.configure(**saved)
    assert len(stream.writes) == 2 and all(w.endswith("\n") and w.count("\n") == 1 for w in stream.writes), stream.writes
