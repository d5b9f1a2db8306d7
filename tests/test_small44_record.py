"""helper-44 (issue 15): fewer Python layers in the record stage. Each faster form
is checked bit for bit against the former code (written out here) or NumPy's own
function:

- ``fastmath.count_nonzero``: NumPy's C count without ``np.count_nonzero``'s
  Python wrapper;
- ``risk.systemic_risk_index``: the five weighted parts added left to right in
  Python floats, as ``fastmath.total`` of the list did (another order differs);
- ``update_rewards``: the components of banks already out zeroed by one
  ``np.copyto(where=)`` instead of ``block[1:, mask] = 0.0``;
- ``update_full``'s DebtRank from ``risk._rounds`` (no clip of ``distress``'s own
  array, no checks): the figures of ``risk.debtrank`` on SciPy's matrix.
"""

import numpy as np
import pytest
from support import masked_rewards

from finsim_mesa import FinancialModel, fastmath, measures, risk
from finsim_mesa.fastmath import total
from finsim_mesa.rewards import update_rewards


def _bits(x):
    return np.asarray(x, dtype=float).tobytes()


@pytest.mark.parametrize("seed", range(6))
def test_count_nonzero_is_numpys(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 300))
    cases = [rng.random(n) < 0.3, rng.standard_normal(n), rng.integers(-2, 3, n),
             np.where(rng.random(n) < 0.5, -0.0, np.nan), rng.random((3, n)) < 0.5,
             (rng.random(2 * n) < 0.5)[::2], np.zeros(0), [0, 1, 2, 0], 0.0, 3]
    for a in cases:
        got, want = fastmath.count_nonzero(a), np.count_nonzero(a)
        assert got == want and type(got) is type(want)


def _sri_former(debtrank_total, default_rate, stress, price_index, liquidity, liquidity0):
    """``systemic_risk_index`` as of 5062d93: NumPy's sum of the list."""
    illiq = 1.0 - min(1.0, liquidity / liquidity0) if liquidity0 > 0 else 0.0
    parts = (debtrank_total, default_rate, stress, 1.0 - price_index, illiq)
    return total([w * min(max(float(v), 0.0), 1.0)
                  for w, v in zip(risk._SRI_W, parts, strict=True)])


def test_systemic_risk_index_adds_as_numpy():
    rng = np.random.default_rng(44)
    special = [0.0, -0.0, 1.0, np.nan, np.inf, -np.inf, 1e-300, 0.5]
    differs = 0
    for i in range(20_000):
        if i % 4 == 0:
            args = [float(x) for x in rng.choice(special, 6)]
        else:
            args = [float(x) for x in rng.random(6) * 10.0 ** rng.integers(-12, 2, 6)]
        got, want = risk.systemic_risk_index(*args), _sri_former(*args)
        assert np.array_equal(_bits(got), _bits(want)), args
        # the order matters: another one gives other bits on these inputs
        illiq = 1.0 - min(1.0, args[4] / args[5]) if args[5] > 0 else 0.0
        p = [w * min(max(v, 0.0), 1.0) for w, v in zip(
            risk._SRI_W, (*args[:3], 1.0 - args[3], illiq), strict=True)]
        differs += (p[0] + (((p[1] + p[2]) + p[3]) + p[4])) != want
    assert differs > 100


