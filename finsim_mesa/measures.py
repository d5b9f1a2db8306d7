"""The model's risk measures and the DataCollector's reporter table.

The measures are computed from the ledger and the market by the functions
below (the record stage calls them; :mod:`finsim_mesa.risk` holds the pure
formulas) into a :class:`~finsim_mesa.state.Measures`. :data:`MODEL_REPORTERS`
says where each DataCollector column is read from, by name.
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from finsim_mesa import debtrank_columns, initial_equity, risk
from finsim_mesa.collector import AgentRows, FinsimDataCollector
from finsim_mesa.fastmath import ZERO, constant, count_nonzero, mean, positive_mask, total
from finsim_mesa.infrastructure.ccp import netting_efficiency
from finsim_mesa.observation import RUNOFF

if TYPE_CHECKING:
    from finsim_mesa.infrastructure import (
        CentralCounterparty,
        Exchange,
        InfrastructureRouter,
    )
    from finsim_mesa.ledger import Ledger
    from finsim_mesa.market import Market
    from finsim_mesa.model import FinancialModel
    from finsim_mesa.state import Measures, Sheets

__all__ = [
    "INFRA_REPORTERS",
    "LIQUIDITY_CAP",
    "MODEL_REPORTERS",
    "AgentRows",
    "FinsimDataCollector",
    "debtrank_per_bank",
    "initial_debtrank",
    "liquidity",
    "make_reporters",
    "refresh_sheets",
    "report",
    "summary",
    "systemic_ranking",
    "update_core",
    "update_full",
    "update_infrastructure",
]

LIQUIDITY_CAP = 100.0  # liquidity index reported at most this (no short-term debt left)

# DataCollector column -> where the model keeps it (attribute path)
MODEL_REPORTERS: dict[str, str] = {"price": "measures.asset_price"} | {
    name: f"measures.{name}" for name in (
        "total_equity", "n_defaults", "default_rate", "debtrank", "debtrank_total",
        "liquidity_index", "stress_index")} | {
    "contagion_depth": "flows.contagion_depth"} | {
    name: f"measures.{name}" for name in (
        "systemic_risk_index", "mean_capital_ratio", "min_capital_ratio",
        "interbank_exposure")} | {
    name: f"flows.{name}" for name in ("interbank_volume", "rollover_volume",
                                       "fire_sale_volume")} | {
    "interbank_rate": "measures.interbank_rate", "mean_reward": "reward.mean"} | {
    f"reward_{name}": f"reward.{name}" for name in ("profit", "liquidity", "default",
                                                    "system_risk")}
INFRA_REPORTERS: dict[str, str] = {"exchange_fees": "flows.exchange_fees"} | {
    name: f"measures.{name}" for name in (
        "exchange_utilisation", "congested_exchanges", "order_backlog", "orders_expired",
        "margin_posted")} | {"margin_called": "flows.margin_called"} | {
    name: f"measures.{name}" for name in (
        "netting_efficiency", "default_fund_used", "uncovered_loss", "routed_transactions")}


def report(model: FinancialModel, column: str) -> Any:
    """The current value of a reporter column (a key of :data:`MODEL_REPORTERS` or
    :data:`INFRA_REPORTERS`)."""
    path = MODEL_REPORTERS.get(column) or INFRA_REPORTERS[column]
    return attrgetter(path)(model)


def _reader(path: str) -> Any:
    get = attrgetter(path)

    def read(model: Any) -> Any:  # a plain function: Mesa passes it the model
        return get(model)

    read.path = path  # type: ignore[attr-defined]  # the collector reads them all at once
    return read


def _class_price(j: int) -> Any:
    def read(model: Any) -> float:
        market = model.market
        return float(market.prices[j] / market.initial_prices[j])

    return read


def make_reporters(infrastructure: bool, classes: list[str] | None = None) -> dict[str, Any]:
    """Model reporters for Mesa's DataCollector (column -> function of the model);
    with several asset ``classes``, ``price_<class>`` (price / initial price) each."""
    table = MODEL_REPORTERS | (INFRA_REPORTERS if infrastructure else {})
    out = {column: _reader(path) for column, path in table.items()}
    if classes and len(classes) > 1:
        out |= {f"price_{name}": _class_price(j) for j, name in enumerate(classes)}
    return out


def refresh_sheets(s: Sheets, L: Ledger, interbank_weight: float) -> None:
    """Recompute the derived balance-sheet figures ``s`` from the ledger."""
    s.asset_values = L.asset_values()
    lb, n = L.loans, L.n  # L.interbank_assets() and _liabilities() on one ``owed``
    owed = lb.owed
    s.interbank_assets = np.bincount(lb.lender, weights=owed, minlength=n)
    s.interbank_liabilities = np.bincount(lb.borrower, weights=owed, minlength=n)
    ta = L.cash + s.asset_values  # (new arrays, added to in place: the same sums in order)
    ta += L.other_assets
    ta += s.interbank_assets
    if L.margin.shape[1]:  # CCP accounts (none: + 0.0 changes no bit, Ledger.total_assets)
        ta += L.infrastructure_assets()
    s.total_assets = ta
    rwa = s.asset_values + L.other_assets
    rwa += interbank_weight * s.interbank_assets
    s.rwa = rwa
    # equity / RWA where RWA > 0 and the bank is active; +0.0 elsewhere (defaulted
    # banks' ratio is 0: one mask instead of the division's and a second pass); every
    # bank active with RWA > 0 (the usual case; a NaN is not > 0): the plain quotient,
    # the masked one's values (fastmath.positive_mask)
    where = (rwa > ZERO) & L.active if count_nonzero(L.status) else positive_mask(rwa)
    s.capital_ratio = (L.equity / rwa if where is None
                       else np.divide(L.equity, rwa, out=np.zeros(n), where=where))


def liquidity(L: Ledger, sheets: Sheets, act: np.ndarray | None = None) -> float:
    """System liquidity index of the active banks (``act``, shape (n,), bool, or a
    slice of all: the ledger's, if omitted), capped at :data:`LIQUIDITY_CAP`."""
    act = L.active if act is None else act
    li = risk.liquidity_index(L.cash[act], (sheets.interbank_liabilities
                                            + _RUNOFF * L.deposits)[act])
    return min(li, LIQUIDITY_CAP)


def update_core(m: Measures, L: Ledger, market: Market, stress_level: float,
                price_prev: float) -> np.ndarray:
    """What the next steps' dynamics read: defaults, price, stress, interbank rate
    (sets ``market.rate``). ``stress_level`` is the scenario's. Returns each
    bank's distress now (:func:`risk.distress`, shape (n,); for :func:`update_full`)."""
    defaulted = L.defaulted
    m.n_defaults = int(count_nonzero(defaulted))  # (the count .sum() gives)
    m.default_rate = m.n_defaults / L.n
    m.asset_price = market.price_index
    m.price_return = float(np.log(max(m.asset_price, 1e-12) / max(price_prev, 1e-12)))
    h = risk.distress(L.equity, L.equity0, defaulted)
    m.stress_index = risk.stress_index(L.equity, L.equity0, defaulted, h=h)
    m.market_stress = max(stress_level, m.stress_index)
    m.interbank_rate = market.interbank_rate(m.market_stress)
    return h


_RUNOFF = constant(RUNOFF)  # (a ufunc operand with the ledger's float64 deposits)
_LAST_VALUES: tuple[Any, np.ndarray] = (None, np.zeros(0))  # (key, values) of the last call


def _economic_values(assets0: np.ndarray, n: int) -> np.ndarray:
    """``risk._values(None, assets0, n)`` (DebtRank's economic value: each bank's
    share of the initial total assets, shape (n,)), kept for the last ``assets0``:
    the same every step of a run. The key is its bytes, dtype, shape and ``n``, so
    an array changed in place, or another run's, is computed again; the kept array
    is read-only (what DebtRank reads, not written to)."""
    global _LAST_VALUES
    if type(assets0) is not np.ndarray:
        return risk._values(None, assets0, n)
    # (the dtype itself, compared by equality: dtype.str builds a string, ~1.3 us in a step)
    key = (assets0.tobytes(), assets0.dtype, assets0.shape, n)
    last = _LAST_VALUES  # (one read: the key and its values together)
    if last[0] == key:
        return last[1]
    v = risk._values(None, assets0, n)
    v.flags.writeable = False
    _LAST_VALUES = (key, v)
    return v


def update_full(m: Measures, L: Ledger, sheets: Sheets, assets0: np.ndarray,
                liquidity0: float, bilateral_only: bool, h: np.ndarray | None = None) -> None:
    """DebtRank, equity, capital ratios, exposure, liquidity and the systemic-risk
    index (after :func:`update_core`). ``bilateral_only``: DebtRank on loans
    with a bank counterparty (the infrastructure layer novates the others).
    ``h``: the distress :func:`update_core` returned (computed if omitted)."""
    # every bank active (status all 0, the usual case): the whole arrays, not
    # gathered copies (the same sums and extremes)
    act = L.active if count_nonzero(L.status) else slice(None)
    h = risk.distress(L.equity, L.equity0, L.defaulted) if h is None else h
    # economic value v = share of total assets at the start (a stable weight)
    v = _economic_values(assets0, L.n)
    if count_nonzero(h):
        dr_total, dr_start = _debtrank_sums(L, h, v, bilateral_only)
    else:  # nobody distressed (most steps): no round runs, h(T) is h(1) itself, and
        # _rounds' two sums are both v @ h (no exposures read, no weights formed)
        dr_total = dr_start = float(v.dot(h)) + 0.0  # (v @ h: see risk.stress_index)
        # the link table's entries by column, kept by the table until pairs are added:
        # built at the first record after they are (~30 ms at 100,000 banks), as
        # before, not at the next distress (the rounds ask for it after the
        # exposures, which may add pairs first)
        L.loans.links.by_column(L.n)
    m.debtrank, m.debtrank_total = dr_total - dr_start, dr_total
    m.total_equity = total(L.equity[act])
    cr = sheets.capital_ratio[act]
    m.mean_capital_ratio = mean(cr) if cr.size else 0.0
    m.min_capital_ratio = float(np.minimum.reduce(cr)) if cr.size else 0.0  # cr.min()
    m.interbank_exposure = total(sheets.interbank_assets)
    m.liquidity_index = liquidity(L, sheets, act)
    m.systemic_risk_index = risk.systemic_risk_index(
        m.debtrank_total, m.default_rate, m.stress_index, m.asset_price, m.liquidity_index,
        liquidity0)


def _debtrank_sums(L: Ledger, h: np.ndarray, v: np.ndarray, bilateral_only: bool
                   ) -> tuple[float, float]:
    """DebtRank's ``Σ v h(T)`` and ``Σ v h(1)`` from the distress ``h`` (distress's
    own: in [0, 1] or NaN, its clip changes no bit) and the economic values ``v``,
    on the loan book's fixed link pattern (data refilled, no matrix built)."""
    # which links carry a loan matters only to a creditor without positive equity
    # (weight 1): with none, a link without loans weighs 0 / equity = +0.0 anyway
    f = initial_equity.figures(L.equity0)  # (E0's test kept for the run)
    rows, cols, E, present = L.loans.exposure_entries(bilateral_only, present=(
        count_nonzero(L.equity0 > ZERO) < L.n if f is None else not f.all_positive))
    # debtrank_entries' figures, from its checked part: by_column is the entries'
    # table's, taken after them (looking up their link ids may add pairs to it)
    eq0, by_column = np.asarray(L.equity0, dtype=float), L.loans.links.by_column(L.n)
    if cols.size < risk._COLUMN_PATH_MIN_ENTRIES:
        _, dr_total, dr_start, _ = risk._rounds(rows, cols, E, eq0, h, v, present, by_column)
        return dr_total, dr_start
    hT = debtrank_columns.column_rounds(rows, E, eq0, h, present, by_column)
    return float(v.dot(hT)) + 0.0, float(v.dot(h)) + 0.0


def update_infrastructure(m: Measures, L: Ledger, exchanges: list[Exchange],
                          ccps: list[CentralCounterparty], router: InfrastructureRouter,
                          t: int, sheets: Sheets | None = None) -> None:
    """Exchange and CCP figures of the system. ``sheets``: the ledger's derived
    figures, up to date (as the record stage has them; see
    :func:`~finsim_mesa.infrastructure.ccp.netting_efficiency`)."""
    util, congested, backlog, expired = _exchange_figures(exchanges)
    m.exchange_utilisation = mean(np.array(util))
    m.congested_exchanges = congested
    m.order_backlog = total(backlog)
    m.orders_expired = total(expired)
    m.margin_posted = float(L.margin.sum())
    n = L.n
    m.netting_efficiency = (mean(np.array([netting_efficiency(L.loans, c.ccp_id, n, sheets)
                                           for c in ccps])) if ccps else 0.0)
    m.default_fund_used = total([c.fund_used for c in ccps])
    m.uncovered_loss = total([c.uncovered for c in ccps])
    m.routed_transactions = router.transactions(t)


def _exchange_figures(exchanges: list[Exchange]
                      ) -> tuple[list[float], int, list[float], list[float]]:
    """Each exchange's :attr:`~Exchange.utilisation`, :attr:`~Exchange.backlog`
    and :attr:`~Exchange.expired`, and how many are :attr:`~Exchange.congested`,
    the same figures as those properties, in one pass: each exchange's last
    statistics looked up once."""
    util, backlog, expired, congested = [], [], [], 0
    for e in exchanges:
        q = e.queue
        h = q.history
        if h:
            s = h[-1]
            util.append(s.utilisation)
            expired.append(s.expired)
            congested += bool(s.congested)
        else:
            util.append(0.0)
            expired.append(0.0)
        backlog.append(q.backlog)
    return util, congested, backlog, expired


def debtrank_per_bank(L: Ledger, assets0: np.ndarray, bilateral_only: bool) -> np.ndarray:
    """DebtRank of each bank defaulting alone on today's exposures, shape (n,)."""
    eq = np.where(L.active, np.maximum(L.equity, ZERO), ZERO)
    return risk.debtrank_per_bank(L.exposure_matrix(bilateral_only=bilateral_only), eq,
                                  value=assets0)


def initial_debtrank(model: FinancialModel) -> np.ndarray:
    """Each bank's DebtRank if it alone defaulted on the *initial* network (initial
    exposures and equity), shape (n,); computed once per model and kept."""
    ref = model.reference
    if ref.debtrank0 is None:
        ref.debtrank0 = risk.debtrank_per_bank(ref.exposures0, model.ledger.equity0,
                                               value=ref.assets0)
    return ref.debtrank0


def systemic_ranking(model: FinancialModel, top: int = 5) -> list[dict[str, float]]:
    """The ``top`` most systemically important surviving banks.

    Ranked by ``debtrank``: the share of the system's initial economic value
    (initial total assets) that would be lost in distress if the bank alone
    defaulted on the *initial* network (initial exposures and equity), ties
    broken by size. The initial network keeps the ranking informative in a
    crisis, when interbank exposures have been called in and today's DebtRank
    is near 0 for everybody; ``debtrank_now`` gives that current figure."""
    scores = initial_debtrank(model).copy()
    scores[model.ledger.defaulted] = -1.0
    now = model.debtrank_per_bank()
    ta = model.sheets.total_assets
    order = risk.rank_systemic(scores, ta, top=top)
    return [{"bank": int(i), "debtrank": float(scores[i]), "debtrank_now": float(now[i]),
             "total_assets": float(ta[i]), "degree": int(model.network.degree[i])}
            for i in order if scores[i] >= 0]


def summary(model: FinancialModel, top: int = 5) -> dict[str, Any]:
    """Headline figures of a model's current state (``finsim simulate`` prints them)."""
    m = model.measures
    cr = model.sheets.capital_ratio[model.ledger.active]
    out = {
        "scenario": model.scenario_name, "steps": model.t, "banks": model.n_banks,
        "defaults": m.n_defaults, "default_rate": m.default_rate,
        "collapsed": model.collapsed, "price": m.asset_price,
        "total_equity": m.total_equity,
        "capital_ratio_mean": float(cr.mean()) if cr.size else 0.0,
        "capital_ratio_p10": float(np.percentile(cr, 10)) if cr.size else 0.0,
        "capital_ratio_min": float(cr.min()) if cr.size else 0.0,
        "debtrank": m.debtrank, "debtrank_total": m.debtrank_total,
        "liquidity_index": m.liquidity_index, "stress_index": m.stress_index,
        "systemic_risk_index": m.systemic_risk_index,
        "max_contagion_depth": int(max(model.datacollector.model_vars["contagion_depth"],
                                       default=0)),
        "most_systemic": systemic_ranking(model, top),
    }
    return out | (infrastructure_summary(model) if model.config.infrastructure else {})


def infrastructure_summary(model: FinancialModel) -> dict[str, Any]:
    """Exchange and CCP figures for the run so far."""
    df = model.datacollector.get_model_vars_dataframe()
    out: dict[str, Any] = {
        "exchange_fees_total": float(model.ledger.exchange_cash.sum()),
        "exchange_utilisation_mean": float(df["exchange_utilisation"].iloc[1:].mean())
        if len(df) > 1 else 0.0,
        "congested_exchange_steps": int(df["congested_exchanges"].sum()),
        "orders_expired_total": float(df["orders_expired"].sum()),
        "mean_delay": float(np.mean([h.mean_delay for e in model.exchanges
                                     for h in e.queue.history]) if model.t else 0.0),
    }
    for c in model.ccps:
        out[f"ccp{c.ccp_id}"] = {
            "margin_held": c.margin_held, "default_fund": c.default_fund,
            "initial_default_fund": c.initial_fund, "capital": c.capital,
            "netting_efficiency": c.netting_efficiency, "fund_used": c.fund_used,
            "capital_used": c.capital_used, "margin_used": c.margin_used,
            "uncovered_loss": c.uncovered, "member_defaults_handled": c.defaults_handled,
        }
    return out
