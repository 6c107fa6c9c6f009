"""Where Item builds run: worker processes behind the engine's worker threads.

Most of a build holds the GIL (rasterio's Python layer, the footprint, assembling the
Item), so threads do not scale with cores: one thread built 637 Items/s, two built 503/s,
and even the floor (open, transform the bounds, dump a small JSON) gains nothing from a
second thread. A ``Builder`` therefore runs builds in child processes, one per worker
slot, each fed through its own pipe.

Each slot holds up to ``depth`` requests, so a child starts its next file the moment it
finishes one, without waiting for this process (busy writing, or slow to get the GIL)
to read the answer. One reader thread collects the answers of all slots, enforces the
timeouts and replaces children; callers either block in ``build`` or take a future
from ``submit``.

Each child is a fresh interpreter running ``stacwatchd.engine.build_process``, started
when the Builder is made (about half a second, in parallel with whatever the caller does
meanwhile). It inherits no threads or locks and loads only what a build needs: GDAL, the
model, no daemon, no fork server or resource tracker beside it, so a worker costs one
lean process. A build that hangs (a dead network mount) is abandoned ``item_timeout``
seconds after it began: its child is killed, a fresh one takes the slot, and the file is
refused with kind ``timeout``.
A child that dies mid-build (a segfault in a driver, out of memory, killed) refuses
that file once with kind ``crashed``; nothing is retried, so a file that crashes GDAL
cannot crash it in a loop. Files queued behind it go to the fresh child.

``mode="thread"`` runs the slots as threads of this process: no start-up and no
pickling, but no parallelism beyond GDAL's own GIL-free calls. A hung thread cannot be
killed; it is left behind and replaced.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import pickle
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from stacwatchd.engine.build_process import STAT_SLOTS, ChildError, build_safely, decode_request
from stacwatchd.engine.frames import FrameReader
from stacwatchd.log import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from stacwatchd.model.results import BuiltItem, Rejection, Rules
    from stacwatchd.model.sources import Signature

__all__ = ["DEFAULT_DEPTH", "BuildMode", "Builder", "BuilderClosed", "BuilderUnavailable"]

BuildMode = Literal["process", "thread"]

# Rules objects remembered by identity, so each child receives a Rules once, not per file.
_MAX_RULES = 256
# How long a fresh child may take to say it is ready (it imports GDAL and the model
# first); not counted against any file's timeout.
_START_S = 120.0
_JOIN_S = 2.0
_RESENDS = 2  # a file whose child died before beginning it is sent again this often
# Requests queued per slot. With 2, build processes on 16 cores sat idle whenever this
# process was slow to answer (its one GIL busy with the writer): 8 made a scan 12-17 %
# faster there, and 4 did as well as 8. Up to DEFAULT_DEPTH - 1 files wait behind a hung
# build, then go to the fresh child.
DEFAULT_DEPTH = 4


class BuilderClosed(RuntimeError):
    """``build`` or ``submit`` after ``close``, or a request ``close`` had to abandon."""


class BuilderUnavailable(RuntimeError):
    """No build process could be started: the environment is broken, not the file."""


@dataclass(eq=False)
class _Request:
    id: int
    path: Path
    rules: Rules
    token: int
    future: Future[Any] = field(default_factory=Future)
    began: float | None = None
    resends: int = 0


class Builder:
    """Runs ``stacwatchd.model.items.build`` in ``workers`` slots; thread-safe.

    ``build`` returns what the in-process ``build`` would, except that a ``BuiltItem``
    carries no ``facts`` (the raster facts stay with the build; the Item, its sources,
    timing, signatures and thumbnail come back), and its Item's final JSON when the rules
    say where the catalog puts it.
    """

    def __init__(self, workers: int, item_timeout: float, *, mode: BuildMode = "process", depth: int = DEFAULT_DEPTH) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        if item_timeout <= 0:
            raise ValueError(f"item_timeout must be positive, not {item_timeout}")
        if mode not in ("process", "thread"):
            raise ValueError(f"mode must be 'process' or 'thread', not {mode!r}")
        if depth < 1:
            raise ValueError(f"depth must be at least 1, not {depth}")
        self.workers = workers
        self.item_timeout = item_timeout
        self.mode = mode
        self.depth = depth
        self.timeouts = 0
        self.crashes = 0
        self.log = get_logger()
        self._cond = threading.Condition()
        self._closed = False
        self._stopping = False
        self._pending: deque[_Request] = deque()
        self._ids = 0
        self._tokens = 0
        self._rules: dict[int, tuple[Rules, int]] = {}
        # Wakes the reader when a slot that had nothing to wait for gets a request.
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        with self._cond:
            self._slots = [_Slot(self, n) for n in range(workers)]
        self._reader = threading.Thread(target=self._read, name="stacwatchd-build-reader", daemon=True)
        self._reader.start()

    # -- public ---------------------------------------------------------------------------

    def build(self, path: Path, rules: Rules) -> BuiltItem | Rejection:
        """The Item ``path`` makes under ``rules``, or why there is none (also on timeout or crash)."""
        return self.submit(path, rules).result()

    def submit(self, path: Path, rules: Rules) -> Future[BuiltItem | Rejection]:
        """Queue a build; the future gets the result. Never blocks on a busy slot."""
        with self._cond:
            if self._closed:
                raise BuilderClosed(f"the builder is closed; cannot build {path}")
            self._ids += 1
            request = _Request(self._ids, path.absolute(), rules, self._token(rules))
            self._pending.append(request)
            self._dispatch()
            self._cond.notify_all()
        return request.future

    def in_flight(self) -> int:
        """How many builds to keep queued or running so that no slot ever waits for its
        next file, even when the callers' threads refill only once half have come back
        (see ``stacwatchd.engine.window``): what the slots hold, three times over."""
        return 4 * self.workers * self.depth

    def running(self) -> list[tuple[Path, float]]:
        """(path, monotonic start) of every build a slot is working on now (not those
        queued behind it)."""
        with self._cond:
            heads = [slot.outstanding[0] for slot in self._slots if slot.outstanding]
        return [(request.path, request.began) for request in heads if request.began is not None]

    def pids(self) -> list[int]:
        """Process ids of the live build children (empty in thread mode)."""
        with self._cond:
            channels = [slot.channel for slot in self._slots if slot.channel is not None]
        return [pid for channel in channels if (pid := channel.pid()) is not None]

    def close(self) -> None:
        """Finish queued builds (for up to the item timeout), then end the children."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            deadline = time.monotonic() + self.item_timeout
            while self._pending or any(slot.outstanding for slot in self._slots):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._stopping = True
            leftovers = list(self._pending) + [r for slot in self._slots for r in slot.outstanding]
            self._pending.clear()
            channels = []
            for slot in self._slots:
                slot.outstanding.clear()
                if slot.channel is not None:
                    channels.append(slot.channel)
                slot.channel = None
            self._cond.notify_all()
        for channel in channels:  # all asked first: they wind down side by side
            channel.send(None)
        for channel in channels:
            channel.end(kill=False)
        for request in leftovers:
            _fail(request, BuilderClosed(f"the builder closed before {request.path} was built"))
        self._nudge()
        self._reader.join(_JOIN_S)
        if not self._reader.is_alive():
            os.close(self._wake)

    def __enter__(self) -> Builder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- under self._cond -------------------------------------------------------------------

    def _token(self, rules: Rules) -> int:
        known = self._rules.get(id(rules))
        if known is not None and known[0] is rules:
            return known[1]
        if len(self._rules) >= _MAX_RULES:
            self._rules.clear()
        self._tokens += 1
        self._rules[id(rules)] = (rules, self._tokens)
        return self._tokens

    def _open(self, n: int) -> _Channel:
        if self.mode == "process":
            return _ProcessChannel(n)
        return _ThreadChannel(n)

    def _dispatch(self) -> None:
        """Hand queued requests to the least busy slots that have room."""
        while self._pending:
            usable = [s for s in self._slots if s.channel is not None and len(s.outstanding) < self.depth]
            if not usable:
                if not any(s.channel is not None for s in self._slots):
                    while self._pending:
                        _fail(self._pending.popleft(), BuilderUnavailable("no build process could be started"))
                return
            slot = min(usable, key=lambda s: len(s.outstanding))
            request = self._pending.popleft()
            if request.future.cancelled():
                continue
            slot.outstanding.append(request)
            if len(slot.outstanding) == 1:
                if slot.channel is not None and slot.channel.ready:
                    request.began = time.monotonic()
                self._nudge()
            self._send(slot, request)

    def _send(self, slot: _Slot, request: _Request) -> None:
        channel = slot.channel
        assert channel is not None
        rules = None if request.token in channel.sent else channel.prepare(request.rules)
        if channel.send((request.id, request.token, rules, str(request.path))):
            channel.sent.add(request.token)
        # else: the child is gone; its reader sees the end of the pipe and sends it again

    def _replace(self, slot: _Slot) -> None:
        """A fresh child for the slot; what was queued on the old one goes to it."""
        if slot.channel is not None:
            slot.channel.end(kill=True, wait=False)
        slot.channel = self._open(slot.n)
        for request in slot.outstanding:
            request.began = None
            self._send(slot, request)

    def _nudge(self) -> None:
        with contextlib.suppress(OSError):
            os.eventfd_write(self._wake, 1)

    # -- the reader ---------------------------------------------------------------------------

    def _read(self) -> None:
        """Collect every slot's answers, in one thread for all: answers that arrive
        together, from one child or several, are taken in one pass; a thread per slot
        would only contend for the GIL. Also enforces each head request's timeout."""
        poller = select.poll()
        poller.register(self._wake, select.POLLIN)
        polled: dict[int, tuple[_Slot, _Channel]] = {}
        while True:
            with self._cond:
                while not self._stopping and not any(self._waiting()):
                    self._cond.wait(0.5)
                if self._stopping:
                    return
                watched, deadline = self._watched()
            for fd in polled.keys() - watched.keys():
                poller.unregister(fd)
            for fd, (_, channel) in watched.items():
                if polled.get(fd, (None, None))[1] is not channel:
                    poller.register(fd, select.POLLIN)
            polled = watched
            events = poller.poll(max(0, math.ceil((deadline - time.monotonic()) * 1000)))
            answered: set[int] = set()
            for fd, _ in events:
                if fd == self._wake:
                    with contextlib.suppress(OSError):
                        os.eventfd_read(self._wake)
                    continue
                slot, channel = polled[fd]
                answered.add(slot.n)
                try:
                    messages = channel.recv()
                except EOFError:
                    self._died(slot, channel)
                    continue
                if messages:
                    self._received(slot, channel, messages)
            self._expire(skip=answered)

    def _waiting(self) -> Iterator[tuple[_Slot, _Channel]]:
        """The slots with requests to wait for, with their channels; called holding ``_cond``."""
        for slot in self._slots:
            if slot.channel is not None and slot.outstanding:
                yield slot, slot.channel

    def _watched(self) -> tuple[dict[int, tuple[_Slot, _Channel]], float]:
        """The channels with requests to wait for, by descriptor, and the earliest time
        one of their head requests runs out; called holding ``_cond``."""
        watched = {channel.fileno(): (slot, channel) for slot, channel in self._waiting()}
        deadline = min((self._deadline(slot, channel) for slot, channel in watched.values()), default=math.inf)
        return watched, min(deadline, time.monotonic() + _START_S)

    def _deadline(self, slot: _Slot, channel: _Channel) -> float:
        head = slot.outstanding[0]
        if channel.ready and head.began is None:
            head.began = time.monotonic()
        return head.began + self.item_timeout if head.began is not None else channel.opened + _START_S

    def _expire(self, skip: set[int]) -> None:
        """Abandon the head request of every slot (that answered nothing just now) whose
        time ran out."""
        now = time.monotonic()
        with self._cond:
            late = [
                (slot, channel, slot.outstanding[0])
                for slot, channel in self._waiting()
                if slot.n not in skip and self._deadline(slot, channel) <= now
            ]
        for slot, channel, head in late:
            self._expired(slot, channel, head)

    # -- called by the reader --------------------------------------------------------------------

    @staticmethod
    def _answered(slot: _Slot) -> _Request:
        """Take the head request off a slot (its answer came) and start its next one's clock;
        called holding ``_cond``."""
        request = slot.outstanding.popleft()
        if slot.outstanding:
            slot.outstanding[0].began = time.monotonic()
        return request

    def _received(self, slot: _Slot, channel: _Channel, messages: list[Any]) -> None:
        """Answers that arrived together: taken off the slot in one pass under the lock,
        then delivered."""
        answered: list[tuple[_Request, Any]] = []
        with self._cond:
            if channel is not slot.channel:
                return
            for message in messages:
                if isinstance(message, _Undecodable):
                    if slot.outstanding:
                        answered.append((self._answered(slot), message))
                    continue
                if message == "ready":
                    channel.ready = True
                    slot.starts_failed = 0
                    if slot.outstanding:
                        slot.outstanding[0].began = time.monotonic()
                    continue
                request_id, result = message
                if not slot.outstanding or slot.outstanding[0].id != request_id:
                    self.log.error("build_answer_unexpected", slot=slot.n, request=request_id)
                    continue
                if isinstance(result, ChildError):
                    self.crashes += 1
                answered.append((self._answered(slot), result))
            if answered:
                self._dispatch()
                self._cond.notify_all()
        for request, result in answered:
            _deliver(request, self._refusal(slot, channel, request, result))

    def _refusal(self, slot: _Slot, channel: _Channel, request: _Request, result: Any) -> Any:
        """What to deliver for an answer: the build's result, or the file's refusal when
        the build failed or its answer could not be decoded."""
        if isinstance(result, ChildError):
            self.log.warning("build_crashed", path=str(request.path), error="crashed", cause=result.cause, slot=slot.n)
            return _rejection(
                request.path,
                f"the build of {request.path.name} failed ({result.cause}); it is not retried until the file changes",
                "crashed",
                channel.signature(request.id),
            )
        if isinstance(result, _Undecodable):
            # The stream is intact (the whole frame was read): only the file it answers is refused.
            cause = f"{type(result.error).__name__}: {result.error}"
            self.log.error(
                "build_answer_unreadable", path=str(request.path), error=type(result.error).__name__, cause=cause, slot=slot.n
            )
            return _rejection(
                request.path,
                f"the answer of the build of {request.path.name} could not be read ({cause}); "
                "it is not retried until the file changes",
                "build_failed",
                channel.signature(request.id),
            )
        return result

    def _expired(self, slot: _Slot, channel: _Channel, request: _Request) -> None:
        with self._cond:
            if channel is not slot.channel or not slot.outstanding or slot.outstanding[0] is not request:
                return
            if not channel.ready:
                self._start_failed(slot, f"it did not report ready within {_START_S:g} s")
                return
            slot.outstanding.popleft()
            signature = channel.signature(request.id)
            pid = channel.pid()
            self._replace(slot)
            self.timeouts += 1
            self._dispatch()
            self._cond.notify_all()
        self.log.warning(
            "build_abandoned", path=str(request.path), error="timeout", timeout_s=self.item_timeout, slot=slot.n, pid=pid
        )
        _deliver(
            request,
            _rejection(
                request.path,
                f"building {request.path.name} took longer than item_timeout_seconds = {self.item_timeout:g} s "
                "(a hung read, such as a dead network mount); the build was abandoned",
                "timeout",
                signature,
            ),
        )

    def _died(self, slot: _Slot, channel: _Channel) -> None:
        cause = channel.death()
        crashed: _Request | None = None
        with self._cond:
            if channel is not slot.channel:
                return
            if not channel.ready:
                self._start_failed(slot, cause)
                return
            if slot.outstanding:
                head = slot.outstanding[0]
                if channel.started() == head.id:
                    crashed = slot.outstanding.popleft()
                else:  # it died between files: the head never reached it
                    head.resends += 1
                    if head.resends > _RESENDS:
                        crashed = slot.outstanding.popleft()
                        cause = f"{cause}; its build process died {head.resends} times before it could begin"
            signature = channel.signature(crashed.id) if crashed is not None else None
            self._replace(slot)
            if crashed is not None:
                self.crashes += 1
            self._dispatch()
            self._cond.notify_all()
        if crashed is not None:
            self.log.warning("build_crashed", path=str(crashed.path), error="crashed", cause=cause, slot=slot.n)
            _deliver(
                crashed,
                _rejection(
                    crashed.path,
                    f"the build of {crashed.path.name} crashed ({cause}); it is not retried until the file changes",
                    "crashed",
                    signature,
                ),
            )

    def _start_failed(self, slot: _Slot, cause: str) -> None:
        slot.starts_failed += 1
        self.log.error("build_process_start_failed", slot=slot.n, cause=cause, attempt=slot.starts_failed)
        if slot.starts_failed < 2:
            self._replace(slot)
            return
        if slot.channel is not None:
            slot.channel.end(kill=True, wait=False)
        slot.channel = None  # the slot is out of service; its queue goes back to the others
        self._pending.extendleft(reversed(slot.outstanding))
        slot.outstanding.clear()
        self._dispatch()
        self._cond.notify_all()


