"""The transaction simulator: accounts with habits, and frauds odd only for their own account."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from streamae.cli import main
from streamae.demo.simulate import to_messages
from streamae.demo.transactions import FIELDS, FRAUDS, simulate_transactions


@pytest.fixture(scope="module")
def sim():
    return simulate_transactions(accounts=60, days=20, frauds_per_account=1, seed=4)


def test_it_is_deterministic_and_in_time_order(sim):
    again = simulate_transactions(accounts=60, days=20, frauds_per_account=1, seed=4)
    pd.testing.assert_frame_equal(sim.frame, again.frame)
    assert sim.frame["timestamp"].is_monotonic_increasing
    assert list(sim.frame.columns) == ["timestamp", "key", *FIELDS, "label", "anomaly_type"]


def test_every_value_is_common_across_accounts_a_fraud_is_odd_only_for_its_own(sim):
    normal = sim.frame[sim.frame["label"] == 0]
    accounts = normal["key"].nunique()
    for column in ("merchant_category", "country", "channel"):
        users = normal.groupby(column)["key"].nunique()
        seen = sim.frame.loc[sim.frame["label"] == 1, column].unique()
        assert (users[seen] >= 0.05 * accounts).all(), column  # no fraud value is rare overall


@pytest.mark.parametrize("kind", FRAUDS)
def test_each_fraud_kind_breaks_its_accounts_habit(sim, kind):
    frauds = [a for a in sim.anomalies if a.kind == kind]
    assert len(frauds) == 60 // len(FRAUDS)
    for a in frauds:
        own = sim.frame[sim.frame["key"] == a.key]
        usual, odd = own[own["label"] == 0], own[own["label"] == 1]
        assert (odd["anomaly_type"] == kind).all() and odd["timestamp"].min() == a.start
        if kind == "new_country":
            assert not set(odd["country"]) & set(usual["country"])
        elif kind == "new_category":
            assert not set(odd["merchant_category"]) & set(usual["merchant_category"])
        elif kind == "amount_spike":
            same = usual[usual["merchant_category"] == odd["merchant_category"].iloc[0]]
            assert odd["amount"].iloc[0] > 8 * same["amount"].median()
        elif kind == "micro_burst":
            assert 6 <= len(odd) <= 10 and a.end - a.start <= 600
            assert (odd["amount"] <= 2).all() and (odd["channel"] == "web").all()
        else:
            hour = (odd["timestamp"] % 86400) / 3600
            assert ((hour >= 1) & (hour < 4)).all() and (odd["channel"] == "atm").all()
            assert not set(odd["country"]) & set(usual["country"])
        # its rows among the account's: every one of the fraud's (a burst may enclose a normal one)
        assert own.iloc[a.start_row : a.end_row + 1]["label"].sum() == len(odd)


def test_frauds_come_after_a_normal_history(sim):
    first_fraud = min(a.start for a in sim.anomalies)
    assert first_fraud >= sim.frame["timestamp"].min() + 0.5 * 20 * 86400 - 86400


def test_messages_carry_the_text_fields_and_the_cli_writes_them(sim, tmp_path):
    _, value = next(to_messages(sim.frame))
    doc = orjson.loads(value)
    assert set(doc["values"]) == set(FIELDS) and isinstance(doc["values"]["country"], str)
    out = tmp_path / "tx.csv"
    args = ["simulate", "--kind", "transactions", "--entities", "10", "--hours", "240", "-o", str(out)]
    assert main([*args, "--anomalies", "1"]) == 0
    written = pd.read_csv(out)
    assert written["label"].sum() > 0 and written["key"].nunique() == 10
    assert np.isin(["amount", "merchant_category", "country", "channel"], written.columns).all()
