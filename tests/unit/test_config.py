import pytest

from streamae.core.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    for k in list(__import__("os").environ):
        if k.startswith("STREAMAE_"):
            monkeypatch.delenv(k)


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
