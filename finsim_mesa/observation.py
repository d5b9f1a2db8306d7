"""The observation each bank sees: one row per bank, built for all banks at once.

``OBS_FIELDS`` lists the columns in order with their meaning and scale; brains
index columns by name through ``OBS``. With the infrastructure layer on, the
8 columns of ``INFRA_OBS_FIELDS`` follow (observation width 24); with several
asset classes, one ``price_<class>`` column per class comes last.
:func:`bank_observations` and :func:`infrastructure_observations` build them
(the observe stage), writing each column by its name.
"""

from __future__ import annotations

from math import isfinite
from typing import TYPE_CHECKING

import numpy as np

from finsim_mesa import fastmath, risk
from finsim_mesa.fastmath import ONE, ZERO, clip, constant, count_nonzero, flatnonzero, leading

_maximum, _minimum = np.maximum, np.minimum
try:  # the ufunc np.clip calls, without its Python wrapper (~2 us a call)
    from numpy._core.umath import clip as _clip
except ImportError:  # pragma: no cover - NumPy < 2
    _clip = np.clip

if TYPE_CHECKING:
    from finsim_mesa.config import ModelConfig
    from finsim_mesa.infrastructure import CentralCounterparty, Exchange, InfrastructureRouter
    from finsim_mesa.ledger import Ledger
    from finsim_mesa.loans import LoanBook
    from finsim_mesa.market import Market
    from finsim_mesa.model import FinancialModel
    from finsim_mesa.network import Adjacency
    from finsim_mesa.state import Measures, Sheets

RUNOFF = 0.1  # share of deposits assumed to run in a short stress (liquidity measures)

OBS_FIELDS: tuple[tuple[str, str], ...] = (
    ("capital_ratio", "equity / risk-weighted assets, clipped to [-1, 1]"),
    ("leverage", "equity / total assets, clipped to [-1, 1]"),
    ("cash_ratio", "cash / total assets, in [0, 1]"),
    ("liquidity_coverage", "cash / (interbank liabilities due in 2 steps + pending "
                           "withdrawals + 10% deposit run-off), clipped to [0, 5], divided by 5"),
    ("interbank_assets", "interbank loans receivable / total assets, in [0, 1]"),
    ("interbank_liabilities", "interbank loans payable / total assets, clipped to [0, 1]"),
    ("deposit_funding", "deposits / total assets, clipped to [0, 1]"),
    ("due_next", "interbank debt due next step / total assets, clipped to [0, 1]"),
    ("counterparty_stress", "exposure-weighted mean distress of the bank's borrowers, [0, 1]"),
    ("neighbour_defaults", "share of network neighbours in default, [0, 1]"),
    ("price", "asset price index / initial price, clipped to [0, 2]"),
    ("price_trend", "last step's log price change x 10, clipped to [-1, 1]"),
    ("interbank_rate", "interbank rate / (base rate + stress spread), in [0, 1]"),
    ("market_stress", "max(scenario stress level, system stress index), in [0, 1]"),
    ("own_distress", "1 - equity / initial equity, clipped to [0, 1]"),
    ("size", "log(total assets / initial mean total assets) / 3, clipped to [-1, 1]"),
)

INFRA_OBS_FIELDS: tuple[tuple[str, str], ...] = (
    ("exchange_congestion", "own exchange's utilisation last step (demand / capacity), "
                            "clipped to [0, 2], divided by 2"),
    ("exchange_fee_level", "(fee rate / base fee - 1) / fee slope: 0 calm, 1 at one unit of "
                           "utilisation above the threshold; clipped to [0, 1]"),
    ("queue_backlog", "money waiting at own exchange / its capacity, clipped to [0, 3], "
                      "divided by 3"),
    ("expected_delay", "mean wait of orders processed last step / max_order_wait, [0, 1]"),
    ("ccp_margin_rate", "margin per unit of cleared borrowing (initial margin scaled up as "
                        "the collateral price falls), [0, 1]"),
    ("posted_margin", "own margin posted at all CCPs / total assets, [0, 1]"),
    ("net_ccp_exposure", "(cleared lending - cleared borrowing) / total assets, [-1, 1]"),
    ("default_fund_health", "own CCP's default fund left / initial fund, [0, 1] "
                            "(1 without CCPs)"),
)

