"""The bounded work queue between intake and the build workers."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from stacwatchd.engine.settle import Ready

__all__ = ["WorkQueue"]


class WorkQueue:
    """Bounded, deduplicated by path, newest decision wins; ``put`` blocks when full.

    Back-pressure instead of unbounded memory: a burst of 100,000 files holds at most
    ``capacity`` decisions here, and the producer (settle, a scan's walk) waits. A
    producer that found it full resumes once it is down to half, not at every decision
    taken: each wake-up is a handover of the GIL, dearer than the decision it lets in.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._resume = capacity // 2
        self._items: OrderedDict[Path, Ready] = OrderedDict()
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # takers wait here
        self._room = threading.Condition(lock)  # producers wait here while it is full
        self._closed = False

    def put(self, ready: Ready, timeout: float | None = None) -> bool | None:
        """True when queued, None when it replaced a queued decision for the same path,
        False when the queue stayed full (not back down to half) past ``timeout`` or is
        closed."""
        with self._cond:
            if ready.path in self._items:
                self._items[ready.path] = ready
                return None
            if len(self._items) >= self.capacity and not self._closed:
                self._room.wait_for(lambda: len(self._items) <= self._resume or self._closed, timeout)
                if len(self._items) >= self.capacity and not self._closed:
                    return False
            if self._closed:
                return False
            self._items[ready.path] = ready
            self._cond.notify()
            return True

    def take(self, timeout: float | None = None) -> Ready | None:
        with self._cond:
            if not self._items:
                self._cond.wait_for(lambda: self._items or self._closed, timeout)
            if not self._items:
                return None
            _, ready = self._items.popitem(last=False)
            if len(self._items) == self._resume:
                self._room.notify_all()
            return ready

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            self._room.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
