"""docker-compose.yml and the Kubernetes manifests cannot run here: check their structure."""

import re
from pathlib import Path

import pytest
import yaml

from streamae.core.config import load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_whole_pipeline(compose):
    services = compose["services"]
    assert {"kafka", "kafka-init", "trainer", "daemon", "simulator"} <= set(services)
    daemon = services["daemon"]
    assert daemon["depends_on"]["trainer"]["condition"] == "service_completed_successfully"
    assert daemon["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name in ("trainer", "daemon", "simulator"):
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"


def test_compose_environment_is_valid_streamae_config(compose, monkeypatch):
    env = compose["services"]["daemon"]["environment"]
    for name in ("trainer", "simulator"):
        assert compose["services"][name]["environment"] == env  # one shared block
    for k, v in env.items():
        monkeypatch.setenv(k, str(v))
    s = load_settings()
    assert s.kafka.bootstrap_servers == "kafka:9092"
    topics = compose["services"]["kafka-init"]["command"][0]
    for t in (s.kafka.input_topic, s.kafka.scores_topic, s.kafka.alerts_topic, s.kafka.dlq_topic):
        assert t in topics
    assert f"--topic {s.kafka.state_topic}" in topics and "cleanup.policy=compact" in topics


def test_dockerfile_targets_exist(compose):
    stages = re.findall(r"^FROM \S+ AS (\w+)", (ROOT / "deploy/Dockerfile").read_text(), re.M)
    for svc in compose["services"].values():
        if "build" in svc:
            assert svc["build"]["target"] in stages


def test_k8s_config_map_is_valid_config(monkeypatch):
    docs = list(yaml.safe_load_all((ROOT / "deploy/k8s/daemon.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert {"ConfigMap", "Deployment", "Service"} <= set(kinds)
    for k, v in kinds["ConfigMap"]["data"].items():
        monkeypatch.setenv(k, v)
    assert load_settings().metrics_port == 9108
    spec = kinds["Deployment"]["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] >= 30
