"""Logging for every command: text or JSON lines, secrets redacted, repeated warnings limited.

:func:`configure` installs one handler on the root logger (``streamae.cli.main`` calls it
with ``STREAMAE_LOG_LEVEL``, ``STREAMAE_LOG_FORMAT`` and ``STREAMAE_LOG_RATE_LIMIT``):

- ``text``: ``2026-01-04 01:16:00,123 WARNING streamae.serving.publisher: dead letter ...``
- ``json``: one object per line with ``ts`` (ISO 8601, UTC), ``level``, ``logger``,
  ``message``, and every field passed with ``extra=`` (``partition``, ``offset``,
  ``reason_code``, ``model_version``, ...), ``exc`` for a traceback.

Whatever the format, the value of every configured secret (``SecretStr`` settings) is
replaced by ``**********`` in messages, extra fields and tracebacks, and a WARNING or worse
that repeats (same logger, level, message template and ``reason_code``) is logged at most
``rate_limit`` times a minute; the next one let through after that carries
``suppressed``, the count of those dropped (text: ``[+K similar suppressed]``).

Example::

    log.warning("dead letter %s@%d: %s", partition, offset, reason,
                extra={"partition": str(partition), "offset": offset, "reason_code": code})
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, TextIO

from pydantic import BaseModel, SecretStr

MASK = "**********"
#: shorter secrets are not searched for in text: masking every "ab" would garble the logs
MIN_SECRET_CHARS = 4
#: attributes every LogRecord has; anything else on a record came with ``extra=``
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "suppressed"}

LogFormat = Literal["text", "json"]


def secrets_of(model: BaseModel | None) -> list[str]:
    """The values of every ``SecretStr`` field in ``model``, nested sections included."""
    found: list[str] = []
    if model is None:
        return found
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            found.extend(secrets_of(value))
    return found


class Redactor:
    """Replaces known secret values in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # longest first, so a secret containing another is masked whole
        self.secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, MASK)
        return text


_redactor = Redactor()


def redact(text: str) -> str:
    """``text`` with every configured secret masked (for error messages printed outside logging)."""
    return _redactor(text)


class RedactFilter(logging.Filter):
    """A handler filter that masks secrets in the message, string extras and the traceback."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.redactor.secrets:
            return True
        message = record.getMessage()
        clean = self.redactor(message)
        if clean != message:
            record.msg, record.args = clean, None
        for key, value in vars(record).items():
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, self.redactor(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        return True


@dataclass
class _Window:
    start: float
    passed: int = 0
    dropped: int = 0


class RateLimitFilter(logging.Filter):
    """At most ``per_period`` records per key every ``period_s``; records below ``min_level``
    always pass. Key: logger, level, message template (not its arguments) and the
    ``reason_code`` extra, so "dead letter ... invalid JSON" and "... key too long" are
    limited separately while one flood of either is cut to a few lines a minute.

    The first record of a key let through after some were dropped carries ``suppressed``
    (how many). :meth:`take_pending` lists drops not yet reported (for a summary at exit).
    """

    def __init__(
        self,
        per_period: int = 10,
        period_s: float = 60.0,
        min_level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.per_period, self.period_s, self.min_level, self.clock = per_period, period_s, min_level, clock
        self._windows: dict[tuple[str, int, str, object], _Window] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.min_level or self.per_period <= 0:
            return True
        key = (record.name, record.levelno, str(record.msg), getattr(record, "reason_code", None))
        now = self.clock()
        with self._lock:
            w = self._windows.get(key)
            if w is None or now - w.start >= self.period_s:
                dropped = w.dropped if w is not None else 0
                w = self._windows[key] = _Window(now)
                if len(self._windows) > 10_000:  # bounded: forget finished windows
                    self._forget_old(now)
            else:
                dropped = 0
            if w.passed >= self.per_period:
                w.dropped += 1
                return False
            w.passed += 1
        if dropped:
            record.suppressed = dropped
        return True

    def _forget_old(self, now: float) -> None:
        for k in [k for k, w in self._windows.items() if now - w.start >= self.period_s and not w.dropped]:
            del self._windows[k]

    def take_pending(self) -> list[tuple[str, int, str, int]]:
        """(logger, level, template, dropped) of every key with unreported drops; reported now."""
        with self._lock:
            pending = [(k[0], k[1], k[2], w.dropped) for k, w in self._windows.items() if w.dropped]
            for w in self._windows.values():
                w.dropped = 0
        return pending


class TextFormatter(logging.Formatter):
    """The classic one-line format, with ``[+K similar suppressed]`` where K were dropped."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        dropped = getattr(record, "suppressed", 0)
        return f"{line} [+{dropped} similar suppressed]" if dropped else line


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if dropped := getattr(record, "suppressed", 0):
            doc["suppressed"] = dropped
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (as logging's last-resort handler):
    a replaced stderr (tests, a redirected CLI) gets the lines."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


_handler: logging.Handler | None = None
_limiter: RateLimitFilter | None = None


def configure(
    level: str | int = "INFO",
    fmt: LogFormat = "text",
    rate_limit: int = 10,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Route every log record to one handler on ``stream`` (stderr): ``fmt`` lines, secrets
    masked, repeated warnings limited to ``rate_limit`` a minute (0: no limit).
    Replaces the handler of an earlier call."""
    global _handler, _limiter, _redactor
    root = logging.getLogger()
    if _handler is not None:
        report_suppressed()
        root.removeHandler(_handler)
    _redactor = Redactor(secrets)
    handler = _Stderr() if stream is None else logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    # limit first: a dropped record costs no redaction
    _limiter = RateLimitFilter(rate_limit)
    handler.addFilter(_limiter)
    handler.addFilter(RedactFilter(_redactor))
    root.addHandler(handler)
    root.setLevel(level)
    # kafka-python logs transient reconnects as warnings; its errors still show.
    logging.getLogger("kafka").setLevel(logging.ERROR)
    _handler = handler
    return handler


def report_suppressed() -> None:
    """Log one summary line per message whose repeats were dropped and not yet reported (at exit)."""
    if _limiter is None:
        return
    for name, level, template, dropped in _limiter.take_pending():
        logging.getLogger(name).log(
            level, "rate limit: repeats of %r", template, extra={"suppressed": dropped}
        )
