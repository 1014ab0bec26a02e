"""Renamed settings (post-processing's ``sparse`` -> ``record_high``, ``quiet_windows`` ->
``suppress_windows``; the train settings' ``adapt_*`` -> the ``adapt`` section): a bundle, a
variable or a flag under the old name still works for a release, with a warning that names
the new one."""

import argparse

import pytest

from streamae.cli.train import add_train_flags, train_settings
from streamae.core.config import ConfigError, TrainSettings, load_train_settings
from streamae.core.manifest import Adaptation, PostSpec

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


# streaming normalisation: the flat train fields adapt_* are now the `adapt` section


def test_the_adapt_section_is_set_by_its_flags_and_nested_variables(monkeypatch):
    monkeypatch.setenv("STREAMAE_TRAIN__ADAPT__BLOCK", "7")
    parser = argparse.ArgumentParser()
    add_train_flags(parser)
    cfg = train_settings(parser.parse_args(["--adapt-half-life", "50", "--adapt-rescale", "false"]))
    assert (cfg.adapt.half_life, cfg.adapt.block, cfg.adapt.rescale) == (50.0, 7, False)
    with pytest.raises(ConfigError, match="--adapt-half-life"):  # an error names the flag
        train_settings(parser.parse_args(["--adapt-half-life", "-1"]))
    monkeypatch.setenv("STREAMAE_TRAIN__ADAPT__BLOK", "7")
    with pytest.raises(ConfigError, match="STREAMAE_TRAIN__ADAPT__BLOK"):  # a typo is not ignored
        load_train_settings()


def test_the_old_flat_adapt_names_still_work_with_a_warning(monkeypatch):
    with pytest.warns(FutureWarning, match="'adapt_half_life' is now 'adapt.half_life'"):
        assert TrainSettings(adapt_half_life=30, adapt_block=5).adapt == Adaptation(half_life=30, block=5)
    monkeypatch.setenv("STREAMAE_TRAIN__ADAPT_HALF_LIFE", "20")
    monkeypatch.setenv("STREAMAE_TRAIN__ADAPT__BLOCK", "3")
    with pytest.warns(FutureWarning, match="'adapt_half_life' is now"):
        assert load_train_settings().adapt == Adaptation(half_life=20, block=3)
    # given both, the section's own value wins
    with pytest.warns(FutureWarning, match="'adapt_block' ignored"):
        assert TrainSettings(adapt_block=9, adapt={"block": 4}).adapt.block == 4
