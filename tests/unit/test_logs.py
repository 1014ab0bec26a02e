"""Logs: JSON lines with extras, text with suppression counts, rate limits per message
template and reason, secrets masked, and the CLI wiring of STREAMAE_LOG_*."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from streamae.core import logs


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def capture() -> Iterator[io.StringIO]:
    """The root logger with nothing but a fresh handler of ``logs.configure`` on a buffer."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []
    out = io.StringIO()
    yield out
    root.handlers, root.level = saved
    logs._handler = None


def lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_json_lines_carry_the_fields_that_matter(capture):
    logs.configure(fmt="json", stream=capture)
    log = logging.getLogger("streamae.serving.publisher")
    log.warning(
        "dead letter %s@%d: %s",
        "in[0]",
        7,
        "invalid JSON",
        extra={"partition": "in[0]", "offset": 7, "reason_code": "invalid_json", "model_version": "v1"},
    )
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    first, second = map(json.loads, lines(capture))
    assert first["level"] == "WARNING" and first["logger"] == "streamae.serving.publisher"
    assert first["message"] == "dead letter in[0]@7: invalid JSON"
    assert (first["partition"], first["offset"], first["reason_code"], first["model_version"]) == (
        "in[0]",
        7,
        "invalid_json",
        "v1",
    )
    assert first["ts"].endswith("+00:00") and "T" in first["ts"]
    assert second["message"] == "failed" and "ValueError: boom" in second["exc"]


def test_level_and_text_format(capture):
    logs.configure(level="WARNING", fmt="text", stream=capture)
    logging.getLogger("streamae.x").info("hidden")
    logging.getLogger("streamae.x").warning("shown %d", 1)
    assert len(lines(capture)) == 1 and lines(capture)[0].endswith("WARNING streamae.x: shown 1")


def test_rate_limit_per_template_and_reason_with_a_summary():
    clock = Clock()
    limit = logs.RateLimitFilter(per_period=3, period_s=60, clock=clock)
    logger = logging.getLogger("streamae.rl")

    def record(msg: str, *args: object, level: int = logging.WARNING, **extra: object) -> logging.LogRecord:
        r = logger.makeRecord(logger.name, level, __file__, 1, msg, args, None, extra=extra or None)
        return r

    # arguments differ, template is the same: one key
    passed = [limit.filter(record("dead letter %d", i, reason_code="invalid_json")) for i in range(10)]
    assert passed == [True] * 3 + [False] * 7
    # another reason code is another key; INFO is never limited
    assert limit.filter(record("dead letter %d", 1, reason_code="key_too_long"))
    assert all(limit.filter(record("progress %d", i, level=logging.INFO)) for i in range(10))
    clock.now += 61
    r = record("dead letter %d", 11, reason_code="invalid_json")
    assert limit.filter(r) and r.suppressed == 7  # the next one let through says how many
    for _ in range(5):
        limit.filter(record("dead letter %d", 12, reason_code="invalid_json"))
    assert limit.take_pending() == [("streamae.rl", logging.WARNING, "dead letter %d", 3)]
    assert limit.take_pending() == []  # reported once


def test_rate_limited_handler_reports_suppressed_lines(capture):
    logs.configure(fmt="text", rate_limit=2, stream=capture)
    log = logging.getLogger("streamae.flood")
    for i in range(50):
        log.warning("dead letter %d", i, extra={"reason_code": "invalid_json"})
    logs.report_suppressed()
    out = lines(capture)
    assert len(out) == 3
    assert out[-1].endswith("rate limit: repeats of 'dead letter %d' [+48 similar suppressed]")


def test_rate_limit_zero_is_off(capture):
    logs.configure(rate_limit=0, stream=capture)
    for i in range(30):
        logging.getLogger("streamae.flood").warning("w %d", i)
    assert len(lines(capture)) == 30


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_are_masked_in_messages_extras_and_tracebacks(capture, fmt):
    logs.configure(fmt=fmt, secrets=["hunter2-pw", "ab"], stream=capture)
    log = logging.getLogger("streamae.secret")
    log.warning("connecting with %s to a table", "hunter2-pw", extra={"detail": "sasl hunter2-pw"})
    try:
        raise RuntimeError("auth failed for password hunter2-pw")
    except RuntimeError:
        log.exception("no luck")
    text = capture.getvalue()
    assert "hunter2-pw" not in text and text.count(logs.MASK) >= 3
    assert "a table" in text  # secrets shorter than 4 characters are not searched for
    assert logs.redact("error: hunter2-pw") == f"error: {logs.MASK}"


def test_secrets_of_settings(monkeypatch):
    from streamae.core.config import Settings

    s = Settings(kafka={"sasl_password": "s3cret-sasl", "ssl_password": None})
    assert logs.secrets_of(s) == ["s3cret-sasl"]
    assert logs.secrets_of(None) == []


def test_cli_reads_log_level_and_format(monkeypatch, capsys, tmp_path):
    """STREAMAE_LOG_LEVEL and STREAMAE_LOG_FORMAT are read by `streamae` (main)."""
    from streamae.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STREAMAE_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("STREAMAE_LOG_FORMAT", "json")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        assert main(["config"]) == 0
        assert root.level == logging.WARNING
        assert isinstance(logs._handler.formatter, logs.JsonFormatter)
        logging.getLogger("streamae.cli.test").warning("hello", extra={"partition": "in[1]"})
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert json.loads(err)["partition"] == "in[1]"
        assert main(["-v", "config"]) == 0
        assert root.level == logging.DEBUG  # -v wins
    finally:
        root.removeHandler(logs._handler)
        root.handlers, root.level = saved
        logs._handler = None
