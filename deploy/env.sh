#!/usr/bin/env bash
# Sourced by demo.sh and test.sh: make .venv with streamae, its train and dev extras and the
# deploy validators installed from deploy/requirements.lock, and the Kafka broker cached.
# Idempotent: a second run only checks. Needs python3 (>= 3.11: the lock is made for 3.11), java 17+ and mvn on PATH.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
stamp=".venv/.streamae-installed"
UV_VERSION=0.13.9  # resolves and checks the locks (deploy/lock.sh)
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$py" -m venv .venv
fi
# every version comes from the lock (deploy/lock.sh), with hashes: CI, a developer's venv and
# the images run the same packages; the package itself goes on top without resolving again
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ deploy/requirements.lock -nt "$stamp" ]; then
  echo "setup: installing the locked dependencies (deploy/requirements.lock; first time: several minutes)" >&2
  .venv/bin/python -m pip install -q --upgrade pip >&2
  .venv/bin/python -m pip install -q --no-deps --require-hashes -r deploy/requirements.lock >&2
  .venv/bin/python -m pip install -q --no-deps -e . "uv==$UV_VERSION" >&2
  touch "$stamp"
fi
bash deploy/kafka.sh fetch
export PATH="$root/.venv/bin:$PATH"
