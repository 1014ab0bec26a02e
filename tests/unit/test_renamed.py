"""Post-processing's renamed settings (``sparse`` -> ``record_high``, ``quiet_windows`` ->
``suppress_windows``): a bundle, a variable or a flag under the old name still works for a
release, with a warning that names the new one."""

import argparse

import pytest

from streamae.cli.train import add_train_flags, train_settings
from streamae.core.config import load_train_settings
from streamae.core.manifest import PostSpec


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    for k in list(__import__("os").environ):
        if k.startswith("STREAMAE_"):
            monkeypatch.delenv(k)


def test_a_bundle_written_with_the_old_names_loads_with_a_warning():
    with pytest.warns(FutureWarning, match="'sparse' is now 'record_high'"):
        post = PostSpec.model_validate({"sparse": True, "quiet_windows": 2, "record_half_life": 50})
    assert post.record_high and post.suppress_windows == 2 and post.record_half_life == 50
    assert "sparse" not in post.model_dump() and "quiet_windows" not in post.model_dump()


def test_old_and_new_name_together_is_refused():
    with pytest.raises(ValueError, match="'quiet_windows' is the old name of 'suppress_windows'"):
        PostSpec.model_validate({"quiet_windows": 2, "suppress_windows": 3})


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
