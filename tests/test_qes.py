"""The pure algorithm pieces: seeds and pair coefficients."""

import numpy as np

from edgees.qes import algorithm as qes


def test_pair_seeds_are_positive_distinct_and_stable():
    seeds = qes.pair_seeds(1, 0, 8)
    assert seeds == qes.pair_seeds(1, 0, 8)
    assert len(set(seeds)) == 8 and all(0 < s < 2**63 for s in seeds)
    assert seeds != qes.pair_seeds(1, 1, 8) and seeds != qes.pair_seeds(2, 0, 8)


def test_coefficients_zscore_clipped_rank_and_degenerate_cases():
    rp, rm = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]), np.zeros(12)
    a = qes.coefficients(rp, rm)
    assert a.max() == 3.0  # one outlier among 12 z-scores to 3.3: clipped
    assert np.allclose(qes.coefficients(np.ones(4), np.ones(4)), 0)  # no signal, no step
    assert qes.coefficients(np.array([0.3]), np.array([0.1]))[0] == 1.0  # one pair: its sign
    r = qes.coefficients(np.array([0.3, 0.2, 0.1]), np.array([0.1, 0.2, 0.3]), "rank")
    assert list(r) == [1.0, 0.0, -1.0]
