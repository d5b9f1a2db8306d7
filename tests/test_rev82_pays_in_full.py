"""helper-82 (review of act77, 24ee447): ``clearing.pays_in_full`` (public) with a
tolerance that is not the default Python float.

24ee447 picked its 0-d constants by ``tol == 1e-9``, which raises for an array of
tolerances (one per institution, broadcast by 029761d's form: "truth value of an
array is ambiguous"). The reference is 029761d's form, written out in tests/test_act77_shortcuts.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from finsim_mesa.clearing import pays_in_full
from tests.test_act77_shortcuts import former_pays_in_full  # 029761d's form, written out


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
