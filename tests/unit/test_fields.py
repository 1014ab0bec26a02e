"""The input schema: every column of a training file gets a kind, and none is dropped silently."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from streamae.cli import main
from streamae.core.fields import infer_fields, model_features
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


def test_every_column_gets_a_kind_and_a_reason_when_it_is_not_modelled(transactions):
    fields = {f.name: f for f in infer_fields(transactions)}
    assert list(fields) == ["amount", "merchant_category", "country", "channel", "card_id", "is_online"]
    assert fields["amount"].kind == "numeric" and not fields["amount"].reason
    assert fields["country"].kind == "ignored" and fields["country"].holds == "text, 3 values"
    assert "categorical" in fields["country"].reason
    assert fields["is_online"].holds == "booleans" and fields["is_online"].kind == "ignored"
    # a card number is kept (it is a number), with the doubt said aloud
    assert (
        fields["card_id"].kind == "numeric" and "an identifier? --ignore card_id" in fields["card_id"].reason
    )
    assert model_features(fields.values()) == ["amount", "card_id"]


def test_ignore_leaves_a_column_out_and_must_name_one(transactions):
    fields = infer_fields(transactions, ["card_id"])
    assert model_features(fields) == ["amount"]
    assert next(f for f in fields if f.name == "card_id").reason == "--ignore"
    with pytest.raises(DataError, match=r"--ignore names no column of the file: \['card_x'\]"):
        infer_fields(transactions, ["card_x"])


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
    assert manifest["features"] == ["amount"]
    kinds = {f["name"]: f["kind"] for f in manifest["fields"]}
    assert kinds == {
        "amount": "numeric",
        "merchant_category": "ignored",
        "country": "ignored",
        "channel": "ignored",
        "card_id": "ignored",
        "is_online": "ignored",
    }
    for name in ("merchant_category", "country", "channel", "is_online"):
        assert f"field {name}: ignored (" in printed
        assert any(
            f"column {name}: ignored" in r.getMessage() for r in caplog.records if r.levelname == "WARNING"
        )
    assert main(["inspect", str(out)]) == 0
    assert "field        country: ignored (text, 3 values:" in capsys.readouterr().out


def test_a_history_of_numbers_only_writes_no_fields(history, tmp_path):
    """Nothing to say beyond ``features``: the manifest stays as a daemon of the last release reads it."""
    data, out = tmp_path / "h.csv", tmp_path / "b"
    history.to_csv(data, index=False)
    assert main(["train", str(data), "-o", str(out), "--variant", "pca", "--window", "5", "-q"]) == 0
    assert "fields" not in json.loads((out / "manifest.json").read_text())


def test_a_file_without_a_numeric_field_names_every_column(transactions, tmp_path, capsys):
    data = tmp_path / "tx.csv"
    transactions.drop(columns=["amount", "card_id"]).to_csv(data, index=False)
    assert main(["train", str(data), "-o", str(tmp_path / "b"), "-q"]) != 0
    err = capsys.readouterr().err
    assert "no numeric field to model (" in err and "country: ignored (text, 3 values" in err
