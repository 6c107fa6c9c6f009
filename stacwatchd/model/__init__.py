"""Pure metadata extraction: a raster file and typed rules in, an Item or a refusal out.

Nothing here knows about catalogs, threads, the state or configuration files.
"""
