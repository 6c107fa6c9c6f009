"""Where Item builds run: worker processes behind the engine's worker threads.

Most of a build holds the GIL (rasterio's Python layer, the footprint, assembling the
Item), so threads do not scale with cores: one thread built 637 Items/s, two built 503/s,
and even the floor (open, transform the bounds, dump a small JSON) gains nothing from a
second thread. A ``Builder`` therefore runs each build in a child process, one per
worker slot, and hands back the result; the calling thread only waits on a pipe.

The children are forked from multiprocessing's fork server, which imports the model
once and never runs a thread, so a child starts in milliseconds with GDAL and the model
loaded and inherits no locks. A build that hangs (a dead network mount) is abandoned
after ``item_timeout`` seconds: its child is killed, a fresh one takes the slot and the
file is refused with kind ``timeout``. A child that dies mid-build (a segfault in a
driver, out of memory, killed) refuses that file once with kind ``crashed``; nothing
is retried, so a file that crashes GDAL cannot crash it in a loop.

``mode="thread"`` runs the same slots as threads of this process: no start-up, no
pickling, no parallelism beyond GDAL's own GIL-free calls. A hung thread cannot be
killed, so it is left behind and replaced, as the process mode does with a child.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from stacwatchd.log import get_logger

if TYPE_CHECKING:
    from stacwatchd.model.items import BuiltItem, Rejection, Rules
    from stacwatchd.model.sources import Signature

__all__ = ["BuildMode", "Builder", "BuilderClosed", "BuilderUnavailable"]

BuildMode = Literal["process", "thread"]

# Modules the fork server imports once, so that every child starts with them loaded.
_PRELOAD = ["stacwatchd.engine.builders", "stacwatchd.model.items"]
# Rules objects remembered by identity, so each child receives a Rules once, not per file.
_MAX_RULES = 256
_JOIN_S = 2.0
# How long a fresh child may take to report ready (the first one waits for the fork
# server to import GDAL and the model); not counted against any file's item timeout.
_START_S = 120.0


class BuilderClosed(RuntimeError):
    """``build`` was called after ``close``."""


class BuilderUnavailable(RuntimeError):
    """A build process could not be started: the environment is broken, not the file."""


class _Timeout:
    """A slot got no answer within the item timeout."""


class _Crashed:
    """A slot's build died; ``cause`` says how."""

    __slots__ = ("cause",)

    def __init__(self, cause: str) -> None:
        self.cause = cause


