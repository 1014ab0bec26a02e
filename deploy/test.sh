#!/usr/bin/env bash
# The test suite, from a fresh clone: set up, lint, type-check, then unit and integration tests.
# Integration tests start their own broker through deploy/kafka.sh (tests/conftest.py).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ruff check streamae tests bench
ruff format --check streamae tests bench
mypy streamae
bash deploy/lock.sh --check  # the locks agree with pyproject.toml
bash deploy/lint.sh  # Dockerfile, compose, Kubernetes, Prometheus and Grafana files
python -m pytest -p no:cacheprovider "$@"
