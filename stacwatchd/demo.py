"""``stacwatchd demo``: the daemon on a local folder, fed the ways pipelines write files."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from stacwatchd import testing
from stacwatchd.config import CatalogSettings, CollectionSettings, Settings, WatchSettings
from stacwatchd.engine.daemon import Daemon
from stacwatchd.log import configure
from stacwatchd.model.items import sanitize_id
from stacwatchd.validate import coverage, default_store, validate_catalog

__all__ = ["run_demo"]

SETTLE = 1.0
STEP_TIMEOUT = 60.0


def run_demo(base: Path) -> int:
    """Start the daemon, drop sample rasters (copy, slow write, rename, overwrite, delete)."""
    base = base.resolve()
    incoming, staging, catalog = base / "incoming", base / "staging", base / "catalog"
    for folder in (incoming, staging):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    shutil.rmtree(catalog, ignore_errors=True)
    # Log lines and the demo's own lines share one stream, so each lands under its step.
    configure("console", "info", stream=sys.stdout, relative_to=base)
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
    _say(f"demo: the daemon watches {_shown(incoming)}/ and writes the catalog to {_shown(catalog)}/")

    def items() -> set[str]:
        found = (catalog / "demo").rglob("*.json") if (catalog / "demo").exists() else []
        return {p.stem for p in found if p.name not in ("catalog.json", "collection.json")}

    def step(title: str, action: Callable[[], None], expect: Callable[[set[str]], bool]) -> None:
        _say(f"\n== {title}")
        action()
        testing.wait_until(lambda: expect(items()), timeout=STEP_TIMEOUT, message=title)
        _wait_idle(daemon)
        _say(f"   catalog now holds {_count(len(items()), 'Item')}")

    cog = samples["cog"]
    step(
        "copy a COG into the watched folder",
        lambda: shutil.copy(cog, incoming / cog.name),
        lambda ids: sanitize_id(cog.stem) in ids,
    )
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
    broken = [samples[k] for k in sorted(testing.BROKEN_SAMPLES)]
    burst = [p for k, p in samples.items() if k not in testing.BROKEN_SAMPLES and p not in (cog, slow, renamed)]
    refused_before = daemon.engine.counters.rejected
    refusals = len(broken) + len(unlocated)
    step(
        f"a burst of {len(burst) + len(broken)} files, {refusals} of them broken or without date/location",
        lambda: [shutil.copy(p, incoming / p.name) for p in burst + broken],
        lambda ids: (
            {sanitize_id(p.stem) for p in burst if p.stem not in unlocated} <= ids
            and daemon.engine.counters.rejected >= refused_before + refusals
        ),
    )
    new_size = samples["utm"].stat().st_size
    step(
        "overwrite a file in place (the Item is updated)",
        lambda: shutil.copy(samples["utm"], incoming / cog.name),
        lambda ids: _asset_size(catalog, sanitize_id(cog.stem)) == new_size,
    )
    step(
        "delete a file (its Item goes)",
        lambda: (incoming / renamed.name).unlink(),
        lambda ids: sanitize_id(renamed.stem) not in ids,
    )
    daemon.stop()
    thread.join(60)
    return _report(catalog)


def _report(catalog: Path) -> int:
    """Validate the result and say exactly what was and was not checked."""
    store = default_store()
    report = validate_catalog(catalog, store, strict=False)
    _say(f"\ndemo: {_count(report.items, 'Item')} in {_shown(catalog)}/")
    if report.ok:
        _say("validation: no problems found in links, structure or the schemas checked")
    else:
        _say(f"validation: {_count(len(report.problems), 'problem')}:")
        for problem in report.problems:
            _say(f"  {problem}")
    for line in coverage(store, report.unchecked).lines(network=False):
        _say(line)
    _say(f"next: open {_shown(catalog / 'catalog.json')} with pystac, QGIS or STAC Browser;")
    _say(f"      stacwatchd status --catalog {_shown(catalog)}")
    return 0 if report.ok else 1


def _wait_idle(daemon: Daemon) -> None:
    """Nothing settling, queued or being written: the step's log lines are all out."""
    testing.wait_until(
        lambda: daemon.settler.pending() == 0 and daemon.engine.depth() == 0 and daemon.engine.wait_written(0.1),
        timeout=STEP_TIMEOUT,
        message="daemon idle",
    )


def _say(text: str) -> None:
    """One write per line, so a log line from another thread never lands inside it."""
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


def _shown(path: Path) -> str:
    """Short paths: relative to the current folder when below it."""
    try:
        return os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _asset_size(catalog: Path, item_id: str) -> int | None:
    for path in (catalog / "demo").rglob(f"{item_id}.json"):
        try:
            return json.loads(path.read_bytes())["assets"]["data"]["file:size"]
        except (OSError, ValueError, KeyError):
            return None
    return None
