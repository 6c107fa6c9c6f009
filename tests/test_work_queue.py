"""The work queue: bounded, deduplicated by path, newest decision wins, producers wait when it is full."""

from __future__ import annotations

import threading
from pathlib import Path

from stacwatchd.engine.queue import WorkQueue
from stacwatchd.engine.settle import Ready
from stacwatchd.testing import wait_until

ROOT = Path("/data")


def ready(name: str, op: str = "upsert") -> Ready:
    return Ready(op, ROOT / name, ROOT)  # type: ignore[arg-type]


def test_a_newer_decision_for_a_queued_path_replaces_it_in_place():
    queue = WorkQueue(4)
    assert queue.put(ready("a.tif")) is True
    assert queue.put(ready("b.tif")) is True
    assert queue.put(ready("a.tif", "delete")) is None
    first, second = queue.take(0), queue.take(0)
    assert (first.path.name, first.op) == ("a.tif", "delete")
    assert second.path.name == "b.tif"
    assert queue.take(0) is None


def test_a_full_queue_refuses_a_producer_past_its_timeout():
    queue = WorkQueue(2)
    assert queue.put(ready("a.tif")) and queue.put(ready("b.tif"))
    assert queue.put(ready("c.tif"), timeout=0.05) is False
    assert len(queue) == 2


def test_a_blocked_producer_resumes_when_a_decision_is_taken():
    queue = WorkQueue(2)
    queue.put(ready("a.tif"))
    queue.put(ready("b.tif"))
    done: list[bool | None] = []
    producer = threading.Thread(target=lambda: done.append(queue.put(ready("c.tif"))))
    producer.start()
    assert queue.take(0).path.name == "a.tif"
    wait_until(lambda: done == [True], timeout=10, message="the producer never resumed")
    producer.join(10)
    assert [queue.take(0).path.name for _ in range(2)] == ["b.tif", "c.tif"]


def test_close_releases_waiting_producers_and_takers():
    queue = WorkQueue(1)
    queue.put(ready("a.tif"))
    outcomes: list[object] = []
    producer = threading.Thread(target=lambda: outcomes.append(queue.put(ready("b.tif"))))
    producer.start()
    queue.close()
    producer.join(10)
    assert outcomes == [False]
    queue.take(0)
    assert queue.take(5) is None
