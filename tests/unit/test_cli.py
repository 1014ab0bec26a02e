import subprocess
import sys

import pytest
from pictures import assert_picture

from streamae.cli import build_parser, main
from streamae.cli import serve as serve_cli
from streamae.serving.errors import DeliveryError, DeliveryFatal, TransportError

COMMANDS = [
    "train",
    "calibrate",
    "score",
    "evaluate",
    "inspect",
    "sample",
    "serve",
    "simulate",
    "demo",
    "models",
    "retrain",
    "schema",
    "config",
]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"] if command else ["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: streamae" in out and len(out) > 200


def test_parser_lists_all_commands():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)


@pytest.mark.parametrize("command", ["calibrate", "evaluate", "inspect", "sample"])
def test_report_commands_explain_every_argument(command):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    parser = sub.choices[command]
    assert parser.description and len(parser.description) > 100
    for action in parser._actions:
        assert action.help, f"{command} {action.dest} has no help"


def test_missing_history_is_a_clean_error(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "b")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_serve_without_bundle_names_the_setting(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STREAMAE_MODEL__BUNDLE", raising=False)
    assert main(["serve"]) == 2
    assert "STREAMAE_MODEL__BUNDLE" in capsys.readouterr().err


def test_serve_with_a_broken_bundle_fails_fast(tmp_path, capsys):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text("{}")
    (tmp_path / "b" / "model.onnx").write_bytes(b"x")
    assert main(["serve", "--bundle", str(tmp_path / "b")]) == 2
    assert "invalid manifest" in capsys.readouterr().err


def test_simulate_train_score_round_trip(tmp_path):
    """The three offline commands as a user runs them, in a subprocess."""

    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "streamae", *a],
            capture_output=True,
            text=True,
            timeout=300,
        )

    hist, stream, bundle, scores = (tmp_path / n for n in ("h.csv", "s.csv", "b", "scores.csv"))
    r = run("simulate", "--anomalies", "0", "--hours", "36", "--entities", "2", "-o", str(hist))
    assert r.returncode == 0, r.stderr
    r = run("train", str(hist), "-o", str(bundle), "--window", "10", "--epochs", "3")
    assert r.returncode == 0, r.stderr
    # progress into a pipe: a line per stage, not a bar's carriage-return frames
    assert "\r" not in r.stderr and "selecting (default): started" in r.stderr, r.stderr[-2000:]
    assert "threshold" in r.stdout
    r = run("simulate", "--hours", "12", "--entities", "2", "--seed", "3", "-o", str(stream))
    assert r.returncode == 0, r.stderr
    r = run("score", str(bundle), str(stream), "-o", str(scores), "--plot", str(tmp_path / "p.png"))
    assert r.returncode == 0, r.stderr
    assert_picture(tmp_path / "p.png", (12, 2.2 * 2 + 0.8))  # one panel per machine
    import pandas as pd

    out = pd.read_csv(scores)
    assert len(out) == 2 * (720 - 10 + 1)


@pytest.mark.parametrize(
    "args", [["--epochs", "0"], ["--window", "-3"], ["--quantile", "1.5"], ["--ewma-alpha", "0"]]
)
def test_train_rejects_out_of_range_options_naming_the_flag(args, tmp_path, capsys):
    assert main(["train", "h.csv", "-o", str(tmp_path / "b"), *args]) == 2
    err = capsys.readouterr().err
    # the message names the flag; what follows it is pydantic's wording
    assert "invalid configuration" in err and f"\n  {args[0]}: " in err
    assert not (tmp_path / "b").exists()


def test_train_settings_come_from_the_environment_under_the_flags(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("STREAMAE_TRAIN__EPOCHS", "0")
    assert main(["train", "h.csv", "-o", str(tmp_path / "b")]) == 2
    assert "\n  STREAMAE_TRAIN__EPOCHS: " in capsys.readouterr().err
    # a flag overrides the configured value; the error is then the missing file
    assert main(["train", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "b"), "--epochs", "1"]) == 2
    assert "missing.csv" in capsys.readouterr().err


@pytest.mark.parametrize(
    "error,code,says",
    [
        (DeliveryFatal("'scores' refuses outputs: TopicAuthorizationFailedError()"), 2, "ACLs"),
        (TransportError("committing offsets failed"), 1, "committing offsets failed (ValueError('inner'))"),
        (DeliveryError("output not acknowledged"), 1, "output not acknowledged"),
    ],
)
def test_a_failure_of_the_loop_ends_in_one_line_and_an_exit_code_not_a_traceback(
    error, code, says, monkeypatch, capsys
):
    if isinstance(error, TransportError):
        error.__cause__ = ValueError("inner")

    def fail(_args: object) -> int:
        raise error

    monkeypatch.setattr(serve_cli, "run", fail)
    assert main(["serve"]) == code
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and err.count("\n") == 1


def test_serve_settles_the_garbage_collector_for_the_loop():
    # in a process of its own: freezing is process-wide
    code = (
        "import gc; from streamae.cli.serve import settle_garbage_collector; "
        "before = gc.get_threshold()[0]; settle_garbage_collector(); "
        "print(before, gc.get_threshold()[0], gc.get_freeze_count() > 1000)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["700", "50000", "True"]
