"""A watcher in a process of its own, for what a test cannot do to its own process.

Stopping a process with SIGSTOP while files change makes the kernel drop its inotify
events for real; a private user namespace gives it its own inotify limits
(``/proc/sys/user/max_inotify_*`` are per user namespace), and a private mount namespace
lets a test mount and unmount over a watched root. Nothing changes outside the probe.

Run as a script, the probe watches one root with a :class:`Watcher` feeding a
:class:`Settler`, wired as the daemon wires them, and prints one JSON object per line:
``{"event": "ready"}``, every decision (``upsert``/``delete``/``delete_tree`` with its
``path``), ``root_changed``, ``rescan`` and ``overflow`` callbacks, ``overflows`` when the
watcher's count moves, and ``status`` when asked on stdin. Its log lines go to stderr as
JSON. Closing stdin stops it.

:class:`Probe` starts one and reads what it says.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


class Probe:
    """One probe process over ``root``; ``isolated`` puts it in private user and mount
    namespaces, ``user_limits`` too, with those ``/proc/sys/user`` values set there."""

    def __init__(
        self,
        root: Path,
        *,
        observer: str = "inotify",
        settle: float = 0.3,
        check_interval: float = 0.1,
        overflow_cooldown: float = 1.0,
        isolated: bool = False,
        user_limits: dict[str, int] | None = None,
    ) -> None:
        self.root = root
        self.isolated = isolated or user_limits is not None
        command = [
            sys.executable,
            __file__,
            str(root),
            f"--observer={observer}",
            f"--settle={settle}",
            f"--check-interval={check_interval}",
            f"--overflow-cooldown={overflow_cooldown}",
        ]
        if self.isolated:
            limits = "".join(f"echo {v} > /proc/sys/user/{k} && " for k, v in (user_limits or {}).items())
            command = [
                "unshare", "--user", "--map-root-user", "--mount", "--propagation", "private",
                "sh", "-c", f'{limits}exec "$@"', "probe", *command,
            ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.said: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.said), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.logs), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self.wait_for(lambda: self.saw("ready"), timeout=20, what="the probe to start")

    def _read(self, stream: Any, into: list[dict[str, Any]]) -> None:
        for line in stream:
            try:
                record = json.loads(line)
            except ValueError:
                record = {"event": "text", "line": line.rstrip("\n")}
            with self._lock:
                into.append(record)

    # -- what it said -------------------------------------------------------------------

    def said_so_far(self, event: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.said if event is None or r["event"] == event]

    def logged(self, event: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.logs if r.get("event") == event]

    def saw(self, event: str, path: Path | None = None) -> bool:
        return any(path is None or r.get("path") == str(path) for r in self.said_so_far(event))

    def decisions(self) -> list[tuple[str, Path]]:
        return [(r["event"], Path(r["path"])) for r in self.said_so_far() if r["event"] in ("upsert", "delete", "delete_tree")]

    def wait_for(self, predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.process.poll() is not None:
                raise AssertionError(f"the probe exited ({self.process.returncode}) waiting for {what}: {self.logs[-5:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout}s for {what}; probe said {self.said_so_far()}")
            time.sleep(0.02)

    def status(self) -> dict[str, str]:
        before = len(self.said_so_far("status"))
        assert self.process.stdin is not None
        self.process.stdin.write("status\n")
        self.process.stdin.flush()
        self.wait_for(lambda: len(self.said_so_far("status")) > before, what="a status line")
        return self.said_so_far("status")[-1]["status"]

    # -- acting on it ---------------------------------------------------------------------

    def shell(self, command: str) -> None:
        """Run ``command`` in the probe's namespaces (to mount over the root, or write below a mount)."""
        prefix = ["nsenter", "-t", str(self.process.pid), "-U", "-m", "--preserve-credentials"] if self.isolated else []
        done = subprocess.run([*prefix, "sh", "-c", command], capture_output=True, text=True, check=False)
        if done.returncode:
            raise AssertionError(f"{command!r} failed in the probe's namespaces: {done.stderr.strip()}")

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        if self.process.poll() is None:
            self.resume()
            assert self.process.stdin is not None
            try:
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for reader in self._readers:
            reader.join(timeout=5)


def quote(path: Path) -> str:
    return shlex.quote(str(path))


def main() -> None:
    from stacwatchd.engine.settle import Ready, Settler
    from stacwatchd.engine.watch import Watcher
    from stacwatchd.log import configure
    from stacwatchd.model.items import Rules

    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--observer", default="inotify")
    parser.add_argument("--settle", type=float, default=0.3)
    parser.add_argument("--check-interval", type=float, default=0.1)
    parser.add_argument("--overflow-cooldown", type=float, default=1.0)
    args = parser.parse_args()
    configure("json", "debug", stream=sys.stderr)
    out_lock = threading.Lock()

    def say(event: str, **fields: Any) -> None:
        with out_lock:
            print(json.dumps({"event": event, **fields}), flush=True)

    def decided(ready: Ready) -> None:
        say(ready.op, path=str(ready.path), watch=str(ready.watch))

    rules = Rules(collection_id="probe", root=Path("/"))
    watcher: Watcher
    settler = Settler(
        decided,
        args.settle,
        root_intact=lambda root: watcher.intact(root),
        rescan=lambda root: say("rescan", root=str(root)),
    )
    watcher = Watcher(
        settler.feed,
        observer=args.observer,
        polling_interval=0.1,
        check_interval=args.check_interval,
        retry_initial=0.1,
        retry_max=0.4,
        overflow_cooldown=args.overflow_cooldown,
        on_overflow=lambda root: say("overflow", root=str(root), overflows=watcher.overflows),
        on_root_changed=lambda root: say("root_changed", root=str(root)),
    )
    watcher.watch(args.root, recursive=True, accepts=rules.is_data)
    settler.start()
    watcher.start()
    stop = threading.Event()

    def count_overflows() -> None:
        seen = 0
        while not stop.wait(0.01):
            if watcher.overflows != seen:
                seen = watcher.overflows
                say("overflows", count=seen)

    threading.Thread(target=count_overflows, daemon=True).start()
    say("ready", pid=os.getpid())
    for line in sys.stdin:
        if line.strip() == "status":
            say("status", status={str(k): v for k, v in watcher.status().items()})
    stop.set()
    watcher.stop()
    settler.stop()


def namespaces_available() -> bool:
    """Whether this machine lets an unprivileged process make user and mount namespaces."""
    try:
        done = subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


if __name__ == "__main__":
    main()
