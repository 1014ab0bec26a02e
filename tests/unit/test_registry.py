"""The model registry through ``streamae models``, as an operator drives it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from streamae.cli import main
from streamae.core.bundle import MANIFEST, load_bundle
from streamae.core.registry import Registry


def models(registry: Path, *args: str) -> int:
    return main(["models", "--registry", str(registry), *args])


def test_add_promote_and_roll_back_switch_the_current_link(
    bundle_dir, variant_bundles, tmp_path, capsys, clean_env
):
    reg = tmp_path / "registry"
    assert models(reg, "list") == 0 and "no versions yet" in capsys.readouterr().out
    other = variant_bundles["conv"].bundle.path  # same features, window 10 (the first is 20)
    assert models(reg, "add", str(bundle_dir), "--source", "history.csv") == 0
    assert models(reg, "add", str(other)) == 0
    assert "registered" in capsys.readouterr().out
    r = Registry(reg)
    assert [v.version for v in r.versions()] == ["v0001", "v0002"] and r.current() is None
    assert models(reg, "promote", "v0001", "--reason", "first") == 0
    assert (reg / "current").resolve() == (reg / "versions" / "v0001").resolve()
    # what a daemon following REGISTRY/current loads: a complete, verified bundle
    assert (
        load_bundle(reg / "current").manifest.model_version == load_bundle(bundle_dir).manifest.model_version
    )
    # v0002 cuts windows of 10: a running daemon could not swap to it
    assert models(reg, "promote", "v0002") == 2
    assert "window 10 differ from the running model's 20" in capsys.readouterr().err
    assert r.current() == "v0001"
    assert models(reg, "promote", "v0002", "--force", "--reason", "new window") == 0
    assert r.current() == "v0002"
    assert models(reg, "rollback") == 0
    assert r.current() == "v0001" and "rolled back from v0002" in capsys.readouterr().out
    history = [json.loads(line) for line in (reg / "promotions.jsonl").read_text().splitlines()]
    assert [(h["to"], h["previous"]) for h in history] == [
        ("v0001", None),
        ("v0002", "v0001"),
        ("v0001", "v0002"),
    ]
    assert history[1]["why"] == "new window" and history[2]["why"] == "rollback of v0002"
    assert all("@" in h["who"] and h["when"] > 0 for h in history)
    assert models(reg, "list") == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith("* v0001") and listed[1].startswith("  v0002")
    assert models(reg, "show", "v0001") == 0
    shown = capsys.readouterr().out
    assert '"source": "history.csv"' in shown and shown.count('"to"') == 3


def test_a_broken_bundle_never_enters_and_unknown_versions_are_named(bundle_dir, tmp_path, capsys, clean_env):
    broken = tmp_path / "broken"
    shutil.copytree(bundle_dir, broken)
    doc = json.loads((broken / MANIFEST).read_text())
    doc["window"] = 7  # the manifest's checksum no longer matches
    (broken / MANIFEST).write_text(json.dumps(doc))
    reg = tmp_path / "registry"
    assert models(reg, "add", str(broken)) == 2
    assert "not registered" in capsys.readouterr().err
    assert Registry(reg).versions() == []
    assert models(reg, "promote", "v0009") == 2
    assert "no version 'v0009'" in capsys.readouterr().err
    assert models(reg, "rollback") == 2
    assert "nothing to roll back to" in capsys.readouterr().err


def test_the_registry_location_comes_from_the_environment(bundle_dir, tmp_path, monkeypatch, clean_env):
    reg = tmp_path / "elsewhere"
    monkeypatch.setenv("STREAMAE_REGISTRY", str(reg))
    assert main(["models", "add", str(bundle_dir)]) == 0
    assert [v.version for v in Registry(reg).versions()] == ["v0001"]
    assert not any(name.startswith(".") and name != ".lock" for name in os.listdir(reg / "versions"))


def test_versions_number_on_after_the_highest(bundle_dir, tmp_path, clean_env):
    r = Registry(tmp_path / "registry")
    for _ in range(3):
        r.add(bundle_dir, source="x")
    shutil.rmtree(tmp_path / "registry" / "versions" / "v0002")  # a deleted version's number is not reused
    assert r.add(bundle_dir, source="x").version == "v0004"
