"""structlog set-up: JSON lines for journald, readable console output on a terminal."""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog
import structlog.tracebacks

Format = Literal["auto", "json", "console"]
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(format: Format = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Route every stacwatchd event to ``stream`` (stderr by default) in the chosen format.

    ``auto`` picks the console renderer only when the stream is a terminal, so the same
    command logs JSON lines under systemd and readable lines for a person.
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
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # Tracebacks without local variables: a frame's locals may hold a secret.
            structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False))
            if not use_console
            else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "stacwatchd") -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
