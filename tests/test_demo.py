"""The README's first command: `python -m stacwatchd demo` runs the daemon on sample rasters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_catalog import assert_catalog_ok


def test_demo_runs_the_daemon_and_leaves_a_valid_catalog(tmp_path: Path, schema_store):
    result = subprocess.run(
        [sys.executable, "-m", "stacwatchd", "demo", "--dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for step in ("copy a COG", "slow writer", "rename into place", "overwrite", "delete a file"):
        assert step in result.stdout
    catalog = tmp_path / "demo" / "catalog"
    assert_catalog_ok(catalog, schema_store)
    root = json.loads((catalog / "catalog.json").read_text())
    assert [link["href"] for link in root["links"] if link["rel"] == "child"] == ["./demo/collection.json"]