class Builder:
    """Runs ``stacwatchd.model.items.build`` with ``workers`` slots; thread-safe, blocking.

    Any number of threads may call ``build`` at once; each call takes a free slot (or
    waits for one) and returns what the in-process ``build`` would, except that a
    ``BuiltItem`` from a child process carries no ``facts`` (the raster facts stay in
    the child; the Item, its sources, timing, signatures and thumbnail come back).
    """

    def __init__(self, workers: int, item_timeout: float, *, mode: BuildMode = "process") -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        if item_timeout <= 0:
            raise ValueError(f"item_timeout must be positive, not {item_timeout}")
        if mode not in ("process", "thread"):
            raise ValueError(f"mode must be 'process' or 'thread', not {mode!r}")
        self.workers = workers
        self.item_timeout = item_timeout
        self.mode = mode
        self.timeouts = 0
        self.crashes = 0
        self.log = get_logger()
        self._closed = False
        self._lock = threading.Lock()
        self._rules: dict[int, tuple[Rules, int]] = {}
        self._free: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        self._slots: list[_Slot] = []
        context = _context() if mode == "process" else None
        for n in range(workers):
            slot: _Slot = _ProcessSlot(context, n) if context is not None else _ThreadSlot(n)
            self._slots.append(slot)
            self._free.put(slot)

    # -- public ---------------------------------------------------------------------------

    def build(self, path: Path, rules: Rules) -> BuiltItem | Rejection:
        """The Item ``path`` makes under ``rules``, or why there is none (also on timeout or crash)."""
        if self._closed:
            raise BuilderClosed(f"the builder is closed; cannot build {path}")
        path = path.absolute()
        token = self._token(rules)
        slot = self._free.get()
        try:
            if self._closed:
                raise BuilderClosed(f"the builder is closed; cannot build {path}")
            outcome = slot.call(path, rules, token, self.item_timeout)
            if isinstance(outcome, _Timeout):
                signature = slot.signature()
                slot.replace()
                with self._lock:
                    self.timeouts += 1
                self.log.warning("build_abandoned", path=str(path), error="timeout", timeout_s=self.item_timeout, slot=slot.n)
                return _rejection(
                    path,
                    f"building {path.name} took longer than item_timeout_seconds = {self.item_timeout:g} s "
                    "(a hung read, such as a dead network mount); the build was abandoned",
                    "timeout",
                    signature,
                )
            if isinstance(outcome, _Crashed):
                signature = slot.signature()
                slot.replace()
                with self._lock:
                    self.crashes += 1
                self.log.warning("build_crashed", path=str(path), error="crashed", cause=outcome.cause, slot=slot.n)
                return _rejection(
                    path, f"the build of {path.name} crashed ({outcome.cause}); it is not retried until the file changes",
                    "crashed", signature,
                )
            return outcome
        finally:
            self._free.put(slot)

    def pids(self) -> list[int]:
        """Process ids of the live build children (empty in thread mode)."""
        return [pid for slot in self._slots if (pid := slot.pid()) is not None]

    def close(self) -> None:
        """Stop every slot: waits for in-flight builds (up to the item timeout), then ends the children."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + self.item_timeout
        taken = []
        for _ in self._slots:
            try:
                taken.append(self._free.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        for slot in self._slots:
            slot.stop()
        for slot in taken:
            self._free.put(slot)

    def __enter__(self) -> Builder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- machinery ------------------------------------------------------------------------

    def _token(self, rules: Rules) -> int:
        key = id(rules)
        with self._lock:
            known = self._rules.get(key)
            if known is not None and known[0] is rules:
                return known[1]
            if len(self._rules) >= _MAX_RULES:
                self._rules.clear()
            token = _next_token()
            self._rules[key] = (rules, token)
            return token


_tokens = iter(range(1, 2**62))
_tokens_lock = threading.Lock()


def _next_token() -> int:
    with _tokens_lock:
        return next(_tokens)


def _rejection(path: Path, reason: str, kind: str, signature: Signature | None) -> Rejection:
    from stacwatchd.model.items import Rejection

    return Rejection(path=path, reason=reason, kind=kind, signature=signature)


def _context() -> Any:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return context


# -- slots ------------------------------------------------------------------------------


class _Slot:
    """One worker: builds one file at a time; replaceable when its build hangs or dies."""

    n: int

    def call(self, path: Path, rules: Rules, token: int, timeout: float) -> Any:
        raise NotImplementedError

    def signature(self) -> Signature | None:
        """The signature of the file of the last call, if the build got as far as a stat."""
        raise NotImplementedError

    def replace(self) -> None:
        raise NotImplementedError

    def pid(self) -> int | None:
        return None

    def stop(self) -> None:
        raise NotImplementedError


class _ProcessSlot(_Slot):
    """A child process and the pipe to it; the child keeps each Rules it was sent."""

    def __init__(self, context: Any, n: int) -> None:
        self.context = context
        self.n = n
        self.process: Any = None
        self.conn: Connection | None = None
        self.sent: set[int] = set()
        self.ready = False
        self.request = 0
        # Written by the child: [request it started, request it stat'ed, size, mtime_ns,
        # inode, device]. Tells "died before this file" from "died on it", and lets a
        # timeout or crash be refused with the file's signature.
        self.stat = context.RawArray("q", 6)
        self.start()

    def start(self) -> None:
        parent, child = self.context.Pipe(duplex=True)
        process = self.context.Process(
            target=_serve, args=(child, self.stat), name=f"stacwatchd-build-{self.n}", daemon=True
        )
        process.start()
        child.close()
        self.process, self.conn, self.sent, self.ready = process, parent, set(), False

    def _serving(self) -> Connection:
        """The pipe to a child that said it is ready, starting one (twice at most) if needed."""
        cause = ""
        for _ in range(2):
            if self.conn is None:
                self.start()
            conn = self._conn()
            if self.ready:
                return conn
            try:
                if conn.poll(_START_S) and conn.recv() == "ready":
                    self.ready = True
                    return conn
            except (EOFError, OSError):
                pass
            cause = self._death()
            self._end(kill=True)
        raise BuilderUnavailable(f"build process {self.n} did not start: {cause}")

    def call(self, path: Path, rules: Rules, token: int, timeout: float) -> Any:
        for attempt in range(2):
            conn = self._serving()
            self.request += 1
            try:
                conn.send((self.request, token, None if token in self.sent else rules, str(path)))
            except OSError:  # the child died while idle: this file never reached it
                self._end(kill=True)
                continue
            self.sent.add(token)
            try:
                if not conn.poll(timeout):
                    return _Timeout()
                request, result = conn.recv()
            except (EOFError, OSError):
                if self.stat[0] != self.request and attempt == 0:  # died before it began this file
                    self._end(kill=True)
                    continue
                return _Crashed(self._death())
            if request != self.request:  # one caller per slot makes this impossible; never hand back a stranger's result
                return _Crashed(f"answer to request {request} while waiting for {self.request}")
            if isinstance(result, _ChildError):
                return _Crashed(result.cause)
            return result
        return _Crashed(f"build process {self.n} kept dying before it could begin")

    def _conn(self) -> Connection:
        assert self.conn is not None
        return self.conn

    def _death(self) -> str:
        process = self.process
        if process is None:
            return "no build process"
        process.join(_JOIN_S)
        code = process.exitcode
        if code is None:
            return f"build process {process.pid} closed its pipe"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"build process {process.pid} was killed by {name}"
        return f"build process {process.pid} exited with status {code}"

    def signature(self) -> Signature | None:
        from stacwatchd.model.sources import Signature

        values = list(self.stat)
        return Signature(*values[2:]) if values[1] == self.request else None

    def replace(self) -> None:
        self._end(kill=True)
        self.start()

    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.is_alive() else None

    def stop(self) -> None:
        self._end(kill=False)

    def _end(self, *, kill: bool) -> None:
        process, conn = self.process, self.conn
        self.process, self.conn, self.ready = None, None, False
        if process is None:
            return
        if not kill and conn is not None:
            try:
                conn.send(None)
            except OSError:
                pass
            process.join(_JOIN_S)
        if process.is_alive():
            process.kill()
            process.join(_JOIN_S)  # a child stuck in the kernel (a dead mount) is left to the OS
        if conn is not None:
            conn.close()
        if process.exitcode is not None:
            process.close()


class _ThreadSlot(_Slot):
    """A thread of this process with a request and an answer queue."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.current: Path | None = None
        self.start()

    def start(self) -> None:
        self.requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.answers: queue.SimpleQueue[Any] = queue.SimpleQueue()
        thread = threading.Thread(
            target=_serve_thread, args=(self.requests, self.answers), name=f"stacwatchd-build-{self.n}", daemon=True
        )
        thread.start()

    def call(self, path: Path, rules: Rules, token: int, timeout: float) -> Any:
        self.current = path
        self.requests.put((path, rules))
        try:
            result = self.answers.get(timeout=timeout)
        except queue.Empty:
            return _Timeout()
        return _Crashed(result.cause) if isinstance(result, _ChildError) else result

    def signature(self) -> Signature | None:
        from stacwatchd.model.sources import signature_of

        return signature_of(self.current) if self.current is not None else None

    def replace(self) -> None:
        # A hung thread cannot be stopped: it is left behind, and ends with the process.
        self.requests.put(None)
        self.start()

    def stop(self) -> None:
        self.requests.put(None)