OBS: dict[str, int] = {name: i for i, (name, _) in enumerate(OBS_FIELDS + INFRA_OBS_FIELDS)}
OBS_DIM = len(OBS_FIELDS)
# the leading columns clipped to bounds (liquidity coverage to [0, 5], then divided by 5)
_BOUNDS = {"capital_ratio": (-1.0, 1.0), "leverage": (-1.0, 1.0), "cash_ratio": (0.0, 1.0),
           "liquidity_coverage": (0.0, 5.0), "interbank_assets": (0.0, 1.0),
           "interbank_liabilities": (0.0, 1.0), "deposit_funding": (0.0, 1.0),
           "due_next": (0.0, 1.0)}
assert list(_BOUNDS) == [name for name, _ in OBS_FIELDS[:len(_BOUNDS)]], "OBS_FIELDS order"
_CLIPPED = len(_BOUNDS)
_FROM_ZERO = slice(list(_BOUNDS).index("cash_ratio"), _CLIPPED)  # the columns clipped at 0
assert all(lo == 0.0 for lo, _ in list(_BOUNDS.values())[_FROM_ZERO]), "_BOUNDS order"
_CLIP_FROM = 4096  # rows from which np.clip pays (1.7x slower at 1,000, 3x faster at 10,000)
_CLIP_LO, _CLIP_HI = np.array(list(_BOUNDS.values())).T.copy()
_CLIP_LO.flags.writeable = _CLIP_HI.flags.writeable = False
_CLIP_LO_COLUMN, _CLIP_HI_COLUMN = _CLIP_LO[:, None], _CLIP_HI[:, None]  # (read-only views)
INFRA_OBS_DIM = len(INFRA_OBS_FIELDS)
# the columns of system-wide figures, the same for every bank (adjacent, in this order)
_SYSTEM_COLUMNS = slice(OBS["price"], OBS["market_stress"] + 1)
assert [name for name, _ in OBS_FIELDS[_SYSTEM_COLUMNS]] == [
    "price", "price_trend", "interbank_rate", "market_stress"], "OBS_FIELDS order"
# the exchanges' four columns: clipped to [0, hi], then divided by scale (the same)
_USE_HI, _WAIT_HI = 2.0, 3.0  # (utilisation, backlog; the others: 1.0)
_EXCHANGE_HI = np.array([_USE_HI, 1.0, _WAIT_HI, 1.0])
_EXCHANGE_SCALE = _EXCHANGE_HI.copy()
_EXCHANGE_HI.flags.writeable = _EXCHANGE_SCALE.flags.writeable = False
_FIVE, _THREE, _MINUS_ONE, _TINY = constant(5.0), constant(3.0), constant(-1.0), constant(1e-12)
_RUNOFF = constant(RUNOFF)

ACTIONS: tuple[tuple[str, str], ...] = (
    ("lend", "offer this share of lendable cash (cash above the reserve target, times "
             "max_lend_fraction) to network neighbours that ask to borrow"),
    ("hoard", "refuse to roll over this share of the bank's interbank loans maturing now "
              "(the borrower must repay them), and raise the cash reserve target from "
              "reserve_ratio (0) to liquidity_share (1) of total assets"),
    ("sell", "sell this share of max_sell_fraction of illiquid holdings at the market price "
             "less sale_discount"),
    ("borrow", "ask neighbours for this share of max_borrow_fraction x total assets"),
)
ACTION_NAMES = tuple(a for a, _ in ACTIONS)


