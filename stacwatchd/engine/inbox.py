"""The writer's inbox: operations arrive one at a time, the writer takes them in batches."""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

__all__ = ["Inbox"]

T = TypeVar("T")


class Inbox(Generic[T]):
    """Bounded; ``put`` blocks while it is full.

    The writer is woken when the batch it waits for is complete, the inbox full, the
    linger over or ``wake`` called, not at every operation: with one operation per built
    file, a wake-up each is a handover of the GIL per Item between the thread that
    delivers the answers and the writer, both in the one process whose CPU caps a scan.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._items: deque[T] = deque()
        lock = threading.Lock()
        self._ready = threading.Condition(lock)  # the writer waits here
        self._room = threading.Condition(lock)  # producers wait here while it is full
        self._want = 0  # operations the waiting writer needs before it is woken (0: not waiting)
        self._woken = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Add ``item``; False when the inbox stayed full for ``timeout`` seconds."""
        with self._ready:
            if not self._room.wait_for(lambda: len(self._items) < self.capacity, timeout):
                return False
            self._items.append(item)
            if self._want and len(self._items) >= self._want:
                self._ready.notify()
            return True

    def wake(self) -> None:
        """End the writer's current wait now (a stop, a task to run)."""
        with self._ready:
            self._woken = True
            self._ready.notify()

    def take(self, timeout: float, linger: float, most: int) -> list[T]:
        """Up to ``most`` operations: wait up to ``timeout`` for the first, then up to
        ``linger`` seconds for the rest. Empty when none came or ``wake`` was called
        before the first."""
        with self._ready:
            if not self._items and not self._woken and timeout > 0:
                self._wait(1, timeout)
            if self._items and not self._woken and len(self._items) < most and linger > 0:
                self._wait(most, linger)
            self._woken = False
            taken = [self._items.popleft() for _ in range(min(most, len(self._items)))]
            if taken:
                self._room.notify(len(taken))
            return taken

    def _wait(self, want: int, timeout: float) -> None:
        self._want = min(want, self.capacity)  # a full inbox wakes the writer whatever it wants
        try:
            self._ready.wait_for(lambda: len(self._items) >= self._want or self._woken, timeout)
        finally:
            self._want = 0
