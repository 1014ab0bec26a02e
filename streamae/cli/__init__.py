"""``streamae`` command line: one module per command, each with ``register`` and ``run``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from streamae import __version__
from streamae.cli import (
    calibrate,
    config,
    demo,
    evaluate,
    inspect,
    models,
    retrain,
    sample,
    schema,
    score,
    serve,
    simulate,
    train,
)
from streamae.core import logs
from streamae.core.bundle import BundleError
from streamae.core.config import ConfigError, Settings, load_settings
from streamae.core.readings import DataError
from streamae.core.registry import RegistryError
from streamae.serving.errors import BrokerUnavailable, DeliveryError, DeliveryFatal, TransportError

log = logging.getLogger("streamae")

COMMANDS = (
    train,
    calibrate,
    score,
    evaluate,
    inspect,
    models,
    retrain,
    sample,
    serve,
    simulate,
    demo,
    schema,
    config,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamae",
        description="Streaming anomaly detection with ONNX autoencoders on Kafka. Settings come "
        "from STREAMAE_* environment variables (nested with __) and .env; see `streamae config`.",
    )
    p.add_argument("--version", action="version", version=f"streamae {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(verbose=args.verbose)
    try:
        return int(args.func(args))
    except (ConfigError, BundleError, DataError, RegistryError) as exc:
        return _fail(exc, 2)
    except DeliveryFatal as exc:  # authorisation, a fenced producer: configuration to fix
        return _fail(exc, 2, "refused by the broker: check the credentials, ACLs and transactional id")
    except (BrokerUnavailable, DeliveryError, TransportError) as exc:
        # outputs not acknowledged are not committed: a restart resumes from the last commit
        log.debug("stopped by", exc_info=exc)
        return _fail(exc, 1)


def _fail(exc: BaseException, code: int, hint: str = "") -> int:
    """One line on stderr, secrets masked; no traceback (``-v`` logs it)."""
    cause = f" ({exc.__cause__!r})" if exc.__cause__ is not None else ""
    tail = f"; {hint}" if hint else ""
    print(f"streamae: error: {logs.redact(str(exc) + cause)}{tail}", file=sys.stderr)
    return code


def _configure_logging(verbose: bool) -> None:
    """STREAMAE_LOG_LEVEL, _FORMAT and _RATE_LIMIT (``-v``: DEBUG), secrets masked in every line.

    Invalid settings fall back to the defaults here; the command itself then reports them.
    """
    try:
        s: Settings | None = load_settings()
    except ConfigError:
        s = None
    logs.configure(
        level="DEBUG" if verbose else (s.log_level if s else "INFO"),
        fmt=s.log_format if s else "text",
        rate_limit=s.log_rate_limit if s else 10,
        secrets=logs.secrets_of(s),
    )


if __name__ == "__main__":
    sys.exit(main())
