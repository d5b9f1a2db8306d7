"""What-if lookahead and recommendations for a live model.

A what-if copies the live model's state (``FinancialModel.snapshot()``: the
ledger, the market, the run-time state, exchange queues, CCP counters — data,
never the Python object graph) into a reusable *scratch* model with the same
configuration, network and brains (``FinancialModel.restore()``), and runs it
``steps`` ahead on each of the Monte-Carlo ``seeds``, once
without change (the baseline) and once under the hypothetical, on the same
seeds (common random numbers, so differences are paired). The live model is
never changed.

Hypotheticals: a shock (``shock={"kind": ..., "magnitude": ..., "banks": ...}``,
as :meth:`FinancialModel.apply_shock`), a policy change (``brains={bank: brain}``),
or fixed actions for some banks (``actions={bank: [lend, hoard, sell, borrow]}``).

Outcomes per run (after ``steps`` steps): ``defaults`` (new defaults),
``equity_change`` (equity of all banks after minus before, money: negative is
a loss; defaulted banks count as 0),
``debtrank`` (DebtRank total distress), ``price`` (price index; with several
asset classes also ``price_<class>``, each relative to its initial price), and
for ``bank``: its ``bank_equity`` (0 if it defaulted) and ``bank_defaulted``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from finsim_mesa.agents.brains import BRAINS
from finsim_mesa.errors import ConfigError, ShockError
from finsim_mesa.forked import AUTO, check_workers, run_all
from finsim_mesa.intervals import ci95
from finsim_mesa.resources import estimate_memory
from finsim_mesa.scenarios.engine import make_shock

if TYPE_CHECKING:
    from finsim_mesa.model import FinancialModel

__all__ = ["CANDIDATES", "Recommendation", "WhatIfResult", "recommend", "what_if"]

OUTCOMES = ("defaults", "equity_change", "debtrank", "price", "bank_equity", "bank_defaulted")

# The default grid of candidate actions for a recommendation (lend, hoard, sell,
# borrow in [0, 1]; see finsim_mesa.observation.ACTIONS). "own_brain" (no
# override: the bank's current brain, e.g. a trained policy) is added to it.
CANDIDATES: dict[str, tuple[float, float, float, float]] = {
    "hold": (0.0, 0.0, 0.0, 0.0),
    "lend": (1.0, 0.0, 0.0, 0.0),
    "hoard": (0.0, 1.0, 0.0, 0.0),
    "sell": (0.0, 0.0, 1.0, 0.0),
    "sell_half": (0.0, 0.0, 0.5, 0.0),
    "borrow": (0.0, 0.0, 0.0, 1.0),
    "hoard_and_sell": (0.0, 1.0, 1.0, 0.0),
    "hoard_and_borrow": (0.0, 1.0, 0.0, 1.0),
    "lend_and_borrow": (1.0, 0.0, 0.0, 1.0),
}

def _brain_specs(model: FinancialModel, override: Mapping[int, Any] | None) -> list[Any]:
    """Per-bank brain specs for a scratch model: built-in brains by name (fresh
    instances), anything else as the same object."""
    specs: list[Any] = []
    for brain in model.brains.per_bank:
        name = getattr(brain, "name", None)
        fresh = name in BRAINS and type(brain) is BRAINS[name]
        specs.append(name if fresh else brain)
    for bank, brain in (override or {}).items():
        specs[_bank(model, bank)] = brain
    return specs


def _bank(model: FinancialModel, bank: Any) -> int:
    if not isinstance(bank, int | np.integer) or not 0 <= bank < model.n_banks:
        raise ConfigError(f"bank = {bank!r}: must be a bank id in 0..{model.n_banks - 1}")
    return int(bank)


class _Scratch:
    """A model built once and reused for every lookahead run."""

    def __init__(self, live: FinancialModel, brains: Mapping[int, Any] | None) -> None:
        self.live = live
        specs = _brain_specs(live, brains)
        # only built-in brains, made fresh for this model: no object shared with the
        # caller that might keep state from one run to the next
        self.own_brains = all(isinstance(s, str) for s in specs)
        self.model = live.twin(brain=specs, agent_collect_every=0,
                               ranking_every=0, steps=10**9)
        self.model.collect_data = False
        # the brains' own generators (a user's brain drawing from one of its own)
        # as they are now: every run starts from them, so the runs do not depend on
        # each other or their order (nor on how forked workers share them out)
        self.brain_rngs = self.model.brains.snapshot(self.model.rng)

    def run(self, state: dict[str, Any], seed: int, steps: int,
            shock: Mapping[str, Any] | None, actions: Mapping[int, np.ndarray],
            bank: int | None, debtrank: bool = True) -> dict[str, float]:
        """One lookahead run from ``state`` on ``seed``; ``debtrank=False`` leaves
        out the final DebtRank (the one full measure of a run; a recommendation
        reads only the bank's outcome and the defaults)."""
        m = self.model
        m.restore(state)
        m.running = True
        m.rng = np.random.default_rng(seed)
        m.brains.setup(m)  # e.g. RandomBrain takes this run's generator
        m.brains.restore(self.brain_rngs)
        m.decisions.overrides = dict(actions)
        L = m.ledger
        eq0 = np.maximum(L.equity, 0.0).sum()
        defaults0 = int(L.defaulted.sum())
        if shock:
            m.apply_shock(**shock)
        for _ in range(steps):
            m.step()
        out = {"defaults": float(L.defaulted.sum() - defaults0),
               "equity_change": float(np.maximum(np.where(L.defaulted, 0.0, L.equity),
                                                 0.0).sum() - eq0)}
        if debtrank:
            m.measure()  # the full measures (DebtRank) once, at the end of the run
            out["debtrank"] = m.measures.debtrank_total
        out["price"] = m.market.price_index
        if len(m.market.names) > 1:  # each asset class's price / its initial price
            rel = m.market.prices / m.market.initial_prices
            out |= {f"price_{c}": float(v) for c, v in zip(m.market.names, rel, strict=True)}
        if bank is not None:
            out["bank_equity"] = 0.0 if L.defaulted[bank] else float(L.equity[bank])
            out["bank_defaulted"] = float(L.defaulted[bank])
        return out

    def rebind(self) -> None:
        """Shared (non built-in) brains go back to the live model, their own
        generators as they were before the runs."""
        self.model.brains.restore(self.brain_rngs)
        self.live.brains.setup(self.live)


def _run_all(jobs: list[Any], workers: Any, scratches: Sequence[_Scratch]) -> list[Any]:
    """The runs through :func:`finsim_mesa.forked.run_all`; ``"auto"`` stays in one
    process where a brain is the caller's object (it might keep state between
    runs: the results would then depend on the split, so on the timing)."""
    if workers == AUTO and not all(s.own_brains for s in scratches):
        workers = 1
    live = scratches[0].live
    models = len({id(s) for s in scratches})  # what a child may copy: the scratch models
    memory = models * estimate_memory(live.config, live.graph.number_of_edges())
    return run_all(jobs, workers, memory=memory)


def _is_int(x: Any) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool | np.bool_)


