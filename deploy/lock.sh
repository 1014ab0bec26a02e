#!/usr/bin/env bash
# The lock files every install of this repository comes from (deploy/env.sh, CI, the images):
#   deploy/requirements.lock        streamae[train,dev] + the deploy validators (the dev venv, CI, train image)
#   deploy/requirements-serve.lock  streamae: the serving images (no PyTorch)
# Exact versions with hashes for CPython 3.11 on x86_64 Linux. pyproject.toml keeps open
# ranges for those who install the package into an environment of their own.
#
#   bash deploy/lock.sh          refresh: re-resolve both (versions kept where still allowed;
#                                add --upgrade to take the newest allowed today)
#   bash deploy/lock.sh --check  exit 1 when pyproject.toml or deploy/lint-requirements.txt
#                                and the locks disagree (CI runs this)
# Needs uv (installed into .venv by deploy/env.sh, version pinned there).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root"
uv="${UV:-uv}"
compile() {  # compile OUT ARGS...: resolve into OUT, keeping OUT's pins as preferences
  local out="$1"; shift
  "$uv" pip compile --quiet pyproject.toml "$@" --generate-hashes --python-version 3.11 \
    --python-platform x86_64-manylinux_2_28 --custom-compile-command "bash deploy/lock.sh" -o "$out"
}
both() {  # both DIR [--upgrade]
  compile "$1/requirements.lock" deploy/lint-requirements.txt --extra train --extra dev "${@:2}"
  compile "$1/requirements-serve.lock" "${@:2}"
}
if [ "${1:-}" = "--check" ]; then
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  cp deploy/requirements.lock deploy/requirements-serve.lock "$tmp/"
  both "$tmp"
  for f in requirements.lock requirements-serve.lock; do
    if ! diff -u "deploy/$f" "$tmp/$f" >"$tmp/$f.diff"; then
      cat "$tmp/$f.diff" >&2
      echo "lock.sh: deploy/$f disagrees with pyproject.toml: run 'bash deploy/lock.sh' and commit it" >&2
      exit 1
    fi
  done
  echo "lock.sh: the locks agree with pyproject.toml" >&2
else
  both deploy "$@"
fi
