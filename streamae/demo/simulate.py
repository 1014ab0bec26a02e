"""A multi-sensor stream for several entities, with labelled injected anomalies.

Normal behaviour: every sensor of an entity follows a shared latent load (a daily cycle
plus slow AR(1) wander) and ambient temperature, with its own gain and noise, so sensors
are correlated the way a real machine's are. Injected anomalies: spike, level shift,
drift, stuck sensor and broken correlation (one sensor stops following the load).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import orjson
import pandas as pd

from streamae.core.readings import RESERVED_COLUMNS

SENSORS = ("temperature", "pressure", "vibration", "flow", "power")
KINDS = ("spike", "level_shift", "drift", "stuck", "broken_correlation")
DAY_S = 86400.0


@dataclass(frozen=True)
class Anomaly:
    """One injected anomaly: rows ``start_row..end_row`` (inclusive) of ``key``."""

    key: str
    kind: str
    sensor: str
    start: float
    end: float
    start_row: int
    end_row: int


@dataclass(frozen=True)
class Simulation:
    frame: pd.DataFrame  # timestamp (epoch s), key, sensors…, label, anomaly_type; time order
    anomalies: list[Anomaly]

    def anomalies_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(a) for a in self.anomalies], columns=list(Anomaly.__annotations__))


def _ar1(rng: np.random.Generator, n: int, phi: float, sigma: float) -> np.ndarray:
    """AR(1) noise; a short Python loop is fine here, this is offline data generation."""
    out = np.empty(n)
    eps = rng.normal(0, sigma, n)
    prev = 0.0
    for i in range(n):
        prev = phi * prev + eps[i]
        out[i] = prev
    return out


def _normal(rng: np.random.Generator, t: np.ndarray, entity: int) -> np.ndarray:
    """Readings ``(n, len(SENSORS))``, all driven by one latent load.

    An entity's character (phase, gains) depends on its number only, so history and a
    later stream of the same machine agree; the noise comes from ``rng``.
    """
    n = len(t)
    phase = 2 * np.pi * (t % DAY_S) / DAY_S
    character = np.random.default_rng([7, entity])
    offset = character.uniform(-0.4, 0.4)
    gain = character.uniform(0.95, 1.05, len(SENSORS))
    load = np.clip(0.6 + 0.25 * np.sin(phase - np.pi / 2 + offset) + _ar1(rng, n, 0.98, 0.01), 0, 1.2)
    ambient = 20 + 5 * np.sin(phase - 2.0) + _ar1(rng, n, 0.99, 0.05)
    noise = rng.normal(0, 1, (n, len(SENSORS)))
    values = (
        np.column_stack(
            [
                40 + 30 * load + 0.5 * ambient + 0.4 * noise[:, 0],
                2.0 + 3.0 * load + 0.04 * noise[:, 1],
                0.5 + 1.5 * load**2 + 0.04 * noise[:, 2],
                10 + 40 * load + 0.6 * noise[:, 3],
                5 + 20 * load + 0.1 * ambient + 0.25 * noise[:, 4],
            ]
        )
        * gain
    )
    return values


def _inject(
    rng: np.random.Generator,
    values: np.ndarray,
    kind: str,
    s: int,
    lo: int,
    hi: int,
    shift_rows: int,
) -> None:
    """Apply one anomaly of ``kind`` to sensor column ``s`` over rows ``lo..hi`` in place."""
    sigma = values[:, s].std()
    sign = rng.choice([-1.0, 1.0])
    seg = slice(lo, hi + 1)
    n = hi - lo + 1
    if kind == "spike":
        values[seg, s] += sign * rng.uniform(2.5, 3.5) * sigma
    elif kind == "level_shift":
        values[seg, s] += sign * rng.uniform(0.6, 0.9) * sigma
    elif kind == "drift":
        values[seg, s] += sign * np.linspace(0, rng.uniform(1.0, 1.5) * sigma, n)
    elif kind == "stuck":
        values[seg, s] = values[lo, s]
    elif kind == "broken_correlation":
        # the sensor replays its own pattern from a quarter day earlier (or later): each
        # value is plausible alone, but it no longer moves with its peers
        shift = shift_rows if lo >= shift_rows else -shift_rows
        values[seg, s] = values[np.clip(np.arange(lo, hi + 1) - shift, 0, len(values) - 1), s]
    else:
        raise ValueError(f"unknown anomaly kind {kind!r}; choose from {', '.join(KINDS)}")


DURATIONS = {
    "spike": (1, 3),
    "level_shift": (40, 90),
    "drift": (60, 120),
    "stuck": (120, 240),
    "broken_correlation": (60, 120),
}


def simulate(
    entities: int = 4,
    duration_s: float = DAY_S,
    interval_s: float = 60.0,
    anomalies_per_entity: int = 2,
    start: float = 1_767_225_600.0,  # 2026-01-01T00:00:00Z
    seed: int = 0,
    kinds: Sequence[str] = KINDS,
    margin_rows: int = 60,
) -> Simulation:
    """Simulate ``entities`` machines for ``duration_s`` seconds, one reading per ``interval_s``."""
    rng = np.random.default_rng(seed)
    n = int(duration_s // interval_s)
    t = start + interval_s * np.arange(n)
    quarter_day = max(1, int(DAY_S / 4 / interval_s))
    frames, anomalies = [], []
    kind_cycle = iter(np.resize(np.asarray(kinds), entities * anomalies_per_entity).tolist())
    for e in range(entities):
        key = f"machine-{e + 1:02d}"
        values = _normal(rng, t, e)
        labels = np.zeros(n, dtype=np.int8)
        types = np.full(n, "", dtype=object)
        if anomalies_per_entity:
            slots = np.linspace(margin_rows, n - margin_rows, anomalies_per_entity + 1).astype(int)
            for a in range(anomalies_per_entity):
                kind = next(kind_cycle)
                lo_d, hi_d = DURATIONS[kind]
                length = int(rng.integers(lo_d, hi_d + 1))
                room = slots[a + 1] - slots[a] - length - margin_rows
                if room <= 0:
                    raise ValueError("too many anomalies for the duration; simulate longer")
                lo = int(slots[a] + rng.integers(0, room))
                hi = lo + length - 1
                s = int(rng.integers(len(SENSORS)))
                _inject(rng, values, kind, s, lo, hi, quarter_day)
                labels[lo : hi + 1] = 1
                types[lo : hi + 1] = kind
                anomalies.append(Anomaly(key, kind, SENSORS[s], float(t[lo]), float(t[hi]), lo, hi))
        frame = pd.DataFrame(values.round(4), columns=list(SENSORS))
        frame.insert(0, "key", key)
        frame.insert(0, "timestamp", t)
        frame["label"] = labels
        frame["anomaly_type"] = types
        frames.append(frame)
    frame = pd.concat(frames).sort_values(["timestamp", "key"], kind="stable").reset_index(drop=True)
    return Simulation(frame, anomalies)


def to_messages(frame: pd.DataFrame, batch: int = 1) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs of reading messages in frame order, every column but the reserved
    ones (timestamp, key, label, ...) among the values; ``batch > 1`` packs up to that
    many consecutive readings of one key into a list message (the contract's list form)."""
    features = [c for c in frame.columns if c not in RESERVED_COLUMNS]
    pending: dict[str, list[dict]] = {}
    for key, ts, values in zip(
        frame["key"].tolist(), frame["timestamp"].tolist(), frame[features].to_numpy().tolist()
    ):
        reading = {"key": key, "ts": ts, "values": dict(zip(features, values))}
        if batch <= 1:
            yield key.encode(), orjson.dumps(reading)
            continue
        group = pending.setdefault(key, [])
        group.append(reading)
        if len(group) >= batch:
            yield key.encode(), orjson.dumps(group)
            pending[key] = []
    for key, group in pending.items():
        if group:
            yield key.encode(), orjson.dumps(group)