@dataclass(eq=False)
class _Slot:
    """One worker: a channel to a child (or thread) and what it was sent."""

    builder: Builder
    n: int
    outstanding: deque[_Request] = field(default_factory=deque)
    starts_failed: int = 0

    def __post_init__(self) -> None:
        self.channel: _Channel | None = self.builder._open(self.n)


# -- channels: a child process or a thread, seen the same way by a slot ----------------------


class _Channel:
    ready: bool
    sent: set[int]
    opened: float  # monotonic time it was started: its start-up deadline counts from here

    def prepare(self, rules: Rules) -> Rules:
        """Rules as the other side receives them."""
        return rules

    def send(self, message: Any) -> bool:
        raise NotImplementedError

    def fileno(self) -> int:
        """A descriptor that polls readable when answers (or the end) are waiting."""
        raise NotImplementedError

    def recv(self) -> list[Any]:
        """The answers that have arrived (possibly none yet); EOFError once the other
        side is gone. An answer that cannot be decoded comes as ``_Undecodable``."""
        raise NotImplementedError

    def started(self) -> int:
        """The request the other side began last."""
        raise NotImplementedError

    def signature(self, request_id: int) -> Signature | None:
        """The signature of the file of ``request_id``, if the build got as far as a stat."""
        raise NotImplementedError

    def death(self) -> str:
        raise NotImplementedError

    def pid(self) -> int | None:
        return None

    def end(self, *, kill: bool, wait: bool = True) -> None:
        """Kill it, or (``kill`` false) wait for it to end once ``send(None)`` asked it to."""
        raise NotImplementedError


