"""Configuration mistakes are caught early, said plainly, and blamed on their real source."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stacwatchd import testing
from stacwatchd.config import ItemRules, load_settings, masked_dsn
from stacwatchd.errors import ConfigError

EXAMPLE_RULES = """
[[watch.items.datetime]]
source = "filename"
pattern = '(?P<start_datetime>\\d{8})_(?P<end_datetime>\\d{8})'

[[watch.items.datetime]]
source = "gdal"
tags = ["ACQUISITIONDATETIME", "TIFFTAG_DATETIME"]
"""


def stacwatchd(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STACWATCHD_")}
    return subprocess.run(
        [sys.executable, "-m", "stacwatchd", *args], capture_output=True, text=True, timeout=120, env={**clean, **env}
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_config_check_warns_about_a_watched_folder_that_does_not_exist(tmp_path):
    config = write(tmp_path / "c.toml", f'[[watch]]\npath = "{tmp_path}"\n[[watch]]\npath = "{tmp_path / "typo"}"\n')
    result = stacwatchd("config", "check", "--config", str(config))
    assert result.returncode == 0
    assert (
        result.stderr.strip()
        == f"stacwatchd: warning: watched folder {tmp_path / 'typo'} does not exist (yet); `run` waits for it"
    )
    assert len(json.loads(result.stdout)["watch"]) == 2


def test_config_check_refuses_a_configuration_without_watches_exactly_as_run_does(tmp_path):
    config = write(tmp_path / "c.toml", f'[catalog]\nroot = "{tmp_path}"\n')
    check = stacwatchd("config", "check", "--config", str(config))
    run = stacwatchd("run", "--config", str(config))
    assert check.returncode == run.returncode == 2
    assert check.stderr == run.stderr == f"stacwatchd: {config}: no [[watch]] folders configured\n"
    assert check.stdout == ""


def test_an_invalid_environment_variable_is_named_and_the_file_is_not_blamed(tmp_path):
    config = write(tmp_path / "my.toml", f'workers = 2\n[[watch]]\npath = "{tmp_path}"\n')
    result = stacwatchd("config", "check", "--config", str(config), STACWATCHD_WORKERS="abc")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "stacwatchd: environment variable STACWATCHD_WORKERS (workers): Input should be a valid integer"
    )
    assert str(config) not in result.stderr


def test_a_nested_environment_variable_is_named(tmp_path):
    config = write(tmp_path / "my.toml", f'[[watch]]\npath = "{tmp_path}"\n')
    result = stacwatchd("config", "check", "--config", str(config), STACWATCHD_METRICS__LISTEN="9108")
    assert result.returncode == 2
    assert "environment variable STACWATCHD_METRICS__LISTEN (metrics.listen)" in result.stderr
    assert 'expected "host:port"' in result.stderr


def test_a_problem_in_the_file_still_names_the_file(tmp_path):
    config = write(tmp_path / "my.toml", f'workers = "many"\n[[watch]]\npath = "{tmp_path}"\n')
    result = stacwatchd("config", "check", "--config", str(config), STACWATCHD_SETTLE_SECONDS="1")
    assert result.returncode == 2
    assert result.stderr.startswith(f"stacwatchd: {config}: workers: Input should be a valid integer")


@pytest.mark.parametrize(
    ("toml", "hint"),
    [
        ('[watch]\npath = "/data"\n', "write [[watch]], an array of tables, not [watch]"),
        ('[[catalog]]\nroot = "/srv"\n[[watch]]\npath = "/data"\n', "write [catalog], a table, not [[catalog]]"),
        (
            '[[watch]]\npath = "/data"\n[watch.items.datetime]\nsource = "mtime"\n',
            "write [[watch.items.datetime]], an array of tables",
        ),
    ],
)
def test_a_table_written_where_an_array_of_tables_goes_gets_a_hint(tmp_path, toml, hint):
    config = write(tmp_path / "c.toml", toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert hint in str(caught.value)


def test_configured_datetime_rules_are_tried_before_the_defaults(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    scene = testing.utm(data / "scene_20240601.tif")
    config = write(tmp_path / "c.toml", f'[[watch]]\npath = "{data}"\n{EXAMPLE_RULES}')
    result = stacwatchd("item", str(scene), "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["properties"]["datetime"].startswith("2024-06-01T00:00:00")
    ranged = testing.utm(data / "composite_20240601_20240610.tif")
    item = json.loads(stacwatchd("item", str(ranged), "--config", str(config)).stdout)
    assert item["properties"]["start_datetime"].startswith("2024-06-01")
    assert item["properties"]["end_datetime"].startswith("2024-06-10")


def test_with_the_example_configuration_a_plain_date_stamp_is_still_found(tmp_path):
    from stacwatchd.model.items import BuiltItem, Rules, build

    example = load_settings(Path(__file__).resolve().parents[1] / "config.example.toml")
    watch = example.watch[0].model_copy(update={"path": tmp_path})
    result = build(testing.utm(tmp_path / "scene_20240601.tif"), Rules.from_watch(watch))
    assert isinstance(result, BuiltItem), result
    assert result.timing.first.isoformat() == "2024-06-01T00:00:00+00:00"


def test_replacing_the_default_rules_is_explicit_and_a_refusal_names_the_rules_tried(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    scene = testing.utm(data / "scene_20240601.tif")
    config = write(
        tmp_path / "c.toml", f'[[watch]]\npath = "{data}"\n[watch.items]\nreplace_default_datetime_rules = true\n{EXAMPLE_RULES}'
    )
    result = stacwatchd("item", str(scene), "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"stacwatchd: cannot catalog {scene}: no datetime rule matched; tried: "
        "file name pattern '(?P<start_datetime>\\\\d{8})_(?P<end_datetime>\\\\d{8})'; "
        "GDAL tags ACQUISITIONDATETIME/TIFFTAG_DATETIME"
    )


def test_a_refusal_with_the_default_rules_names_them(samples):
    result = stacwatchd("item", str(samples["no_date"]))
    assert result.returncode == 1
    assert "tried: default date stamps in the name (e.g. 20240517, 2024-05-17T10:30:00Z); GDAL tags" in result.stderr


def test_defaults_are_added_once_however_often_the_rules_are_validated():
    rules = ItemRules(datetime=({"source": "mtime"},))
    again = ItemRules(**rules.model_dump())
    assert rules.datetime == again.datetime
    assert [r.source for r in rules.datetime] == ["mtime", "filename", "filename", "filename", "filename", "gdal"]


def test_replacing_the_defaults_with_nothing_is_refused():
    with pytest.raises(ValueError, match="needs at least one"):
        ItemRules(datetime=(), replace_default_datetime_rules=True)


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://stac@db.internal:5433/stac", "postgresql://stac@db.internal:5433/stac"),
        ("postgresql://stac:hunter2@db.internal:5433/stac", "postgresql://stac:***@db.internal:5433/stac"),
        ("host=db port=5433 user=stac password=hunter2 dbname=stac", "host=db port=5433 user=stac password=*** dbname=stac"),
        ("host=db password='hunt er2' dbname=stac", "host=db password=*** dbname=stac"),
    ],
)
def test_a_dsn_is_shown_with_only_the_password_masked(dsn, shown):
    assert masked_dsn(dsn) == shown


@pytest.mark.parametrize("listen", ["127.0.0.1:9108", "[::1]:9108", "0.0.0.0:0", "localhost:9108"])
def test_metrics_listen_accepts_host_and_port(listen, tmp_path):
    config = write(tmp_path / "c.toml", f'[metrics]\nlisten = "{listen}"\n')
    assert load_settings(config).metrics.listen == listen


@pytest.mark.parametrize("listen", ["9108", "127.0.0.1", ":9108", "127.0.0.1:99999"])
def test_metrics_listen_refuses_what_is_not_host_and_port(listen, tmp_path):
    config = write(tmp_path / "c.toml", f'[metrics]\nlisten = "{listen}"\n')
    with pytest.raises(ConfigError, match="metrics.listen: Value error, expected"):
        load_settings(config)


def test_metrics_are_off_by_default():
    assert load_settings().metrics.listen is None
