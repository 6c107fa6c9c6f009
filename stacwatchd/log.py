"""structlog set-up: JSON lines for journald, readable console output on a terminal."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, Literal, TextIO

import structlog
import structlog.tracebacks

__all__ = ["Format", "configure", "get_logger"]

Format = Literal["auto", "json", "console"]
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(
    format: Format = "auto", level: str = "info", stream: TextIO | None = None, *, relative_to: Path | None = None
) -> None:
    """Route every stacwatchd event to ``stream`` (stderr by default) in the chosen format.

    ``auto`` picks the console renderer only when the stream is a terminal, so the same
    command logs JSON lines under systemd and readable lines for a person. With
    ``relative_to`` (the demo), console lines show paths below it relative to it and the
    time of day only, so they fit a terminal.
    """
    stream = stream or sys.stderr
    if hasattr(stream, "reconfigure"):
        stream.reconfigure(line_buffering=True)  # one event, one flushed line (journald, tail -f)
    use_console = format == "console" or (format == "auto" and stream.isatty())
    renderer: structlog.typing.Processor
    if use_console:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    brief = use_console and relative_to is not None
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            *([_RelativePaths(relative_to)] if brief and relative_to is not None else []),
            structlog.processors.TimeStamper(fmt="%H:%M:%S" if brief else "iso", utc=not brief),
            # Tracebacks without local variables: a frame's locals may hold a secret.
            structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False))
            if not use_console
            else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.WriteLoggerFactory(file=stream),  # one write per line, never split by another thread
        cache_logger_on_first_use=False,
    )


class _RelativePaths:
    """A processor that shortens absolute paths below one folder to paths relative to it."""

    def __init__(self, base: Path) -> None:
        self.prefix = os.path.join(str(base), "")

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in event.items():
            if isinstance(value, list):
                event[key] = [self.shorten(v) for v in value]
            else:
                event[key] = self.shorten(value)
        return event

    def shorten(self, value: Any) -> Any:
        if isinstance(value, str) and value.startswith(self.prefix):
            return value[len(self.prefix) :]
        return value


def get_logger(name: str = "stacwatchd") -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
