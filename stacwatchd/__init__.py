"""stacwatchd: keeps a static STAC catalog in sync with folders of rasters."""

__all__ = ["__version__"]

__version__ = "0.1.0"