def bank_observations(L: Ledger, sheets: Sheets, market: Market, measures: Measures,
                      withdrawals: np.ndarray, network: Adjacency, size0: float,
                      cfg: ModelConfig, t: int, bilateral: np.ndarray | slice,
                      out: np.ndarray | None = None) -> np.ndarray:
    """The 16 bank columns of :data:`OBS_FIELDS` for all banks, shape (n, 16).

    Args:
        L: the ledger; ``sheets`` its derived figures now.
        market: prices and rate; ``measures`` the system's stress and price return.
        withdrawals: shape (n,), deposit withdrawals due at the next clearing.
        network: the interbank adjacency (for neighbour defaults).
        size0: initial mean total assets (scale of ``size``).
        cfg: the model configuration.
        t: this step.
        bilateral: the loans of the book with a bank counterparty (a mask or
            their indices, in book order; ``slice(None)``: all), for
            counterparty stress and interbank assets.
        out: shape (n, 16), where to write them (e.g. the first columns of the
            full observation matrix); a new array if omitted.
    """
    ta = sheets.total_assets
    # (ZERO, ONE, _FIVE, ...: the Python numbers' values as float64 operands, converted once)
    # (every total > 0, found by the minimum from 4,096 banks (a NaN minimum is not > 0),
    # below by the mask's count: the totals, read only)
    safe = ta if (pos := fastmath.positive_mask(ta)) is None else np.where(pos, ta, ONE)
    lb, n = L.loans, L.n
    # the loans due within two steps, then those due now among them, in book order
    # (slices when they come first, as in a book in maturity order); owed on them only
    rows2 = due_rows(lb.maturity, t + 1)
    b2, o2 = lb.borrower[rows2], lb.owed_at(rows2)
    due2 = np.bincount(b2, minlength=n, weights=o2)
    now = due_rows(lb.maturity[rows2], t)
    due_next = np.bincount(b2[now], minlength=n, weights=o2[now])
    need = due2 + withdrawals + _RUNOFF * L.deposits  # (the ledger's arrays are float64)
    # float64 columns, computed in place; another dtype's ``out`` gets them rounded
    # once, at the end (as storing each float64 column into it did)
    given = out is not None and out.dtype == np.float64
    o = out if given else np.empty((n, OBS_DIM), order="F")
    c = o.T  # c[j] is column j (one contiguous run in a column-major matrix)
    defaulted = L.defaulted
    h = c[OBS["own_distress"]]
    if given:  # (a caller's array: distress checks that it shares no input's memory)
        risk.distress(L.equity, L.equity0, defaulted, out=h)
    else:  # a new matrix: no overlap to check
        h.fill(0.0)
        risk._distress_into(h, L.equity, L.equity0, defaulted)
    ib = (sheets.interbank_assets if isinstance(bilateral, slice)
          else np.bincount(lb.lender[bilateral], weights=lb.owed_at(bilateral), minlength=n))
    rate_scale = cfg.base_rate + cfg.rate_stress_spread
    # the first 8 columns are ratios written in place, then clipped together to their
    # bounds (_CLIP_LO / _CLIP_HI, column by column: the same minimum and maximum)
    c[OBS["capital_ratio"]] = sheets.capital_ratio
    for name, part in (("leverage", L.equity), ("cash_ratio", L.cash), ("interbank_assets", ib),
                       ("interbank_liabilities", sheets.interbank_liabilities),
                       ("deposit_funding", L.deposits), ("due_next", due_next)):
        np.divide(part, safe, out=c[OBS[name]])
    cov = c[OBS["liquidity_coverage"]]
    if (pos := fastmath.positive_mask(need)) is None:  # (every need > 0: the masked
        np.divide(L.cash, need, out=cov)  # quotient's values, ~1 us faster at 30 banks)
    else:
        cov.fill(5.0)
        np.divide(L.cash, need, out=cov, where=pos)
    _clip_ratios(o)
    np.divide(cov, _FIVE, out=cov)  # clipped to [0, 5], divided by 5
    col = c[OBS["counterparty_stress"]]
    col.fill(0.0)  # where nothing is divided
    # a finite sum of ib certifies its terms finite (an inf or NaN term gives an inf or
    # NaN sum), so every owed x 0 term is ±0.0: with nobody distressed each divided
    # at_risk is +0.0 (the column as filled), and with few only the others' terms count
    k = count_nonzero(h)
    few = (not k or _FEW_FROM <= n > _FEW * k) and isfinite(fastmath.total(ib))  # (the sum only
    # where it is used; a few terms gathered cost less than all from 1,000 banks on)
    if (k or not few) and (isinstance(bilateral, slice) or len(bilateral)):  # (none: ib 0)
        at_risk = _at_risk(lb, h, bilateral, n, few)
        if (pos := fastmath.positive_mask(ib)) is None:  # (the same quotients, unmasked)
            np.divide(at_risk, ib, out=col)
        else:
            np.divide(at_risk, ib, out=col, where=pos)
    col = c[OBS["neighbour_defaults"]]
    col.fill(0.0)  # where nothing is divided, and everywhere while nobody is in default
    if count_nonzero(defaulted):  # (0 / degree is +0.0: the column as filled)
        deg = network.degree
        np.divide(network.neighbours_in(defaulted), deg, out=col, where=deg > 0)
    # NumPy's clip of a float, min(max(x, lo), hi), without NumPy scalars; the four
    # columns the same for every bank written as one block (they are adjacent)
    o[:, _SYSTEM_COLUMNS] = (min(max(market.price_index, 0), 2),
                             min(max(10 * measures.price_return, -1), 1),
                             market.rate / rate_scale if rate_scale > 0 else 0.0,
                             measures.market_stress)
    # clip(log(max(ta, 1e-12) / size0) / 3, -1, 1), in place
    size = c[OBS["size"]]
    np.maximum(ta, _TINY, out=size)
    np.divide(size, size0, out=size)
    np.log(size, out=size)
    np.divide(size, _THREE, out=size)
    _clip(size, _MINUS_ONE, ONE, out=size)  # (no bound is 0: min(max(x, -1), 1) in one pass)
    if out is not None and out is not o:
        out[...] = o
        return out
    return o


