"""Build answers cross a real socket pair as length-prefixed frames."""

from __future__ import annotations

import os
import random
import socket
import threading

import pytest

from stacwatchd.engine.frames import FrameReader, FrameWriter


def _pair(buffer: int) -> tuple[FrameWriter, FrameReader]:
    here, there = socket.socketpair()
    return FrameWriter(here.detach()), FrameReader(there.detach(), size=buffer)


def test_frames_arrive_whole_and_in_order_whatever_their_sizes_and_the_reads():
    writer, reader = _pair(buffer=64)  # smaller than many frames: the reader grows its buffer
    rng = random.Random(7)
    sent = [os.urandom(rng.choice([0, 1, 7, 56, 64, 65, 300, 5_000, 200_000])) for _ in range(1_500)]

    def send() -> None:
        for payload in sent:
            writer.send(payload)
        os.close(writer.fd)

    thread = threading.Thread(target=send)
    thread.start()
    received: list[bytes] = []
    reads = 0
    while True:
        try:
            received += reader.read()
        except EOFError:
            break
        reads += 1
    thread.join()
    assert received == sent
    assert reads < len(sent) * 4, "a read takes what has arrived, not a byte at a time"


def test_frames_that_queued_up_come_back_from_one_read():
    writer, reader = _pair(buffer=1 << 16)
    for n in range(20):
        writer.send(n.to_bytes(4, "big") * 100)
    assert reader.read() == [n.to_bytes(4, "big") * 100 for n in range(20)]


def test_a_partial_frame_waits_for_the_rest_and_the_end_is_reported_after_it():
    writer, reader = _pair(buffer=1 << 16)
    framed = (10).to_bytes(8, "big") + b"0123456789"
    os.write(writer.fd, framed[:12])
    assert reader.read() == []
    os.write(writer.fd, framed[12:])
    assert reader.read() == [b"0123456789"]
    os.close(writer.fd)
    with pytest.raises(EOFError):
        reader.read()