class _ProcessChannel(_Channel):
    """A build process (``stacwatchd.engine.build_process``) and the pipes to it."""

    def __init__(self, n: int) -> None:
        stat_fd = os.memfd_create(f"stacwatchd-build-{n}")
        os.ftruncate(stat_fd, STAT_SLOTS * 8)
        self.page = mmap.mmap(stat_fd, STAT_SLOTS * 8)
        self.stat = memoryview(self.page).cast("q")
        requests_here, requests_there = _socketpair()
        answers_here, answers_there = _socketpair()
        theirs = (requests_there, answers_there, stat_fd)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stacwatchd.engine.build_process", *map(str, theirs)],
                pass_fds=theirs,
                stdin=subprocess.DEVNULL,
                env=_child_env(),
            )
        except OSError:
            for fd in (requests_here, answers_here):
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        self.requests = Connection(requests_here, readable=False)
        self.answers = FrameReader(answers_here)
        self.closed = False
        self.opened = time.monotonic()
        self.ready = False
        self.sent = set()

    def prepare(self, rules: Rules) -> Rules:
        return rules.portable()

    def send(self, message: Any) -> bool:
        try:
            self.requests.send(message)
        except (OSError, ValueError):
            return False
        return True

    def fileno(self) -> int:
        return self.answers.fd

    def recv(self) -> list[Any]:
        if self.closed:
            raise EOFError("the channel is closed")
        try:
            frames = self.answers.read()
        except OSError as exc:
            raise EOFError(str(exc)) from None
        return [_decode(frame) for frame in frames]

    def started(self) -> int:
        return int(self.stat[0])

    def signature(self, request_id: int) -> Signature | None:
        from stacwatchd.model.sources import Signature

        values = self.stat.tolist()
        return Signature(*values[2:6]) if values[1] == request_id else None

    def death(self) -> str:
        process = self.process
        try:
            code = process.wait(_JOIN_S)
        except subprocess.TimeoutExpired:
            return f"build process {process.pid} closed its pipe"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"build process {process.pid} was killed by {name}"
        return f"build process {process.pid} exited with status {code}"

    def pid(self) -> int | None:
        return self.process.pid if self.process.poll() is None else None

    def end(self, *, kill: bool, wait: bool = True) -> None:
        process = self.process
        if not kill:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(_JOIN_S)
        if process.poll() is None:
            process.kill()
            if wait:  # a process stuck in the kernel (a dead mount) is left to the OS
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(_JOIN_S)
        self.requests.close()
        if not self.closed:
            self.closed = True
            os.close(self.answers.fd)


