"""Throwaway PostgreSQL + PostGIS + pgstac clusters for the tests.

A :class:`PgCluster` is a private cluster in a folder of its own: ``initdb`` as the
``postgres`` system user when the tests run as root (initdb and pg_ctl refuse to
run as root), listening on a free TCP port on 127.0.0.1 only (no Unix socket),
with durability against OS crashes switched off (``fsync=off``,
``full_page_writes=off``; ``synchronous_commit`` stays ``on``, so commits
survive :meth:`PgCluster.kill` -- see the field's comment), a database ``stac``
migrated with ``pypgstac migrate``,
and a login role ``stac`` with a password (the superuser ``postgres`` is trusted
from 127.0.0.1; every other role must give its password, SCRAM).

Pytest fixtures. Load them from ``tests/conftest.py``::

    import sys
    from pathlib import Path

    _TESTS = str(Path(__file__).resolve().parent)
    if _TESTS not in sys.path:
        sys.path.insert(0, _TESTS)

    pytest_plugins = ["support.pg", "support.stacapi"]

(always as ``support.*``, never ``tests.support.*``: one module, one session
cluster).

``pg_cluster``          session: one cluster for the whole run. Skips when
                        PostgreSQL/PostGIS are not installed, but fails when
                        ``CI=true``.
``pgstac_db``           function: the session cluster, with every pgstac
                        collection and item (and search caches, queue, settings,
                        queryables) reset before the test.
``pg_cluster_factory``  function: ``factory()`` -> a private, freshly started
                        cluster (copied from a migrated template, so cheap), for
                        tests that kill/stop/restart the database. Destroyed at
                        the end of the test.

Environment knobs: ``STACWATCHD_PG_BINDIR`` (folder with initdb/pg_ctl/postgres),
``STACWATCHD_PG_KEEP=1`` (keep cluster folders after the run, for their logs).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "PgCluster",
    "PgUnavailable",
    "PgStartError",
    "find_pg_bindir",
    "check_pg_available",
    "free_port",
    "new_cluster_dir",
    "reap_stale_clusters",
    "register_for_cleanup",
    "reset_pgstac",
    "pg_cluster",
    "pgstac_db",
    "pg_cluster_factory",
]

HOST = "127.0.0.1"
SUPERUSER = "postgres"
DEFAULT_USER = "stac"
DEFAULT_PASSWORD = "stacwatchd-test"
DEFAULT_DBNAME = "stac"
DIR_PREFIX = "stacwatchd-pg-"
API_DIR_PREFIX = "stacwatchd-api-"  # tests/support/stacapi.py
OWNER_FILE = "owner.pid"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


class PgUnavailable(RuntimeError):
    """PostgreSQL, PostGIS or a tool needed to run a test cluster is missing."""


class PgStartError(RuntimeError):
    """The cluster was installed but could not be created or started."""


# --------------------------------------------------------------------------- #
# Discovery
# --------------------------------------------------------------------------- #


def _version_key(path: str) -> tuple[int, ...]:
    name = Path(path).parent.name  # /usr/lib/postgresql/<ver>/bin
    try:
        return tuple(int(p) for p in name.split("."))
    except ValueError:
        return (0,)


def find_pg_bindir() -> Path:
    """Folder holding initdb, pg_ctl and postgres.

    ``STACWATCHD_PG_BINDIR`` wins; then the newest ``/usr/lib/postgresql/*/bin``
    (Debian) that has PostGIS; then wherever ``pg_ctl`` is on ``PATH``.
    """
    env = os.environ.get("STACWATCHD_PG_BINDIR")
    if env:
        return Path(env)

    def has_postgis(d: str) -> bool:  # Debian layout: /usr/share/postgresql/<ver>/extension
        return os.path.exists(f"/usr/share/postgresql/{Path(d).parent.name}/extension/postgis.control")

    # Newest version with PostGIS first, then newest without (reported as missing postgis).
    candidates = sorted(
        (d for d in glob.glob("/usr/lib/postgresql/*/bin") if os.path.exists(os.path.join(d, "initdb"))),
        key=lambda d: (has_postgis(d), _version_key(d)),
        reverse=True,
    )
    if candidates:
        return Path(candidates[0])
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    raise PgUnavailable(
        "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, no pg_ctl on PATH); "
        "install postgresql-15 and postgresql-15-postgis-3 (see .ci/install-system-deps) "
        "or set STACWATCHD_PG_BINDIR"
    )


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def check_pg_available() -> Path:
    """Return the bin folder, or raise :class:`PgUnavailable` naming everything missing."""
    bindir = find_pg_bindir()
    missing: list[str] = []
    for exe in ("initdb", "pg_ctl", "postgres", "pg_config"):
        if not os.access(bindir / exe, os.X_OK):
            missing.append(f"{bindir / exe}")
    sharedir: Path | None = None
    if not missing:
        try:
            out = subprocess.run(
                [str(bindir / "pg_config"), "--sharedir"], capture_output=True, text=True, timeout=30, check=True
            )
            sharedir = Path(out.stdout.strip())
        except (OSError, subprocess.SubprocessError) as exc:
            missing.append(f"pg_config --sharedir failed: {exc}")
    if sharedir is not None:
        for ext in ("postgis", "btree_gist", "unaccent"):
            if not (sharedir / "extension" / f"{ext}.control").exists():
                pkg = "postgresql-<ver>-postgis-3" if ext == "postgis" else "postgresql-<ver> (contrib)"
                missing.append(f"extension {ext} ({sharedir}/extension/{ext}.control; package {pkg})")
    if _is_root():
        import pwd

        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            missing.append("system user 'postgres' (initdb refuses to run as root)")
        if not shutil.which("runuser"):
            missing.append("runuser (util-linux)")
    for mod in ("psycopg", "pypgstac"):
        try:
            __import__(mod)
        except ImportError as exc:
            missing.append(f"python module {mod} ({exc})")
    if missing:
        raise PgUnavailable("cannot run a PostgreSQL test cluster; missing: " + "; ".join(missing))
    return bindir


