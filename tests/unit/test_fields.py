"""The input schema: every column of a training file gets a kind, and none is dropped silently."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from streamae.cli import main
from streamae.core.fields import FieldChoices, infer_fields, model_inputs
from streamae.core.readings import DataError


@pytest.fixture
def transactions() -> pd.DataFrame:
    """Card transactions: an amount, three text fields, a card number and a boolean."""
    rng = np.random.default_rng(0)
    n = 3000
    return pd.DataFrame(
        {
            "timestamp": 1_767_225_600 + np.sort(rng.uniform(0, 10 * 86400, n)),
            "key": [f"acct-{a}" for a in rng.integers(0, 20, n)],
            "amount": rng.lognormal(3, 1, n).round(2),
            "merchant_category": rng.choice(["grocery", "fuel", "travel", "online"], n),
            "country": rng.choice(["DE", "FR", "US"], n),
            "channel": rng.choice(["pos", "web"], n),
            "card_id": rng.integers(10**12, 10**13, n),
            "is_online": rng.choice(["true", "false"], n),
            "label": 0,
        }
    )


def _inputs(fields) -> list[str]:
    return [f.name for f in model_inputs(fields)]


def test_every_column_gets_a_kind_and_a_reason_when_it_is_not_modelled(transactions):
    fields = {f.name: f for f in infer_fields(transactions)}
    assert list(fields) == ["amount", "merchant_category", "country", "channel", "card_id", "is_online"]
    assert fields["amount"].kind == "numeric" and not fields["amount"].reason
    assert fields["country"].kind == "categorical" and fields["country"].holds == "text, 3 values"
    assert sorted(fields["country"].categories) == ["DE", "FR", "US"]
    assert fields["is_online"].kind == "boolean" and fields["is_online"].categories in (
        ["true", "false"],
        ["false", "true"],
    )
    # a card number is kept (it is a number), with the doubt said aloud
    assert (
        fields["card_id"].kind == "numeric" and "an identifier? --ignore card_id" in fields["card_id"].reason
    )
    assert _inputs(fields.values()) == list(fields)


def test_text_that_hardly_repeats_is_ignored_unless_categorical_keeps_its_top_values(transactions):
    frame = transactions.assign(txn_id=[f"t{i}" for i in range(len(transactions))])
    doubt = next(f for f in infer_fields(frame) if f.name == "txn_id")
    assert doubt.kind == "ignored" and "--categorical txn_id" in doubt.reason
    frame["merchant"] = [f"m{i % 400}" for i in range(len(frame))]  # 400 merchants, ~7 rows each
    kept = next(
        f
        for f in infer_fields(frame, FieldChoices(categorical=["merchant"], max_categories=12))
        if f.name == "merchant"
    )
    assert kept.kind == "categorical" and len(kept.categories) == 12  # capped, the rest are 'other'


def test_categorical_numeric_and_ignore_overrides(transactions):
    fields = {
        f.name: f
        for f in infer_fields(
            transactions, FieldChoices(categorical=["card_id"], numeric=["is_online"], ignore=["channel"])
        )
    }
    assert fields["channel"].reason == "--ignore" and fields["channel"].kind == "ignored"
    assert fields["is_online"].kind == "numeric"
    with pytest.raises(DataError, match=r"--ignore names no column of the file: \['card_x'\]"):
        infer_fields(transactions, FieldChoices(ignore=["card_x"]))
    with pytest.raises(DataError, match="holds text"):
        infer_fields(transactions, FieldChoices(numeric=["country"]))


def test_an_empty_and_a_repeating_integer_column(transactions):
    frame = transactions.assign(empty=np.nan, units=np.arange(len(transactions)) % 7)
    fields = {f.name: f for f in infer_fields(frame)}
    assert fields["empty"].kind == "ignored" and fields["empty"].holds == "nothing"
    assert fields["units"].kind == "numeric" and not fields["units"].reason  # values repeat: no doubt


def test_train_records_every_field_prints_the_schema_and_warns(transactions, tmp_path, capsys, caplog):
    data, out = tmp_path / "tx.csv", tmp_path / "b"
    transactions.to_csv(data, index=False)
    args = ["train", str(data), "-o", str(out), "--variant", "dense", "--window", "5", "--epochs", "1", "-q"]
    assert main([*args, "--ignore", "card_id"]) == 0
    printed = capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    kinds = {f["name"]: f["kind"] for f in manifest["fields"]}
    assert kinds == {
        "amount": "numeric",
        "merchant_category": "categorical",
        "country": "categorical",
        "channel": "categorical",
        "card_id": "ignored",
        "is_online": "boolean",
    }
    assert "country=DE" in manifest["features"] and "country/new_for_key" in manifest["features"]
    assert manifest["context"] == {"recent_s": 600.0}
    assert "field country: categorical (3 categories + other" in printed
    assert any(
        "column card_id: ignored" in r.getMessage() for r in caplog.records if r.levelname == "WARNING"
    )
    assert main(["inspect", str(out)]) == 0
    assert "field        card_id: ignored" in capsys.readouterr().out


def test_a_history_of_numbers_only_writes_no_fields(history, tmp_path):
    """Nothing to say beyond ``features``: the manifest stays as a daemon of the last release reads it."""
    data, out = tmp_path / "h.csv", tmp_path / "b"
    history.to_csv(data, index=False)
    assert main(["train", str(data), "-o", str(out), "--variant", "pca", "--window", "5", "-q"]) == 0
    assert "fields" not in json.loads((out / "manifest.json").read_text())


def test_a_file_without_a_field_to_model_names_every_column(transactions, tmp_path, capsys):
    data = tmp_path / "tx.csv"
    transactions[["timestamp", "key"]].assign(empty=np.nan).to_csv(data, index=False)
    assert main(["train", str(data), "-o", str(tmp_path / "b"), "-q"]) != 0
    err = capsys.readouterr().err
    assert "no field to model (" in err and "empty: ignored (nothing" in err