def _clip_ratios(o: np.ndarray) -> None:
    """The first :data:`_CLIPPED` columns of ``o`` clipped to their bounds in place:
    ``np.minimum(np.maximum(x, lo), hi)`` in fewer passes. np.clip is that, in
    one, except that it may keep the -0.0 of max(-0.0, 0.0) (some of its loops do,
    some do not), which maximum makes +0.0: the columns clipped at 0 get + 0.0
    (-0.0 + 0.0 is +0.0; any other value, NaN included, is itself)."""
    ratios = o[:, :_CLIPPED]
    if ratios.shape[0] < _CLIP_FROM:  # (fewer rows: maximum and minimum cost less, on
        rows = ratios.T  # the transpose's rows, each column's bound as a (k, 1) column)
        _maximum(rows, _CLIP_LO_COLUMN, out=rows)
        _minimum(rows, _CLIP_HI_COLUMN, out=rows)
        return
    _clip(ratios, _CLIP_LO, _CLIP_HI, out=ratios)
    from_zero = o[:, _FROM_ZERO]
    np.add(from_zero, ZERO, out=from_zero)


def _at_risk(lb: LoanBook, h: np.ndarray, bilateral: np.ndarray | slice, n: int,
             few: bool) -> np.ndarray:
    """What each lender is owed on the loans ``bilateral`` (see
    :func:`bank_observations`) times its borrower's distress ``h``, summed in their
    order, shape (n,). ``few``: only the terms whose distress is not ±0.0 (exact
    when every owed is finite: x × ±0.0 is ±0.0, and a sum from +0.0 of terms
    >= 0 or ±0.0 is never -0.0, so adding ±0.0 to it changes no bit)."""
    if isinstance(bilateral, slice):  # (take: h[lb.borrower]'s values, faster)
        hb = h.take(lb.borrower, mode="clip")
        if not few:
            return np.bincount(lb.lender[bilateral], weights=(lb.owed * hb)[bilateral],
                               minlength=n)
        w = hb[bilateral]  # in bilateral's order; rows: their book rows (None: w's own)
        rows = None if bilateral == slice(None) else np.arange(len(lb))[bilateral]
    else:  # the rows gathered first (no product over the whole book)
        rows = flatnonzero(b) if (b := np.asarray(bilateral)).dtype == bool else b
        w = h.take(lb.borrower[rows], mode="clip")
    if few:  # the terms not ±0.0 (NaN is not 0: kept)
        sel = flatnonzero(w != ZERO)
        rows, w = sel if rows is None else rows[sel], w[sel]
    return np.bincount(lb.lender[rows], weights=lb.owed_at(rows) * w, minlength=n)


_FEW = 8  # fewer than 1/_FEW of the banks distressed: only their borrowers' loans' terms
_FEW_FROM = 1000  # (measured: 100 banks' 400 loans gathered cost more than all of them)


