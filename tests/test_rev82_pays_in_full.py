"""helper-82 (review of act77, 24ee447): ``clearing.pays_in_full`` (public) with a
tolerance that is not the default Python float.

24ee447 picked its 0-d constants by ``tol == 1e-9``, which raises for an array of
tolerances (one per institution, broadcast by 029761d's form: "truth value of an
array is ambiguous"). The reference is 029761d's form, written out below.
"""

from __future__ import annotations

import numpy as np
import pytest

from finsim_mesa.clearing import pays_in_full

_EPS8 = 8.0 * np.finfo(float).eps


def former_pays_in_full(pbar, inflow, terms, external_assets, tol=1e-9):
    """029761d's ``pays_in_full``."""
    thresh = pbar - tol * np.maximum(1.0, pbar)
    resources = external_assets + inflow
    slack = _EPS8 * (terms + 4) * resources
    return np.count_nonzero(resources - slack >= thresh) == pbar.size


@pytest.mark.parametrize("seed", range(12))
def test_tolerances_of_other_kinds(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12))
    pbar = rng.random(n) * 10.0 ** rng.integers(-3, 4)
    inflow = pbar * rng.random(n)
    terms = rng.integers(0, 5, n)
    e = pbar - inflow  # exactly at the boundary, give or take the round-off
    e *= 1.0 + rng.choice([-1e-9, -1e-12, 0.0, 1e-12], n)
    for tol in (1e-9, np.float64(1e-9), np.float32(1e-9), 1e-12, np.full(n, 1e-9),
                rng.choice([1e-9, 1e-12, 0.0], n), np.array([1e-9]), np.array(1e-9)):
        want = former_pays_in_full(pbar, inflow, terms, e, tol)
        assert pays_in_full(pbar, inflow, terms, e, tol) == want, tol