# --------------------------------------------------------------------------- #
# Small helpers
# --------------------------------------------------------------------------- #

_ports_lock = threading.Lock()
_ports_handed_out: set[int] = set()


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listens on now and that we have not handed out."""
    with _ports_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
            if port not in _ports_handed_out:
                _ports_handed_out.add(port)
                return port
    raise RuntimeError("could not find a free TCP port")


def _clean_env() -> dict[str, str]:
    """Environment for PostgreSQL tools: no inherited PG* that could point them elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    return env


def _as_pg(cmd: list[str]) -> list[str]:
    if _is_root():
        return ["runuser", "-u", SUPERUSER, "--", *cmd]
    return cmd


def _chown_to_pg(path: Path) -> None:
    if _is_root():
        import pwd

        pw = pwd.getpwnam(SUPERUSER)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def _check_traversable(path: Path) -> None:
    """As root, the postgres user must be able to reach ``path``: every parent needs o+x."""
    if not _is_root():
        return
    import pwd

    uid = pwd.getpwnam(SUPERUSER).pw_uid
    for parent in path.resolve().parents:
        st = parent.stat()
        if st.st_uid == uid:
            continue
        if not st.st_mode & 0o001:
            raise PgStartError(
                f"{parent} is not traversable by the postgres user (mode {oct(st.st_mode & 0o777)}); "
                f"put the cluster folder elsewhere, e.g. under {tempfile.gettempdir()} "
                "(pytest's tmp_path under /tmp/pytest-of-root is 0700 and does not work)"
            )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(lines[-n:])


def _run(cmd: list[str], timeout: float = 120.0, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=kw.pop("env", _clean_env()), **kw)


class _hybridmethod:
    """``PgCluster.start(base_dir)`` creates a cluster; ``cluster.start()`` starts it again."""

    def __init__(self, fclass: Callable[..., Any], finstance: Callable[..., Any]) -> None:
        self.fclass = fclass
        self.finstance = finstance
        self.__doc__ = fclass.__doc__

    def __get__(self, obj: Any, cls: type) -> Callable[..., Any]:
        if obj is None:
            return self.fclass.__get__(cls, cls)
        return self.finstance.__get__(obj, cls)


# Everything started in this process, for atexit / SIGTERM cleanup.
_live: list[Any] = []
_live_lock = threading.Lock()
_cleanup_installed = False


def _cleanup_all() -> None:
    with _live_lock:
        items = list(reversed(_live))
        _live.clear()
    for obj in items:
        with contextlib.suppress(Exception):
            obj.destroy()


