"""The model's run-time state, declared in one place.

Everything a :class:`~finsim_mesa.model.FinancialModel` changes from step to
step, apart from the ledger, the market and the agents, lives in the small
dataclasses below. Reporters read them by name (see
:data:`finsim_mesa.measures.MODEL_REPORTERS`), and :func:`copy_state` /
:func:`restore_state` copy any of them field by field, so a field added here is
covered by ``FinancialModel.snapshot()`` without further code.

Shapes: ``n`` banks, ``k`` asset classes. Money in currency units.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, TypeVar

import numpy as np

from finsim_mesa import pyrandom
from finsim_mesa.stepcopy import StepNumbers

__all__ = ["Decisions", "Measures", "Reference", "RewardBreakdown", "Sheets", "StepFlows",
           "copy_state", "restore_model", "restore_state", "snapshot_model", "transaction"]

#: the model's attributes that hold the dataclasses below
MODEL_STATE = ("sheets", "flows", "measures", "reward", "decisions", "reference")
#: the ones a step never changes in place: each field gets a new value (flows'
#: arrays, by contrast, are added to and zeroed in place)
REPLACED_STATE = ("sheets", "measures", "reward", "decisions", "reference")
_REPLACED = attrgetter(*REPLACED_STATE)  # (one C call: _step_state)

T = TypeVar("T")


def _empty() -> np.ndarray:
    return np.zeros(0)


@dataclass
class Sheets:
    """Balance-sheet figures derived from the ledger, refreshed after each change
    (all shape (n,), money unless stated)."""

    asset_values: np.ndarray = field(default_factory=_empty)
    interbank_assets: np.ndarray = field(default_factory=_empty)
    interbank_liabilities: np.ndarray = field(default_factory=_empty)
    total_assets: np.ndarray = field(default_factory=_empty)
    rwa: np.ndarray = field(default_factory=_empty)
    # equity / risk-weighted assets; 0 once defaulted
    capital_ratio: np.ndarray = field(default_factory=_empty)


@dataclass
class StepFlows:
    """What moved in the current step (reset by the stage that produces it).

    Attributes:
        withdrawals: shape (n,), deposit withdrawals due at the next clearing.
        units_sold: shape (k,), units sold to the market this step (price impact).
        price_prev: price index at the start of the step.
        interbank_volume: new interbank lending settled this step.
        rollover_volume: maturing interbank loans rolled over this step.
        exchange_fees: fees paid to exchanges this step.
        margin_called: margin called by CCPs this step.
        fire_sale_volume: value (at pre-impact prices) of all units sold this step.
        contagion_depth: default rounds of this step's clearings (from 5,000
            institutions, the clearing's fast path: default waves; see
            :mod:`finsim_mesa.clearing`).
    """

    withdrawals: np.ndarray = field(default_factory=_empty)
    units_sold: np.ndarray = field(default_factory=_empty)
    price_prev: float = 1.0
    interbank_volume: float = 0.0
    rollover_volume: float = 0.0
    exchange_fees: float = 0.0
    margin_called: float = 0.0
    fire_sale_volume: float = 0.0
    contagion_depth: int = 0


@dataclass
class Measures:
    """Model-level measures of the current state: what the DataCollector records.

    Ratios are fractions; money in currency units; indices in [0, 1] unless
    stated. The infrastructure figures stay 0 while the layer is off.
    """

    n_defaults: int = 0
    default_rate: float = 0.0
    asset_price: float = 1.0           # mean price relative to the initial price
    price_return: float = 0.0          # log change of the price index this step
    stress_index: float = 0.0
    market_stress: float = 0.0         # max(scenario stress level, stress index)
    interbank_rate: float = 0.0        # per step
    debtrank: float = 0.0              # DebtRank of the current distress
    debtrank_total: float = 0.0        # total distress incl. the initial one
    total_equity: float = 0.0
    mean_capital_ratio: float = 0.0
    min_capital_ratio: float = 0.0
    interbank_exposure: float = 0.0
    liquidity_index: float = 0.0       # cash / short-term liabilities, capped
    systemic_risk_index: float = 0.0
    # --- infrastructure layer
    exchange_utilisation: float = 0.0  # mean demand / capacity of the exchanges
    congested_exchanges: int = 0
    order_backlog: float = 0.0
    orders_expired: float = 0.0
    margin_posted: float = 0.0
    netting_efficiency: float = 0.0
    default_fund_used: float = 0.0
    uncovered_loss: float = 0.0
    routed_transactions: int = 0


@dataclass
class RewardBreakdown:
    """This step's rewards: per bank and the means over banks still in the game.

    ``R = w·profit + μ·liquidity − α·default − λ·system_risk`` (weights in the
    config; see :mod:`finsim_mesa.rewards`).

    Attributes:
        per_bank: shape (n,), each bank's reward.
        components: name -> shape (n,), the four unweighted components.
        equity_prev: shape (n,), equity at the last record (profit reference).
    """

    per_bank: np.ndarray = field(default_factory=_empty)
    components: dict[str, np.ndarray] = field(default_factory=dict)
    equity_prev: np.ndarray = field(default_factory=_empty)
    mean: float = 0.0
    profit: float = 0.0
    liquidity: float = 0.0
    default: float = 0.0
    system_risk: float = 0.0


@dataclass
class Decisions:
    """The decide stage's input and output.

    Attributes:
        observations: shape (n, obs_dim), this step's observation rows.
        actions: shape (n, 4), this step's actions (lend, hoard, sell, borrow).
        overrides: bank id -> fixed action, shape (4,) (what-if analysis).
    """

    observations: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    actions: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    overrides: dict[int, np.ndarray] = field(default_factory=dict)


@dataclass
class Reference:
    """Reference values fixed at the start of a run.

    Attributes:
        assets0: shape (n,), initial total assets (DebtRank's economic value).
        size0: initial mean total assets (scale of the ``size`` observation).
        liquidity0: initial liquidity index (scale of illiquidity).
        exposures0: the initial interbank exposure matrix (n, n) (sparse; what the
            systemic-importance ranking propagates on).
        debtrank0: shape (n,), each bank's DebtRank on the initial network,
            computed on first use (``None`` before).
    """

    assets0: np.ndarray = field(default_factory=_empty)
    size0: float = 1.0
    liquidity0: float = 0.0
    exposures0: Any = None
    debtrank0: np.ndarray | None = None


_SHARED = frozenset({float, int, bool, str, type(None)})  # immutable: shared, not copied


def _copy(value: Any) -> Any:
    """A copy of a state value: arrays, dicts and lists copied, scalars shared."""
    kind = type(value)
    if kind in _SHARED:  # (the usual field: tested first, by its exact type)
        return value
    if kind is np.ndarray or isinstance(value, np.ndarray):  # (the exact type first)
        return value.copy()
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


_FIELDS: dict[type, tuple[str, ...]] = {}


def _names(cls: type) -> tuple[str, ...]:
    if cls not in _FIELDS:
        _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return _FIELDS[cls]


def copy_state(obj: T) -> T:
    """A copy of a state value or dataclass whose arrays and containers are copies
    too (the fields hold arrays, dicts, lists and immutable scalars only)."""
    cls = type(obj)
    names = _FIELDS.get(cls)
    if names is None:
        if not dataclasses.is_dataclass(obj):
            return _copy(obj)
        names = _names(cls)
    return cls(**{name: _copy(getattr(obj, name)) for name in names})


def restore_state(target: Any, saved: Any) -> None:
    """Copy every field of ``saved`` into ``target`` (same dataclass), in place, so
    that references to ``target`` stay valid. ``saved`` may also be a dict of the
    field values (a step's transaction holds them so: :func:`_fields`)."""
    if type(saved) is dict:
        for name in _names(type(target)):
            setattr(target, name, _copy(saved[name]))
        return
    for name in _names(type(target)):
        setattr(target, name, _copy(getattr(saved, name)))


def log_state(log: list, shallow: bool) -> list | tuple[list, int]:
    """A snapshot of an append-only log (a list only ever appended to): a copy,
    or with ``shallow`` the list itself and its length, O(1) instead of O(len)
    (what a step's transaction takes: the log grows by a few entries a step, so
    copying it would make each step cost more than the one before)."""
    return (log, len(log)) if shallow else list(log)


def log_restore(saved: list | tuple[list, int]) -> list:
    """The log a :func:`log_state` saved, as a new list."""
    if isinstance(saved, tuple):
        log, length = saved
        return log[:length]
    return list(saved)


_PLAIN: dict[type, bool] = {}  # class -> its instances are plain (see _shallow)


def _shallow(obj: T) -> T:
    """``copy.copy`` of a plain dataclass (fields in ``__dict__``, no ``__copy__``):
    a new instance holding the same field values, without ``copy``'s generic
    reduce protocol (a quarter of the cost). Whether a class is plain is looked
    up once."""
    cls = type(obj)
    plain = _PLAIN.get(cls)
    if plain is None:
        plain = _PLAIN[cls] = not (hasattr(obj, "__copy__") or not hasattr(obj, "__dict__")
                                   or hasattr(obj, "__slots__"))
    if not plain:
        return copy.copy(obj)
    new = object.__new__(cls)
    new.__dict__.update(obj.__dict__)
    return new


def _fields(obj: Any) -> Any:
    """The field values of a state dataclass as they are now, without copying them:
    a plain instance's ``__dict__`` copied (a dict, a quarter of the cost of a new
    instance), else :func:`_shallow`'s copy (:func:`restore_state` takes either)."""
    cls = type(obj)
    if _PLAIN.get(cls) is None:
        _shallow(obj)  # (looks the class up)
    return obj.__dict__.copy() if _PLAIN[cls] else _shallow(obj)


def _copied_fields(obj: Any) -> Any:
    """:func:`copy_state`'s copy as :func:`_fields`' dict (a plain instance: no
    new instance built, scalars taken as they are, arrays and containers copied)."""
    cls = type(obj)
    if _PLAIN.get(cls) is None:
        _shallow(obj)  # (looks the class up)
    if not _PLAIN[cls]:
        return copy_state(obj)
    out = obj.__dict__.copy()  # (values replaced in place: the keys and order stay; a
    for k, v in out.items():  # scalar, the usual field, tested once; an array copied
        if type(v) not in _SHARED:  # without _copy's call)
            out[k] = v.copy() if type(v) is np.ndarray else _copy(v)
    return out


def _step_state(model: Any) -> dict[str, Any]:
    """The transaction's copy of :data:`MODEL_STATE`: the dataclasses a step only replaces by
    their field values (plain ones: their ``__dict__`` copied, written out), the others copied."""
    sheets, measures, reward, decisions, reference = _REPLACED(model)  # (in REPLACED_STATE's order)
    plain = _PLAIN.get
    if (plain(type(sheets)) and plain(type(measures)) and plain(type(reward))
            and plain(type(decisions)) and plain(type(reference))):
        return {"sheets": sheets.__dict__.copy(), "flows": _copied_fields(model.flows),
                "measures": measures.__dict__.copy(), "reward": reward.__dict__.copy(),
                "decisions": decisions.__dict__.copy(), "reference": reference.__dict__.copy()}
    return {name: (_fields if name in REPLACED_STATE else _copied_fields)(getattr(model, name))
            for name in MODEL_STATE}  # (a class not looked up yet, or not plain)


def snapshot_model(model: Any, shallow_logs: bool = False) -> dict[str, Any]:
    """Copies of everything that changes as a FinancialModel runs: the clock and its
    generators, the ledger, the market, the dataclasses of :data:`MODEL_STATE`,
    the shock log, the brains' own generators, the router, exchanges and CCPs.
    Each component copies itself (``snapshot()``); nothing holds a reference
    into the live model, except with ``shallow_logs`` (the step's transaction):
    the append-only logs (shock log, exchange histories, the router's audit)
    are then held with their length (:func:`log_state`), the dataclasses a
    step only ever *replaces* field by field (:data:`REPLACED_STATE`; tested:
    their arrays are read-only through steps) by their field values
    (:func:`_fields`), the loan book as its rows (``Ledger.snapshot(quick=True)``),
    the generators as their raw bytes (:mod:`finsim_mesa.pyrandom`), and where it
    applies ledger, market and generators as one :class:`StepNumbers` (all four keys)."""
    quick, bits = shallow_logs, model.rng.bit_generator
    numbers = StepNumbers.of(model) if quick else None  # (None: each part on its own)
    return {
        "t": model.t, "running": model.running, "collapsed": model.collapsed,
        "rng": numbers or (pyrandom.save_bits(bits) if quick else bits.state),
        "random": numbers or (pyrandom.save(model.random) if quick else model.random.getstate()),
        "ledger": numbers or model.ledger.snapshot(quick),
        "market": numbers or model.market.snapshot(),
        "state": (_step_state(model) if quick
                  else {name: copy_state(getattr(model, name)) for name in MODEL_STATE}),
        "shock_log": log_state(model.shock_log, quick),
        "sib_scores": None if model.sib_scores is None else copy_state(model.sib_scores),
        "brains": model.brains.snapshot(model.rng),
        "router": model.router.snapshot(quick) if model.router is not None else None,
        "exchanges": [e.snapshot(quick) for e in exchanges] if (exchanges := model.exchanges)
        else [], "ccps": [c.snapshot() for c in ccps] if (ccps := model.ccps) else [],
    }


def restore_model(model: Any, snap: Mapping[str, Any]) -> None:
    """Put a :func:`snapshot_model` back into ``model`` (it, or a model with the same
    configuration and network); the snapshot stays valid for reuse.

    Mesa's own clock (``steps``, and ``time`` with its event schedule in Mesa
    3.5) is left alone: the model counts its steps in ``t``.
    """
    if type(snap["ledger"]) is StepNumbers:  # (a step's: the four parts, as each takes them)
        snap = {**snap, **snap["ledger"].parts()}
    model.t = snap["t"]
    model.running, model.collapsed = snap["running"], snap["collapsed"]
    pyrandom.put_back_bits(model.rng.bit_generator, snap["rng"])  # (either kind of state)
    pyrandom.put_back(model.random, snap["random"])  # (setstate, for either kind of state)
    model.ledger.restore(snap["ledger"])
    model.market.restore(snap["market"])
    for name in MODEL_STATE:
        restore_state(getattr(model, name), snap["state"][name])
    model.shock_log = log_restore(snap["shock_log"])
    model.sib_scores = copy_state(snap["sib_scores"])
    model.brains.restore(snap["brains"])
    if model.router is not None:
        model.router.restore(snap["router"])
    for agent, state in zip([*model.exchanges, *model.ccps], snap["exchanges"] + snap["ccps"],
                            strict=True):
        agent.restore(state)


def _rewind_mesa_clock(model: Any) -> None:
    """Undo what Mesa did to its clock for a step that failed inside the model's
    ``step()``: Mesa counted the step before calling it; in Mesa >= 3.5 the step is
    an event at ``model.time`` whose generator, having raised, did not schedule
    the next one — so time goes back one unit and the step is scheduled again."""
    model.steps -= 1
    generator = getattr(model, "_default_schedule", None)
    if generator is not None and hasattr(generator, "_schedule_next"):
        failed_at = model.time
        model.time = failed_at - 1
        generator._schedule_next(failed_at)


class transaction:  # lower case: used like the function it was, ``with transaction(m):``
    """All or nothing: if the body raises anything, the model's state (a
    :func:`snapshot_model`), its DataCollector records and Mesa's clock are put
    back as they were before, and the exception goes on. Use it around the
    body of ``step()``. (A class rather than ``contextlib.contextmanager``: no
    generator to drive, once a step.)"""

    __slots__ = ("_mark", "_model", "_snap")

    def __init__(self, model: Any) -> None:
        self._model = model

    def __enter__(self) -> None:
        model = self._model
        self._snap = snapshot_model(model, shallow_logs=True)
        self._mark = model.datacollector.mark()

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        if kind is not None:  # the exception goes on (nothing returned)
            model = self._model
            restore_model(model, self._snap)
            model.datacollector.rollback(self._mark)
            _rewind_mesa_clock(model)