# -- the child side ---------------------------------------------------------------------


class _ChildError:
    """An exception the build raised instead of returning; ``fatal`` ends the child."""

    __slots__ = ("cause", "fatal")

    def __init__(self, cause: str, fatal: bool) -> None:
        self.cause = cause
        self.fatal = fatal

    def __reduce__(self) -> tuple[Any, ...]:
        return (_ChildError, (self.cause, self.fatal))


def _build_safely(path: Path, rules: Rules) -> Any:
    from stacwatchd.model.items import build

    try:
        return build(path, rules)
    except MemoryError:
        return _ChildError("out of memory", fatal=True)
    except Exception as exc:  # a bug in the model: refuse this file, keep serving
        return _ChildError(f"{type(exc).__name__}: {exc}", fatal=False)


def _serve(conn: Connection, stat: Any) -> None:
    """A build child: answer (request, result) for every (request, token, rules, path) until EOF."""
    from stacwatchd.model.items import BuiltItem
    from stacwatchd.model.sources import signature_of

    # The parent decides when builds stop: a Ctrl-C or systemd's SIGTERM to the whole
    # group must not kill a build the parent is still waiting for.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    try:
        conn.send("ready")
    except OSError:
        return
    rules_by_token: dict[int, Rules] = {}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        request, token, rules, raw = message
        if rules is not None:
            rules_by_token[token] = rules
        stat[0] = request
        path = Path(raw)
        found = signature_of(path)
        if found is not None:
            stat[2:6] = list(found)
            stat[1] = request
        result = _build_safely(path, rules_by_token[token])
        if isinstance(result, BuiltItem):
            result = replace(result, facts=())
        try:
            conn.send((request, result))
        except (EOFError, OSError):
            return
        if isinstance(result, _ChildError) and result.fatal:
            os._exit(70)  # out of memory: this process cannot be trusted with another file


def _serve_thread(requests: queue.SimpleQueue[Any], answers: queue.SimpleQueue[Any]) -> None:
    while True:
        message = requests.get()
        if message is None:
            return
        answers.put(_build_safely(*message))
