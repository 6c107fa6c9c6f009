"""Shared fixtures: the official STAC schemas, sample rasters, and schema assertions.

The suite runs from a fresh clone, offline. The STAC core schemas come with pystac;
the extension schemas are looked for in ``$STAC_SCHEMA_ROOT``, then
``../shared/stac-schemas`` beside the repository (this project's CI machines), then the
user's schema cache (``stacwatchd validate --network`` fills it). Where none holds them,
the tests that need them skip, all with the one reason below, and every other test
runs. With ``CI=true`` and ``../shared`` present nothing may skip for want of schemas.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from stacwatchd import testing
from stacwatchd.validate import SchemaStore, default_cache_dir, validate_object
from stacwatchd.validate.schemas import mirror_path
from stacwatchd.validate.sources import SCHEMA_ROOT_ENV

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED_SCHEMAS = REPO.parent / "shared" / "stac-schemas"
IN_CI = os.environ.get("CI", "").lower() == "true"

#: What the schema tests validate against beyond the bundled STAC 1.1 core: the extension
#: versions stacwatchd writes, the older ones the validator tests use, and STAC 1.0 core.
NEEDED_SCHEMAS = (
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.2.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v2.0.0/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "https://schemas.stacspec.org/v1.0.0/item-spec/json-schema/item.json",
)
SCHEMAS_MISSING = (
    f"STAC extension schemas not found (${SCHEMA_ROOT_ENV}, ../shared/stac-schemas, or the cache "
    "that `stacwatchd validate --network` fills): schema-dependent tests skipped"
)

sys.path.insert(0, str(TESTS))

pytest_plugins = ["support.pg", "support.stacapi"]


def schema_candidates() -> list[tuple[str, Path]]:
    """Where the extension schemas are looked for, in order."""
    found = []
    if os.environ.get(SCHEMA_ROOT_ENV):
        found.append((f"${SCHEMA_ROOT_ENV}", Path(os.environ[SCHEMA_ROOT_ENV])))
    found.append(("../shared", SHARED_SCHEMAS))
    found.append(("schema cache", default_cache_dir()))
    return found


def holds_needed_schemas(folder: Path) -> bool:
    return all((path := mirror_path(folder, url)) is not None and path.is_file() for url in NEEDED_SCHEMAS)


def find_schemas() -> Path | None:
    return next((folder for _, folder in schema_candidates() if holds_needed_schemas(folder)), None)


SCHEMAS: Path | None = find_schemas()


def schema_option() -> list[str]:
    """``--schemas DIR`` for a ``validate`` command when a schema folder was found, else nothing
    (``validate`` then checks the bundled core schemas and names the extensions it could not)."""
    return ["--schemas", str(SCHEMAS)] if SCHEMAS is not None else []


#: Where the servers the tests start listen (moto, PostgreSQL's API, webhook receivers).
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def pytest_configure(config: pytest.Config) -> None:
    # A proxy set for the package registries must not carry requests to our own loopback
    # servers (botocore and requests honour it for 127.0.0.1 unless told otherwise); the
    # daemons the tests start inherit this.
    for name in ("no_proxy", "NO_PROXY"):
        hosts = [h for h in os.environ.get(name, "").split(",") if h]
        os.environ[name] = ",".join(dict.fromkeys([*hosts, *LOOPBACK]))
    explicit = os.environ.get(SCHEMA_ROOT_ENV)
    if explicit and not holds_needed_schemas(Path(explicit)):
        raise pytest.UsageError(f"${SCHEMA_ROOT_ENV}={explicit} does not hold the STAC extension schemas")
    if IN_CI and SHARED_SCHEMAS.is_dir() and SCHEMAS is None:
        raise pytest.UsageError(f"CI=true: {SHARED_SCHEMAS} lacks schemas the tests need: {', '.join(NEEDED_SCHEMAS)}")


def pytest_report_header(config: pytest.Config) -> str:
    if SCHEMAS is None:
        return f"STAC extension schemas: none found; {SCHEMAS_MISSING}"
    return f"STAC extension schemas: {SCHEMAS}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    """Every skip for want of schemas is reported at one place, so the summary folds it into one line."""
    report = yield
    if report.skipped and isinstance(report.longrepr, tuple) and SCHEMAS_MISSING in report.longrepr[2]:
        report.longrepr = (str(Path(__file__)), require_schemas.__code__.co_firstlineno, report.longrepr[2])
    return report


def require_schemas() -> Path:
    """The schema folder, or a skip with the suite's one reason (so the summary shows one line)."""
    if SCHEMAS is None:
        pytest.skip(SCHEMAS_MISSING)
    return SCHEMAS


@pytest.fixture(scope="session")
def schema_store() -> SchemaStore:
    return SchemaStore(directory=require_schemas())


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
    import pystac.validation
    from pystac.validation.stac_validator import JsonSchemaSTACValidator

    folder = require_schemas()
    validator = JsonSchemaSTACValidator()
    for path in folder.rglob("*.json"):
        url = "https://" + path.relative_to(folder).as_posix()
        validator.schema_cache[url] = json.loads(path.read_text())
    pystac.validation.set_validator(validator)
