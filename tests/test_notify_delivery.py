"""At-least-once delivery through the real daemon: bursts, failing receivers, kill -9."""

from __future__ import annotations

import shutil
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from daemon_support import DaemonProcess
from support.receivers import Receipt, WebhookReceiver
from test_notify import SECRET, hook, notifying_daemon

from stacwatchd import testing
from stacwatchd.state.store import State
from stacwatchd.testing import wait_until

pytestmark = pytest.mark.slow


def last_seq(daemon: DaemonProcess) -> int:
    """The seq of the last change the daemon recorded (read once it stopped)."""
    state = State(daemon.catalog / ".stacwatchd" / "state.db", readonly=True)
    try:
        return state.stream_end("changes")
    finally:
        state.close()


def by_id(receipts: list[Receipt]) -> dict[str, list[Receipt]]:
    grouped: dict[str, list[Receipt]] = defaultdict(list)
    for receipt in receipts:
        grouped[receipt.message["id"]].append(receipt)
    return grouped


def test_burst_of_500_reaches_a_failing_receiver_whole_in_order_with_duplicates_only_after_failures(tmp_path: Path):
    made = testing.many_cogs(tmp_path / "prepared", 500)
    failing_first = 175  # a third of the ~520 messages: 500 Items and their collection

    def answer(n: int, message: dict[str, Any]) -> Any:
        if n < failing_first:
            return 500
        return "hang" if n % 97 == 0 else 200  # six or so hangs, each costing the 2 s timeout

    with WebhookReceiver(SECRET.encode(), answer, hang_seconds=4.0) as receiver:
        # Retries capped at 0.1 s: 175 failures in a row would otherwise take ~50 s to sit out.
        daemon = notifying_daemon(tmp_path, hook(receiver.url, timeout_seconds=2.0, retry_max_seconds=0.1))
        try:
            daemon.start()
            for path in made:
                shutil.copy(path, daemon.watched / path.name)
            daemon.wait_items({p.stem for p in made}, timeout=240)
            wanted = {p.stem for p in made}
            wait_until(
                lambda: wanted <= {m["item_id"] for m in receiver.delivered() if m["event"] == "item.added"},
                timeout=300, message="every item.added delivered",
            )  # fmt: skip
            assert daemon.stop() == 0
        finally:
            daemon.close()
    end = last_seq(daemon)
    receipts = receiver.snapshot()
    assert all(r.signed for r in receipts), "every request carries a valid signature"
    assert sum(r.answer == "failed" for r in receipts) >= failing_first and any(r.answer == "hung" for r in receipts)
    delivered = [r.message for r in receipts if r.answer == "ok"]
    assert [m["seq"] for m in delivered] == list(range(1, end + 1)), "every change acknowledged once, in commit order"
    for receipts_of_one in by_id(receipts).values():
        *before, last = receipts_of_one
        assert last.answer == "ok" and all(r.answer in ("failed", "hung") for r in before), "resent only after a failure"
        if last.message["item_id"]:  # a collection is sent as it is at the time of sending
            assert len({r.body for r in receipts_of_one}) == 1, "a resend is the same message"
    per_item: dict[str, list[int]] = defaultdict(list)
    for message in delivered:
        if message["item_id"]:
            per_item[message["item_id"]].append(message["seq"])
    assert set(per_item) == {p.stem for p in made}
    assert all(seqs == sorted(seqs) for seqs in per_item.values())


def test_kill_9_with_messages_pending_then_restart_delivers_every_change(tmp_path: Path):
    made = testing.many_cogs(tmp_path / "prepared", 150)
    receiver_up = threading.Event()

    def answer(n: int, message: dict[str, Any]) -> int:
        return 200 if n < 40 or receiver_up.is_set() else 503

    with WebhookReceiver(SECRET.encode(), answer) as receiver:
        daemon = notifying_daemon(tmp_path, hook(receiver.url))
        try:
            daemon.start()
            for path in made:
                shutil.copy(path, daemon.watched / path.name)
            wait_until(lambda: len(daemon.items()) >= 60 and len(receiver.snapshot()) > 45, timeout=120)
            daemon.kill()
            delivered_before = {m["seq"] for m in receiver.delivered()}
            receiver_up.set()
            daemon.start()
            daemon.wait_items({p.stem for p in made}, timeout=240)
            wanted = {p.stem for p in made}
            wait_until(
                lambda: wanted <= {m["item_id"] for m in receiver.delivered() if m["event"] == "item.added"},
                timeout=240, message="every item.added delivered",
            )  # fmt: skip
            assert daemon.stop() == 0
        finally:
            daemon.close()
    end = last_seq(daemon)
    delivered = receiver.delivered()
    assert 0 < len(delivered_before) < end, "some messages were delivered before the kill, others were pending"
    assert {m["seq"] for m in delivered} == set(range(1, end + 1)), "every change delivered at least once"
    ids = {(m["seq"], m["id"]) for m in delivered}
    assert len(ids) == len({seq for seq, _ in ids}), "a message delivered twice has the same id both times"
    assert all(r.signed for r in receiver.snapshot())
