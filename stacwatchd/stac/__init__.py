"""Pure STAC documents: the catalog layout, structural links, summaries and JSON encoding."""