def _install_cleanup() -> None:
    """Register atexit cleanup once, and turn SIGTERM into a clean exit so it runs."""
    global _cleanup_installed
    if _cleanup_installed:
        return
    _cleanup_installed = True
    atexit.register(_cleanup_all)
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):

                def _on_term(signum: int, frame: Any) -> None:
                    _cleanup_all()
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    os.kill(os.getpid(), signal.SIGTERM)

                signal.signal(signal.SIGTERM, _on_term)


def register_for_cleanup(obj: Any) -> None:
    """Make sure ``obj.destroy()`` runs at interpreter exit (also used by stacapi)."""
    _install_cleanup()
    with _live_lock:
        _live.append(obj)


def unregister_for_cleanup(obj: Any) -> None:
    with _live_lock:
        with contextlib.suppress(ValueError):
            _live.remove(obj)


def reap_stale_clusters(tmpdir: str | None = None) -> list[Path]:
    """Stop and delete clusters left behind by test processes that died (SIGKILL).

    Only folders named ``stacwatchd-pg-*`` (and the API's ``stacwatchd-api-*``)
    whose ``owner.pid`` names a dead process.
    """
    reaped: list[Path] = []
    base = Path(tmpdir or tempfile.gettempdir())
    for d in [*base.glob(DIR_PREFIX + "*"), *base.glob(API_DIR_PREFIX + "*")]:
        owner = d / OWNER_FILE
        try:
            pid = int(owner.read_text().strip())
        except (OSError, ValueError):
            continue
        if _pid_alive(pid):
            continue
        data = d / "data"
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                bindir = find_pg_bindir()
                _run(_as_pg([str(bindir / "pg_ctl"), "-D", str(data), "stop", "-m", "immediate", "-w", "-t", "30"]))
        shutil.rmtree(d, ignore_errors=True)
        reaped.append(d)
    return reaped


# --------------------------------------------------------------------------- #
# The cluster
# --------------------------------------------------------------------------- #

_CONF = """
# --- stacwatchd test cluster ---
listen_addresses = '{host}'
port = {port}
unix_socket_directories = ''
max_connections = 100
shared_buffers = 128MB
fsync = off
synchronous_commit = {synchronous_commit}
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
max_wal_size = 1GB
checkpoint_timeout = 1h
jit = off
logging_collector = off
log_min_messages = warning
log_min_error_statement = error
log_line_prefix = '%m [%p] %q%u@%d '
timezone = 'UTC'
"""

_HBA = """
# TYPE  DATABASE  USER      ADDRESS        METHOD
host    all       postgres  127.0.0.1/32   trust
host    all       all       127.0.0.1/32   scram-sha-256
"""


