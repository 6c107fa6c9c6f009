"""Optional destinations fed from the state's outbox after each writer batch.

The static catalog stays the primary output; a sink republishes the same Items
somewhere else (today: :mod:`stacwatchd.sinks.pgstac`). Sinks are imported lazily,
so the daemon does not need their dependencies unless one is configured.

A sink is a small object with ``start()``, ``stop(timeout)``, ``wake()`` and
``depth()``: it owns its connections and its thread, never blocks the writer,
and removes outbox rows only once they are safely delivered.
"""
