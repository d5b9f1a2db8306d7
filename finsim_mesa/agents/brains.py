"""Brains: how banks decide. One call per brain per step, for all its banks.

The protocol is ``act(observations) -> actions`` with ``observations`` of
shape (b, obs_dim) (columns in :data:`finsim_mesa.observation.OBS_FIELDS`) and
actions of shape (b, 4) in [0, 1]: lend, hoard, sell, borrow (meanings in
:data:`finsim_mesa.observation.ACTIONS`). A new brain is a few lines::

    class Cautious(Brain):
        name = "cautious"
        def act(self, obs):
            a = np.zeros((len(obs), 4))
            a[:, 1] = obs[:, OBS["market_stress"]]   # hoard as stress rises
            return a
"""

from __future__ import annotations

from collections.abc import Sequence
from math import isfinite
from typing import Any, Protocol, runtime_checkable

import numpy as np

from finsim_mesa.errors import BrainError, ConfigError
from finsim_mesa.fastmath import ONE, ZERO, clip, constant
from finsim_mesa.observation import OBS

_min_of, _max_of = np.minimum.reduce, np.maximum.reduce
try:  # the ufunc np.clip calls, without its Python wrapper
    from numpy._core.umath import clip as _clip
except ImportError:  # pragma: no cover - NumPy < 2
    _clip = np.clip
# RuleBasedBrain's numbers: as Python floats, and as float64 0-d arrays (the same values
# with float64 observations, converted once instead of on every call)
_RULE_NUMBERS = (5.0, 0.8, 0.0, 1.0, 0.5, 0.1, 1.5)
_RULE_F64 = tuple(constant(x) for x in _RULE_NUMBERS)
_F64 = np.dtype(np.float64)  # (a float64 array's dtype is this one; any other: the floats)
_STRESS, _CP_STRESS, _COVERAGE, _CAPITAL, _OWN = (OBS[k] for k in (
    "market_stress", "counterparty_stress", "liquidity_coverage", "capital_ratio",
    "own_distress"))

__all__ = [
    "BRAINS",
    "Brain",
    "BrainLike",
    "ConservativeBrain",
    "ConstantBrain",
    "GreedyBrain",
    "MyopicBrain",
    "PassiveBrain",
    "RandomBrain",
    "RuleBasedBrain",
    "brain_name",
    "check_actions",
    "make_brain",
]


@runtime_checkable
class BrainLike(Protocol):
    """Anything with ``act(observations: ndarray[b, d]) -> ndarray[b, 4]``."""

    def act(self, observations: np.ndarray) -> np.ndarray: ...