@dataclass(eq=False)
class PgCluster:
    """A private PostgreSQL cluster with PostGIS and pgstac, on 127.0.0.1.

    Create one with ``PgCluster.start(base_dir)``; ``base_dir`` must be reachable by
    the ``postgres`` user when running as root (use a folder under /tmp, e.g.
    :func:`new_cluster_dir`, not pytest's ``tmp_path``). It holds ``data/``,
    ``postgres.log`` and ``owner.pid``; :meth:`destroy` deletes the whole folder.

    ``cluster.start()`` (on an instance) starts a stopped or killed cluster again,
    on the same port and data.
    """

    base_dir: Path
    bindir: Path
    port: int
    host: str = HOST
    user: str = DEFAULT_USER
    password: str = DEFAULT_PASSWORD
    dbname: str = DEFAULT_DBNAME
    superuser: str = SUPERUSER
    # "on" (default) keeps commits across kill(): with fsync=off it costs one
    # write() per commit, no fsync. "off" loses the last ~0.2-0.6 s of commits on
    # kill()/crash (measured: every time), which fault tests must not see.
    synchronous_commit: str = "on"
    timings: dict[str, float] = field(default_factory=dict)
    _destroyed: bool = field(default=False, repr=False)

    # ----------------------------------------------------------------- paths
    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    # ------------------------------------------------------------- connection
    @property
    def dsn(self) -> str:
        """DSN of the application role (with its password) on database ``dbname``."""
        return self.dsn_for(self.dbname)

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    @property
    def admin_dsn(self) -> str:
        """DSN of the superuser (trusted from 127.0.0.1, no password)."""
        return self.admin_dsn_for(self.dbname)

    def admin_dsn_for(self, dbname: str) -> str:
        return f"postgresql://{self.superuser}@{self.host}:{self.port}/{dbname}"

    def env(self) -> dict[str, str]:
        """libpq-style variables for the application role (for subprocesses)."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": self.dbname,
        }

    def connect(self, *, admin: bool = False, dbname: str | None = None, **kw: Any) -> Any:
        """A psycopg connection (autocommit) as the app role, or the superuser."""
        import psycopg

        db = dbname or self.dbname
        dsn = self.admin_dsn_for(db) if admin else self.dsn_for(db)
        kw.setdefault("autocommit", True)
        kw.setdefault("connect_timeout", 5)
        return psycopg.connect(dsn, **kw)

    # --------------------------------------------------------------- creation
    @classmethod
    def _create(
        cls,
        base_dir: Path | str,
        *,
        migrate: bool = True,
        template: Path | str | None = None,
        timeout: float = START_TIMEOUT,
        synchronous_commit: str = "on",
    ) -> PgCluster:
        """Create a fresh cluster in ``base_dir`` and start it.

        With ``template`` (a stopped, migrated data folder, see
        :meth:`save_template`) the data folder is copied instead of running
        initdb + migrate, which is several times faster.
        """
        bindir = check_pg_available()
        base_dir = Path(base_dir)
        base_dir.mkdir(parents=True, exist_ok=True)
        _check_traversable(base_dir)
        _chown_to_pg(base_dir)
        (base_dir / OWNER_FILE).write_text(str(os.getpid()))
        if (base_dir / "data").exists():
            raise PgStartError(f"{base_dir / 'data'} already exists; give start() an empty folder")

        self = cls(base_dir=base_dir, bindir=bindir, port=free_port(), synchronous_commit=synchronous_commit)
        register_for_cleanup(self)
        t0 = time.perf_counter()
        try:
            if template is not None:
                self._copy_template(Path(template))
                self.timings["copy_template"] = time.perf_counter() - t0
            else:
                self._initdb()
                self.timings["initdb"] = time.perf_counter() - t0
            self._write_conf()
            t1 = time.perf_counter()
            self._start_server(timeout=timeout, retries=3)
            self.timings["start"] = time.perf_counter() - t1
            if template is None:
                t2 = time.perf_counter()
                self._bootstrap(migrate=migrate)
                self.timings["bootstrap"] = time.perf_counter() - t2
        except BaseException:
            self.destroy()
            raise
        self.timings["total"] = time.perf_counter() - t0
        return self

    def _initdb(self) -> None:
        self.data_dir.mkdir()
        _chown_to_pg(self.data_dir)
        os.chmod(self.data_dir, 0o700)
        cmd = [
            str(self.bindir / "initdb"),
            "-D", str(self.data_dir),
            "-U", self.superuser,
            "--auth=trust",
            "--no-locale",
            "--encoding=UTF8",
            "--no-sync",
            "--no-instructions",
        ]  # fmt: skip
        res = _run(_as_pg(cmd), cwd="/")
        if res.returncode != 0:
            raise PgStartError(f"initdb failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")

    def _copy_template(self, template: Path) -> None:
        if not (template / "PG_VERSION").exists():
            raise PgStartError(f"{template} is not a PostgreSQL data folder")
        res = _run(_as_pg(["cp", "-a", str(template), str(self.data_dir)]), cwd="/")
        if res.returncode != 0:
            raise PgStartError(f"copying template {template} failed: {res.stderr}")
        for stale in ("postmaster.pid", "postmaster.opts"):
            with contextlib.suppress(FileNotFoundError):
                (self.data_dir / stale).unlink()

    def _write_conf(self) -> None:
        # postgresql.auto.conf is read last, so it overrides postgresql.conf;
        # rewrite it whole (the port changes when a template is copied).
        conf = _CONF.format(host=self.host, port=self.port, synchronous_commit=self.synchronous_commit)
        self._write_as_pg(self.data_dir / "postgresql.auto.conf", conf)
        self._write_as_pg(self.data_dir / "pg_hba.conf", _HBA)

    def _write_as_pg(self, path: Path, text: str) -> None:
        path.write_text(text)
        _chown_to_pg(path)
        os.chmod(path, 0o600)

    def _bootstrap(self, *, migrate: bool) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.admin_dsn_for("postgres"), autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(self.user), sql.Literal(self.password))
            )
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(self.dbname), sql.Identifier(self.user)))
            conn.execute(sql.SQL("ALTER DATABASE {} SET search_path TO pgstac, public").format(sql.Identifier(self.dbname)))
            conn.execute(sql.SQL("ALTER ROLE {} SET search_path TO pgstac, public").format(sql.Identifier(self.user)))
        if not migrate:
            return
        t = time.perf_counter()
        self.migrate()
        self.timings["migrate"] = time.perf_counter() - t
        with psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=5) as conn:
            # The app role may read, ingest and administer pgstac (delete
            # collections, change settings) but is not a superuser.
            conn.execute(sql.SQL("GRANT pgstac_admin, pgstac_ingest, pgstac_read TO {}").format(sql.Identifier(self.user)))
            _snapshot_pgstac_defaults(conn)

    def migrate(self, dbname: str | None = None) -> str:
        """Run ``pypgstac migrate`` (the real CLI, as a subprocess) on ``dbname``."""
        dsn = self.admin_dsn_for(dbname or self.dbname)
        cmd = [sys.executable, "-m", "pypgstac.pypgstac", "migrate", "--dsn", dsn]
        res = _run(cmd, timeout=300, cwd=str(self.base_dir))
        if res.returncode != 0:
            raise PgStartError(f"pypgstac migrate failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res.stdout.strip()

    # ------------------------------------------------------------ lifecycle
    def _pg_ctl(self, *args: str, timeout: float = STOP_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return _run(_as_pg([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), *args]), timeout=timeout, cwd="/")

    def _start_server(self, *, timeout: float = START_TIMEOUT, retries: int = 1) -> None:
        for attempt in range(retries):
            # -W: do not let pg_ctl wait; we poll with a real connection below.
            res = self._pg_ctl("start", "-W", "-l", str(self.log_file), "-s")
            if res.returncode != 0:
                raise PgStartError(
                    f"pg_ctl start failed ({res.returncode}): {res.stderr}\n--- {self.log_file}:\n{_tail(self.log_file)}"
                )
            try:
                self.wait_ready(timeout=timeout)
                return
            except PgStartError:
                log = _tail(self.log_file, 200)
                if "could not bind" in log or "Address already in use" in log:
                    if attempt + 1 < retries:  # somebody took our port in between: pick another
                        self.port = free_port()
                        self._write_conf()
                        continue
                raise

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Poll with a real psycopg connection until it succeeds, or raise."""
        import psycopg

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        delay = 0.02
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.admin_dsn_for("postgres"), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                last = exc
            # Postmaster gone (bad config, port taken)? Do not wait out the deadline.
            if not self._postmaster_alive() and time.monotonic() > deadline - timeout + 1.0:
                raise PgStartError(
                    f"postgres exited during startup on port {self.port}: {last}\n--- {self.log_file}:\n{_tail(self.log_file)}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        raise PgStartError(
            f"postgres not ready on {self.host}:{self.port} after {timeout:.0f}s: {last}\n"
            f"--- {self.log_file}:\n{_tail(self.log_file)}"
        )

    def _postmaster_pid(self) -> int | None:
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
            return int(first)
        except (OSError, ValueError, IndexError):
            return None

    def _postmaster_alive(self) -> bool:
        pid = self._postmaster_pid()
        return pid is not None and _pid_alive(pid)

    def is_running(self) -> bool:
        if self._destroyed or not self.data_dir.exists():
            return False
        return self._pg_ctl("status", timeout=30).returncode == 0

    def _start_instance(self, timeout: float = START_TIMEOUT) -> PgCluster:
        """Start the server of an existing (stopped or killed) cluster, and wait until ready."""
        if self._destroyed:
            raise PgStartError("cluster was destroyed")
        if self.is_running():
            return self
        self._start_server(timeout=timeout)
        return self

    start = _hybridmethod(_create, _start_instance)

    def stop(self, mode: str = "fast", timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server (``fast`` by default: disconnect clients, clean shutdown)."""
        if not self.data_dir.exists() or not self._postmaster_alive():
            return
        res = self._pg_ctl("stop", "-m", mode, "-w", "-t", str(int(timeout)), timeout=timeout + 10)
        if res.returncode != 0 and self._postmaster_alive():
            raise PgStartError(f"pg_ctl stop -m {mode} failed: {res.stderr}\n{_tail(self.log_file)}")

    def kill(self) -> None:
        """Immediate stop (SIGQUIT to the postmaster: no shutdown checkpoint, crash recovery on next start)."""
        self.stop(mode="immediate")

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Fast stop then start on the same port and data."""
        self.stop()
        self._start_server(timeout=timeout)

    def destroy(self) -> None:
        """Stop the server immediately and delete the folder (unless STACWATCHD_PG_KEEP=1)."""
        if self._destroyed:
            return
        self._destroyed = True
        unregister_for_cleanup(self)
        try:
            if self._postmaster_alive():
                self._pg_ctl("stop", "-m", "immediate", "-w", "-t", "30")
        finally:
            if os.environ.get("STACWATCHD_PG_KEEP") != "1":
                shutil.rmtree(self.base_dir, ignore_errors=True)

    # ------------------------------------------------------- templates/clones
    def save_template(self, dest: Path | str) -> Path:
        """Copy the data folder to ``dest`` for :meth:`start` ``(template=...)``.

        The server is stopped (fast) for a consistent copy, and started again.
        """
        dest = Path(dest)
        was_running = self._postmaster_alive()
        self.stop()
        try:
            res = _run(_as_pg(["cp", "-a", str(self.data_dir), str(dest)]), cwd="/")
            if res.returncode != 0:
                raise PgStartError(f"copying data folder to {dest} failed: {res.stderr}")
        finally:
            if was_running:
                self._start_server()
        return dest

    # ------------------------------------------------------------ pgstac bits
    def pgstac_version(self) -> str:
        with self.connect() as conn:
            row = conn.execute("SELECT pgstac.get_version()").fetchone()
        assert row is not None
        return str(row[0])

    def reset(self) -> None:
        """Remove every collection and item, and restore pgstac's state right after migrate."""
        with self.connect(admin=True) as conn:
            reset_pgstac(conn)

    def __enter__(self) -> PgCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.destroy()


# --------------------------------------------------------------------------- #
# Reset between tests
# --------------------------------------------------------------------------- #

_SNAPSHOT_SCHEMA = "stacwatchd_test"

_SNAPSHOT_SQL = f"""
CREATE SCHEMA IF NOT EXISTS {_SNAPSHOT_SCHEMA};
DROP TABLE IF EXISTS {_SNAPSHOT_SCHEMA}.pgstac_settings, {_SNAPSHOT_SCHEMA}.queryables;
CREATE TABLE {_SNAPSHOT_SCHEMA}.pgstac_settings AS SELECT * FROM pgstac.pgstac_settings;
CREATE TABLE {_SNAPSHOT_SCHEMA}.queryables AS SELECT * FROM pgstac.queryables;
"""

# Deleting a collection fires pgstac's trigger, which drops its item partitions,
# base_items, partition_stats rows and collection-specific queryables.
_RESET_SQL = f"""
SET lock_timeout = '10s';
DELETE FROM pgstac.collections;
TRUNCATE pgstac.items_staging, pgstac.items_staging_ignore, pgstac.items_staging_upsert,
         pgstac.format_item_cache, pgstac.searches, pgstac.search_wheres,
         pgstac.query_queue, pgstac.query_queue_history;
DELETE FROM pgstac.pgstac_settings;
INSERT INTO pgstac.pgstac_settings SELECT * FROM {_SNAPSHOT_SCHEMA}.pgstac_settings;
DELETE FROM pgstac.queryables;
INSERT INTO pgstac.queryables OVERRIDING SYSTEM VALUE SELECT * FROM {_SNAPSHOT_SCHEMA}.queryables;
"""


def _snapshot_pgstac_defaults(conn: Any) -> None:
    conn.execute(_SNAPSHOT_SQL)


def reset_pgstac(conn: Any) -> None:
    """Bring a migrated pgstac database back to its just-migrated state (superuser connection)."""
    with conn.transaction():
        conn.execute(_RESET_SQL)


# --------------------------------------------------------------------------- #
# Pytest fixtures
# --------------------------------------------------------------------------- #

try:
    import pytest
except ImportError:  # pragma: no cover - importable without pytest for scripts
    pytest = None  # type: ignore[assignment]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _unavailable(reason: str) -> None:
    """Skip locally, fail in CI (where a missing database is a broken setup, not an option)."""
    if _in_ci():
        pytest.fail(f"PostgreSQL test cluster unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL test cluster unavailable: {reason}")


def new_cluster_dir() -> Path:
    """A fresh folder for a cluster, under the system temp folder (reachable by postgres)."""
    d = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
    os.chmod(d, 0o755)
    (d / OWNER_FILE).write_text(str(os.getpid()))  # reapable even if start() never runs
    return d


if pytest is not None:

    @dataclass
    class _Session:
        cluster: PgCluster
        template: PgCluster | None = None  # stopped, migrated; its data folder is copied
        reset_times: list[float] = field(default_factory=list)
        clone_times: list[float] = field(default_factory=list)

    _session_state: dict[str, _Session] = {}

    @pytest.fixture(scope="session")
    def pg_cluster() -> Iterator[PgCluster]:
        """One PostgreSQL+PostGIS+pgstac cluster for the whole test session."""
        try:
            check_pg_available()
        except PgUnavailable as exc:
            _unavailable(str(exc))
        reap_stale_clusters()
        cluster = PgCluster.start(new_cluster_dir())
        _session_state["s"] = _Session(cluster=cluster)
        try:
            yield cluster
        finally:
            st = _session_state.pop("s", None)
            if st is not None:
                _record_summary(st)
            cluster.destroy()
            if st is not None and st.template is not None:
                st.template.destroy()

    @pytest.fixture
    def pgstac_db(pg_cluster: PgCluster) -> Iterator[PgCluster]:
        """The session cluster with pgstac emptied (collections, items, caches, settings) before the test."""
        if not pg_cluster._postmaster_alive():
            # A test killed or stopped the shared cluster: bring it back.
            pg_cluster.start()
        t = time.perf_counter()
        pg_cluster.reset()
        st = _session_state.get("s")
        if st is not None:
            st.reset_times.append(time.perf_counter() - t)
        yield pg_cluster

    # Timings for the terminal summary (only when loaded as a plugin).
    _summary: dict[str, str] = {}

    def pytest_terminal_summary(terminalreporter: Any) -> None:
        st = _session_state.get("s")
        if st is not None:  # normally torn down (and recorded) already
            _record_summary(st)
        if not _summary:
            return
        terminalreporter.write_sep("-", "stacwatchd test PostgreSQL")
        for key in sorted(_summary):
            terminalreporter.write_line(f"{key}: {_summary[key]}")

    def _record_summary(st: _Session) -> None:
        t = st.cluster.timings
        _summary["pg_cluster start"] = (
            f"{t.get('total', 0):.2f}s (initdb {t.get('initdb', 0):.2f}s, server start {t.get('start', 0):.2f}s, "
            f"pypgstac migrate {t.get('migrate', 0):.2f}s)"
        )
        if st.reset_times:
            rt = sorted(st.reset_times)
            _summary["pgstac_db reset"] = f"n={len(rt)} mean {1000 * sum(rt) / len(rt):.1f}ms max {1000 * rt[-1]:.1f}ms"
        if st.template is not None:
            _summary["pg_cluster_factory template"] = f"{st.template.timings.get('total', 0):.2f}s (once)"
        if st.clone_times:
            ct = st.clone_times
            _summary["pg_cluster_factory clone"] = f"n={len(ct)} mean {sum(ct) / len(ct):.2f}s"

    @pytest.fixture
    def pg_cluster_factory(pg_cluster: PgCluster) -> Iterator[Callable[[], PgCluster]]:
        """``factory()`` -> a private, started, migrated cluster (destroyed after the test).

        For tests that kill, stop or restart the database without disturbing the
        shared ``pg_cluster``. Clusters are copied from a template data folder made
        once per session, on first use (one extra initdb + migrate).
        """
        st = _session_state["s"]
        made: list[PgCluster] = []

        def factory() -> PgCluster:
            if st.template is None:
                # A cluster of its own (not the shared one, whose clients a
                # stop would break), stopped right after migrate.
                tmpl = PgCluster.start(new_cluster_dir())
                tmpl.stop()
                st.template = tmpl
            c = PgCluster.start(new_cluster_dir(), template=st.template.data_dir)
            st.clone_times.append(c.timings["total"])
            made.append(c)
            return c

        try:
            yield factory
        finally:
            for c in made:
                c.destroy()
