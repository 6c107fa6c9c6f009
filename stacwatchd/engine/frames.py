"""Length-prefixed frames over a stream socket: how build answers reach the parent.

The build process writes each answer as soon as it is ready, one frame per answer, so
a lone file is answered at once. The parent reads whatever has arrived in one call, so
when it is busy (its one GIL shared by the writer and every reader), the answers that
queued up meanwhile cost one wake-up, one read and one pass under its lock, not one each.
"""

from __future__ import annotations

import os
import struct

__all__ = ["FrameReader", "FrameWriter"]

_HEADER = struct.Struct("!Q")
_READ_SIZE = 1 << 16  # a dozen typical answers; grows for a bigger one


class FrameWriter:
    """Writes whole frames to a blocking file descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, payload: bytes) -> None:
        """Write one frame; ``OSError`` once the reader is gone."""
        view = memoryview(_HEADER.pack(len(payload)) + payload)
        while view:
            view = view[os.write(self.fd, view) :]


class FrameReader:
    """Reads frames from a file descriptor into one buffer it keeps, so a read allocates
    nothing; a partial frame stays for the next read."""

    def __init__(self, fd: int, size: int = _READ_SIZE) -> None:
        self.fd = fd
        self._buffer = bytearray(size)
        self._filled = 0

    def read(self) -> list[bytes]:
        """The frames complete after one read of what has arrived (possibly none, if only
        part of one came); ``EOFError`` when the writer is gone and nothing is left."""
        buffer = self._buffer
        with memoryview(buffer) as view:
            got = os.readv(self.fd, [view[self._filled :]])
            if not got:
                raise EOFError("the writer closed its end")
            filled = self._filled + got
            frames = []
            start = 0
            while filled - start >= _HEADER.size:
                (size,) = _HEADER.unpack_from(buffer, start)
                end = start + _HEADER.size + size
                if end > filled:
                    break
                frames.append(bytes(view[start + _HEADER.size : end]))
                start = end
            view[: filled - start] = view[start:filled]
        self._filled = filled - start
        if self._filled >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, 0)
            if _HEADER.size + size > len(buffer):  # a frame larger than the buffer: room for it
                buffer.extend(bytes(_HEADER.size + size - len(buffer)))
        return frames
