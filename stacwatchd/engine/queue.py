"""The bounded work queue between intake and the build workers."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path

from stacwatchd.engine.settle import Ready

__all__ = ["WorkQueue"]


class WorkQueue:
    """Bounded, deduplicated by path, newest decision wins; ``put`` blocks when full.

    Back-pressure instead of unbounded memory: a burst of 100,000 files holds at most
    ``capacity`` decisions here, and the producer (settle, a scan's walk) waits.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Path, Ready] = OrderedDict()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, ready: Ready, timeout: float | None = None) -> bool | None:
        """True when queued, None when it replaced a queued decision for the same path,
        False when the queue stayed full past ``timeout`` or is closed."""
        with self._cond:
            if ready.path in self._items:
                self._items[ready.path] = ready
                return None
            deadline = None if timeout is None else time.monotonic() + timeout
            while len(self._items) >= self.capacity and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            if self._closed:
                return False
            self._items[ready.path] = ready
            self._cond.notify_all()
            return True

    def take(self, timeout: float | None = None) -> Ready | None:
        with self._cond:
            if not self._items:
                self._cond.wait_for(lambda: self._items or self._closed, timeout)
            if not self._items:
                return None
            _, ready = self._items.popitem(last=False)
            self._cond.notify_all()
            return ready

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
