import pytest

from streamae.core.config import ConfigError, load_settings, load_train_settings

pytestmark = pytest.mark.usefixtures("clean_env")  # settings from what each test sets alone


def test_defaults_and_nested_env(monkeypatch):
    monkeypatch.setenv("STREAMAE_KAFKA__BOOTSTRAP_SERVERS", "b1:9092,b2:9092")
    monkeypatch.setenv("STREAMAE_ALERTS__K", "2")
    monkeypatch.setenv("STREAMAE_MODEL__PROVIDERS", '["CPUExecutionProvider"]')
    s = load_settings()
    assert s.kafka.bootstrap_servers == "b1:9092,b2:9092"
    assert s.alerts.k == 2 and s.alerts.n == 5
    assert s.model.providers == ["CPUExecutionProvider"]
    assert s.batch.max_windows == 4096


def test_dotenv_file(tmp_path):
    (tmp_path / ".env").write_text("STREAMAE_KAFKA__GROUP_ID=from-dotenv\n")
    assert load_settings().kafka.group_id == "from-dotenv"


@pytest.mark.parametrize(
    "var,value,named,why",
    [
        ("STREAMAE_BATCH__MAX_WINDOWS", "0", "STREAMAE_BATCH__MAX_WINDOWS", None),
        ("STREAMAE_KAFKA__AUTO_OFFSET_RESET", "sometimes", "STREAMAE_KAFKA__AUTO_OFFSET_RESET", None),
        ("STREAMAE_METRICS_PORT", "http", "STREAMAE_METRICS_PORT", None),
        ("STREAMAE_ALERTS__K", "9", "STREAMAE_ALERTS__N", "must be at least k (9)"),
        (
            "STREAMAE_ALERTS__SEVERITY_RATIOS",
            '{"warning": -1}',
            "STREAMAE_ALERTS__SEVERITY_RATIOS",
            "every ratio must be a finite number >= 0",
        ),
    ],
)
def test_invalid_values_name_the_variable(monkeypatch, var, value, named, why):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as exc:
        load_settings()
    # one line per bad field, "  NAME: message"; the message is pydantic's, apart from our own
    # validators' reasons, so only those are checked word for word
    lines = str(exc.value).splitlines()
    assert lines[0] == "invalid configuration:"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [named]
    if why is not None:
        assert lines[1].endswith(why)


def test_misspelled_variable_is_an_error_not_ignored(monkeypatch):
    monkeypatch.setenv("STREAMAE_KAFKA__BOOTSTRAP_SERVER", "x:1")
    with pytest.raises(ConfigError, match="STREAMAE_KAFKA__BOOTSTRAP_SERVER"):
        load_settings()


def test_secret_is_masked(monkeypatch):
    monkeypatch.setenv("STREAMAE_KAFKA__SASL_PASSWORD", "hunter2")
    s = load_settings()
    assert "hunter2" not in s.model_dump_json()
    assert s.kafka.sasl_password.get_secret_value() == "hunter2"


def test_dotenv_may_hold_other_tools_variables_but_not_our_typos(tmp_path):
    (tmp_path / ".env").write_text("OTHER_TOOL_VAR=1\nSTREAMAE_KAFKA__GROUP_ID=g\n")
    assert load_settings().kafka.group_id == "g"
    (tmp_path / ".env").write_text("STREAMAE_KAFKA__GROUPID=g\n")
    with pytest.raises(ConfigError, match="STREAMAE_KAFKA__GROUPID"):
        load_settings()


def test_mapping_fields_take_nested_keys(monkeypatch):
    monkeypatch.setenv("STREAMAE_ALERTS__SEVERITY_RATIOS__PAGE", "8")
    assert load_settings().alerts.severity_ratios["page"] == 8


def test_threshold_methods_and_variants_agree_with_their_implementations():
    from typing import get_args

    from streamae.core.config import ThresholdMethod, TrainSettings
    from streamae.training.calibration import METHODS

    assert tuple(get_args(ThresholdMethod)) == METHODS
    with pytest.raises(ValueError, match="variant"):
        TrainSettings(variant="quantum")


# -- security settings (TLS, SASL) and their masking ----------------------------------------


def _pem_files(tmp_path):
    paths = {}
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("-----BEGIN PLACEHOLDER-----\n")
        paths[name] = str(tmp_path / name)
    return paths


