"""The hand-off from the builds to the one writer, in batches.

The writer commits in batches anyway; a plain queue would still wake it for every single
operation while it lingers for the rest of a batch, and each wake-up is a handover of
the GIL that costs more than handing over the operation itself. An ``Inbox`` wakes its
consumer for the first operation and then once more, when the batch is full or the
linger is over.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

__all__ = ["Inbox"]

T = TypeVar("T")


class Inbox(Generic[T]):
    """Bounded; many producers, one consumer taking batches; thread-safe."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"an inbox holds at least 1, not {capacity}")
        self.capacity = capacity
        self._items: deque[T] = deque()
        lock = threading.Lock()
        self._ready = threading.Condition(lock)  # the consumer waits here
        self._room = threading.Condition(lock)  # producers wait here while it is full
        self._want = 0  # how many items the waiting consumer needs before it is woken

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Add ``item``; False when the inbox stayed full past ``timeout``."""
        with self._ready:
            if len(self._items) >= self.capacity and not self._room.wait_for(lambda: len(self._items) < self.capacity, timeout):
                return False
            self._items.append(item)
            if self._want and len(self._items) >= self._want:
                self._want = 0
                self._ready.notify()
            return True

    def take(self, wait: float, linger: float, most: int) -> list[T]:
        """Up to ``most`` items: waits up to ``wait`` for the first (none: empty list),
        then up to ``linger`` for the batch to fill."""
        with self._ready:
            if not self._items and wait > 0:
                self._want = 1
                self._ready.wait_for(lambda: bool(self._items), wait)
            if self._items and linger > 0 and len(self._items) < most:
                self._want = most
                self._ready.wait_for(lambda: len(self._items) >= most, linger)
            self._want = 0
            batch = [self._items.popleft() for _ in range(min(most, len(self._items)))]
            if batch:
                self._room.notify_all()
            return batch

    def __len__(self) -> int:
        with self._ready:
            return len(self._items)