class _ThreadChannel(_Channel):
    """A thread of this process with a request and an answer queue."""

    _GONE = object()

    def __init__(self, n: int) -> None:
        self.requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.answers: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.state: list[Any] = [0, 0, None]  # request begun, request stat'ed, its signature
        # Counts the answers put, so that the reader can poll this channel like a pipe;
        # left open with the channel (a hung build thread may still answer).
        self.wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.opened = time.monotonic()
        self.ready = False
        self.sent = set()
        self.gone = False
        thread = threading.Thread(
            target=_serve_thread,
            args=(self.requests, self._answer, self.state),
            name=f"stacwatchd-build-{n}",
            daemon=True,
        )
        thread.start()

    def _answer(self, message: Any) -> None:
        self.answers.put(message)
        with contextlib.suppress(OSError):
            os.eventfd_write(self.wake, 1)

    def send(self, message: Any) -> bool:
        self.requests.put(message)
        return True

    def fileno(self) -> int:
        return self.wake

    def recv(self) -> list[Any]:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.wake)
        messages = []
        while not self.gone:
            try:
                message = self.answers.get_nowait()
            except queue.Empty:
                break
            if message is self._GONE:
                self.gone = True
            else:
                messages.append(message)
        if self.gone and not messages:
            raise EOFError("the build thread was replaced")
        if self.gone:
            self._answer(None)  # polls readable again, to report the end next time
        return messages

    def started(self) -> int:
        return int(self.state[0])

    def signature(self, request_id: int) -> Signature | None:
        return self.state[2] if self.state[1] == request_id else None

    def death(self) -> str:
        return "the build thread stopped"

    def end(self, *, kill: bool, wait: bool = True) -> None:
        # A hung thread cannot be stopped: it is left behind, asked to end should it ever
        # return, and ends with the process.
        if kill:
            self.requests.put(None)
        self._answer(self._GONE)

    def __del__(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.close(self.wake)


# -- helpers ----------------------------------------------------------------------------------


def _socketpair() -> tuple[int, int]:
    """The two ends of a connected pair of sockets (larger buffers than a pipe's 64 KiB)."""
    here, there = socket.socketpair()
    return here.detach(), there.detach()


def _child_env() -> dict[str, str]:
    """This environment, with this interpreter's import path first, so that a build
    process imports the same code (this package included) as its parent."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(entry for entry in (*sys.path, env.get("PYTHONPATH")) if entry)
    return env


def _rejection(path: Path, reason: str, kind: str, signature: Signature | None) -> Rejection:
    from stacwatchd.model.results import Rejection

    return Rejection(path=path, reason=reason, kind=kind, signature=signature)


class _Undecodable:
    """An answer this process could not decode, and why."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _decode(frame: bytes) -> Any:
    try:
        return pickle.loads(frame)
    except Exception as exc:  # noqa: BLE001 - the answer's fault, not the stream's
        return _Undecodable(exc)


def _deliver(request: _Request, result: Any) -> None:
    try:
        request.future.set_result(result)
    except InvalidStateError:  # cancelled by its caller
        pass


def _fail(request: _Request, error: BaseException) -> None:
    try:
        request.future.set_exception(error)
    except InvalidStateError:
        pass


def _serve_thread(requests: queue.SimpleQueue[Any], answer: Callable[[Any], None], state: list[Any]) -> None:
    """A build thread: the same protocol as a build process, over a queue and a callback."""
    from stacwatchd.model.sources import signature_of

    answer("ready")
    rules_by_token: dict[int, Rules] = {}
    while True:
        message = requests.get()
        if message is None:
            return
        request, path, rules = decode_request(message, rules_by_token)
        state[0] = request
        state[2] = signature_of(path)
        state[1] = request
        answer((request, build_safely(path, rules)))