def due_rows(maturity: np.ndarray, t: int) -> np.ndarray | slice:
    """``leading(flatnonzero(maturity <= t))``: the loans due by step ``t``, as
    ``slice(0, k)`` when they are the first ``k`` (a book in maturity order),
    else their indices. The first ``k`` are found by a binary search and
    checked with one max and one min (no mask over the book), in books of at least
    :data:`_SEARCH_FROM` loans (below, the mask costs less: measured at 30 banks)."""
    if maturity.size < _SEARCH_FROM:  # (the first k when the mask's first k are due; k
        k = int(count_nonzero(due := maturity <= t))  # a Python int, as the size was)
        return slice(0, k) if count_nonzero(due[:k]) == k else due.nonzero()[0]
    k = int(maturity.searchsorted(t, side="right"))  # (any k: what follows checks it)
    if ((k == 0 or _maximum.reduce(maturity[:k]) <= t)
            and (k == maturity.size or _minimum.reduce(maturity[k:]) > t)):
        return slice(0, k)
    return leading(flatnonzero(maturity <= t))


_SEARCH_FROM = 4096


def infrastructure_observations(L: Ledger, total_assets: np.ndarray, exchanges: list[Exchange],
                                ccps: list[CentralCounterparty], router: InfrastructureRouter,
                                margin_rate: float, cfg: ModelConfig,
                                out: np.ndarray | None = None,
                                sheets: Sheets | None = None) -> np.ndarray:
    """The 8 columns of :data:`INFRA_OBS_FIELDS`, shape (n, 8).

    Args:
        total_assets: shape (n,), total assets with zeros replaced by 1.
        margin_rate: the CCPs' margin per unit of cleared borrowing now.
        out: shape (n, INFRA_OBS_DIM), where to write them (every column is
            written); a new array if omitted.
        sheets: the ledger's derived figures, up to date (as the observe stage
            has them): when every loan is cleared, the net CCP exposure is their
            interbank assets less liabilities (the same sums); else, or if
            omitted, it is summed from the book.
    """
    # each exchange's four values (a handful of rows) as Python floats (float64, as the
    # table's), clipped to [0, hi] and divided by scale (_EXCHANGE_HI, _EXCHANGE_SCALE; x / 1.0
    # is x) by _clip01: the same IEEE operations, element by element, as NumPy's on the table
    base = max(cfg.exchange_base_fee, 1e-12)
    slope, wait = max(cfg.exchange_fee_slope, 1e-12), max(cfg.max_order_wait, 1)
    table = np.array([(_clip01(float(e.utilisation), _USE_HI) / _USE_HI,
                       _clip01(float((e.fee_rate / base - 1) / slope)),
                       _clip01(float(e.backlog / e.queue.max_throughput), _WAIT_HI) / _WAIT_HI,
                       _clip01(float(e.mean_delay / wait))) for e in exchanges], dtype=float)
    table = table.reshape(-1, 4)
    o = np.empty((L.n, INFRA_OBS_DIM), order="F") if out is None else out
    i = OBS_DIM  # infrastructure columns follow the bank columns in OBS
    # the four columns lead INFRA_OBS_FIELDS: gathered straight into them as the rows
    # of their transpose (C-ordered in the observe stage's column-major matrix; a
    # copy written back otherwise); the ids are in range: "clip" spares take's checks
    np.take(table.T, router.bank_exchange, axis=1, out=o[:, :4].T, mode="clip")
    if ccps:
        lb = L.loans
        m: np.ndarray | slice = slice(None)  # every loan cleared (read off the smallest
        if lb.ccp.size and _minimum.reduce(lb.ccp) < 0:  # id): the whole book, no gathers
            m = lb.ccp >= 0
        if sheets is not None and isinstance(m, slice):  # already summed, in book order
            cleared_net = sheets.interbank_assets - sheets.interbank_liabilities
        else:
            owed = lb.owed_at(m)
            cleared_net = (np.bincount(lb.lender[m], weights=owed, minlength=L.n)
                           - np.bincount(lb.borrower[m], weights=owed, minlength=L.n))
        o[:, OBS["ccp_margin_rate"] - i] = margin_rate
        # clip(a / total_assets, lo, 1) written into its column (no temporaries)
        # (one CCP: a row's sum of one entry is that entry, its column read as it is)
        margin = L.margin[:, 0] if L.margin.shape[1] == 1 else L.margin.sum(axis=1)
        col = o[:, OBS["posted_margin"] - i]
        _minimum(_maximum(np.divide(margin, total_assets, out=col), 0.0, out=col), 1.0, out=col)
        # (lo -1: clip's own loop, min(max(x, -1), 1) with NaN kept, in one call; no bound is
        # a zero, the one place where a zero's sign could differ)
        col = o[:, OBS["net_ccp_exposure"] - i]
        _clip(np.divide(cleared_net, total_assets, out=col), -1.0, 1.0, out=col)
        col = o[:, OBS["default_fund_health"] - i]
        if len(ccps) == 1:  # one CCP: its figure, clipped as a Python float, for every bank
            col.fill(_clip01(ccps[0].default_fund_health))
        else:
            health = clip(np.array([c.default_fund_health for c in ccps]), 0, 1)
            np.take(health, router.bank_ccp, out=col, mode="clip")
    else:
        for name in ("ccp_margin_rate", "posted_margin", "net_ccp_exposure"):
            o[:, OBS[name] - i] = 0.0
        o[:, OBS["default_fund_health"] - i] = 1.0
    return o


