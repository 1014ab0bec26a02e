"""``streamae models``: the registry's versions, and which one is current."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from streamae.cli.common import Subparsers


def register(sub: Subparsers) -> None:
    m = sub.add_parser(
        "models",
        help="list, show, promote and roll back the versions of a model registry",
        description="A registry is a directory of versioned bundles (versions/v0001, ...) with a "
        "'current' link the daemon serves (STREAMAE_MODEL__BUNDLE=REGISTRY/current; its hot reload "
        "follows the link). Promotion switches the link atomically and is recorded with who, when "
        "and why in REGISTRY/promotions.jsonl.",
    )
    m.add_argument(
        "--registry", type=Path, help="registry directory (default: STREAMAE_REGISTRY, or ./registry)"
    )
    actions = m.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="every version, the current one starred")
    show = actions.add_parser("show", help="one version's record and its promotions")
    show.add_argument("version", help="e.g. v0003")
    add = actions.add_parser("add", help="register a bundle as the next version (not promoted)")
    add.add_argument("bundle", type=Path, help="model bundle directory")
    add.add_argument("--source", default="", help="where its training history came from")
    promote = actions.add_parser("promote", help="make a version current")
    promote.add_argument("version", help="e.g. v0003")
    promote.add_argument("--reason", default="promoted by hand", help="recorded with the promotion")
    promote.add_argument(
        "--force",
        action="store_true",
        help="promote even when its features, window or stride differ from the current version's "
        "(running daemons then keep the old model until restarted)",
    )
    back = actions.add_parser(
        "rollback", help="make current the version that was current before the last promotion"
    )
    back.add_argument("--reason", default="", help="recorded with the promotion")
    m.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamae.core.config import load_trainer_settings
    from streamae.core.registry import Registry

    reg = Registry(args.registry or load_trainer_settings().registry)
    if args.action == "list":
        current = reg.current()
        records = reg.versions()
        for r in records:
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.registered))
            model = r.selection or f"{r.variant} w{r.window}"
            print(f"{'*' if r.version == current else ' '} {r.version}  {when}  {model}  {r.source}")
        if not records:
            print(f"registry {reg.root}: no versions yet")
    elif args.action == "show":
        print(reg.record(args.version).model_dump_json(indent=2))
        for p in reg.promotions():
            if args.version in (p.to, p.previous):
                print(p.model_dump_json())
    elif args.action == "add":
        r = reg.add(args.bundle, source=args.source or str(args.bundle))
        print(f"registered {args.bundle} as {r.version} (not current; `streamae models promote {r.version}`)")
    elif args.action == "promote":
        p = reg.promote(args.version, why=args.reason, force=args.force)
        print(f"current: {p.to} (was {p.previous or 'none'})")
    else:
        p = reg.rollback(why=args.reason)
        print(f"current: {p.to} (rolled back from {p.previous})")
    return 0