@pytest.mark.parametrize("n", [5, 30, 257])
@pytest.mark.parametrize("out", ["nobody", "some", "all_but_one", "all"])
def test_rewards_zeroed_as_the_masked_form(n, out):
    for seed in range(3):
        m = FinancialModel(n_banks=n, scenario="systemic", rng=seed, steps=30)
        m.run_for(2)
        rng = np.random.default_rng(seed)
        L, t = m.ledger, m.t + 1
        L.equity[:] = rng.standard_normal(L.n) * 10.0 ** rng.integers(-3, 4, L.n)
        L.equity[rng.random(L.n) < 0.1] = -0.0
        m.reward.equity_prev = rng.standard_normal(L.n) * 5.0
        L.status[:], L.default_step[:] = 0, -1
        if out == "some":
            gone = rng.random(L.n) < 0.4
            L.status[gone], L.default_step[gone] = 1, t - 1
            now = ~gone & (rng.random(L.n) < 0.2)
            L.status[now], L.default_step[now] = 1, t
        elif out == "all_but_one":
            L.status[1:], L.default_step[1:] = 1, t - 1
        elif out == "all":
            L.status[:], L.default_step[:] = 1, t - 2
        ta = m.sheets.total_assets.copy()
        ta[rng.random(L.n) < 0.1] = 0.0
        r = m.reward
        comps, per_bank, mean, means = masked_rewards(r, L, ta, 0.37, m.config, t)
        update_rewards(r, L, ta, 0.37, m.config, t)
        for name, v in comps.items():
            assert np.array_equal(_bits(r.components[name]), _bits(v)), name
            assert np.array_equal(_bits(getattr(r, name)), _bits(means[name])), name
        assert np.array_equal(_bits(r.per_bank), _bits(per_bank))
        assert np.array_equal(_bits(r.mean), _bits(mean))


@pytest.mark.parametrize("case", ["plain", "zero_equity0", "nan_equity", "stress"])
def test_update_full_debtrank_is_scipys(case):
    m = FinancialModel(n_banks=40, scenario="systemic", rng=3, steps=10**6)
    rng = np.random.default_rng(7)
    L = m.ledger
    for _ in range(25):
        m.step()
        kept = L.equity.copy()
        if case == "zero_equity0":
            L.equity0[rng.random(L.n) < 0.2] = 0.0
        elif case == "nan_equity":
            L.equity[rng.integers(L.n)] = np.nan
        elif case == "stress":
            L.equity *= rng.random(L.n)
        h = risk.distress(L.equity, L.equity0, L.defaulted)
        measures.update_full(m.measures, L, m.sheets, m.reference.assets0,
                             m.reference.liquidity0, bilateral_only=False, h=h)
        E, present = L.loans.exposures(L.n)
        ref = risk.debtrank(E, L.equity0, h, value=m.reference.assets0, present=present)
        assert np.array_equal(_bits(m.measures.debtrank_total), _bits(ref.total))
        assert np.array_equal(_bits(m.measures.debtrank), _bits(ref.debtrank))
        # the checked entry point gives the same figures from the same entries
        rows, cols, ex, pr = L.loans.exposure_entries(False)
        chk = risk.debtrank_entries(rows, cols, ex, L.equity0, h, m.reference.assets0, pr,
                                    L.loans.links.by_column(L.n))
        assert np.array_equal(_bits(chk.total), _bits(ref.total))
        L.equity[:] = kept  # (a NaN equity would stop the next step's brain)


@pytest.mark.parametrize("seed", range(4))
def test_flatnonzero_is_numpys(seed):
    # the 1-D array shortcut (nonzero of the array itself) and the general path
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 200))
    x = rng.standard_normal(n)
    x[rng.random(n) < 0.4] = 0.0
    x[rng.random(n) < 0.1] = -0.0
    x[rng.random(n) < 0.05] = np.nan
    cases = [x, x > 0, x[::3], np.nan_to_num(x).astype(np.int64), x.reshape(1, -1),
             x.reshape(-1, 1),
             np.asfortranarray(rng.random((4, 5)) < 0.5), list(x[:7]), 0.0, 2,
             sp.csr_matrix(rng.random((5, 4)) < 0.5).sum(axis=0), np.zeros(0),
             np.ma.masked_array(x, mask=x > 1)]
    for a in cases:
        got, want = fastmath.flatnonzero(a), np.flatnonzero(a)
        assert got.dtype == want.dtype and np.array_equal(got, want), type(a)
