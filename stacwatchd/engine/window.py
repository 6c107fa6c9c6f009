"""How many builds may be out at once, with hysteresis.

A plain semaphore wakes a blocked worker thread for every build that comes back, and
each wake-up is a handover of the GIL between threads, which costs more than the work
it lets through. A ``Window`` lets a blocked thread go only once half the window has come
back, so that one wake-up sends many builds.
"""

from __future__ import annotations

import threading

__all__ = ["Window"]


class Window:
    """At most ``size`` builds out; thread-safe."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a window holds at least 1, not {size}")
        self.size = size
        self._resume = size // 2  # how many may still be out when blocked senders resume
        self._out = 0
        self._cond = threading.Condition(threading.Lock())

    def acquire(self, timeout: float) -> bool:
        """Take a place; False when none came free within ``timeout`` seconds."""
        with self._cond:
            if self._out >= self.size and not self._cond.wait_for(lambda: self._out <= self._resume, timeout):
                return False
            self._out += 1
            return True

    def release(self) -> None:
        with self._cond:
            if self._out <= 0:
                raise ValueError("released more places than were taken")
            self._out -= 1
            if self._out == self._resume:
                self._cond.notify_all()

    @property
    def out(self) -> int:
        with self._cond:
            return self._out
