"""Live progress of long work: a tqdm bar on a terminal; elsewhere (a log file, CI, a pipe) a plain line now and
then, so that a log says how far the work is without a line per batch.

``SQUEEZER_PROGRESS=plain`` or ``live`` overrides what the terminal suggests.

Every line Squeezer prints is a ``logging`` record of the ``squeezer`` logger's tree: ``say`` for a study's results
(one line per trial, the front: ``squeezer.results``), ``note`` for what it is doing (the data, the teacher, caching:
the logger named after the module that says it, e.g. ``squeezer.search.trial.workbench``), at INFO. Their default
handler is a ``Printer`` — results to standard output, the rest to standard error, above the live bars — chosen per
study (``printing``; ``QUIET`` silences it, the Python API's ``quiet=True``, which also raises the level to WARNING).
Sending them on to the application's logging takes over: ``logging.getLogger("squeezer").propagate = True``, and the
printer steps aside; the user's handlers then route, filter or silence Squeezer's lines as any library's.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import IO, Any, Callable, Iterator

from tqdm import tqdm

#: Seconds between two plain progress lines of one piece of work.
PLAIN_EVERY_S = 30.0


def live(stream: IO[str] | None = None) -> bool:
    """Whether progress is drawn as live bars on ``stream`` (standard error by default)."""
    forced = os.environ.get("SQUEEZER_PROGRESS")
    if forced in ("plain", "live"):
        return forced == "live"
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) and os.environ.get("TERM") != "dumb"


def write(line: str, file: IO[str] | None = None) -> None:
    """Print ``line`` above the live bars (which are drawn again below it), or plainly when there are none."""
    tqdm.write(line, file=file or sys.stdout)
    (file or sys.stdout).flush()


def _to_stderr(line: str) -> None:
    write(line, sys.stderr)


@dataclass(frozen=True)
class Printer:
    """Where a study's lines go: ``out`` its results, ``note`` what it is doing; ``bars``: progress is shown."""

    out: Callable[[str], None] = write
    note: Callable[[str], None] = _to_stderr
    bars: bool = True


QUIET = Printer(out=lambda line: None, note=lambda line: None, bars=False)
_PRINTER: ContextVar[Printer] = ContextVar("squeezer_printer", default=Printer())  # noqa: B039 - frozen

LOGGER = logging.getLogger("squeezer")
RESULTS = "squeezer.results"  # the logger of a study's results (``say``)


class PrinterHandler(logging.Handler):
    """The ``squeezer`` logger's default handler: each record to the printer of the study running in this thread
    (``printing``), results to its ``out``, the rest to its ``note``; silent once the user sends Squeezer's records
    on to the application's logging (``logging.getLogger("squeezer").propagate = True``: theirs then has them)."""

    def emit(self, record: logging.LogRecord) -> None:
        if LOGGER.propagate:
            return
        printer = _PRINTER.get()
        (printer.out if record.name == RESULTS else printer.note)(record.getMessage())


_HANDLER = PrinterHandler()
if not any(isinstance(h, PrinterHandler) for h in LOGGER.handlers):
    LOGGER.addHandler(_HANDLER)
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False  # printed once, by the printer; propagate = True hands them to the application


@contextmanager
def printing(printer: Printer) -> Iterator[Printer]:
    """Send every line printed inside (in this thread) through ``printer``; ``QUIET`` also raises the ``squeezer``
    logger's level to WARNING for the while (a user's handler then sees warnings only)."""
    token = _PRINTER.set(printer)
    level = LOGGER.level
    if printer is QUIET:
        LOGGER.setLevel(logging.WARNING)
    try:
        yield printer
    finally:
        LOGGER.setLevel(level)
        _PRINTER.reset(token)


def say(line: str) -> None:
    """A result line: a record of ``squeezer.results``."""
    logging.getLogger(RESULTS).info(line)


def note(line: str) -> None:
    """What the work is doing: a record of the logger named after the module that says it."""
    caller = inspect.currentframe()
    module = caller.f_back.f_globals.get("__name__", "squeezer") if caller and caller.f_back else "squeezer"
    logging.getLogger(module if module.startswith("squeezer") else "squeezer").info(line)


def duration(seconds: float) -> str:
    """``42s``, ``7 min``, ``2 h 05 min``."""
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


class Bar:
    """Progress of one piece of work: ``update`` it as parts finish, with a short note (stage, loss).

    On a terminal it is a tqdm bar; otherwise ``line()`` is printed at most every ``PLAIN_EVERY_S`` seconds, with the
    time left when the total is known.
    """

    def __init__(self, desc: str, total: int | None = None, unit: str = "it", initial: int = 0,
                 stream: IO[str] | None = None, position: int | None = None) -> None:
        self.desc, self.total, self.unit, self.count, self.initial, self.note = desc, total, unit, initial, initial, ""
        self.stream = stream or sys.stderr
        self.started = self.shown = time.monotonic()
        self.shows = _PRINTER.get().bars
        self.bar = (tqdm(total=total, initial=initial, desc=desc, unit=f" {unit}", file=self.stream, leave=False,
                         dynamic_ncols=True, position=position, mininterval=0.5)
                    if self.shows and live(self.stream) else None)

    def update(self, n: int = 1, note: str | None = None) -> None:
        self.count += n
        if note is not None:
            self.note = note
        if self.bar is not None:
            if note is not None:
                self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(n)
        elif self.shows and time.monotonic() - self.shown >= PLAIN_EVERY_S:
            self.shown = time.monotonic()
            print(self.line(), file=self.stream, flush=True)

    def left(self) -> float | None:
        """Seconds left, from the pace so far; None before the first part finished or without a total."""
        done = self.count - self.initial
        if self.total is None or done <= 0:
            return None
        return (time.monotonic() - self.started) / done * max(0, self.total - self.count)

    def line(self) -> str:
        count = f"{self.count}/{self.total}" if self.total is not None else str(self.count)
        left = self.left()
        return " ".join(part for part in (f"{self.desc}: {count} {self.unit}", self.note,
                                          f"(~{duration(left)} left)" if left is not None else "") if part)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
