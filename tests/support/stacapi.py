"""A real stac-fastapi-pgstac server (uvicorn subprocess) in front of a test cluster.

stac-fastapi-pgstac 7.x reads its database settings from ``PGHOST PGPORT PGUSER
PGPASSWORD PGDATABASE`` (``stac_fastapi.pgstac.config.PostgresSettings``; the
``POSTGRES_*`` names are gone) and has no module-level ``app`` any more: it is
built by the factory ``stac_fastapi.pgstac.app:create_app`` (uvicorn
``--factory``). Both settings classes also read a ``.env`` file from the current
folder, so the server runs in a folder of its own.

Readiness is ``GET /_mgmt/health`` answering 200, which means the app's
lifespan ran *and* it queried ``pgstac.get_version()`` (``/_mgmt/ping`` answers
before the database is reachable).

Pytest fixture (load with ``pytest_plugins = ["support.stacapi"]``, together
with ``support.pg``): ``stac_api`` (session) -> base URL, e.g.
``http://127.0.0.1:41234``. It serves the shared ``pg_cluster`` database, so
data put there by a test using ``pgstac_db`` is visible through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .pg import API_DIR_PREFIX, HOST, OWNER_FILE, PgCluster, free_port, register_for_cleanup, unregister_for_cleanup

__all__ = ["StacApiServer", "StacApiError", "APP_FACTORY", "stac_api", "stac_api_server"]

APP_FACTORY = "stac_fastapi.pgstac.app:create_app"
START_TIMEOUT = 60.0


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the test process dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:  # noqa: BLE001 - best effort; atexit/finalizers still stop it
        pass


class StacApiError(RuntimeError):
    """The API server could not be started or did not become healthy."""


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class StacApiServer:
    """``uvicorn stac_fastapi.pgstac.app:create_app --factory`` on 127.0.0.1:<free port>."""

    def __init__(
        self,
        pg_env: Mapping[str, str],
        *,
        host: str = HOST,
        port: int | None = None,
        transactions: bool = False,
        extra_env: Mapping[str, str] | None = None,
        work_dir: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.pg_env = dict(pg_env)
        self.transactions = transactions
        self.extra_env = dict(extra_env or {})
        self._own_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix=API_DIR_PREFIX))
        (self.work_dir / OWNER_FILE).write_text(str(os.getpid()))  # for reap_stale_clusters()
        self.log_file = self.work_dir / "uvicorn.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    @classmethod
    def for_cluster(cls, cluster: PgCluster, **kw: Any) -> StacApiServer:
        return cls(cluster.env(), **kw)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        # Inherit PATH/HOME/etc., but none of the caller's PG*/POSTGRES_* or
        # stac-fastapi settings that could point the server somewhere else.
        drop = ("PG", "POSTGRES_", "ENABLED_EXTENSIONS", "ENABLE_", "DB_", "STAC_FASTAPI_", "USE_API_HYDRATE")
        env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        env.update(self.pg_env)
        env.update(
            {
                "STAC_FASTAPI_TITLE": "stacwatchd-test",
                "STAC_FASTAPI_DESCRIPTION": "stac-fastapi-pgstac for stacwatchd tests",
                "STAC_FASTAPI_VERSION": "test",
                "STAC_FASTAPI_LANDING_ID": "stacwatchd-test",
                "DB_MIN_CONN_SIZE": "1",
                "DB_MAX_CONN_SIZE": "5",
                "ENABLE_TRANSACTIONS_EXTENSIONS": "true" if self.transactions else "false",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = START_TIMEOUT) -> StacApiServer:
        if self.proc is not None and self.proc.poll() is None:
            return self
        cmd = [
            sys.executable, "-m", "uvicorn", APP_FACTORY, "--factory",
            "--host", self.host, "--port", str(self.port),
            "--log-level", "warning", "--no-access-log", "--workers", "1",
        ]  # fmt: skip
        t0 = time.perf_counter()
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.work_dir,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: we can signal it and its children
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        register_for_cleanup(self)
        try:
            self.wait_healthy(timeout=timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.perf_counter() - t0
        return self

    def _log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        delay = 0.05
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise StacApiError(f"uvicorn exited with {code} during startup:\n{self._log_tail()}")
            try:
                status, body = _get(self.url + "/_mgmt/health")
                if status == 200:
                    return json.loads(body)
                last = f"HTTP {status}: {body[:300]!r}"
            except (OSError, ValueError) as exc:
                last = repr(exc)
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        raise StacApiError(f"stac-fastapi-pgstac not healthy at {self.url} after {timeout:.0f}s ({last}):\n{self._log_tail()}")

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # Anything left in its process group (there should be none).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def destroy(self) -> None:
        """Stop the server and remove its folder (also called at interpreter exit)."""
        unregister_for_cleanup(self)
        self.stop()
        if self._own_dir and os.environ.get("STACWATCHD_PG_KEEP") != "1":
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> StacApiServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.destroy()


# --------------------------------------------------------------------------- #
# Pytest fixtures
# --------------------------------------------------------------------------- #

try:
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]


if pytest is not None:

    @pytest.fixture(scope="session")
    def stac_api_server(pg_cluster: PgCluster) -> Iterator[StacApiServer]:
        """The running :class:`StacApiServer` (session), over the shared ``pg_cluster``."""
        try:
            import stac_fastapi.pgstac.app  # noqa: F401
            import uvicorn  # noqa: F401
        except ImportError as exc:
            from .pg import _unavailable

            _unavailable(f"stac-fastapi-pgstac/uvicorn not importable: {exc}")
        server = StacApiServer.for_cluster(pg_cluster)
        server.start()
        from . import pg as _pg

        _pg._summary["stac_api start (uvicorn until /_mgmt/health is 200)"] = f"{server.startup_seconds:.2f}s"
        try:
            yield server
        finally:
            server.destroy()

    @pytest.fixture(scope="session")
    def stac_api(stac_api_server: StacApiServer) -> str:
        """Base URL (no trailing slash) of stac-fastapi-pgstac serving ``pg_cluster``."""
        return stac_api_server.url
