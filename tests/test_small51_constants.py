"""0-d float64 constants instead of Python floats as ufunc operands (helper-51):
the same bits, checked against NumPy with the Python numbers (the former form) on
awkward values (±0.0, NaN, ±inf, subnormals, huge and tiny), and stage by stage
against the former code (the modules' constants set back to Python numbers, or the
former function kept here)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from finsim_mesa import FinancialModel, market, observation, risk
from finsim_mesa.agents import brains
from finsim_mesa.fastmath import ONE, ZERO, constant

AWKWARD = np.array([0.0, -0.0, 1.0, -1.0, 0.5, 1e-12, -1e-12, 5e-324, -5e-324, 1e300, -1e300,
                    np.inf, -np.inf, np.nan, 3.0, 0.1, 0.8, 1.5, 2.0 ** -1074, 1 - 2 ** -53])


def awkward(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=size) * 10.0 ** rng.integers(-15, 15, size)
    x[: AWKWARD.size] = AWKWARD
    return rng.permutation(x)


def test_constants_are_read_only_float64_scalars() -> None:
    for c, v in ((ZERO, 0.0), (ONE, 1.0), (constant(-1.0), -1.0), (constant(1e-12), 1e-12)):
        assert c.shape == () and c.dtype == np.float64 and not c.flags.writeable
        assert c.item() == v and np.signbit(c) == np.signbit(v)
        with pytest.raises(ValueError):
            c[...] = 2.0


@pytest.mark.parametrize("value", [0.0, 1.0, -1.0, 3.0, 5.0, 0.1, 0.5, 0.8, 1.5, 1e-12])
def test_a_constant_gives_the_python_floats_bits(value: float) -> None:
    """Every ufunc form the package uses, both operand orders, out= and where=."""
    c = constant(value)
    x = awkward(257, 1)  # (an odd size: SIMD bodies and tails)
    mask = awkward(257, 2) > 0
    for f in (np.maximum, np.minimum, np.add, np.subtract, np.multiply, np.divide):
        with np.errstate(all="ignore"):
            for a, b, a2, b2 in ((x, value, x, c), (value, x, c, x)):
                assert f(a, b).tobytes() == f(a2, b2).tobytes(), (f, value)
                o1, o2 = np.zeros_like(x), np.zeros_like(x)
                f(a, b, out=o1, where=mask)
                f(a2, b2, out=o2, where=mask)
                assert o1.tobytes() == o2.tobytes(), (f, value)
    for f in (np.greater, np.less, np.greater_equal, np.less_equal):
        assert np.array_equal(f(x, value), f(x, c)) and np.array_equal(f(value, x), f(c, x))
    assert np.where(mask, x, value).tobytes() == np.where(mask, x, c).tobytes()
    # a sign test of integers (equity0 given as ints to risk.distress)
    ints = np.array([-3, 0, 2, 2 ** 62, -(2 ** 62)])
    assert np.array_equal(ints > 0, ints > ZERO) and np.array_equal(ints <= 0, ints <= ZERO)


def former_distress_into(h: np.ndarray, equity: Any, equity0: Any, defaulted: Any) -> np.ndarray:
    """``risk._distress_into`` as it was (95c95ff)."""
    np.divide(equity, equity0, out=h, where=equity0 > 0)
    np.subtract(1.0, h, out=h)
    np.maximum(h, 0.0, out=h)
    np.minimum(h, 1.0, out=h)
    h[np.asarray(defaulted, dtype=bool)] = 1.0
    return h


@pytest.mark.parametrize("seed", range(5))
def test_distress_matches_the_former_form(seed: int) -> None:
    n = 200
    equity, equity0 = awkward(n, seed), awkward(n, seed + 10)
    defaulted = np.random.default_rng(seed).random(n) < 0.2
    with np.errstate(all="ignore"):
        ref = former_distress_into(np.zeros(n), equity, equity0, defaulted)
        assert risk.distress(equity, equity0, defaulted).tobytes() == ref.tobytes()
        assert risk._distress_into(np.zeros(n), equity, equity0, defaulted).tobytes() \
            == ref.tobytes()
        ints = np.random.default_rng(seed).integers(-5, 50, n)  # integer equity0
        assert risk.distress(equity, ints, defaulted).tobytes() == former_distress_into(
            np.zeros(n), equity, ints, defaulted).tobytes()


def python_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The former form: each module's constants back to the Python numbers."""
    for mod in (risk, market, observation, brains):
        for name in ("ZERO", "ONE"):
            if hasattr(mod, name):
                monkeypatch.setattr(mod, name, 0.0 if name == "ZERO" else 1.0)
    for name, v in (("_FIVE", 5), ("_THREE", 3), ("_MINUS_ONE", -1), ("_TINY", 1e-12),
                    ("_RUNOFF", observation.RUNOFF)):
        monkeypatch.setattr(observation, name, v)
    monkeypatch.setattr(brains, "_RULE_F64", brains._RULE_NUMBERS)


