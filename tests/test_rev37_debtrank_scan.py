"""Review of issue 15 (helper-37): DebtRank's scan rounds (a round with more than a
third of the banks distressed multiplies every entry, the undistressed columns'
distress read as 0) must give the bits of the gathering rounds (432611f) for every
input. A weight of -inf (a negative infinite exposure, or a negative one over a
tiny equity) times 0 is NaN, not ±0.0: such inputs must keep the gathering rounds,
as NaN weights already do."""
import numpy as np
import pytest

from finsim_mesa import risk


def loop_debtrank(rows, cols, exposures, equity, h0, value):
    """DebtRank by its definition, one entry at a time: each round adds, row by row
    in entry order, W_ij h_j over the columns j distressed in the last round only
    (W_ij = min(1, exposure / equity_i), 1 without positive equity)."""
    n = len(h0)
    h = np.clip(np.asarray(h0, dtype=float), 0.0, 1.0)
    start = h.copy()
    with np.errstate(over="ignore"):
        w = [1.0 if not equity[i] > 0 else min(1.0, e / equity[i])
             for i, e in zip(rows, exposures, strict=True)]
    distressed = [bool(x > 0) for x in h]
    inactive = [False] * n
    steps = 0
    for _ in range(n + 1):
        if not any(distressed):
            break
        push = [0.0] * n
        for k, (i, j) in enumerate(zip(rows, cols, strict=True)):
            if distressed[j]:
                push[i] = push[i] + w[k] * h[j]
        inactive = [a or d for a, d in zip(inactive, distressed, strict=True)]
        h = np.minimum(1.0, h + np.array(push))
        distressed = [bool(x > 0) and not a for x, a in zip(h, inactive, strict=True)]
        steps += 1
    v = np.asarray(value, dtype=float) / np.sum(value)
    return h, float(v @ h) - float(v @ start), steps


@pytest.mark.parametrize("weight", [-np.inf, "overflow"])
def test_minus_inf_weight_in_an_undistressed_column(weight):
    # 6 banks, 3 distressed (3 x 3 > 6: a scan round); bank 4 is undistressed and
    # its creditor 0 has an entry of weight -inf on it
    rows = np.array([0, 0, 1, 2, 3, 4, 5])
    cols = np.array([1, 4, 0, 3, 5, 2, 0])
    exposures = np.array([0.3, -np.inf, 0.2, 0.4, 0.1, 0.5, 0.25])
    equity = np.array([1.0, 2.0, 1.5, 1.0, 0.8, 1.2])
    if weight == "overflow":  # a finite negative exposure over a tiny equity: -inf
        exposures[1], equity[0] = -1e300, 1e-300
        exposures[0] = 0.3e-300
    h0 = np.array([0.0, 0.6, 0.0, 0.5, 0.0, 0.7])
    value = np.array([1.0, 2.0, 1.0, 3.0, 1.0, 2.0])
    assert 3 * np.count_nonzero(h0 > 0) > h0.size  # the scan-round condition
    got = risk.debtrank_entries(rows, cols, exposures, equity, h0, value)
    h, dr, steps = loop_debtrank(rows, cols, exposures, equity, h0, value)
    assert not np.isnan(got.distress).any()
    assert got.distress.tobytes() == h.tobytes()
    assert np.float64(got.debtrank).tobytes() == np.float64(dr).tobytes()
    assert got.steps == steps


def test_finite_weights_still_scan_and_match_the_loop():
    # the scan rounds stay in use for finite weights (negative ones too: x * 0 = -0.0,
    # which changes no sum) and give the loop's bits
    rng = np.random.default_rng(37)
    n = 40
    a = rng.random((n, n)) < 0.3
    np.fill_diagonal(a, False)
    rows, cols = np.nonzero(a)
    exposures = rng.random(rows.size) - 0.2
    equity = rng.random(n) + 0.1
    equity[:3] = [0.0, -0.0, -1.0]
    h0 = np.where(rng.random(n) < 0.6, rng.random(n), 0.0)
    value = rng.random(n) + 0.1
    got = risk.debtrank_entries(rows, cols, exposures, equity, h0, value)
    h, dr, steps = loop_debtrank(rows, cols, exposures, equity, h0, value)
    assert got.distress.tobytes() == h.tobytes()
    assert np.float64(got.debtrank).tobytes() == np.float64(dr).tobytes()
    assert got.steps == steps
