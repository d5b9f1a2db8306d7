"""helper-39's decide-stage changes (issue 15): the rule-based brain's four
columns clipped as one block and ``check_actions`` without NumPy's Python
layers give what the former forms (written out here) give, bit for bit, and
the same errors."""

import numpy as np
import pytest

from finsim_mesa.agents.brains import RuleBasedBrain, brain_name, check_actions
from finsim_mesa.errors import BrainError
from finsim_mesa.observation import OBS


def _bits(a) -> bytes:
    a = np.asarray(a)
    return str(a.dtype).encode() + str(a.shape).encode() + np.ascontiguousarray(a).tobytes()


def _clip(x):  # fastmath.clip's definition
    return np.minimum(np.maximum(x, 0.0), 1.0)


def _rule_reference(o: np.ndarray, requirement: float) -> np.ndarray:
    stress = np.maximum(o[:, OBS["market_stress"]], o[:, OBS["counterparty_stress"]])
    coverage = o[:, OBS["liquidity_coverage"]] * 5.0
    headroom = o[:, OBS["capital_ratio"]] / max(requirement, 1e-9)
    a = np.empty((len(o), 4))
    calm = _clip(0.8 - stress - o[:, OBS["own_distress"]])
    a[:, 0] = calm * _clip(coverage - 1.0)
    a[:, 1] = _clip(0.5 * stress + o[:, OBS["own_distress"]] - 0.1)
    a[:, 2] = _clip(1.5 - headroom)
    a[:, 3] = _clip(1.0 - coverage)
    return a


def _check_reference(brain, out, rows):
    name = brain_name(brain)
    try:
        arr = np.asarray(out)
        if arr.dtype.kind not in "biuf":
            raise TypeError
        arr = np.array(arr, dtype=float, order="C")
    except (TypeError, ValueError):
        raise BrainError(f"brain '{name}' returned {type(out).__name__}, not an array of "
                         "numbers") from None
    if arr.shape != (rows, 4):
        raise BrainError(f"brain '{name}' returned actions of shape {arr.shape}; expected "
                         f"({rows}, 4): lend, hoard, sell, borrow per bank")
    if arr.size:
        lo, hi = arr.min(), arr.max()
        if not (np.isfinite(lo) and np.isfinite(hi)):
            bad = int(np.argwhere(~np.isfinite(arr))[0][0])
            raise BrainError(f"brain '{name}' returned NaN or infinite actions (first in "
                             f"row {bad})")
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise BrainError(f"brain '{name}' returned actions outside [0, 1] "
                             f"(min {lo:g}, max {hi:g})")
    np.maximum(arr, 0.0, out=arr)
    np.minimum(arr, 1.0, out=arr)
    return arr


SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, -1e-300, 2.0, np.inf, -np.inf, np.nan,
                    1 + 1e-7, -1e-7, 0.2, 0.8])


@pytest.mark.parametrize("order", ["C", "F"])
def test_rule_based_brain_is_its_column_by_column_form(order):
    rng = np.random.default_rng(0)
    brain = RuleBasedBrain(0.05)
    width = max(OBS.values()) + 1
    for trial in range(200):
        n = int(rng.integers(0, 40))
        o = rng.normal(0.3, 0.6, (n, width))
        if trial % 2:  # signed zeros, infinities, NaN, the clip bounds
            o[rng.random((n, width)) < 0.3] = rng.choice(SPECIAL)
        o = np.asarray(o, order=order)
        if trial % 3 == 0:
            o.flags.writeable = False  # as the model hands it over
        brain.capital_requirement = float(rng.choice([0.05, 0.0, 1e-12, 0.3]))
        got = brain.act(o)
        assert _bits(got) == _bits(_rule_reference(o, brain.capital_requirement))


def _outcome(f, *args):
    try:
        return "ok", _bits(f(*args))
    except BrainError as err:
        return "error", str(err)


def test_check_actions_is_its_former_form():
    rng = np.random.default_rng(1)
    brain = RuleBasedBrain()
    cases = [np.zeros((0, 4)), np.zeros((3, 4), dtype=int), np.ones((2, 4), dtype=bool),
             np.ones((2, 4), dtype=np.float32) * 0.3, [[0.1, 0.2, 0.3, 0.4]], "no",
             np.ones((2, 4), dtype=complex), np.ones((2, 3)), np.ones(8), [[0, 1, 2, 3]],
             np.full((2, 4), 1 + 5e-7), np.full((2, 4), -5e-7), np.full((2, 4), -0.0),
             np.full((2, 4), -5e-6), np.full((2, 4), 1 + 5e-6),
             np.array([[0.2, np.nan, 0.1, 0.0]] * 3), np.array([[0.2, 0.3, -np.inf, 0.1]]),
             np.asfortranarray(rng.random((5, 4)))]
    for _ in range(300):
        n = int(rng.integers(1, 12))
        a = rng.random((n, 4))
        a[rng.random((n, 4)) < 0.3] = rng.choice(SPECIAL)
        cases.append(a)
    seen = set()
    for out in cases:
        rows = len(out) if hasattr(out, "__len__") and not isinstance(out, str) else 1
        ref = _outcome(_check_reference, brain, out, rows)
        assert _outcome(check_actions, brain, out, rows) == ref
        seen.add(ref[0] if ref[0] == "ok" else ref[1].split(" returned ")[1][:12])
    assert len(seen) >= 4, seen  # results, and each kind of error


def test_check_actions_hands_back_its_own_copy():
    out = np.full((3, 4), 0.5)
    got = check_actions(RuleBasedBrain(), out, 3)
    got[0, 0] = 0.9
    assert out[0, 0] == 0.5 and got.flags.c_contiguous
