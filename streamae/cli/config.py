"""``streamae config``: the effective settings, secrets masked."""

from __future__ import annotations

import argparse

from streamae.cli.common import Subparsers, settings


def register(sub: Subparsers) -> None:
    g = sub.add_parser(
        "config",
        help="print the effective settings (secrets masked)",
        description="Print the settings resolved from STREAMAE_* environment variables "
        "(nested with __, e.g. STREAMAE_KAFKA__BOOTSTRAP_SERVERS) and .env, as JSON. Secrets are "
        "masked. An invalid or unknown variable fails with its name.",
    )
    g.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(settings(args).model_dump_json(indent=2))  # SecretStr prints masked
    return 0
