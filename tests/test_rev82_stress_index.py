"""helper-82 (review of rec78, e620ea3): ``risk.stress_index`` (public) with a given
distress ``h`` that does not run forwards in memory.

e620ea3 took ``w @ h`` as ``float(w.dot(h)) + 0.0``; the two give the same bits for
arrays with positive strides (rec78's tests), but not for a reversed view (``h[::-1]``)
or a broadcast one (``np.broadcast_to``, stride 0), whose products NumPy's dot and
matmul sum differently (last bits). The reference is 029761d's form, written out.
"""

from __future__ import annotations

import numpy as np
import pytest

from finsim_mesa.risk import distress, stress_index


def former_stress_index(equity, equity0, defaulted, h):
    """029761d's ``stress_index`` for a given ``h`` (weights: max(E0, 0))."""
    w = np.maximum(np.asarray(equity0, dtype=float), 0.0)
    weight = float(w.sum())
    if not weight > 0:
        return float(h.mean())
    return min(max(float(w @ h / weight), 0.0), 1.0)


def _layouts(h):
    n = h.size
    wide = np.empty(2 * n)
    wide[::2] = h
    yield "contiguous", h.copy()
    yield "reversed", h[::-1].copy()[::-1]
    yield "step 2", wide[::2]
    yield "step -2", wide[::2][::-1].copy()[::-1] if n else wide[::2]
    yield "broadcast", np.broadcast_to(h[:1], (n,)) if n else h
    yield "float32", h.astype(np.float32)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 17, 31, 100, 1000, 5001])
def test_given_h_of_any_layout_against_the_former_form(n):
    rng = np.random.default_rng(n)
    checked = 0
    for _ in range(8):
        eq0 = rng.random(n) * 10.0
        eq = eq0 * rng.uniform(-0.5, 1.5, n)
        dead = rng.random(n) < 0.1
        for name, h in _layouts(distress(eq, eq0, dead)):
            want = former_stress_index(eq, eq0, dead, h)
            got = stress_index(eq, eq0, dead, h=h)
            assert np.float64(got).tobytes() == np.float64(want).tobytes(), (name, got, want)
            checked += 1
    assert checked == 48
