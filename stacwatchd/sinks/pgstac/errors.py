"""Failures of the PgSTAC sink, sorted into what may heal and what never will.

A database that is down, restarting or slow is an outage: the runner retries with
backoff. A document PgSTAC refuses as data (SQLSTATE classes 22, 23, P0, XX) would fail
the same way forever, so it is isolated and skipped instead; so is a batch whose locks
overflow the lock table, by sending fewer partitions per transaction.
"""

from __future__ import annotations

from typing import Any

import psycopg

from stacwatchd.sinks.base import SinkError

__all__ = ["OUT_OF_LOCKS", "REFUSAL_CLASSES", "PublishError", "failure_kind", "first_line", "is_refusal", "splittable"]

#: SQLSTATE classes meaning "this document is wrong", not "the database is unwell":
#: data exception, integrity violation, PL/pgSQL raise, internal (PostGIS parse) error.
REFUSAL_CLASSES = frozenset({"22", "23", "P0", "XX"})
#: "out of shared memory ... increase max_locks_per_transaction". pgstac 0.10's
#: check_partition swallows it when it strikes while creating a partition (an
#: ``EXCEPTION WHEN others`` that only RAISEs INFO), and the insert then fails with
#: "relation _items_... does not exist" (42P01): both mean "fewer partitions at once".
OUT_OF_LOCKS = frozenset({"53200", "42P01"})


class PublishError(SinkError):
    """PgSTAC could not be reached or refused a batch. The message carries no secret."""

    def __init__(
        self,
        target: str,
        reason: str,
        kind: str = "publish_error",
        *,
        sqlstate: str | None = None,
        delivered: int | None = None,
    ) -> None:
        super().__init__(target, reason, kind=kind, delivered=delivered)
        self.target = target
        self.sqlstate = sqlstate


def failure_kind(exc: BaseException) -> str:
    """A stable name for a failure: one outage is one kind, whatever libpq says each time."""
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return "unavailable"
    return type(exc).__name__


def splittable(exc: psycopg.Error, conn: psycopg.Connection[Any]) -> bool:
    """Whether sending fewer Items per transaction may succeed where this failed."""
    if conn.closed or conn.broken:
        return False
    return is_refusal(exc) or exc.sqlstate in OUT_OF_LOCKS


def is_refusal(exc: BaseException) -> bool:
    """Whether PgSTAC refused the data itself (retrying the same document cannot help)."""
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return False
    state = getattr(exc, "sqlstate", None) or ""
    return state[:2] in REFUSAL_CLASSES


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
