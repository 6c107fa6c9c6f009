"""Shared fixtures: the official STAC schemas, sample rasters, and schema assertions."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from stacwatchd import testing
from stacwatchd.validate.schemas import SchemaStore, validate_object

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SCHEMAS = REPO.parent / "shared" / "stac-schemas"
IN_CI = os.environ.get("CI", "").lower() == "true"

sys.path.insert(0, str(TESTS))

pytest_plugins = ["support.pg", "support.stacapi"]


def pytest_configure(config: pytest.Config) -> None:
    if not SCHEMAS.is_dir():
        raise pytest.UsageError(f"the official STAC schemas are expected at {SCHEMAS}")


@pytest.fixture(scope="session")
def schema_store() -> SchemaStore:
    return SchemaStore(directory=SCHEMAS)


@pytest.fixture(scope="session")
def assert_valid(schema_store: SchemaStore):  # noqa: ANN201 - returns a checker
    """Validate a STAC dict against the official schemas, failing on any unchecked schema."""

    def check(obj: dict[str, Any]) -> None:
        report = validate_object(obj, schema_store, strict=True)
        assert not report.problems, "\n".join(str(p) for p in report.problems)

    return check


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file of every kind stacwatchd.testing can make, written once per session."""
    return testing.sample_set(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="session")
def pystac_local_schemas() -> None:
    """Make pystac validate against the offline schema mirror instead of the network."""
    import json as _json

    import pystac.validation
    from pystac.validation.stac_validator import JsonSchemaSTACValidator

    validator = JsonSchemaSTACValidator()
    for path in SCHEMAS.rglob("*.json"):
        url = "https://" + path.relative_to(SCHEMAS).as_posix()
        validator.schema_cache[url] = _json.loads(path.read_text())
    pystac.validation.set_validator(validator)
