"""Where the PgSTAC sink connects, and with which password, without ever showing it.

The DSN must not carry a password. It comes from ``password_env`` (the name of an
environment variable) or ``password_file`` (e.g. systemd ``LoadCredential=``; a
trailing newline is stripped), read again at each connection, so a rotated credential
is picked up without a restart; with neither, libpq's own defaults apply
(``PGPASSWORD``, ``~/.pgpass``, peer/trust). :meth:`Credentials.redact` masks it in
every message the sink logs or records.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from stacwatchd.config import PgstacSettings
from stacwatchd.errors import ConfigError
from stacwatchd.sinks.pgstac.errors import PublishError

__all__ = ["Credentials"]

_CONNECT_DEFAULTS = {
    "application_name": "stacwatchd",
    # A dead peer is noticed in ~25 s instead of the kernel's two hours.
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}
_PASSWORD_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]+)", re.IGNORECASE)
_PASSWORD_URL = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)", re.IGNORECASE)


class Credentials:
    """The DSN from the settings and the password from its environment variable or file.

    Raises :class:`ConfigError` at construction when the DSN is missing, unparsable,
    carries a password, or the password source is missing; the message never quotes
    the DSN or the password.
    """

    def __init__(self, settings: PgstacSettings) -> None:
        self.settings = settings
        self._secrets: set[str] = set()
        if settings.dsn is None:
            raise ConfigError(None, "pgstac.dsn is not set")
        dsn = settings.dsn.get_secret_value()
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error:
            raise ConfigError(None, "pgstac.dsn is not a valid PostgreSQL connection string") from None
        if params.get("password"):
            self._secrets.add(str(params["password"]))
            raise ConfigError(None, "pgstac.dsn must not contain a password: use pgstac.password_env or pgstac.password_file")
        if settings.password_env and settings.password_file:
            raise ConfigError(None, "set pgstac.password_env or pgstac.password_file, not both")
        self._params: dict[str, Any] = {k: v for k, v in params.items() if v is not None}
        try:
            self.password()
        except PublishError as error:
            raise ConfigError(None, error.reason) from None

    def password(self) -> str | None:
        """Read the password now (a rotated credential is picked up at the next connect)."""
        s = self.settings
        if s.password_env:
            value = os.environ.get(s.password_env, "")
            if not value:
                raise self._no_password(f"environment variable {s.password_env} (pgstac.password_env) is not set")
        elif s.password_file is not None:
            try:
                value = s.password_file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise self._no_password(f"cannot read pgstac.password_file {s.password_file}: {exc.strerror}") from None
            if not value:
                raise self._no_password(f"pgstac.password_file {s.password_file} is empty")
        else:
            return None
        self._secrets.add(value)
        return value

    def connect(self) -> psycopg.Connection[Any]:
        """A new connection with a short connect timeout and ``search_path`` set for pgstac."""
        params = {**_CONNECT_DEFAULTS, **self._params}
        # libpq's (and psycopg's) floor is 2 s; a fraction is rounded up.
        params["connect_timeout"] = str(max(2, math.ceil(self.settings.connect_timeout_seconds)))
        password = self.password()
        if password is not None:
            params["password"] = password
        conn = psycopg.connect(autocommit=False, **params)
        try:
            conn.execute("SET search_path TO pgstac, public")
            conn.execute("SET client_min_messages TO warning")
            conn.commit()
        except BaseException:
            conn.close()
            raise
        return conn

    def describe(self) -> str:
        """Where we connect, for logs: ``user@host:port/dbname``, never the password."""
        p = self._params
        user = p.get("user") or os.environ.get("PGUSER") or "-"
        host = p.get("host") or p.get("hostaddr") or os.environ.get("PGHOST") or "localhost"
        port = p.get("port") or os.environ.get("PGPORT") or "5432"
        dbname = p.get("dbname") or os.environ.get("PGDATABASE") or user
        return f"{user}@{host}:{port}/{dbname}"

    def redact(self, text: str) -> str:
        """``text`` with every password we know of, and any DSN password, masked."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        text = _PASSWORD_KV.sub(r"\1***", text)
        return _PASSWORD_URL.sub(r"\1***\3", text)

    def _no_password(self, reason: str) -> PublishError:
        return PublishError(self.describe(), reason, "no_password")
