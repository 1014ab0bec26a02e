"""What the demo streams: normal history to train on, then a labelled stream with anomalies and
two malformed records, for machines with sensors or for card accounts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson

from streamae.demo.simulate import DAY_S, Anomaly, Simulation, simulate
from streamae.demo.transactions import simulate_transactions

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
KINDS = ("sensors", "transactions")
PLOT_PANELS = 8  # keys drawn in the demo's plot; a panel per key stops being readable beyond that


@dataclass(frozen=True)
class Scenario:
    """``history`` is normal only; ``stream`` carries the anomalies; ``malformed`` are
    (key, value) records that must end as dead letters, each with its reason."""

    noun: str
    history: Simulation
    stream: Simulation
    malformed: list[tuple[bytes, bytes]]

    def plotted_keys(self) -> list[str]:
        """The keys of the plot: those with an anomaly first, at most PLOT_PANELS."""
        keys = sorted(self.stream.frame["key"].unique())
        hit = {a.key for a in self.stream.anomalies}
        return sorted(keys, key=lambda k: k not in hit)[:PLOT_PANELS]


def sensors(entities: int, history_days: float, stream_hours: float, anomalies: int, seed: int) -> Scenario:
    """Machines: ``history_days`` of normal readings, then ``stream_hours`` with ``anomalies``
    each (spikes, shifts, drifts, stuck sensors, broken correlations)."""
    history = simulate(entities, history_days * DAY_S, anomalies_per_entity=0, start=T0, seed=seed)
    stream = simulate(
        entities,
        stream_hours * 3600,
        anomalies_per_entity=anomalies,
        start=T0 + history_days * DAY_S,
        seed=seed + 1,
    )
    # one record that is not JSON, one with text for a numeric sensor
    bad = {"key": "machine-02", "ts": T0, "values": {"flow": "high"}}
    return Scenario(
        "machines", history, stream, [(b"machine-01", b"{not json"), (b"machine-02", orjson.dumps(bad))]
    )


def transactions(accounts: int, history_days: float, stream_days: float, seed: int) -> Scenario:
    """Card accounts: ``history_days`` of normal payments, then ``stream_days`` in which every
    account meets one fraud (new country, new category, burst, spike, night ATM abroad)."""
    days = history_days + stream_days
    sim = simulate_transactions(
        accounts, days, 1, fraud_after=history_days / days + 0.01, start=T0, seed=seed
    )
    split = T0 + history_days * DAY_S
    before = sim.frame["timestamp"].to_numpy() < split
    history = Simulation(sim.frame[before].reset_index(drop=True), [])
    stream = Simulation(sim.frame[~before].reset_index(drop=True), sim.anomalies)
    # one record that is not JSON, one with a number for the categorical field country
    values = {"amount": 12.5, "merchant_category": "grocery", "country": 49, "channel": "pos"}
    bad = {"key": "acct-0002", "ts": split, "values": values}
    return Scenario(
        "accounts", history, stream, [(b"acct-0001", b"{not json"), (b"acct-0002", orjson.dumps(bad))]
    )


def reach(stream: Simulation, anomalies: list[Anomaly], window: int) -> list[float]:
    """When each anomaly leaves the windows: the time of its key's ``window - 1``-th reading
    after its end (its last reading is still in a window until then)."""
    times = stream.frame.groupby("key")["timestamp"].apply(np.sort).to_dict()
    out = []
    for a in anomalies:
        ts = times.get(a.key, np.array([a.end]))
        last = int(np.searchsorted(ts, a.end, side="right")) - 1 + window - 1
        out.append(float(ts[min(max(last, 0), len(ts) - 1)]))
    return out