def test_tls_and_sasl_settings(monkeypatch, tmp_path):
    pem = _pem_files(tmp_path)
    monkeypatch.setenv("STREAMAE_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("STREAMAE_KAFKA__SSL_CAFILE", pem["ca.pem"])
    monkeypatch.setenv("STREAMAE_KAFKA__SSL_CERTFILE", pem["client.pem"])
    monkeypatch.setenv("STREAMAE_KAFKA__SSL_KEYFILE", pem["client.key"])
    monkeypatch.setenv("STREAMAE_KAFKA__SSL_PASSWORD", "key-pass-123")
    monkeypatch.setenv("STREAMAE_KAFKA__SSL_CHECK_HOSTNAME", "false")
    monkeypatch.setenv("STREAMAE_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("STREAMAE_KAFKA__SASL_USERNAME", "streamae")
    monkeypatch.setenv("STREAMAE_KAFKA__SASL_PASSWORD", "sasl-pass-456")
    k = load_settings().kafka
    assert str(k.ssl_cafile) == pem["ca.pem"] and k.ssl_check_hostname is False
    assert k.sasl_mechanism == "SCRAM-SHA-512"
    assert k.ssl_password.get_secret_value() == "key-pass-123"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"STREAMAE_KAFKA__SASL_MECHANISM": "GSSAPI"}, "STREAMAE_KAFKA__SASL_MECHANISM"),
        ({"STREAMAE_KAFKA__SSL_CAFILE": "/no/such/ca.pem"}, "STREAMAE_KAFKA__SSL_CAFILE"),
        ({"STREAMAE_KAFKA__SSL_CHECK_HOSTNAME": "maybe"}, "STREAMAE_KAFKA__SSL_CHECK_HOSTNAME"),
        ({"STREAMAE_LOG_FORMAT": "xml"}, "STREAMAE_LOG_FORMAT"),
    ],
)
def test_invalid_security_values_name_the_variable(monkeypatch, env, named):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert named in str(exc.value)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        # SASL without credentials
        (
            {"STREAMAE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "STREAMAE_KAFKA__SASL_MECHANISM": "PLAIN"},
            "needs STREAMAE_KAFKA__SASL_MECHANISM, STREAMAE_KAFKA__SASL_USERNAME and "
            "STREAMAE_KAFKA__SASL_PASSWORD",
        ),
        # a mechanism without a SASL protocol would be silently ignored by the client
        (
            {
                "STREAMAE_KAFKA__SASL_MECHANISM": "PLAIN",
                "STREAMAE_KAFKA__SASL_USERNAME": "u",
                "STREAMAE_KAFKA__SASL_PASSWORD": "topsecret-1",
            },
            "STREAMAE_KAFKA__SASL_MECHANISM needs STREAMAE_KAFKA__SECURITY_PROTOCOL SASL_PLAINTEXT "
            "or SASL_SSL",
        ),
        # TLS files on a plaintext connection
        (
            {"STREAMAE_KAFKA__SSL_PASSWORD": "topsecret-1"},
            "STREAMAE_KAFKA__SSL_PASSWORD need STREAMAE_KAFKA__SECURITY_PROTOCOL SSL or SASL_SSL",
        ),
    ],
)
def test_inconsistent_security_settings_fail_at_start_without_the_secret(monkeypatch, env, says):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert says in str(exc.value)
    assert "topsecret-1" not in str(exc.value)


