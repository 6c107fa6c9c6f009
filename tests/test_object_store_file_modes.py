"""Catalog files a web server can serve: modes follow the umask (or the configuration),
and a catalog written with unreadable modes is repaired by the next write or ``rebuild``."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from stacwatchd import testing


def run(*args: str, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stacwatchd", *args], capture_output=True, text=True, timeout=300, umask=umask, check=False
    )


def modes(root: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(files, folders) of the catalog below ``root`` with their permission bits; the state
    folder is not part of what is served."""
    files, folders = {}, {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".stacwatchd"]
        here = Path(folder)
        folders[here.relative_to(root).as_posix()] = stat.S_IMODE(here.stat().st_mode)
        for name in names:
            files[(here / name).relative_to(root).as_posix()] = stat.S_IMODE((here / name).stat().st_mode)
    return files, folders


def config(tmp_path: Path, watched: Path, **catalog: str) -> Path:
    extra = "".join(f'{key} = "{value}"\n' for key, value in catalog.items())
    path = tmp_path / "config.toml"
    path.write_text(
        f'[catalog]\nroot = "{tmp_path / "catalog"}"\n{extra}'
        f'[[watch]]\npath = "{watched}"\n[watch.collection]\nid = "scenes"\n[watch.items]\nthumbnail = true\n'
    )
    return path


def test_under_umask_022_every_catalog_file_is_0644_and_every_folder_0755(tmp_path):
    watched = tmp_path / "incoming"
    watched.mkdir()
    for i in range(3):
        testing.cog(watched / f"m{i}_2024051{i}.tif")
    assert run("scan", "--config", str(config(tmp_path, watched))).returncode == 0
    files, folders = modes(tmp_path / "catalog")
    assert len(files) >= 3 * 2 + 4 and any(name.endswith("thumbnail.png") for name in files)
    assert {name: oct(mode) for name, mode in files.items() if mode != 0o644} == {}
    assert {name: oct(mode) for name, mode in folders.items() if mode != 0o755} == {}


def test_configured_modes_apply_whatever_the_umask(tmp_path):
    watched = tmp_path / "incoming"
    watched.mkdir()
    testing.cog(watched / "c_20240517.tif")
    configured = config(tmp_path, watched, file_mode="0640", dir_mode="0750")
    assert run("scan", "--config", str(configured), umask=0o077).returncode == 0
    files, folders = modes(tmp_path / "catalog")
    assert {name: oct(mode) for name, mode in files.items() if mode != 0o640} == {}
    assert {name: oct(mode) for name, mode in folders.items() if mode != 0o750 and name != "."} == {}


def test_a_catalog_with_unreadable_files_is_repaired_by_the_next_write_and_by_rebuild(tmp_path):
    watched = tmp_path / "incoming"
    watched.mkdir()
    testing.cog(watched / "old_20240517.tif")
    testing.cog(watched / "other_20230101.tif")
    configured = config(tmp_path, watched)
    assert run("scan", "--config", str(configured)).returncode == 0
    catalog = tmp_path / "catalog"
    files, folders = modes(catalog)
    for name in files:
        os.chmod(catalog / name, 0o600)  # what earlier versions left behind
    for name in folders:
        os.chmod(catalog / name, 0o700)

    testing.cog(watched / "new_20240520.tif")
    assert run("scan", "--config", str(configured)).returncode == 0
    files, _ = modes(catalog)
    rewritten = ["scenes/collection.json", "scenes/2024/05/catalog.json", "scenes/2024/05/new_20240520/new_20240520.json"]
    assert {name: oct(files[name]) for name in rewritten} == {name: "0o644" for name in rewritten}
    assert files["scenes/2023/01/other_20230101/other_20230101.json"] == 0o600, (
        "files whose bytes did not change wait for rebuild"
    )

    rebuilt = run("rebuild", "--config", str(configured))
    assert rebuilt.returncode == 0, rebuilt.stderr
    files, folders = modes(catalog)
    assert {name: oct(mode) for name, mode in files.items() if mode != 0o644} == {}
    assert {name: oct(mode) for name, mode in folders.items() if mode != 0o755} == {}
