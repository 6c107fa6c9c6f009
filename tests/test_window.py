"""The build window: at most ``size`` builds out, and blocked senders resume in a group."""

from __future__ import annotations

import threading

import pytest

from stacwatchd.engine.window import Window
from stacwatchd.testing import wait_until


def test_a_full_window_refuses_until_its_timeout():
    window = Window(2)
    assert window.acquire(0) and window.acquire(0)
    assert not window.acquire(0.05)
    assert window.out == 2


def test_blocked_senders_resume_only_once_half_the_window_came_back():
    window = Window(4)
    for _ in range(4):
        assert window.acquire(0)
    taken: list[bool] = []
    sender = threading.Thread(target=lambda: taken.append(window.acquire(30)))
    sender.start()
    window.release()  # 3 out: the window has room, but the blocked sender waits for half
    sender.join(0.2)
    assert sender.is_alive() and not taken
    window.release()  # 2 out: half came back
    wait_until(lambda: taken == [True], timeout=10, message="the blocked sender never resumed")
    sender.join(10)
    assert window.out == 3


def test_a_sender_that_timed_out_takes_a_free_place_at_once():
    window = Window(4)
    for _ in range(4):
        assert window.acquire(0)
    window.release()
    assert window.acquire(0)  # not blocked before: a free place is taken without waiting for half
    assert window.out == 4


def test_releasing_more_than_was_taken_is_an_error():
    window = Window(1)
    with pytest.raises(ValueError):
        window.release()


def test_a_window_holds_at_least_one():
    with pytest.raises(ValueError):
        Window(0)
