#!/usr/bin/env bash
# Sourced by demo.sh and test.sh: make .venv with streamae and the deploy validators installed
# (deploy/lint-requirements.txt) and the Kafka broker cached.
# Idempotent: a second run only checks. Needs python3 (>= 3.10), java 17+ and mvn on PATH.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
stamp=".venv/.streamae-installed"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$py" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing streamae with its train and dev extras (first time: several minutes)" >&2
  .venv/bin/python -m pip install -q --upgrade pip >&2
  .venv/bin/python -m pip install -q -e '.[train,dev]' >&2
  touch "$stamp"
fi
lint_stamp=".venv/.streamae-lint-installed"
if [ ! -f "$lint_stamp" ] || [ deploy/lint-requirements.txt -nt "$lint_stamp" ]; then
  echo "setup: installing the deploy validators (deploy/lint-requirements.txt)" >&2
  .venv/bin/python -m pip install -q -r deploy/lint-requirements.txt >&2
  touch "$lint_stamp"
fi
bash deploy/kafka.sh fetch
export PATH="$root/.venv/bin:$PATH"
