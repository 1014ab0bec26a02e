#!/usr/bin/env bash
# The test suite, from a fresh clone: set up, lint, then unit and integration tests.
# Integration tests start their own broker through deploy/kafka.sh (tests/conftest.py).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ruff check streamae tests bench
python -m pytest -p no:cacheprovider "$@"
