"""A contributor clones the repository alone, offline, and part of the suite passes there."""

from __future__ import annotations

import shutil
import subprocess
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