def _seeds(seeds: Any) -> list[int]:
    if _is_int(seeds):
        if seeds <= 0:
            raise ConfigError(f"seeds = {seeds}: give a positive number of Monte-Carlo seeds")
        return list(range(int(seeds)))
    if isinstance(seeds, str | bytes) or not isinstance(seeds, Sequence | np.ndarray):
        raise ConfigError(f"seeds = {seeds!r}: give a number of seeds or a list of seeds")
    bad = [s for s in seeds if not _is_int(s) or s < 0]
    if bad:
        raise ConfigError(f"seeds = {list(seeds)!r}: seeds must be integers >= 0 (got {bad!r})")
    if not len(seeds):
        raise ConfigError("seeds: give at least one seed")
    twice = sorted({int(s) for s in seeds if list(seeds).count(s) > 1})
    if twice:  # the same run again: no new information, a falsely narrow interval
        raise ConfigError(f"seeds: {twice} given more than once; give each seed once")
    return [int(s) for s in seeds]


def _summarise(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    rows = []
    for variant, g in df.groupby("variant", sort=False):
        for col in columns:
            mean, std, low, high = ci95(g[col].to_numpy(dtype=float))
            if len(g) < 2:
                std = float("nan")  # one seed: no spread to measure (printed n/a)
            rows.append({"variant": variant, "outcome": col, "mean": mean, "std": std,
                         "ci95_low": low, "ci95_high": high})
    return pd.DataFrame(rows)


@dataclass
class WhatIfResult:
    """Outcomes of a what-if: ``runs`` has one row per (variant, seed);
    ``summary`` mean, std and 95% t-interval per variant and outcome;
    ``difference`` the paired hypothetical − baseline differences. With one
    seed the std and the interval are NaN (printed n/a, null in JSON)."""

    runs: pd.DataFrame
    summary: pd.DataFrame
    difference: pd.DataFrame
    steps: int
    seeds: list[int]

    def __str__(self) -> str:
        fmt = {"index": False, "float_format": lambda v: f"{v:.4g}", "na_rep": "n/a"}
        with pd.option_context("display.width", 140):
            return (f"what-if over {self.steps} steps, {len(self.seeds)} seeds\n"
                    + self.summary.to_string(**fmt)
                    + "\n\nhypothetical - baseline (paired by seed):\n"
                    + self.difference.to_string(**fmt)
                    + ("\n(one seed: no spread, so no interval: n/a)"
                       if len(self.seeds) < 2 else ""))


def _validate(model: FinancialModel, steps: int, shock: Mapping[str, Any] | None,
              actions: Mapping[int, Any] | None) -> dict[int, np.ndarray]:
    if not _is_int(steps) or steps <= 0:
        raise ConfigError(f"steps = {steps!r}: look ahead at least 1 step (an integer)")
    if shock is not None:
        if not isinstance(shock, Mapping) or "kind" not in shock:
            raise ShockError("shock must be a mapping with 'kind' (and 'magnitude', 'banks')")
        unknown = set(shock) - {"kind", "magnitude", "banks", "asset"}
        if unknown:
            raise ShockError(f"shock has unknown keys {sorted(unknown)}; use kind, magnitude, "
                             "banks, asset")
    out = {}
    if actions is not None and not isinstance(actions, Mapping):
        raise ConfigError(f"actions = {actions!r}: give a mapping {{bank_id: [lend, hoard, "
                          "sell, borrow]}}")
    for bank, a in (actions or {}).items():
        try:
            vec = np.asarray(a).reshape(-1)
            ok = vec.dtype.kind in "iuf" and vec.shape == (4,)
            vec = vec.astype(float) if ok else vec
        except (TypeError, ValueError):
            ok = False
        if not ok or not np.all(np.isfinite(vec)) or vec.min() < 0 or vec.max() > 1:
            raise ConfigError(f"actions[{bank}] = {a!r}: give 4 numbers in [0, 1] "
                              "(lend, hoard, sell, borrow)")
        out[_bank(model, bank)] = vec
    return out


def what_if(model: FinancialModel, steps: int = 10, seeds: int | Sequence[int] = 10, *,
            shock: Mapping[str, Any] | None = None, brains: Mapping[int, Any] | None = None,
            actions: Mapping[int, Any] | None = None, bank: int | None = None,
            workers: int | str = AUTO) -> WhatIfResult:
    """Simulate ``steps`` ahead under a hypothetical against the no-change baseline.

    Args:
        model: the live model (left unchanged).
        steps: horizon in steps (≥ 1).
        seeds: number of Monte-Carlo seeds (0..k−1) or the seeds themselves.
        shock: a shock applied at the start, e.g. ``{"kind": "price_crash",
            "magnitude": 0.2}`` or ``{"kind": "default", "banks": [3]}``.
        brains: a different brain for some banks, ``{bank_id: brain}``.
        actions: fixed actions ``{bank_id: [lend, hoard, sell, borrow]}`` held
            over the horizon.
        bank: the bank whose own equity and default to report.
        workers: processes the runs are split between (see
            :mod:`finsim_mesa.forked`; the same results as 1). ``"auto"``
            (the default): the CPUs this process may use, when the runs are
            long enough to pay for the forks (the first run, timed, decides),
            and one process where a brain is an object of the caller's. Every
            run starts from the brains' own generators (``rng``) as they were;
            a brain keeping other state between calls makes the runs depend on
            each other, and then on their order and split.

    Raises:
        ConfigError / ShockError: bad horizon, seeds, banks, actions or shock,
            before anything is simulated.
    """
    fixed = _validate(model, steps, shock, actions)
    if bank is not None:
        bank = _bank(model, bank)
    seed_list = _seeds(seeds)
    workers = check_workers(workers, auto=True)
    if shock is not None:  # check the shock before running anything
        make_shock(**shock, n_banks=model.n_banks, assets=model.market.names)
    state = model.snapshot()
    base = _Scratch(model, None)
    hypo = base if not brains else _Scratch(model, brains)
    try:
        out = _run_all([partial(scratch.run, state, seed, steps, sh, fx, bank)
                        for seed in seed_list
                        for scratch, sh, fx in ((base, None, {}), (hypo, shock, fixed))],
                       workers, (base, hypo))
    finally:
        hypo.rebind()
        base.rebind()
    runs = pd.DataFrame([{"variant": variant, "seed": seed, **res} for (seed, variant), res
                         in zip(((s, v) for s in seed_list for v in ("baseline", "hypothetical")),
                                out, strict=True)])
    cols = [c for c in runs.columns if c in OUTCOMES or c.startswith("price_")]
    wide = runs.pivot(index="seed", columns="variant", values=cols)
    diff = pd.DataFrame({"variant": "difference", "seed": wide.index,
                         **{c: (wide[c]["hypothetical"] - wide[c]["baseline"]).to_numpy()
                            for c in cols}})
    return WhatIfResult(runs, _summarise(runs, cols), _summarise(diff, cols), steps, seed_list)


@dataclass
class Recommendation:
    """The best candidate action for one bank by expected equity after the horizon.

    Attributes:
        bank: the bank.
        action: name of the best candidate (a key of :data:`CANDIDATES` or
            ``own_brain``).
        vector: the action (lend, hoard, sell, borrow), ``None`` for ``own_brain``.
        expected_equity: mean equity after ``steps`` (defaulted = 0), money.
        ci95: 95% t-interval of that mean.
        default_probability: share of seeds in which the bank defaulted.
        reason: one line a person can read.
        table: every candidate's figures, best first.
    """

    bank: int
    action: str
    vector: tuple[float, float, float, float] | None
    expected_equity: float
    ci95: tuple[float, float]
    default_probability: float
    reason: str
    table: pd.DataFrame


def recommend(model: FinancialModel, bank: int, candidates: Mapping[str, Any] | None = None,
              steps: int = 10, seeds: int | Sequence[int] = 10, *,
              shock: Mapping[str, Any] | None = None, workers: int | str = AUTO
              ) -> Recommendation:
    """Evaluate candidate actions for ``bank`` by lookahead and return the best.

    Objective: the bank's expected equity after ``steps`` steps, counting a
    default as zero equity (ties: the lower default probability). Each
    candidate holds its action fixed over the horizon; ``own_brain`` leaves the
    bank's current brain in charge. All candidates use the same seeds. With
    ``shock`` (as in :func:`what_if`), every candidate starts from the state
    after that shock: the recommendation is for the hypothetical. ``workers``
    splits the runs between processes (:mod:`finsim_mesa.forked`; the same
    result; ``"auto"`` as in :func:`what_if`).

    Raises:
        ConfigError / ShockError: unknown bank, bad horizon, seeds, candidate
            actions or shock.
    """
    bank = _bank(model, bank)
    if model.ledger.defaulted[bank]:
        raise ConfigError(f"bank {bank} is in default: there is nothing to recommend")
    grid = dict(CANDIDATES if candidates is None else candidates)
    if not grid:
        raise ConfigError("candidates: give at least one candidate action")
    _validate(model, steps, shock, None)
    if shock is not None:
        make_shock(**shock, n_banks=model.n_banks, assets=model.market.names)
    for name, vec in grid.items():
        try:
            _validate(model, steps, None, {bank: vec})
        except ConfigError as err:
            raise ConfigError(f"candidate {name!r}: {err}") from None
    seed_list = _seeds(seeds)
    workers = check_workers(workers, auto=True)
    state = model.snapshot()
    scratch = _Scratch(model, None)
    rows, names = [], [("own_brain", None), *grid.items()]
    try:
        fixed = [{} if vec is None else {bank: np.asarray(vec, dtype=float)} for _, vec in names]
        out = _run_all([partial(scratch.run, state, s, steps, shock, fx, bank, debtrank=False)
                        for fx in fixed for s in seed_list], workers, (scratch,))
        for i, (name, _vec) in enumerate(names):
            res = out[i * len(seed_list):(i + 1) * len(seed_list)]
            mean, std, low, high = ci95(np.array([r["bank_equity"] for r in res]))
            if len(res) < 2:
                low = high = mean  # one seed: no spread to report
            rows.append({"action": name, "expected_equity": mean, "std": std,
                         "ci95_low": low, "ci95_high": high,
                         "default_probability": float(np.mean([r["bank_defaulted"]
                                                               for r in res])),
                         "system_defaults": float(np.mean([r["defaults"] for r in res]))})
    finally:
        scratch.rebind()
    table = pd.DataFrame(rows).sort_values(["expected_equity", "default_probability"],
                                           ascending=[False, True], kind="stable")
    best = table.iloc[0]
    own = table[table.action == "own_brain"].iloc[0]
    name = str(best.action)
    reason = (f"bank {bank}: '{name}' gives expected equity {best.expected_equity:.3g} "
              f"(95% CI {best.ci95_low:.3g}..{best.ci95_high:.3g}) after {steps} steps and "
              f"default risk {best.default_probability:.0%}, against "
              f"{own.expected_equity:.3g} and {own.default_probability:.0%} with its "
              f"current brain" + (f", after the shock {dict(shock)}" if shock else ""))
    vec = None if name == "own_brain" else tuple(float(v) for v in grid[name])
    return Recommendation(bank, name, vec, float(best.expected_equity),
                          (float(best.ci95_low), float(best.ci95_high)),
                          float(best.default_probability), reason, table.reset_index(drop=True))

