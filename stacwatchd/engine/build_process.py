"""The build side of a ``Builder``: a process (or thread) that turns paths into Items.

A build process is a fresh interpreter started by ``Builder`` as
``python -m stacwatchd.engine.build_process REQUESTS ANSWERS STAT`` (three inherited
file descriptors), not a fork: it inherits no threads or locks, and it holds only what a
build needs, so each one costs far less memory than a copy of the daemon would. It
answers ``(request, result)``, one frame each (``stacwatchd.engine.frames``), for
every ``(request, token, rules, path)`` it reads, and before each build writes
``[request begun, request stat'ed, size, mtime_ns, inode, device]`` into the shared
``STAT`` page, so that the parent can tell "died before this file" from "died on
it", and refuse a timeout or crash with the file's signature.
"""

from __future__ import annotations

import mmap
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stacwatchd.engine.frames import FrameWriter

if TYPE_CHECKING:
    from stacwatchd.model.results import Rules

__all__ = ["STAT_SLOTS", "ChildError", "build_safely", "decode_request", "main"]

STAT_SLOTS = 6  # int64 slots of the shared STAT page
_CACHE_MB = "64"  # GDAL_CACHEMAX of a build process, unless the environment sets one
# numpy's BLAS (OpenBLAS, MKL, OpenMP) starts a thread per core in every process that
# imports it, and each one spins for a while after start: on 16 cores, 16 build
# processes start 240 threads that do no build work and burn CPU the builds need.
# A build process is one thread by design; the Builder runs one per worker.
_ONE_THREAD = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Imported by rasterio only to reach cloud storage through boto3 sessions; builds read
# the watched folders, and the import alone costs each build process ~18 MB.
_NOT_NEEDED = ("boto3",)


class ChildError:
    """An exception the build raised instead of returning; ``fatal`` ends the child."""

    __slots__ = ("cause", "fatal")

    def __init__(self, cause: str, fatal: bool) -> None:
        self.cause = cause
        self.fatal = fatal

    def __reduce__(self) -> tuple[Any, ...]:
        return (ChildError, (self.cause, self.fatal))


def build_safely(path: Path, rules: Rules) -> Any:
    """The build's result, or a ``ChildError`` for an exception it raised."""
    from stacwatchd.model.items import build

    try:
        return _placed(build(path, rules), rules)
    except MemoryError:
        return ChildError("out of memory", fatal=True)
    except Exception as exc:  # a bug in the model: refuse this file, keep serving
        return ChildError(f"{type(exc).__name__}: {exc}", fatal=False)


def _placed(result: Any, rules: Rules) -> Any:
    """The answer for ``result``: a built Item packed, with its final JSON rendered here,
    off the writer's thread, when the rules say where the catalog puts it (left to the
    writer if that fails)."""
    import marshal

    from stacwatchd.engine.answers import packed
    from stacwatchd.model.results import BuiltItem
    from stacwatchd.stac.placed import place

    if not isinstance(result, BuiltItem):
        return result
    try:
        item = marshal.dumps(result.item)  # before place() changes the Item
    except ValueError:  # a value marshal does not know: answered as it is, rendered by the writer
        return replace(result, facts=())
    if rules.placement is None:
        return packed(result, item, facts=())
    try:
        placed = place(result.item, collection_id=result.collection_id, first=result.timing.first, placement=rules.placement)
    except Exception:  # noqa: BLE001 - the writer renders it again and refuses it with the reason
        placed = None
    return packed(result, item, facts=(), placed=placed)


def decode_request(message: tuple[int, int, Rules | None, str], rules_by_token: dict[int, Rules]) -> tuple[int, Path, Rules]:
    """(request id, path, rules) of a request; its rules are sent once per token, then remembered."""
    request, token, rules, raw = message
    if rules is not None:
        rules_by_token[token] = rules
    return request, Path(raw), rules_by_token[token]


def serve(requests: Connection, answers: FrameWriter, stat: memoryview) -> None:
    """Answer requests until the parent sends None or goes away."""
    from multiprocessing.reduction import ForkingPickler

    from stacwatchd.model.sources import signature_of

    try:
        answers.send(ForkingPickler.dumps("ready"))
    except OSError:
        return
    rules_by_token: dict[int, Rules] = {}
    while True:
        try:
            message = requests.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        request, path, rules = decode_request(message, rules_by_token)
        stat[0] = request
        found = signature_of(path)
        if found is not None:
            for slot, value in enumerate(found, start=2):
                stat[slot] = value
            stat[1] = request
        result = build_safely(path, rules)
        try:
            answers.send(ForkingPickler.dumps((request, result)))
        except OSError:
            return
        if isinstance(result, ChildError) and result.fatal:
            os._exit(70)  # out of memory: this process cannot be trusted with another file


def main(argv: Sequence[str] | None = None) -> None:
    requests_fd, answers_fd, stat_fd = (int(arg) for arg in (sys.argv[1:] if argv is None else argv))
    # The parent decides when builds stop: a Ctrl-C or systemd's SIGTERM to the whole
    # group must not kill a build the parent is still waiting for.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    # GDAL's block cache defaults to 5 % of the machine's memory in every process; one
    # file's thumbnail or statistics need far less, and there is a process per worker.
    os.environ.setdefault("GDAL_CACHEMAX", _CACHE_MB)
    for name in _ONE_THREAD:  # read when numpy is loaded, below
        os.environ.setdefault(name, "1")
    for name in _NOT_NEEDED:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    import stacwatchd.model.items  # noqa: F401 - loaded before "ready", so no build pays for it
    import stacwatchd.stac.placed  # noqa: F401
    from stacwatchd.engine.answers import pickle_answers_compactly

    pickle_answers_compactly()

    page = mmap.mmap(stat_fd, STAT_SLOTS * 8)
    os.close(stat_fd)
    serve(Connection(requests_fd, writable=False), FrameWriter(answers_fd), memoryview(page).cast("q"))


if __name__ == "__main__":
    main()