def _clip01(x: float, hi: float = 1.0) -> float:
    """``float(np.minimum(np.maximum(x, 0.0), hi))`` of a Python float, ``hi`` > 0 (NaN
    kept, as the ufuncs keep it; -0.0 becomes 0.0, as np.maximum(-0.0, 0.0) gives)."""
    if x != x:  # NaN
        return x
    x = x if x > 0.0 else 0.0
    return x if x <= hi else hi


def class_observations(market: Market, n: int) -> np.ndarray:
    """With several asset classes, each class's price relative to its initial
    price (clipped to [0, 2]), the same for every bank: shape (n, k)."""
    rel = clip(market.prices / market.initial_prices, 0, 2)
    return np.broadcast_to(rel, (n, rel.size)).copy()


def observation_names(cfg: ModelConfig, classes: list[str]) -> list[str]:
    """Names of the observation columns of a model: :data:`OBS_FIELDS`, then the
    infrastructure columns when the layer is on, then ``price_<class>`` for each
    asset class when there are several."""
    names = [name for name, _ in OBS_FIELDS]
    if cfg.infrastructure:
        names += [name for name, _ in INFRA_OBS_FIELDS]
    if len(classes) > 1:
        names += [f"price_{c}" for c in classes]
    return names


def observe(model: FinancialModel) -> np.ndarray:
    """The observation matrix of a model now, shape (n_banks, obs_dim), stored
    column by column (Fortran order: each column contiguous; the values are
    what a row-major array holds); each part written into its columns."""
    L, infra, k = model.ledger, model.router is not None, model.config.n_assets
    width = OBS_DIM + (INFRA_OBS_DIM if infra else 0) + (k if k > 1 else 0)
    # column-major, each column one contiguous run (bank columns only: bank_observations')
    o = np.empty((L.n, width), order="F") if width > OBS_DIM else None
    # the bilateral loans as indices (none, without a mask, when no CCP id is negative)
    bil = (slice(None) if not infra else flatnonzero(c < 0)
           if (c := L.loans.ccp).size and _minimum.reduce(c) < 0 else c[:0])
    bank = bank_observations(L, model.sheets, model.market, model.measures,
                             model.flows.withdrawals, model.network, model.reference.size0,
                             model.config, model.t, bil, out=None if o is None else o[:, :OBS_DIM])
    if o is None:
        return bank
    if infra:
        ta = model.sheets.total_assets
        infrastructure_observations(L, np.where(ta > 0, ta, 1.0), model.exchanges, model.ccps,
                                    model.router, model.margin_rate, model.config,
                                    out=o[:, OBS_DIM:OBS_DIM + INFRA_OBS_DIM],
                                    sheets=model.sheets)
    if k > 1:
        o[:, width - k:] = class_observations(model.market, L.n)
    return o
