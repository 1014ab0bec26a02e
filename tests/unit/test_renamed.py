"""Post-processing's renamed settings (``sparse`` -> ``record_high``, ``quiet_windows`` ->
``suppress_windows``): a bundle, a variable or a flag under the old name still works for a
release, with a warning that names the new one."""

import argparse

import pytest

from streamae.cli.train import add_train_flags, train_settings
from streamae.core.config import load_train_settings
from streamae.core.manifest import PostSpec

pytestmark = pytest.mark.usefixtures("clean_env")  # settings from what each test sets alone


def test_a_bundle_written_with_the_old_names_loads_with_a_warning():
    with pytest.warns(FutureWarning, match="'sparse' is now 'record_high'"):
        post = PostSpec.model_validate({"sparse": True, "quiet_windows": 2, "record_half_life": 50})
    assert post.record_high and post.suppress_windows == 2 and post.record_half_life == 50
    assert "sparse" not in post.model_dump() and "quiet_windows" not in post.model_dump()


def test_a_bundle_with_the_stages_off_writes_neither_new_name():
    # a daemon of the previous release refuses unknown manifest fields: leave them out when off
    assert not {"record_high", "suppress_windows"} & PostSpec(record_half_life=5).model_dump().keys()
    on = PostSpec(record_high=True, suppress_windows=2).model_dump()
    assert on["record_high"] is True and on["suppress_windows"] == 2
    assert PostSpec.model_validate(PostSpec().model_dump()) == PostSpec()


def test_given_both_names_the_new_one_wins_with_a_warning(monkeypatch):
    with pytest.warns(FutureWarning, match="'quiet_windows' is the old name of 'suppress_windows'"):
        assert PostSpec.model_validate({"quiet_windows": 2, "suppress_windows": 3}).suppress_windows == 3
    # an old variable under a new flag: the flag decides, as flags do over variables
    monkeypatch.setenv("STREAMAE_TRAIN__SPARSE", "true")
    parser = argparse.ArgumentParser()
    add_train_flags(parser)
    with pytest.warns(FutureWarning, match="'sparse' ignored"):
        assert not train_settings(parser.parse_args(["--record-high", "false"])).record_high


def test_an_old_variable_is_neither_a_typo_nor_ignored(monkeypatch):
    monkeypatch.setenv("STREAMAE_TRAIN__SPARSE", "true")
    monkeypatch.setenv("STREAMAE_TRAIN__QUIET_WINDOWS", "4")
    with pytest.warns(FutureWarning, match="'quiet_windows' is now 'suppress_windows'"):
        train = load_train_settings()
    assert train.record_high and train.suppress_windows == 4


def test_an_old_flag_sets_the_new_field_and_stays_out_of_the_help(capsys):
    parser = argparse.ArgumentParser()
    add_train_flags(parser)
    with pytest.warns(FutureWarning, match="'sparse' is now 'record_high'"):
        cfg = train_settings(parser.parse_args(["--quiet-windows", "3", "--sparse", "true"]))
    assert cfg.suppress_windows == 3 and cfg.record_high
    parser.print_help()
    help_text = capsys.readouterr().out
    assert "--suppress-windows" in help_text and "--quiet-windows" not in help_text
