"""Card transactions of accounts with habits, and labelled frauds that are odd only for *their*
account.

Every account has a home country, a few merchant categories it buys in (each with its own
typical amount), a channel mix and waking hours; it pays a few times a day. Every value of
every field is common across the population: a fraud is not a rare value but a value rare
for that account, which is what per-account context has to catch. Fraud kinds:

==================  =====================================================================
``new_country``     a purchase in a usual category, in a country the account never uses
``new_category``    a purchase in a category the account never buys, at home
``micro_burst``     6-10 tiny online payments within ten minutes (card testing)
``amount_spike``    12-30x the account's typical amount, in one of its habitual categories
``night_atm_abroad``  an ATM withdrawal abroad between 1 and 4 a.m.
==================  =====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from streamae.demo.simulate import DAY_S, Anomaly, Simulation

CATEGORIES = (
    "grocery",
    "fuel",
    "restaurant",
    "pharmacy",
    "clothing",
    "electronics",
    "travel",
    "online",
    "cash",
)
SHOPS = CATEGORIES[:-2]  # what an account's habits are made of; online and cash ride on channels
COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "PL", "GB", "US")
CHANNELS = ("pos", "web", "atm")
FRAUDS = ("new_country", "new_category", "micro_burst", "amount_spike", "night_atm_abroad")
FIELDS = ("amount", "merchant_category", "country", "channel")
#: the field that makes each fraud kind odd for its account
FRAUD_FIELD = {
    "new_country": "country",
    "new_category": "merchant_category",
    "micro_burst": "amount",
    "amount_spike": "amount",
    "night_atm_abroad": "country",
}


@dataclass(frozen=True)
class Habits:
    """What one account does: where, on what, how much, through which channel, when."""

    home: str
    categories: tuple[str, ...]
    weights: np.ndarray  # how often each category
    median: np.ndarray  # typical amount per category
    web_share: float
    cash_share: float  # payments that are ATM withdrawals at home
    per_day: float
    wakes: float  # hour of the day its first payments come


def habits(account: int, seed: int) -> Habits:
    rng = np.random.default_rng([seed, account])
    k = int(rng.integers(2, 5))
    categories = tuple(rng.choice(SHOPS, k, replace=False).tolist())
    return Habits(
        home=str(rng.choice(COUNTRIES)),
        categories=categories,
        weights=rng.dirichlet(np.full(k, 2.0)),
        median=np.exp(rng.normal(3.2, 0.6, k)),
        web_share=float(rng.uniform(0.0, 0.3)),
        cash_share=float(rng.uniform(0.0, 0.15)),
        per_day=float(rng.uniform(1.5, 5.0)),
        wakes=float(rng.uniform(6.0, 10.0)),
    )


def _normal(h: Habits, rng: np.random.Generator, start: float, days: float) -> pd.DataFrame:
    n = max(1, int(rng.poisson(h.per_day * days)))
    day = np.floor(rng.uniform(0, days, n))
    hour = np.clip(rng.normal(h.wakes + 6.0, 3.0, n), h.wakes, 23.5)
    ts = np.sort(start + day * DAY_S + hour * 3600 + rng.uniform(0, 60, n))
    pick = rng.choice(len(h.categories), n, p=h.weights)
    u = rng.uniform(size=n)
    web, cash = u < h.web_share, u > 1 - h.cash_share
    amount = h.median[pick] * rng.lognormal(0.0, 0.35, n)
    return pd.DataFrame(
        {
            "timestamp": ts,
            "amount": np.where(cash, rng.choice([50.0, 100.0, 200.0], n), amount).round(2),
            "merchant_category": np.select([web, cash], ["online", "cash"], np.asarray(h.categories)[pick]),
            "country": h.home,
            "channel": np.select([web, cash], ["web", "atm"], "pos"),
        }
    )


def _fraud(kind: str, h: Habits, rng: np.random.Generator, at: float) -> pd.DataFrame:
    """The transactions of one fraud of ``kind`` starting at ``at``."""
    abroad = str(rng.choice([c for c in COUNTRIES if c != h.home]))
    i = int(rng.integers(len(h.categories)))
    usual, amount = h.categories[i], float(h.median[i])
    if kind == "micro_burst":
        n = int(rng.integers(6, 11))
        ts = at + np.sort(rng.uniform(0, 600, n))
        return pd.DataFrame(
            {
                "timestamp": ts,
                "amount": rng.uniform(0.5, 2.0, n).round(2),
                "merchant_category": "online",
                "country": h.home,
                "channel": "web",
            }
        )
    row = {"timestamp": at, "amount": amount, "merchant_category": usual, "country": h.home, "channel": "pos"}
    if kind == "new_country":
        row["country"] = abroad
    elif kind == "new_category":
        unused = [c for c in SHOPS if c not in h.categories]
        row["merchant_category"] = str(rng.choice(unused))
        row["amount"] = float(np.exp(rng.normal(3.2, 0.4)))
    elif kind == "amount_spike":
        row["amount"] = amount * float(rng.uniform(12, 30))
    elif kind == "night_atm_abroad":
        midnight = np.floor(at / DAY_S) * DAY_S
        row.update(
            timestamp=midnight + rng.uniform(1, 4) * 3600,
            amount=float(rng.choice([200.0, 300.0, 400.0, 500.0])),
            merchant_category="cash",
            country=abroad,
            channel="atm",
        )
    else:
        raise ValueError(f"unknown fraud kind {kind!r}; one of {FRAUDS}")
    return pd.DataFrame({k: [v] for k, v in row.items()}).round({"amount": 2})


def simulate_transactions(
    accounts: int = 300,
    days: float = 30.0,
    frauds_per_account: int = 1,
    fraud_after: float = 0.5,
    start: float = 1_767_225_600.0,
    seed: int = 0,
    kinds: tuple[str, ...] = FRAUDS,
) -> Simulation:
    """``days`` of transactions of ``accounts`` accounts; ``frauds_per_account`` frauds each
    (kinds in turn across accounts), all after the first ``fraud_after`` share of the period
    (so that a history before it is normal). Frame columns: timestamp, key, the FIELDS,
    label, anomaly_type; time order."""
    frames, anomalies = [], []
    for a in range(accounts):
        key = f"acct-{a + 1:04d}"
        h = habits(a, seed)
        rng = np.random.default_rng([seed, a, 1])
        parts = [_normal(h, rng, start, days).assign(label=0, anomaly_type="")]
        for j in range(frauds_per_account):
            kind = kinds[(a * frauds_per_account + j) % len(kinds)]
            at = start + days * DAY_S * float(rng.uniform(fraud_after, 0.98))
            parts.append(_fraud(kind, h, rng, at).assign(label=1, anomaly_type=kind))
        frame = pd.concat(parts, ignore_index=True).sort_values("timestamp", kind="stable")
        ts = frame["timestamp"].to_numpy()
        for fraud in parts[1:]:
            first, last = float(fraud["timestamp"].min()), float(fraud["timestamp"].max())
            kind = str(fraud["anomaly_type"].iloc[0])
            rows = int(np.searchsorted(ts, first)), int(np.searchsorted(ts, last, side="right")) - 1
            anomalies.append(Anomaly(key, kind, FRAUD_FIELD[kind], first, last, *rows))
        frames.append(frame.assign(key=key))
    out = pd.concat(frames, ignore_index=True).sort_values(["timestamp", "key"], kind="stable")
    columns = ["timestamp", "key", *FIELDS, "label", "anomaly_type"]
    return Simulation(out[columns].reset_index(drop=True), anomalies)
