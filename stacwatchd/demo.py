"""``stacwatchd demo``: the daemon on a local folder, fed the ways pipelines write files."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from stacwatchd import testing
from stacwatchd.config import CatalogSettings, CollectionSettings, Settings, WatchSettings
from stacwatchd.engine.daemon import Daemon
from stacwatchd.model.items import sanitize_id
from stacwatchd.log import configure
from stacwatchd.validate.schemas import SchemaStore, validate_catalog

SETTLE = 1.0


def run_demo(base: Path) -> int:
    """Start the daemon, drop sample rasters (copy, slow write, rename, overwrite, delete)."""
    base = base.resolve()
    incoming, staging, catalog = base / "incoming", base / "staging", base / "catalog"
    for folder in (incoming, staging):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    shutil.rmtree(catalog, ignore_errors=True)
    configure("console", "info")
    settings = Settings(
        catalog=CatalogSettings(root=catalog, title="stacwatchd demo"),
        watch=(
            WatchSettings(
                path=incoming,
                collection=CollectionSettings(id="demo", title="Demo rasters", description="Rasters dropped by stacwatchd demo"),
            ),
        ),
        settle_seconds=SETTLE,
        workers=2,
        reconcile_interval=0,
        log={"format": "console", "level": "info"},
    )
    daemon = Daemon(settings)
    thread = threading.Thread(target=lambda: daemon.run(), name="stacwatchd-demo", daemon=True)
    thread.start()
    testing.wait_until(lambda: hasattr(daemon, "engine") and daemon.engine.healthy, timeout=30)
    samples = testing.sample_set(staging)

    def items() -> set[str]:
        found = (catalog / "demo").rglob("*.json") if (catalog / "demo").exists() else []
        return {p.stem for p in found if p.name not in ("catalog.json", "collection.json")}

    def step(title: str, action: Callable[[], None], expect: Callable[[set[str]], bool]) -> None:
        print(f"\n== {title}")
        action()
        testing.wait_until(lambda: expect(items()), timeout=60, message=title)
        print(f"   catalog now holds {len(items())} Items")

    cog = samples["cog"]
    step("copy a COG into the watched folder", lambda: shutil.copy(cog, incoming / cog.name), lambda ids: sanitize_id(cog.stem) in ids)
    slow = samples["multiband_rgb"]
    step(
        "a slow writer appends a file in chunks (cataloged only once complete)",
        lambda: testing.slow_write(slow, incoming / slow.name, chunks=4, pause=SETTLE / 2),
        lambda ids: sanitize_id(slow.stem) in ids,
    )
    renamed = samples["antimeridian"]
    step(
        "write to a temp name, then rename into place",
        lambda: testing.write_then_rename(renamed, incoming / renamed.name),
        lambda ids: sanitize_id(renamed.stem) in ids,
    )
    unlocated = {samples["no_crs"].stem, samples["no_date"].stem}
    burst = [p for k, p in samples.items() if k not in testing.BROKEN_SAMPLES and p not in (cog, slow, renamed)]
    step(
        f"a burst of {len(burst)} files, some of them broken",
        lambda: [shutil.copy(p, incoming / p.name) for p in burst + [samples[k] for k in testing.BROKEN_SAMPLES]],
        lambda ids: {sanitize_id(p.stem) for p in burst if p.stem not in unlocated} <= ids,
    )
    new_size = samples["utm"].stat().st_size
    step(
        "overwrite a file in place (the Item is updated)",
        lambda: shutil.copy(samples["utm"], incoming / cog.name),
        lambda ids: _asset_size(catalog, sanitize_id(cog.stem)) == new_size,
    )
    step("delete a file (its Item goes)", lambda: (incoming / renamed.name).unlink(), lambda ids: sanitize_id(renamed.stem) not in ids)
    daemon.stop()
    thread.join(60)
    report = validate_catalog(catalog, _schemas(), strict=_schema_folder() is not None)
    print(f"\ndemo: {report.items} Items in {catalog}; validation: {'valid' if report.ok else report.problems}")
    print(f"demo: open {catalog / 'catalog.json'} with pystac, QGIS or STAC Browser; `stacwatchd status --catalog {catalog}`")
    return 0 if report.ok else 1


def _asset_size(catalog: Path, item_id: str) -> int | None:
    import json

    for path in (catalog / "demo").rglob(f"{item_id}.json"):
        try:
            return json.loads(path.read_bytes())["assets"]["data"]["file:size"]
        except (OSError, ValueError, KeyError):
            return None
    return None


def _schema_folder() -> Path | None:
    for candidate in (Path.cwd() / ".." / "shared" / "stac-schemas", Path(__file__).resolve().parents[2] / "shared" / "stac-schemas"):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def _schemas() -> SchemaStore:
    return SchemaStore(directory=_schema_folder())
