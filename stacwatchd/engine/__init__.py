"""One engine for ``run`` and ``scan``: intake → settle → build → one writer → sinks."""
