"""A real ``stacwatchd run`` process for tests: config, start, stop, logs, notify socket."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from stacwatchd.config import load_settings
from stacwatchd.state.store import State, StateError
from stacwatchd.testing import wait_until


class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET, read as systemd reads
    it: all the time (a queue left unread fills after 10 datagrams)."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="stacwatchd-notify-"))
        self.path = self.folder / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, name="notify-socket", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append(data.decode())

    def poll(self) -> list[str]:
        with self._lock:
            return list(self.messages)

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def seen(self, field: str) -> bool:
        return any(field in message.split("\n") or message.startswith(field) for message in self.poll())

    def close(self) -> None:
        self._closed.set()
        self._reader.join(5)
        self.sock.close()
        self.path.unlink(missing_ok=True)
        self.folder.rmdir()


class DaemonProcess:
    """One daemon over one watched folder and one catalog, driven as a user would."""

    def __init__(
        self,
        base: Path,
        *,
        settle: float = 0.4,
        reconcile: float = 0,
        extra: str = "",
        watch_extra: str = "",
        observer: str = "auto",
    ) -> None:
        self.base = base
        self.watched = base / "incoming"
        self.catalog = base / "catalog"
        self.watched.mkdir(parents=True, exist_ok=True)
        self.config = base / "config.toml"
        self.log_path = base / "daemon.log"
        self.config.write_text(
            f'settle_seconds = {settle}\nworkers = 2\nobserver = "{observer}"\nreconcile_interval = {reconcile}\n{extra}\n'
            f'[log]\nformat = "json"\nlevel = "debug"\n'
            f'[catalog]\nroot = "{self.catalog}"\ntitle = "Test"\n'
            f'[[watch]]\npath = "{self.watched}"\n{watch_extra}\n'
            f'[watch.collection]\nid = "scenes"\n'
        )
        self.state_path = load_settings(self.config).catalog.state_path
        self.process: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}
        self.notify = NotifySocket()
        self._log_handle = None

    def start(self, *, wait_ready: bool = True) -> DaemonProcess:
        self.notify.clear()  # a READY=1 of an earlier start must not count for this one
        env = dict(os.environ, NOTIFY_SOCKET=str(self.notify.path), WATCHDOG_USEC="2000000", **self.env)
        env.pop("WATCHDOG_PID", None)
        self._log_handle = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stacwatchd", "run", "--config", str(self.config)],
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
        if wait_ready:
            wait_until(lambda: self.notify.seen("READY=1") or self.process.poll() is not None, timeout=60, message="READY=1")
            assert self.process.poll() is None, self.log_path.read_text()
        return self

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, timeout: float = 60) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._log_handle.close()
        return code

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self._log_handle.close()

    def events(self, name: str | None = None) -> list[dict]:
        out = []
        if not self.log_path.exists():
            return out
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if name is None or event.get("event") == name:
                    out.append(event)
        return out

    def wait_events(self, name: str, count: int = 1, timeout: float = 30) -> list[dict]:
        """The log events named ``name`` once there are at least ``count`` of them."""

        def enough() -> list[dict] | None:
            found = self.events(name)
            return found if len(found) >= count else None

        return wait_until(enough, timeout=timeout, message=f"{count}× {name}")

    def items(self) -> dict[str, dict]:
        """Item id → Item JSON as a user finds them in the catalog right now."""
        out = {}
        for path in self._item_files():
            try:
                doc = json.loads(path.read_bytes())
            except (OSError, ValueError):
                continue
            if doc.get("type") == "Feature":
                out[doc["id"]] = doc
        return out

    def _item_files(self) -> Iterator[Path]:
        for folder, _, names in os.walk(self.catalog / "scenes"):  # tolerates folders vanishing
            for name in names:
                if name.endswith(".json") and name not in ("catalog.json", "collection.json"):
                    yield Path(folder) / name

    def wait_items(self, ids: set[str], timeout: float = 60) -> dict[str, dict]:
        """The catalog's Items once they are exactly ``ids`` and every file the writer
        committed is written: an Item's JSON lands before the catalogs that link it."""
        wait_until(
            lambda: set(self.items()) == ids and self.journal_pending() == 0,
            timeout=timeout,
            message=f"catalog items == {sorted(ids)[:5]}… (got {sorted(self.items())[:5]}…), journal empty",
            ignore=(StateError, sqlite3.Error),  # a state file being created or recovered: not yet
        )
        return self.items()

    def journal_pending(self) -> int:
        """Catalog files the state records as committed but not yet written."""
        path = self.state_path
        if not path.exists():
            return 0
        state = State(path, readonly=True)
        try:
            return state.counts()["journal"]
        finally:
            state.close()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()
        self.notify.close()
