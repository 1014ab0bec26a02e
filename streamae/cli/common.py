"""Helpers every command shares: settings with flag overrides, argument types."""

from __future__ import annotations

import argparse
from typing import Any

from streamae.core.config import Settings, load_settings

#: ``register(sub)`` of each command module receives this: ``add_parser`` makes its parser.
Subparsers = Any  # argparse._SubParsersAction is private


def settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Configured settings, with ``--bootstrap`` (where the command has it) on top."""
    if getattr(args, "bootstrap", None):
        overrides.setdefault("kafka", {})
        overrides["kafka"]["bootstrap_servers"] = args.bootstrap
    return load_settings(**overrides)


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value
