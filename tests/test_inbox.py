"""The writer's inbox: bounded, taken in batches, the taker woken for the first item and a full batch."""

from __future__ import annotations

import threading
import time

import pytest

from stacwatchd.engine.inbox import Inbox
from stacwatchd.testing import wait_until


def test_an_empty_inbox_gives_nothing_after_the_wait():
    inbox: Inbox[int] = Inbox(4)
    assert inbox.take(0.01, 0.5, 10) == []
    assert inbox.take(0, 0.5, 10) == []


def test_a_batch_is_taken_whole_and_in_order_up_to_most():
    inbox: Inbox[int] = Inbox(10)
    for n in range(7):
        assert inbox.put(n)
    assert inbox.take(0, 0, 5) == [0, 1, 2, 3, 4]
    assert inbox.take(0, 0, 5) == [5, 6]


def test_a_full_batch_ends_the_linger_at_once():
    inbox: Inbox[int] = Inbox(100)
    inbox.put(0)
    producer = threading.Thread(target=lambda: [inbox.put(n) for n in range(1, 10)])
    started = time.monotonic()
    producer.start()
    batch = inbox.take(1, 600, 10)
    producer.join(10)
    assert batch == list(range(10))
    assert time.monotonic() - started < 300, "the taker waited out its linger although the batch was full"


def test_the_linger_ends_with_what_came_meanwhile():
    inbox: Inbox[int] = Inbox(100)
    inbox.put(1)
    inbox.put(2)
    assert inbox.take(1, 0.05, 10) == [1, 2]


def test_a_waiting_taker_is_woken_by_the_first_item():
    inbox: Inbox[int] = Inbox(4)
    got: list[list[int]] = []
    taker = threading.Thread(target=lambda: got.append(inbox.take(600, 0, 4)))
    taker.start()
    wait_until(lambda: taker.is_alive(), timeout=10)
    inbox.put(7)
    taker.join(60)
    assert got == [[7]]


def test_a_full_inbox_refuses_a_producer_past_its_timeout_and_takes_a_blocked_one_once_there_is_room():
    inbox: Inbox[int] = Inbox(2)
    assert inbox.put(1) and inbox.put(2)
    assert inbox.put(3, timeout=0.05) is False
    done: list[bool] = []
    producer = threading.Thread(target=lambda: done.append(inbox.put(3)))
    producer.start()
    assert inbox.take(0, 0, 1) == [1]
    wait_until(lambda: done == [True], timeout=10, message="the producer never resumed")
    producer.join(10)
    assert inbox.take(0, 0, 5) == [2, 3]


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        Inbox(0)
