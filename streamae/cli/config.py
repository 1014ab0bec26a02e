"""``streamae config``: the effective settings, secrets masked."""

from __future__ import annotations

import argparse
import json
import sys

from streamae.cli.common import Subparsers, settings
from streamae.core.config import KafkaSettings, load_train_settings

#: why one would pick each client library, printed with the settings
WHY_BACKEND = {
    "confluent-kafka": "librdkafka, in C; several times kafka-python's throughput (docs/benchmarks.md)",
    "kafka-python": "pure Python; no native library to vet, every frame debuggable in Python, "
    "at a fraction of librdkafka's throughput",
}


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
    s = settings(args)
    doc = json.loads(s.model_dump_json())  # SecretStr prints masked
    doc["train"] = load_train_settings().model_dump(mode="json")
    print(json.dumps(doc, indent=2))
    print(backend_line(s.kafka), file=sys.stderr)  # stdout stays JSON
    return 0


def backend_line(k: KafkaSettings) -> str:
    """Which client library serves, why, and what the other one offers."""
    other = next(b for b in WHY_BACKEND if b != k.backend)
    return (
        f"# Kafka client: {k.backend}: {WHY_BACKEND[k.backend]}.\n"
        f"# STREAMAE_KAFKA__BACKEND={other} instead: {WHY_BACKEND[other]}."
    )
