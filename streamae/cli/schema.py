"""``streamae schema``: the JSON Schemas of every message."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamae.cli.common import Subparsers


def register(sub: Subparsers) -> None:
    c = sub.add_parser(
        "schema",
        help="write the JSON Schemas of all messages",
        description="Write the JSON Schemas of the reading, score, alert and "
        "dead-letter messages (generated from the pydantic models in streamae.core.messages) as "
        "<name>.schema.json files; docs/messages.md explains them.",
    )
    c.add_argument("-o", "--output", type=Path, default=Path("docs/schemas"), help="folder")
    c.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamae.core.messages import write_schemas

    for path in write_schemas(args.output):
        print(path)
    return 0
