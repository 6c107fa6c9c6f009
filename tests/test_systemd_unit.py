"""The shipped unit file passes systemd's own checks and is hardened (exposure ≤ 2.0)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "stacwatchd.service"


@pytest.fixture
def unit_here(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this installation's real executable."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is needed (Debian package systemd)")
    executable = Path(sys.executable).parent / "stacwatchd"
    assert executable.exists(), "the console script is installed with the package"
    text = UNIT.read_text().replace("/usr/local/bin/stacwatchd", str(executable))
    path = tmp_path / "stacwatchd.service"
    path.write_text(text)
    return path


def test_unit_file_passes_systemd_analyze_verify(unit_here):
    result = subprocess.run(["systemd-analyze", "verify", str(unit_here)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_unit_file_exposure_is_2_or_lower(unit_here):
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit_here)], capture_output=True, text=True, timeout=60
    )
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout + result.stderr)
    assert score, result.stdout + result.stderr
    assert float(score.group(1)) <= 2.0


def test_unit_file_has_the_required_settings():
    text = UNIT.read_text()
    for setting in (
        "Type=notify", "WatchdogSec=", "User=stacwatchd", "ProtectSystem=strict", "ReadWritePaths=", "ReadOnlyPaths=",
        "NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectHome=yes", "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=", "SystemCallFilter=@system-service", "Restart=on-failure", "ExecReload=",
    ):
        assert setting in text, setting
