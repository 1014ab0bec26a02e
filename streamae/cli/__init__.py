"""``streamae`` command line: one module per command, each with ``register`` and ``run``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from streamae import __version__
from streamae.cli import (
    calibrate,
    config,
    demo,
    evaluate,
    inspect,
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
from streamae.serving.errors import BrokerUnavailable, DeliveryError

COMMANDS = (train, calibrate, score, evaluate, inspect, sample, serve, simulate, demo, schema, config)


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
    except (ConfigError, BundleError, DataError) as exc:
        print(f"streamae: error: {logs.redact(str(exc))}", file=sys.stderr)
        return 2
    except (BrokerUnavailable, DeliveryError) as exc:
        # DeliveryError: outputs were not acknowledged, so their offsets were not committed;
        # a restart resumes from the last commit.
        print(f"streamae: error: {logs.redact(str(exc))}", file=sys.stderr)
        return 1


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
