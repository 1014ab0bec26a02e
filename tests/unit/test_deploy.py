"""docker-compose.yml and the Kubernetes manifests cannot run here: check their structure.
And the test broker's start (tests/conftest.py), which moves to another port on a clash."""

import re
from collections.abc import Callable
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


def _fake_kafka_sh(tmp_path: Path, taken: tuple[int, ...], broken: tuple[int, ...] = ()) -> Path:
    """A stand-in for deploy/kafka.sh: ``start`` fails as the real one does on a taken port."""
    script = tmp_path / "kafka.sh"
    script.write_text(
        "#!/usr/bin/env bash\n"
        'case "$1" in\n'
        "  start)\n"
        f'    case " {" ".join(map(str, taken))} " in *" $2 "*)'
        ' echo "kafka.sh: port $2 is already in use" >&2; exit 1;; esac\n'
        f'    case " {" ".join(map(str, broken))} " in *" $2 "*)'
        ' echo "kafka.sh: formatting $3 failed" >&2; exit 1;; esac\n'
        '    echo 1 > "$3/broker.pid";;\n'
        '  stop) echo "$2" >> "$(dirname "$0")/stopped";;\n'
        "esac\n"
    )
    return script


def _dirs(tmp_path: Path) -> Callable[[], Path]:
    """Fresh numbered directories, as tmp_path_factory.mktemp gives the fixture."""
    count = iter(range(100))

    def new_dir() -> Path:
        d = tmp_path / f"kafka{next(count)}"
        d.mkdir(parents=True)
        return d

    return new_dir


def test_broker_start_moves_to_another_port_when_one_is_taken(tmp_path):
    from local_kafka import start_broker

    script = _fake_kafka_sh(tmp_path, taken=(7001, 7002))
    ports = iter([7001, 7002, 7003])
    port, data = start_broker(script, _dirs(tmp_path), pick_port=lambda: next(ports))
    assert (port, data.name) == (7003, "kafka2")
    assert (data / "broker.pid").is_file()
    # each failed attempt is stopped, in case its broker started without opening the port
    stopped = (tmp_path / "stopped").read_text().split()
    assert [Path(p).name for p in stopped] == ["kafka0", "kafka1"]


def test_broker_start_gives_up_on_other_failures_and_after_its_attempts(tmp_path):
    from local_kafka import start_broker

    script = _fake_kafka_sh(tmp_path, taken=(7001, 7002), broken=(7005,))
    with pytest.raises(RuntimeError, match=r"start 7005 failed:\nkafka.sh: formatting .* failed"):
        start_broker(script, _dirs(tmp_path / "a"), pick_port=lambda: 7005)
    ports = iter([7001, 7002, 7001])
    with pytest.raises(RuntimeError, match=r"ports \[7001, 7002, 7001\] were all taken"):
        start_broker(script, _dirs(tmp_path / "b"), attempts=3, pick_port=lambda: next(ports))
