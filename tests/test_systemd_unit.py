"""The service install: systemd/install.sh run into a staging tree, and the unit it leaves.

The installed unit passes systemd's own checks (`systemd-analyze verify`, and
`systemd-analyze security` exposure ≤ 2.0) with ExecStart= pointing at the stacwatchd the
script installed; the user, folders, ownership and configuration are what the README says.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "stacwatchd.service"
INSTALL = REPO / "systemd" / "install.sh"
#: Offline: stacwatchd itself from this checkout, its dependencies seen from this interpreter.
OFFLINE = ["--system-site-packages", "--pip-args", "--no-deps --no-index --no-build-isolation"]


def need_tools() -> None:
    for tool in ("systemd-analyze", "systemd-sysusers", "systemd-tmpfiles"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed (Debian package systemd; .ci/install-system-deps installs it)")
    if os.geteuid() != 0:
        pytest.skip("the install creates files owned by the service user: run as root")


def install(destdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(INSTALL), *OFFLINE, *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, "DESTDIR": str(destdir)},
    )  # fmt: skip


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_tools()
    destdir = tmp_path_factory.mktemp("root")
    result = install(destdir, "--catalog", "/srv/stac", "--watch", "/data/ndvi", "--watch", "/data/dem")
    assert result.returncode == 0, result.stdout + result.stderr
    return destdir


def ids(destdir: Path, user: str = "stacwatchd") -> tuple[int, int]:
    for line in (destdir / "etc" / "passwd").read_text().splitlines():
        name, _, uid, gid, *_ = line.split(":")
        if name == user:
            return int(uid), int(gid)
    raise AssertionError(f"no user {user} in {destdir}/etc/passwd")


def unit_here(destdir: Path, tmp_path: Path) -> Path:
    """The installed unit as it is, but for the staging prefix in front of the installed paths."""
    text = (destdir / "etc/systemd/system/stacwatchd.service").read_text()
    text = text.replace("ExecStart=/opt/stacwatchd/", f"ExecStart={destdir}/opt/stacwatchd/")
    path = tmp_path / "stacwatchd.service"
    path.write_text(text)
    return path


def test_installed_unit_passes_systemd_analyze_verify(staged, tmp_path):
    unit = unit_here(staged, tmp_path)
    executable = re.search(r"^ExecStart=(\S+)", unit.read_text(), re.M).group(1)
    assert os.access(executable, os.X_OK) and executable == f"{staged}/opt/stacwatchd/bin/stacwatchd"
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_installed_unit_exposure_is_2_or_lower(staged, tmp_path):
    unit = unit_here(staged, tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True, text=True, timeout=60
    )
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout + result.stderr)
    assert score, result.stdout + result.stderr
    assert float(score.group(1)) <= 2.0


def test_installed_unit_names_the_installed_paths(staged):
    text = (staged / "etc/systemd/system/stacwatchd.service").read_text()
    assert "ExecStart=/opt/stacwatchd/bin/stacwatchd run --config /etc/stacwatchd/config.toml\n" in text
    assert "ReadWritePaths=/srv/stac\n" in text
    assert "ReadOnlyPaths=-/data/ndvi -/data/dem\n" in text
    assert "StateDirectory=stacwatchd\n" in text


def test_the_installed_command_runs_from_the_virtual_environment(staged):
    result = subprocess.run(
        [str(staged / "opt/stacwatchd/bin/stacwatchd"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.startswith("stacwatchd ")


def test_a_system_user_owns_the_state_folder_and_the_catalog_root(staged):
    uid, gid = ids(staged)
    passwd = next(line for line in (staged / "etc/passwd").read_text().splitlines() if line.startswith("stacwatchd:"))
    assert passwd.endswith(":/var/lib/stacwatchd:/usr/sbin/nologin") and uid < 1000
    for folder, mode in (("var/lib/stacwatchd", 0o750), ("srv/stac", 0o755)):
        info = (staged / folder).stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (uid, gid, mode), folder


def test_the_configuration_is_readable_by_the_service_only_and_keeps_state_outside_the_catalog(staged):
    _, gid = ids(staged)
    config = staged / "etc/stacwatchd/config.toml"
    info = config.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, gid, 0o640)
    text = config.read_text()
    assert 'root = "/srv/stac"' in text and 'state_file = "/var/lib/stacwatchd/state.db"' in text
    assert text.count("[[watch]]") == 2 and 'path = "/data/dem"' in text
    assert (staged / "etc/stacwatchd/config.example.toml").read_text() == (REPO / "config.example.toml").read_text()
    check = subprocess.run(
        [str(staged / "opt/stacwatchd/bin/stacwatchd"), "config", "check", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr


def test_installing_again_keeps_an_edited_configuration(tmp_path):
    need_tools()
    assert install(tmp_path, "--watch", "/data/x").returncode == 0
    config = tmp_path / "etc/stacwatchd/config.toml"
    config.write_text(config.read_text().replace('title = "Rasters"', 'title = "Edited"'))
    again = install(tmp_path, "--watch", "/data/x")
    assert again.returncode == 0, again.stderr
    assert 'title = "Edited"' in config.read_text()
    assert "keeping /etc/stacwatchd/config.toml" in again.stderr
    users = [line.split(":")[0] for line in (tmp_path / "etc/passwd").read_text().splitlines()]
    assert users.count("stacwatchd") == 1


def test_a_relative_path_is_refused_before_anything_is_installed(tmp_path):
    result = install(tmp_path, "--catalog", "stac")
    assert result.returncode == 1 and "not an absolute path: stac" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_repository_unit_has_the_required_settings():
    text = UNIT.read_text()
    for setting in (
        "Type=notify", "WatchdogSec=", "User=stacwatchd", "ProtectSystem=strict", "ReadWritePaths=", "ReadOnlyPaths=",
        "NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectHome=yes", "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=", "SystemCallFilter=@system-service", "Restart=on-failure", "ExecReload=",
        "ExecStart=/opt/stacwatchd/bin/stacwatchd ", "StateDirectory=stacwatchd",
    ):  # fmt: skip
        assert setting in text, setting
