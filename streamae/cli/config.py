"""``streamae config``: the effective settings, secrets masked."""

from __future__ import annotations

import argparse
import json

from streamae.cli.common import Subparsers, settings
from streamae.core.config import load_train_settings


def register(sub: Subparsers) -> None:
    g = sub.add_parser(
        "config",
        help="print the effective settings (secrets masked)",
        description="Print the settings resolved from STREAMAE_* environment variables "
        "(nested with __, e.g. STREAMAE_KAFKA__BOOTSTRAP_SERVERS) and .env, as JSON. Secrets are "
        'masked; streamae train\'s own section (STREAMAE_TRAIN__*) under "train". An invalid or '
        "unknown variable fails with its name.",
    )
    g.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    doc = json.loads(settings(args).model_dump_json())  # SecretStr prints masked
    doc["train"] = load_train_settings().model_dump(mode="json")
    print(json.dumps(doc, indent=2))
    return 0
