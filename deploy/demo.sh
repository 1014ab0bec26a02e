#!/usr/bin/env bash
# The demo, from a fresh clone: set up, start a local Kafka broker, run `streamae demo`
# (simulate → train → serve → stream anomalies → print alerts → summary), stop the broker.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
port="${STREAMAE_DEMO_PORT:-19092}"
dir=".demo/kafka"
bash deploy/kafka.sh start "$port" "$dir"
trap 'bash deploy/kafka.sh stop "$dir"' EXIT
STREAMAE_KAFKA__BOOTSTRAP_SERVERS="127.0.0.1:$port" streamae demo --workdir .demo/run "$@"
