#!/usr/bin/env bash
# Validate the deploy assets with the tools of deploy/lint-requirements.txt (deploy/env.sh
# installs them into .venv): the Dockerfile (hadolint), every YAML file (yamllint), the
# Kubernetes manifests against the Kubernetes schemas (kubernetes-validate; the KEDA
# ScaledObject has no schema there: tests/unit/test_deploy.py checks it), docker-compose.yml
# against the compose-spec schema. Structure and cross-references: tests/unit/test_deploy.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
hadolint --config deploy/hadolint.yaml deploy/Dockerfile
yamllint --strict -c deploy/yamllint.yaml docker-compose.yml deploy/k8s deploy/prometheus deploy/grafana
kubernetes-validate --strict --quiet deploy/k8s/*.yaml
check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
python -m json.tool deploy/grafana/dashboards/streamae.json > /dev/null
echo "deploy assets: ok"
