"""PgSTAC, a dynamic STAC API's database, as one sink among others.

The writer records every change (collection created or changed, Item added, updated or
removed) on the state's ``changes`` stream in the same transaction as the change
itself. :class:`PgstacSink` receives those rows from its
:class:`~stacwatchd.sinks.base.SinkRunner`, which owns the thread, the cursor, the
capped backoff and the status ``stacwatchd status`` shows: while PgSTAC is down,
restarting or refusing, cataloging goes on and the backlog is delivered, in order and
once, when it is back. :func:`publish_all` pushes the whole state (``publish --all``).

By concern:

* :mod:`.credentials` — the DSN, the password from its environment variable or file,
  connections with short timeouts, masking;
* :mod:`.hrefs` — the static catalog's relative hrefs made absolute;
* :mod:`.plan` — what one push sends, read and coalesced from the state;
* :mod:`.database` — the SQL against PostgreSQL: collections, bulk ``COPY`` of Items,
  partitions, bisection of what PgSTAC refuses;
* :mod:`.queryables` — the Item fields a client may filter on, registered with each
  collection;
* :mod:`.sink` — the :class:`~stacwatchd.sinks.base.Sink` itself;
* :mod:`.bulk` — ``publish --all``.

Importing this package needs the ``pgstac`` extra (psycopg, pypgstac, orjson).
"""

from stacwatchd.sinks.pgstac.bulk import publish_all
from stacwatchd.sinks.pgstac.credentials import Credentials
from stacwatchd.sinks.pgstac.database import PgstacDatabase, upsert_collection
from stacwatchd.sinks.pgstac.errors import PublishError
from stacwatchd.sinks.pgstac.hrefs import STRUCTURAL_RELS, Hrefs, absolute
from stacwatchd.sinks.pgstac.plan import Plan, Planner, PublishCounts
from stacwatchd.sinks.pgstac.queryables import queryables_document, register_queryables
from stacwatchd.sinks.pgstac.sink import PgstacSink

__all__ = [
    "STRUCTURAL_RELS",
    "Credentials",
    "Hrefs",
    "PgstacDatabase",
    "PgstacSink",
    "Plan",
    "Planner",
    "PublishCounts",
    "PublishError",
    "absolute",
    "publish_all",
    "queryables_document",
    "register_queryables",
    "upsert_collection",
]
