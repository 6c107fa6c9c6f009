"""A contributor clones the repository alone, offline, and part of the suite passes there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import IN_CI, SCHEMAS_MISSING

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_fresh_clone_passes_offline_without_shared_schemas():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        if IN_CI:
            pytest.fail("CI=true: the fresh-clone check needs git and a git checkout")
        pytest.skip("not a git checkout (or no git): nothing to clone")
    result = subprocess.run(
        ["bash", str(REPO / ".ci" / "fresh-clone"), "tests/test_validate.py", "tests/test_config.py"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 1 and SCHEMAS_MISSING in skipped[0], skipped
    assert " passed" in result.stdout.splitlines()[-1]
    assert "fresh-clone: offline:" in result.stderr


def test_with_ci_true_an_incomplete_shared_folder_fails_the_run_instead_of_skipping(tmp_path):
    clone = tmp_path / "stacwatchd"
    shutil.copytree(REPO / "tests" / "support", clone / "tests" / "support")
    shutil.copy(REPO / "tests" / "conftest.py", clone / "tests" / "conftest.py")
    (clone / "tests" / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    (tmp_path / "shared" / "stac-schemas").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("STAC_SCHEMA_ROOT", "XDG_CACHE_HOME")}
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_nothing.py"]
    common = {"cwd": clone, "capture_output": True, "text": True, "timeout": 120}
    env = {**env, "HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    in_ci = subprocess.run(run, env={**env, "CI": "true"}, **common)
    assert in_ci.returncode == pytest.ExitCode.USAGE_ERROR
    assert "CI=true" in in_ci.stderr and "lacks schemas the tests need" in in_ci.stderr
    locally = subprocess.run(run, env={k: v for k, v in env.items() if k != "CI"}, **common)
    assert locally.returncode == 0, locally.stdout + locally.stderr
