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

__all__ = [
    "CatalogNotFoundError",
    "CatalogReport",
    "Problem",
    "SchemaStore",
    "SchemaUnavailableError",
    "ValidationReport",
    "validate_catalog",
    "validate_object",
]
