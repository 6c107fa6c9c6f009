"""Offline validation of STAC objects and whole catalogs against the official schemas."""

from stacwatchd.validate.schemas import (
    CatalogNotFoundError,
    CatalogReport,
    Problem,
    SchemaStore,
    SchemaUnavailableError,
    ValidationReport,
    validate_catalog,
    validate_object,
)
from stacwatchd.validate.sources import Coverage, coverage, default_cache_dir, default_store, schema_name

__all__ = [
    "CatalogNotFoundError",
    "Coverage",
    "CatalogReport",
    "Problem",
    "SchemaStore",
    "SchemaUnavailableError",
    "ValidationReport",
    "coverage",
    "default_cache_dir",
    "default_store",
    "schema_name",
    "validate_catalog",
    "validate_object",
]
