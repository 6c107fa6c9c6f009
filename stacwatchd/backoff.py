"""Capped exponential backoff with jitter, for everything that retries until it heals."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass(slots=True)
class Backoff:
    """When to try again after consecutive failures: ``initial`` doubling up to ``maximum``.

    The delay is half the step plus up to half again at random, so many retriers that
    failed together (sinks after one outage) do not hammer a server in lockstep.
    """

    initial: float = 0.5
    maximum: float = 30.0
    clock: Callable[[], float] = time.monotonic
    attempts: int = 0
    since: float | None = None  # monotonic time of the first failure of this run
    retry_at: float = 0.0
    last_error: str | None = None
    _random: random.Random = field(default_factory=random.Random, repr=False)

    @property
    def failing(self) -> bool:
        return self.attempts > 0

    def due(self) -> bool:
        return self.clock() >= self.retry_at

    def wait_seconds(self) -> float:
        return max(0.0, self.retry_at - self.clock())

    def failed(self, error: str, retry_after: float | None = None) -> float:
        """Record a failure; returns the delay until the next try."""
        now = self.clock()
        self.attempts += 1
        if self.since is None:
            self.since = now
        self.last_error = error
        step = min(self.maximum, self.initial * 2 ** min(self.attempts - 1, 30))
        delay = step / 2 + self._random.uniform(0, step / 2)
        if retry_after is not None:
            delay = min(self.maximum, max(delay, retry_after))
        self.retry_at = now + delay
        return delay

    def succeeded(self) -> float | None:
        """Record a success; returns how long it had been failing (None if it was not)."""
        was = None if self.since is None else self.clock() - self.since
        self.attempts = 0
        self.since = None
        self.retry_at = 0.0
        self.last_error = None
        return was
