"""`stacwatchd item`: the Item for one file on stdout, or one clear line and a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stacwatchd import testing


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stacwatchd.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_item_prints_a_valid_item_placed_in_the_catalog(samples, tmp_path, assert_valid):
    result = run("item", str(samples["cog"]), "--catalog", str(tmp_path / "catalog"))
    assert result.returncode == 0, result.stderr
    item = json.loads(result.stdout)
    assert item["id"] == samples["cog"].stem
    assert item["collection"] == samples["cog"].parent.name
    rels = [link["rel"] for link in item["links"]]
    assert rels[:3] == ["root", "parent", "collection"]
    assert all(link.get("title") for link in item["links"])
    href = item["assets"]["data"]["href"]
    assert not href.startswith("/")
    item_dir = tmp_path / "catalog" / item["collection"] / "2024" / "05" / item["id"]
    assert (item_dir / href).resolve() == samples["cog"].resolve()
    assert_valid(item)


def test_item_collection_option_overrides_the_folder_name(samples, tmp_path):
    result = run("item", str(samples["utm"]), "--collection", "my-scenes", "--catalog", str(tmp_path))
    assert json.loads(result.stdout)["collection"] == "my-scenes"


@pytest.mark.parametrize("kind", ["truncated", "random_bytes", "zero_bytes", "no_crs", "no_date"])
def test_bad_file_gives_one_clear_line_and_a_non_zero_exit(samples, kind):
    result = run("item", str(samples[kind]))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"stacwatchd: cannot catalog {samples[kind]}: ")
    assert "Traceback" not in result.stderr


def test_bad_file_in_json_log_mode_is_one_structured_event(samples):
    result = run("--log-format", "json", "item", str(samples["truncated"]))
    assert result.returncode == 1
    event = json.loads(result.stderr)
    assert event["event"] == "item_rejected"
    assert event["path"] == str(samples["truncated"])
    assert event["error"] == "unreadable_raster" and "truncated" in event["reason"]
    assert event["level"] == "error" and event["timestamp"]


def test_missing_file_is_a_clear_error(tmp_path):
    result = run("item", str(tmp_path / "absent.tif"))
    assert result.returncode == 1
    assert "no such file" in result.stderr


def test_config_file_rules_apply_to_files_in_its_watch(tmp_path, samples):
    data = tmp_path / "data"
    data.mkdir()
    path = testing.utm(data / "scene.tif", tags={"TIFFTAG_DATETIME": "2020:02:03 04:05:06"})
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[catalog]
root = "{tmp_path / "catalog"}"
title = "Demo"

[[watch]]
path = "{data}"
[watch.collection]
id = "dem"
platform = "Sentinel-2B"
partition = "year"
[watch.items]
legacy_fields = false
"""
    )
    result = run("item", str(path), "--config", str(config))
    assert result.returncode == 0, result.stderr
    item = json.loads(result.stdout)
    assert item["collection"] == "dem"
    assert item["properties"]["platform"] == "sentinel-2b"
    assert "proj:epsg" not in item["properties"]
    assert item["links"][1]["href"] == "../catalog.json" and item["links"][1]["title"] == "dem 2020"


def test_bad_config_names_the_key_and_the_file(tmp_path, samples):
    config = tmp_path / "config.toml"
    config.write_text("[[watch]]\npath = '/x'\n[watch.items]\nprecision = 99\nunknown = 1\n")
    result = run("item", str(samples["utm"]), "--config", str(config))
    assert result.returncode == 2
    assert str(config) in result.stderr
    assert "watch.0.items.precision" in result.stderr and "watch.0.items.unknown: unknown key" in result.stderr


def test_example_configuration_is_valid():
    example = Path(__file__).resolve().parents[1] / "config.example.toml"
    result = run("config", "check", "--config", str(example))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["watch"][0]["collection"]["id"] == "ndvi"


def test_environment_overrides_the_file_and_the_dsn_is_shown_without_a_password(tmp_path):
    import os

    config = tmp_path / "c.toml"
    config.write_text(
        f'[catalog]\nroot = "/a"\n[[watch]]\npath = "{tmp_path}"\n'
        '[pgstac]\ndsn = "postgresql://stac@db.internal:5433/stac"\npassword_env = "PGPASS_X"\n'
    )
    env = dict(os.environ, STACWATCHD_CATALOG__ROOT="/b", STACWATCHD_WORKERS="3")
    result = subprocess.run(
        [sys.executable, "-m", "stacwatchd", "config", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    shown = json.loads(result.stdout)
    assert shown["catalog"]["root"] == "/b" and shown["workers"] == 3
    assert shown["pgstac"]["dsn"] == "postgresql://stac@db.internal:5433/stac"
    assert shown["pgstac"]["password_env"] == "PGPASS_X"


def test_a_password_in_the_configuration_file_is_refused_without_echoing_it(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[pgstac]\ndsn = "postgresql://stac:hunter2@db/stac"\n')
    result = run("config", "check", "--config", str(config))
    assert result.returncode == 2
    assert "pgstac: Value error, the dsn must not contain the password" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
