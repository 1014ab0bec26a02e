"""Progress of long work (training epochs, selection's candidates): a tqdm bar on a terminal;
anywhere else (a file, a CI log, a pod's log) one line when a stage starts and one when it
ends, where a bar would write a carriage-return frame per step onto one endless line."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Generic, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


class Progress(Generic[T]):
    """Iterate ``items`` showing progress on ``stream`` (standard error); ``enabled=False``
    shows nothing, lines written included. The subset of tqdm the stages use:
    ``set_postfix_str``, ``write``, ``close``."""

    def __init__(
        self, items: Iterable[T], desc: str, unit: str, enabled: bool = True, stream: IO[str] | None = None
    ) -> None:
        self._stream = stream or sys.stderr
        self._tty = enabled and self._stream.isatty()
        self._lines = enabled and not self._tty
        self._bar = tqdm(items, desc=desc, unit=unit, disable=not self._tty, file=self._stream)
        self.desc, self.unit, self.n, self.postfix = desc, unit, 0, ""
        self._started = time.monotonic()
        self._closed = False

    def __iter__(self) -> Iterator[T]:
        if self._lines:
            total = "" if self._bar.total is None else f" ({self._bar.total} {self.unit}s at most)"
            self._line(f"{self.desc}: started{total}")
        for item in self._bar:
            self.n += 1  # a step that ends the loop early (a break) has been done too
            yield item

    def set_postfix_str(self, text: str) -> None:
        """What the current step is doing (shown on the bar, and on the closing line)."""
        self.postfix = text
        self._bar.set_postfix_str(text)

    def write(self, message: str) -> None:
        """A line of its own, above the bar when there is one."""
        if self._tty:
            tqdm.write(message, file=self._stream)
        elif self._lines:
            self._line(message)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._bar.close()
        if self._lines:
            after = f", last: {self.postfix}" if self.postfix else ""
            took = time.monotonic() - self._started
            self._line(f"{self.desc}: {self.n} {self.unit}s in {took:.1f} s{after}")

    def _line(self, text: str) -> None:
        print(text, file=self._stream, flush=True)