def run_record(kw: dict[str, Any], steps: int) -> list[bytes]:
    m = FinancialModel(agent_collect_every=0, brain="rule_based", **kw)
    out = []
    for _ in range(steps):
        m.step()
        out.append(m.decisions.observations.tobytes() + m.decisions.actions.tobytes()
                   + m.ledger.equity.tobytes() + m.ledger.prices.tobytes()
                   + np.array([m.measures.debtrank, m.measures.debtrank_total,
                               m.measures.stress_index, m.measures.systemic_risk_index,
                               m.flows.fire_sale_volume]).tobytes())
    return out


@pytest.mark.parametrize("kw", [dict(n_banks=30, rng=1),
                                dict(n_banks=25, rng=4, scenario="systemic"),
                                dict(n_banks=20, rng=7, scenario="asset_crash"),
                                dict(n_banks=40, rng=2, scenario="liquidity_crisis")])
def test_steps_match_the_former_python_numbers(kw: dict[str, Any],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Observations, actions, equity, prices and the risk measures of every step,
    byte for byte, with the constants and with the Python numbers."""
    new = run_record(kw, 40)
    python_numbers(monkeypatch)
    assert run_record(kw, 40) == new


def former_rule_act(brain: brains.RuleBasedBrain, o: np.ndarray) -> np.ndarray:
    """``RuleBasedBrain.act`` as it was (95c95ff)."""
    from finsim_mesa.fastmath import clip
    from finsim_mesa.observation import OBS

    stress = np.maximum(o[:, OBS["market_stress"]], o[:, OBS["counterparty_stress"]])
    coverage = o[:, OBS["liquidity_coverage"]] * 5.0
    headroom = o[:, OBS["capital_ratio"]] / max(brain.capital_requirement, 1e-9)
    own = o[:, OBS["own_distress"]]
    calm = clip(0.8 - stress - own, 0.0, 1.0)
    a = np.empty((len(o), 4))
    np.subtract(coverage, 1.0, out=a[:, 0])
    np.subtract(0.5 * stress + own, 0.1, out=a[:, 1])
    np.subtract(1.5, headroom, out=a[:, 2])
    np.subtract(1.0, coverage, out=a[:, 3])
    np.minimum(np.maximum(a, 0.0, out=a), 1.0, out=a)
    a[:, 0] *= calm
    return a


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rule_based_brain_matches_the_former_form(dtype: type) -> None:
    """Float64 observations take the constants, others the Python numbers: the
    former values and dtype either way (awkward values included)."""
    b = brains.RuleBasedBrain(0.08)
    with np.errstate(all="ignore"):
        o = awkward(16 * 101, 3).reshape(101, 16).astype(dtype)
        for obs in (o, np.asfortranarray(o), np.abs(o) % 2):
            got, ref = b.act(obs), former_rule_act(b, obs)
            assert got.dtype == ref.dtype and got.tobytes() == ref.tobytes()


def test_check_actions_clips_as_before() -> None:
    """``check_actions`` on values inside the tolerance: clipped to [0, 1], ``-0.0``
    to ``+0.0``, as NumPy's maximum / minimum with the Python floats give them."""
    raw = np.array([[-1e-7, -0.0, 0.0, 1.0], [1 + 1e-7, 0.5, 5e-324, 1 - 2 ** -53]])
    got = brains.check_actions(brains.RuleBasedBrain(), raw.copy(), 2)
    ref = np.minimum(np.maximum(raw, 0.0), 1.0)
    assert got.tobytes() == ref.tobytes() and not np.signbit(got).any()


def former_systemic_risk_index(debtrank_total: Any, default_rate: Any, stress: Any,
                               price_index: Any, liquidity: Any, liquidity0: Any) -> float:
    """``risk.systemic_risk_index`` as it was (95c95ff)."""
    illiq = 1.0 - min(1.0, liquidity / liquidity0) if liquidity0 > 0 else 0.0
    parts = (debtrank_total, default_rate, stress, 1.0 - price_index, illiq)
    a, b, c, d, e = [w * min(max(float(v), 0.0), 1.0)
                     for w, v in zip(risk._SRI_W, parts, strict=True)]
    return (((a + b) + c) + d) + e


def test_systemic_risk_index_matches_the_former_form() -> None:
    """The five terms written out: the same float (bits, NaN, type) on random and
    awkward parts, Python floats and NumPy scalars alike."""
    rng = np.random.default_rng(8)
    cases = [tuple(map(float, rng.choice(AWKWARD, 6))) for _ in range(400)]
    cases += [tuple(map(float, rng.normal(0.5, 0.7, 6))) for _ in range(400)]
    cases += [tuple(np.float64(v) for v in c) for c in cases[:200]]
    with np.errstate(all="ignore"):
        for c in cases:
            got, ref = risk.systemic_risk_index(*c), former_systemic_risk_index(*c)
            assert type(got) is type(ref) is float
            assert got.hex() == ref.hex() or (got != got and ref != ref), c
