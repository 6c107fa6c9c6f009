"""stacwatchd: keeps a static STAC catalog in sync with folders of rasters."""

__version__ = "0.1.0"
