"""The writer's inbox: bounded, taken in batches, the writer woken per batch or on demand."""

from __future__ import annotations

import threading
from typing import Any

from stacwatchd.engine.inbox import Inbox
from stacwatchd.testing import wait_until

LONG = 60.0  # a wait the test must never sit out: the call has to return long before


def taking(inbox: Inbox[str], timeout: float, linger: float, most: int) -> tuple[threading.Thread, list[Any]]:
    """A writer thread blocked in ``take``; its batch lands in the list."""
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(inbox.take(timeout, linger, most)))
    thread.start()
    return thread, got


def finished(thread: threading.Thread, got: list[Any]) -> list[str]:
    thread.join(30)
    assert not thread.is_alive(), "take() waited out its timeout or linger"
    return got[0]


def test_take_returns_up_to_most_in_arrival_order_and_nothing_once_empty():
    inbox: Inbox[str] = Inbox(8)
    for name in "abcde":
        assert inbox.put(name)
    assert inbox.take(0, 0, 3) == ["a", "b", "c"]
    assert len(inbox) == 2
    assert inbox.take(0, 0, 10) == ["d", "e"]
    assert inbox.take(0.05, 0, 10) == []


def test_a_batch_is_returned_once_complete_not_at_its_first_operation():
    inbox: Inbox[str] = Inbox(8)
    inbox.put("a")
    thread, got = taking(inbox, LONG, LONG, 3)
    inbox.put("b")
    inbox.put("c")
    assert finished(thread, got) == ["a", "b", "c"]


def test_the_first_operation_ends_the_wait_for_a_first_and_the_linger_ends_the_batch():
    inbox: Inbox[str] = Inbox(8)
    thread, got = taking(inbox, LONG, 0.05, 3)
    inbox.put("a")
    assert finished(thread, got) == ["a"]


def test_a_full_inbox_wakes_the_writer_even_if_its_batch_is_larger():
    inbox: Inbox[str] = Inbox(2)
    thread, got = taking(inbox, LONG, LONG, 10)
    inbox.put("a")
    inbox.put("b")
    assert finished(thread, got) == ["a", "b"]


def test_wake_ends_the_wait_for_a_first_operation_and_the_linger():
    inbox: Inbox[str] = Inbox(8)
    thread, got = taking(inbox, LONG, LONG, 5)
    inbox.wake()
    assert finished(thread, got) == []
    inbox.put("a")
    thread, got = taking(inbox, LONG, LONG, 5)
    inbox.wake()
    assert finished(thread, got) == ["a"]
    assert inbox.take(0.05, 0, 5) == [], "a wake-up is used once"


def test_a_full_inbox_refuses_a_producer_past_its_timeout_and_resumes_one_when_taken():
    inbox: Inbox[str] = Inbox(1)
    assert inbox.put("a")
    assert inbox.put("b", timeout=0.05) is False
    done: list[bool] = []
    producer = threading.Thread(target=lambda: done.append(inbox.put("c", timeout=LONG)))
    producer.start()
    assert inbox.take(0, 0, 1) == ["a"]
    wait_until(lambda: done == [True], timeout=30, message="the producer never resumed")
    producer.join(30)
    assert inbox.take(0, 0, 1) == ["c"]