def test_key_without_certificate_is_refused(monkeypatch, tmp_path):
    pem = _pem_files(tmp_path)
    monkeypatch.setenv("STREAMAE_KAFKA__SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("STREAMAE_KAFKA__SSL_KEYFILE", pem["client.key"])
    with pytest.raises(ConfigError, match="STREAMAE_KAFKA__SSL_KEYFILE needs STREAMAE_KAFKA__SSL_CERTFILE"):
        load_settings()


def test_passwords_never_printed_by_streamae_config_repr_or_logs(monkeypatch, tmp_path, capsys, caplog):
    """`streamae config`, repr(settings), a logged settings dump and a failing command's
    error line all mask the SASL and TLS key passwords."""
    import logging

    from streamae.cli import main
    from streamae.core import logs

    pem = _pem_files(tmp_path)
    monkeypatch.setenv("STREAMAE_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("STREAMAE_KAFKA__SSL_CERTFILE", pem["client.pem"])
    monkeypatch.setenv("STREAMAE_KAFKA__SSL_KEYFILE", pem["client.key"])
    monkeypatch.setenv("STREAMAE_KAFKA__SSL_PASSWORD", "tls-key-secret")
    monkeypatch.setenv("STREAMAE_KAFKA__SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("STREAMAE_KAFKA__SASL_USERNAME", "streamae")
    monkeypatch.setenv("STREAMAE_KAFKA__SASL_PASSWORD", "sasl-secret")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        assert main(["config"]) == 0
        out = capsys.readouterr().out
        doc = __import__("json").loads(out)
        assert doc["kafka"]["sasl_password"] == "**********" == doc["kafka"]["ssl_password"]
        assert doc["kafka"]["sasl_username"] == "streamae"
        s = load_settings()
        with caplog.at_level(logging.INFO):
            logging.getLogger("streamae.test").info("settings: %s", s.model_dump_json())
            logging.getLogger("streamae.test").info("settings: %r", s)
        dumps = caplog.text
        assert "sasl_password" in dumps
        # a message that carries a secret in clear (a client library's, say) is masked by the
        # handler `streamae` installs (caplog's own handler sees the raw record: not checked)
        logging.getLogger("kafka.conn").error("auth with sasl-secret failed")
        # and so is a command's error line
        assert main(["score", str(tmp_path / "sasl-secret"), str(tmp_path / "in.csv"), "-o", "x.csv"]) == 2
        printed = out + dumps + capsys.readouterr().err
    finally:
        root.removeHandler(logs._handler)
        root.handlers, root.level = saved
        logs._handler = None
    assert "auth with ********** failed" in printed
    assert "streamae: error:" in printed
    for secret in ("sasl-secret", "tls-key-secret"):
        assert secret not in printed


def test_delivery_timeout_is_a_minute_or_what_the_request_timeout_needs_unless_set(monkeypatch):
    monkeypatch.setenv("STREAMAE_KAFKA__REQUEST_TIMEOUT_MS", "10000")
    monkeypatch.setenv("STREAMAE_KAFKA__LINGER_MS", "50")
    assert load_settings().kafka.delivery_timeout == 60_000
    monkeypatch.setenv("STREAMAE_KAFKA__REQUEST_TIMEOUT_MS", "70000")
    assert load_settings().kafka.delivery_timeout == 70050
    monkeypatch.setenv("STREAMAE_KAFKA__REQUEST_TIMEOUT_MS", "10000")
    monkeypatch.setenv("STREAMAE_KAFKA__DELIVERY_TIMEOUT_MS", "40000")
    assert load_settings().kafka.delivery_timeout == 40000
    # below what kafka-python accepts (and what a record needs for one request): refused at start
    monkeypatch.setenv("STREAMAE_KAFKA__DELIVERY_TIMEOUT_MS", "10000")
    refused = r"STREAMAE_KAFKA__DELIVERY_TIMEOUT_MS=10000 must be at least .*10050"
    with pytest.raises(ConfigError, match=refused):
        load_settings()


def test_the_daemon_does_not_carry_the_training_section_a_shared_env_sets_both(tmp_path, capsys):
    from streamae.cli import main

    (tmp_path / ".env").write_text("STREAMAE_KAFKA__GROUP_ID=g\nSTREAMAE_TRAIN__EPOCHS=7\n")
    s = load_settings()
    assert s.kafka.group_id == "g" and "train" not in type(s).model_fields
    assert load_train_settings().epochs == 7
    assert main(["config"]) == 0
    doc = __import__("json").loads(capsys.readouterr().out)
    assert doc["kafka"]["group_id"] == "g" and doc["train"]["epochs"] == 7
    (tmp_path / ".env").write_text("STREAMAE_TRAIN__EPOCH=7\n")  # a typo in either section fails
    with pytest.raises(ConfigError, match="STREAMAE_TRAIN__EPOCH"):
        load_settings()


@pytest.mark.parametrize(
    ("env", "serving", "other"),
    [(None, "confluent-kafka", "kafka-python"), ("kafka-python", "kafka-python", "confluent-kafka")],
)
def test_streamae_config_says_which_client_serves_and_why_one_might_pick_the_other(
    monkeypatch, capsys, env, serving, other
):
    import json

    from streamae.cli import main

    if env:
        monkeypatch.setenv("STREAMAE_KAFKA__BACKEND", env)
    assert main(["config"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["kafka"]["backend"] == serving  # stdout stays JSON
    lines = captured.err.strip().splitlines()[-2:]
    assert lines[0].startswith(f"# Kafka client: {serving}: ")
    assert lines[1].startswith(f"# STREAMAE_KAFKA__BACKEND={other} instead: ")
    assert "librdkafka" in captured.err and "pure Python" in captured.err


def test_the_commit_interval_defaults_to_the_delivery_mode():
    """At-least-once sends outputs at once, so its commit interval only paces commits;
    exactly-once makes them visible at the commit, so its default is short (latency)."""
    assert load_settings().kafka.commit_interval == 1000
    assert load_settings(kafka={"delivery": "exactly_once"}).kafka.commit_interval == 100
    assert (
        load_settings(kafka={"delivery": "exactly_once", "commit_interval_ms": 250}).kafka.commit_interval
        == 250
    )
