"""``stacwatchd demo``: sample rasters in a local folder, cataloged, and the result shown."""

from __future__ import annotations

import sys
from pathlib import Path

from stacwatchd import testing
from stacwatchd.config import CatalogSettings, CollectionSettings, WatchSettings
from stacwatchd.scan import scan
from stacwatchd.validate import SchemaStore, validate_catalog


def run_demo(base: Path) -> int:
    """Write samples (good and broken), catalog them, print the tree, validate it offline."""
    base = base.resolve()
    incoming = base / "incoming"
    catalog = base / "catalog"
    print(f"demo: writing sample rasters into {incoming}")
    testing.sample_set(incoming)
    watch = WatchSettings(
        path=incoming,
        collection=CollectionSettings(id="demo", title="Demo rasters", description="Sample rasters made by stacwatchd demo"),
    )
    summary = scan(CatalogSettings(root=catalog, title="stacwatchd demo"), [watch], workers=2, progress=None)
    print(
        f"demo: cataloged {summary.added} Items into {catalog} "
        f"({summary.rejected} files refused, {summary.files_written} JSON files written)"
    )
    for rejection in summary.rejections:
        print(f"  refused {rejection.path.name}: {rejection.reason}")
    _print_tree(catalog)
    schemas = _schema_folder()
    report = validate_catalog(catalog, SchemaStore(directory=schemas), strict=schemas is not None)
    status = "valid" if report.ok else f"{len(report.problems)} problems"
    checked = f"against {schemas}" if schemas else "(structure and links; no offline schemas found)"
    print(f"demo: validate {checked}: {report.items} items, {status}")
    print(f"demo: open {catalog / 'catalog.json'} with pystac, QGIS or STAC Browser")
    return 0 if report.ok else 1


def _schema_folder() -> Path | None:
    for candidate in (Path.cwd() / ".." / "shared" / "stac-schemas", Path(__file__).resolve().parents[2] / "shared" / "stac-schemas"):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def _print_tree(root: Path, limit: int = 12) -> None:
    files = sorted(p.relative_to(root) for p in root.rglob("*.json") if not any(part.startswith(".") for part in p.relative_to(root).parts))
    for rel in files[:limit]:
        print(f"  {rel}")
    if len(files) > limit:
        print(f"  … and {len(files) - limit} more", file=sys.stdout)
