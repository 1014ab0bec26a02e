import numpy as np

from streamae.demo.simulate import KINDS, SENSORS, simulate


def test_labels_match_injected_anomalies_and_all_kinds_appear():
    sim = simulate(entities=3, duration_s=2 * 86400, anomalies_per_entity=5, seed=1)
    f = sim.frame
    assert len(f) == 3 * 2880 and f["timestamp"].is_monotonic_increasing
    assert {a.kind for a in sim.anomalies} == set(KINDS)
    labelled = 0
    for a in sim.anomalies:
        rows = f[(f["key"] == a.key) & f["timestamp"].between(a.start, a.end)]
        assert (rows["label"] == 1).all() and (rows["anomaly_type"] == a.kind).all()
        assert len(rows) == a.end_row - a.start_row + 1
        labelled += len(rows)
    assert f["label"].sum() == labelled


def test_normal_sensors_are_correlated_and_entities_stable_across_runs():
    a = simulate(entities=2, duration_s=86400, anomalies_per_entity=0, seed=1)
    b = simulate(entities=2, duration_s=86400, anomalies_per_entity=0, seed=2)
    one = a.frame[a.frame["key"] == "machine-01"][list(SENSORS)].to_numpy()
    corr = np.corrcoef(one.T)
    assert corr[1, 3] > 0.9  # pressure and flow both follow the load
    # same machine, different noise: daily means agree closely
    m_a = a.frame.groupby("key")[list(SENSORS)].mean()
    m_b = b.frame.groupby("key")[list(SENSORS)].mean()
    assert np.allclose(m_a, m_b, rtol=0.05)
    assert not a.anomalies and a.frame["label"].sum() == 0


def test_deterministic_for_a_seed():
    a = simulate(entities=2, duration_s=6 * 3600, anomalies_per_entity=1, seed=4)
    b = simulate(entities=2, duration_s=6 * 3600, anomalies_per_entity=1, seed=4)
    assert a.frame.equals(b.frame) and a.anomalies == b.anomalies
