"""Any sequence of add/update/remove/move leaves the catalog equal to a rebuild, valid,
with extents and summaries equal to a from-scratch recomputation."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_catalog import assert_catalog_ok, assert_extents_match_recomputation, item_docs, snapshot

from stacwatchd import testing
from stacwatchd.config import CatalogSettings, CollectionSettings
from stacwatchd.engine.writer import CatalogWriter, Remove, op_for
from stacwatchd.model.items import Rules, build

NAMES = [f"scene{i}" for i in range(6)]
DATES = ["20240105", "20240220", "20240221", "20250730", "20231231"]
PLACES = [
    ("EPSG:32633", (500_000, 5_000_000)),
    ("EPSG:32633", (620_000, 5_300_000)),
    ("EPSG:32660", (700_000, 5_760_000)),  # crosses the antimeridian in some extents
    ("EPSG:4326", (-179.9, 10.0)),
    ("EPSG:3857", (1_113_194, 6_446_275)),
]

operation = st.one_of(
    st.tuples(st.just("write"), st.integers(0, len(NAMES) - 1), st.integers(0, len(DATES) - 1), st.integers(0, len(PLACES) - 1)),
    st.tuples(st.just("remove"), st.integers(0, len(NAMES) - 1)),
    st.tuples(st.just("move"), st.integers(0, len(NAMES) - 1), st.integers(0, len(NAMES) - 1)),
)


def write(folder: Path, name: str, date: str, place: int) -> Path:
    crs, (x, y) = PLACES[place]
    size = 0.01 if crs == "EPSG:4326" else 640
    for old in folder.glob(f"{name}_*.tif"):
        old.unlink()
    return testing.write_raster(folder / f"{name}_{date}.tif", width=16, height=16, crs=crs, bounds=(x, y, x + size, y + size))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=14), st.integers(1, 4))
def test_any_sequence_of_changes_equals_a_rebuild(schema_store, ops, batch_every):
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        collection = CollectionSettings(id="c", title="Scenes")
        rules = Rules(collection_id="c", root=data, collection=collection)
        writer = CatalogWriter(CatalogSettings(root=Path(tmp) / "catalog"), {"c": collection})
        pending = []
        for step, op in enumerate(ops):
            if op[0] == "write":
                _, n, d, p = op
                gone = [old for old in data.glob(f"{NAMES[n]}_*.tif") if old.name != f"{NAMES[n]}_{DATES[d]}.tif"]
                path = write(data, NAMES[n], DATES[d], p)
                pending += [Remove(g) for g in gone] + [op_for(build(path, rules), rules)]
            elif op[0] == "remove":
                for path in data.glob(f"{NAMES[op[1]]}_*.tif"):
                    path.unlink()
                    pending.append(Remove(path))
            else:
                _, src, dst = op
                for path in data.glob(f"{NAMES[src]}_*.tif"):
                    if src == dst:
                        continue
                    for old in data.glob(f"{NAMES[dst]}_*.tif"):
                        old.unlink()
                        pending.append(Remove(old))
                    target = path.with_name(path.name.replace(NAMES[src], NAMES[dst], 1))
                    path.rename(target)
                    pending += [Remove(path), op_for(build(target, rules), rules)]
            if (step + 1) % batch_every == 0:
                result = writer.apply(pending)
                pending = [op_for(build(p, rules), rules) for p in result.requeue]
        result = writer.apply(pending)
        assert not result.requeue

        present = sorted(p.stem for p in data.glob("*.tif"))
        assert sorted(d["id"] for d in item_docs(writer.root)) == present
        assert_catalog_ok(writer.root, schema_store)
        if present:
            assert_extents_match_recomputation(writer.root)
        incremental = snapshot(writer.root)
        for rel in incremental:
            (writer.root / rel).unlink()
        writer.rebuild()
        assert snapshot(writer.root) == incremental
        writer.close()
