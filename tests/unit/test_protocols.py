import numpy as np

from streamae.evaluation.protocols import skab_leaderboard_rule


def test_skab_rule_needs_the_next_windows_over_threshold_and_skips_the_edges():
    steps = 4  # windows of 4: a row needs itself and the next 2 windows over threshold
    over = np.array([1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], dtype=bool)
    flags = skab_leaderboard_rule(over, steps)
    n = len(over)
    expected = np.zeros(n, dtype=bool)
    for i in range(steps - 1, n - 2 * steps + 2):
        expected[i] = over[i : i + steps - 1].all()
    assert flags.tolist() == expected.tolist()
    assert not flags[: steps - 1].any() and not flags[n - 2 * steps + 2 :].any()
    assert flags.tolist()[3:7] == [True, False, False, False]  # rows 4..6 see the gap at 6


def test_skab_rule_on_a_short_file_flags_nothing():
    assert not skab_leaderboard_rule(np.ones(50, dtype=bool)).any()