class Brain:
    """Base class. ``setup(model)`` is called once when a model adopts the brain.

    ``act`` gets a row-major copy of its banks' observation rows; a brain that
    only reads whole columns may set ``reads_columns = True`` to get a
    column-major copy instead (the same values, each column contiguous: what
    the built-in rule brains do). A brain class that also never writes into its
    input may set ``reads_only = True`` in its own body (a subclass does not
    inherit it): when it acts for every bank it then gets the model's
    column-major matrix itself, read-only, instead of a copy. A class whose
    ``act`` computes each bank's actions from that bank's row alone (and its
    fixed settings) and changes nothing may set ``rowwise = True`` too (again in
    its own body): when some banks are out it then gets every bank's row, and
    the actions of the banks that are out are dropped (the same actions for the
    others, without copying their rows out).
    """

    name = "brain"
    reads_columns = False
    reads_only = False
    rowwise = False

    def setup(self, model: Any) -> None:
        """Bind to a model (e.g. take its random generator). Default: nothing."""

    def act(self, observations: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class PassiveBrain(Brain):
    """No behaviour at all (all zeros): for pure contagion studies."""

    name = "passive"
    reads_columns = True
    reads_only = True
    rowwise = True

    def act(self, observations: np.ndarray) -> np.ndarray:
        return np.zeros((len(observations), 4))


class RandomBrain(Brain):
    """Uniform random actions, drawn from the model's generator."""

    name = "random"
    reads_columns = True
    reads_only = True

    def __init__(self) -> None:
        self.rng: np.random.Generator | None = None

    def setup(self, model: Any) -> None:
        self.rng = model.rng

    def act(self, observations: np.ndarray) -> np.ndarray:
        if self.rng is None:
            raise RuntimeError("RandomBrain needs setup(model) before act() (it uses model.rng)")
        return self.rng.random((len(observations), 4))


class _RequirementAware(Brain):
    """A brain whose rules refer to the model's capital requirement."""

    reads_columns = True

    def __init__(self, capital_requirement: float = 0.05) -> None:
        self.capital_requirement = capital_requirement

    def setup(self, model: Any) -> None:
        self.capital_requirement = model.config.capital_requirement


class RuleBasedBrain(_RequirementAware):
    """A prudent treasurer's rules of thumb.

    * lend surplus cash (coverage above 1) while counterparties and markets are calm;
    * hoard (refuse roll-over) as market stress and own distress rise;
    * sell assets when the capital ratio nears the requirement;
    * borrow when cash does not cover what may fall due (coverage below 1).
    """

    name = "rule_based"
    reads_only = True
    rowwise = True

    def act(self, observations: np.ndarray) -> np.ndarray:
        o = observations
        five, p8, zero, one, half, p1, p15 = (_RULE_F64 if getattr(o, "dtype", None) is _F64
                                              else _RULE_NUMBERS)
        c = o.T  # the columns as rows (views; contiguous for the model's column-major matrix)
        stress = np.maximum(c[_STRESS], c[_CP_STRESS])
        coverage = c[_COVERAGE] * five
        headroom = c[_CAPITAL] / max(self.capital_requirement, 1e-9)
        own = c[_OWN]
        # the four actions' terms and calm (row 4) as the rows of one block, all
        # clipped to [0, 1] at once (clip is elementwise: the same values as one by
        # one), returned as its first four rows' transpose, shape (b, 4)
        a = np.empty((5, len(o)))
        np.subtract(coverage, one, out=a[0])  # lend only liquidity to spare (x calm)
        np.subtract(half * stress + own, p1, out=a[1])
        np.subtract(p15, headroom, out=a[2])
        np.subtract(one, coverage, out=a[3])  # borrow only when short
        np.subtract(p8 - stress, own, out=a[4])  # calm
        # min(max(a, 0), 1) by np.clip's ufunc in one pass: it may keep a -0.0 that
        # maximum makes +0.0, and no row above is -0.0 (x - y is -0.0 only for x = -0.0,
        # y = +0.0: each row's y is a non-zero constant or its x one)
        _clip(a, zero, one, out=a)
        # (another dtype than float64: calm in it, as before, not rounded to float64 first
        # - long double observations would round twice)
        a[0] *= a[4] if five is not _RULE_NUMBERS[0] else clip(p8 - stress - own, zero, one)
        return a[:4].T


class MyopicBrain(Brain):
    """Maximises this step's income: lends everything it can, never sells
    (a sale realises a discount), borrows only when about to run out of cash."""

    name = "myopic"
    reads_columns = True
    reads_only = True
    rowwise = True

    def act(self, observations: np.ndarray) -> np.ndarray:
        a = np.zeros((len(observations), 4))
        a[:, 0] = 1.0
        a[:, 3] = (observations[:, OBS["liquidity_coverage"]] * 5.0 < 1.0).astype(float)
        return a


class GreedyBrain(Brain):
    """Maximal balance-sheet growth: lend all, borrow all, never hoard or sell."""

    name = "greedy"
    reads_columns = True
    reads_only = True
    rowwise = True

    def act(self, observations: np.ndarray) -> np.ndarray:
        a = np.zeros((len(observations), 4))
        a[:, 0] = 1.0
        a[:, 3] = 1.0
        return a


class ConservativeBrain(_RequirementAware):
    """Hoards liquidity (rolls over only half its maturing loans), lends little,
    sells early, never borrows."""

    name = "conservative"
    reads_only = True
    rowwise = True

    def act(self, observations: np.ndarray) -> np.ndarray:
        a = np.zeros((len(observations), 4))
        a[:, 0] = 0.1
        a[:, 1] = 0.5
        headroom = observations[:, OBS["capital_ratio"]] / max(self.capital_requirement, 1e-9)
        a[:, 2] = clip(2.0 - headroom, 0.0, 1.0)
        return a


class ConstantBrain(Brain):
    """Plays one fixed action vector whatever it observes: a *stance*. Written
    ``"constant:lend,hoard,sell,borrow"`` as a brain name (e.g. ``"constant:0,1,1,0"``).

    Args:
        action: 4 numbers in [0, 1]: lend, hoard, sell, borrow.

    Raises:
        ConfigError: not 4 finite numbers in [0, 1].
    """

    name = "constant"
    reads_columns = True
    reads_only = True
    rowwise = True

    def __init__(self, action: Sequence[float]) -> None:
        try:
            a = np.asarray(action, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            raise ConfigError(f"constant brain: action {action!r} is not 4 numbers "
                              "(lend, hoard, sell, borrow)") from None
        if a.size != 4 or not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 1:
            raise ConfigError(f"constant brain: action {list(np.atleast_1d(action))!r} must be "
                              "4 numbers in [0, 1] (lend, hoard, sell, borrow), e.g. "
                              "'constant:0,1,1,0'")
        self.action = a
        self.name = "constant:" + ",".join(f"{v:.4g}" for v in a)

    @classmethod
    def parse(cls, spec: str) -> ConstantBrain:
        """``"constant:0,1,1,0"`` -> ConstantBrain([0, 1, 1, 0])."""
        body = spec.partition(":")[2]
        try:
            values = [float(v) for v in body.split(",")]
        except ValueError:
            raise ConfigError(f"brain = {spec!r}: write a constant stance as "
                              "'constant:lend,hoard,sell,borrow' with 4 numbers in [0, 1], "
                              "e.g. 'constant:0,1,1,0'") from None
        return cls(values)

    def act(self, observations: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.action, (len(observations), 4)).copy()


BRAINS: dict[str, type[Brain]] = {
    cls.name: cls
    for cls in (RandomBrain, RuleBasedBrain, MyopicBrain, GreedyBrain, ConservativeBrain,
                PassiveBrain)
}


def make_brain(spec: str | BrainLike) -> BrainLike:
    """A brain from a name in :data:`BRAINS` or any object with ``act``.

    Raises:
        ConfigError: unknown name or an object without ``act``.
    """
    if isinstance(spec, str):
        if spec.startswith("constant:"):
            return ConstantBrain.parse(spec)
        if spec not in BRAINS:
            raise ConfigError(f"brain = {spec!r}: unknown brain; choose one of "
                              f"{', '.join(BRAINS)} or pass an object with act(observations)")
        return BRAINS[spec]()
    if isinstance(spec, type):
        raise ConfigError(f"brain = {spec.__name__}: that is a class; pass an instance, "
                          f"e.g. brain={spec.__name__}()")
    if isinstance(spec, BrainLike):
        return spec
    raise ConfigError(f"brain = {spec!r}: a brain must be a name ({', '.join(BRAINS)}) or an "
                      "object with an act(observations) -> actions method")


def brain_name(brain: BrainLike) -> str:
    """Display name of a brain."""
    return getattr(brain, "name", type(brain).__name__)


def check_actions(brain: Any, out: Any, rows: int) -> np.ndarray:
    """A brain's output as actions, shape (rows, 4), clipped to [0, 1].

    Raises:
        BrainError: not numbers, a wrong shape, NaN or infinite values, or values
            outside [0, 1] (beyond 1e-6), naming the brain.
    """
    try:
        arr = np.asarray(out)
        if arr.dtype.kind not in "biuf":  # complex, strings, objects: not actions
            raise TypeError
        arr = np.array(arr, dtype=float, order="C")  # our own copy, clipped in place below
    except (TypeError, ValueError):
        raise BrainError(f"brain '{brain_name(brain)}' returned {type(out).__name__}, not an "
                         "array of numbers") from None
    if arr.shape != (rows, 4):
        raise BrainError(f"brain '{brain_name(brain)}' returned actions of shape {arr.shape}; "
                         f"expected ({rows}, 4): lend, hoard, sell, borrow per bank")
    if not arr.size:
        return arr
    # arr.min() / arr.max() without their Python layer; NaN propagates to both
    lo, hi = _min_of(arr, axis=None), _max_of(arr, axis=None)
    if not (lo >= -1e-6 and hi <= 1 + 1e-6):  # (False for NaN and infinities too)
        if not (isfinite(lo) and isfinite(hi)):
            bad = int(np.argwhere(~np.isfinite(arr))[0][0])
            raise BrainError(f"brain '{brain_name(brain)}' returned NaN or infinite actions "
                             f"(first in row {bad})")
        raise BrainError(f"brain '{brain_name(brain)}' returned actions outside [0, 1] "
                         f"(min {lo:g}, max {hi:g})")
    np.maximum(arr, ZERO, out=arr)  # clip(arr, 0, 1): the same ufuncs, in place (float64)
    if hi > 1.0:  # (else min(x, 1.0) is x for every entry, which is at most 1)
        np.minimum(arr, ONE, out=arr)
    return arr
