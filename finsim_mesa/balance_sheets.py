"""Balance sheets: generated from the configuration, or real ones from a table.

:func:`calibrate` draws bank sizes and builds balance sheets whose interbank
assets sit on the network's edges; :func:`from_table` reads the public EBA 2018
stress-test sample shipped with the package (or a user table in its format);
:func:`build_ledger` turns either into the model's ledger.

All randomness comes from the ``numpy.random.Generator`` passed in. Money in
currency units (the EBA table: millions of euros).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from finsim_mesa.config import ModelConfig
from finsim_mesa.errors import ConfigError
from finsim_mesa.ledger import Ledger
from finsim_mesa.portfolios import weights

__all__ = ["MIN_DEPOSIT_SHARE", "BalanceSheets", "BankTable", "build_ledger", "calibrate",
           "class_prices", "from_table", "read_table", "with_table"]

MIN_DEPOSIT_SHARE = 0.1  # every bank keeps at least 10% of its assets funded by deposits


@dataclass
class BalanceSheets:
    """Initial balance sheets (all arrays shape (n,) unless stated; money units).

    Attributes:
        cash: liquid assets.
        holdings: shape (n, n_assets), units of marketable securities.
        other_assets: loans to the real economy (book value).
        deposits: external liabilities (owed outside the banking network).
        loan_lender, loan_borrower, loan_amount: one initial interbank loan per
            lending relation, shape (m,).
        size: target total assets before adjustment.
        funding: repayable funding loans from outside the system.
        prices: shape (n_assets,), initial price of each class.
        names: bank names (a table's ids), or None.
    """

    cash: np.ndarray
    holdings: np.ndarray
    other_assets: np.ndarray
    deposits: np.ndarray
    loan_lender: np.ndarray
    loan_borrower: np.ndarray
    loan_amount: np.ndarray
    size: np.ndarray
    funding: np.ndarray | None = None
    prices: np.ndarray | None = None
    names: list[str] | None = None


def _sizes(n: int, cfg: ModelConfig, degree: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Log-normal sizes with mean ``mean_total_assets``, larger ones on better-connected banks."""
    draws = np.sort(rng.lognormal(0.0, cfg.size_dispersion, n))
    draws *= cfg.mean_total_assets / draws.mean()
    # rank by degree, ties broken at random, so hubs are the big banks
    order = np.lexsort((rng.random(n), degree))
    size = np.empty(n)
    size[order] = draws
    return size


def calibrate(
    n: int,
    lender: np.ndarray,
    borrower: np.ndarray,
    cfg: ModelConfig,
    rng: np.random.Generator,
    exposures: np.ndarray | None = None,
) -> BalanceSheets:
    """Balance sheets consistent with the network and ``cfg``.

    Each lender spreads ``interbank_share`` of its assets over its borrowers in
    proportion to their size (or uses ``exposures`` given by the user); cash is
    ``liquidity_share`` of assets; the rest is illiquid, ``marketable_share`` of
    it securities (marked to market) and the rest loans at book value; equity is
    ``capital_ratio`` × risk-weighted assets; deposits fill the remaining
    liabilities, at least ``MIN_DEPOSIT_SHARE`` of assets (illiquid assets are
    raised where a bank's interbank borrowing would otherwise leave too few).
    """
    degree = np.bincount(lender, minlength=n) + np.bincount(borrower, minlength=n)
    size = _sizes(n, cfg, degree.astype(float), rng)
    if exposures is not None:
        amount = np.asarray(exposures[lender, borrower], dtype=float).reshape(-1)
        ib_assets = np.bincount(lender, weights=amount, minlength=n)
        size = np.maximum(size, ib_assets / max(cfg.interbank_share, 1e-12))
    else:
        weight = size[borrower]
        denom = np.bincount(lender, weights=weight, minlength=n)
        amount = cfg.interbank_share * size[lender] * weight / np.where(denom > 0, denom, 1)[lender]
        ib_assets = np.bincount(lender, weights=amount, minlength=n)
    ib_liab = np.bincount(borrower, weights=amount, minlength=n)
    cash = cfg.liquidity_share * size
    illiquid = np.maximum(size - cash - ib_assets, 0.0)
    c, w = cfg.capital_ratio, cfg.interbank_risk_weight

    def deposits_for(x: np.ndarray) -> np.ndarray:
        equity = c * (x + w * ib_assets)
        return cash + ib_assets + x - equity - ib_liab

    floor = MIN_DEPOSIT_SHARE * size
    short = deposits_for(illiquid) < floor
    if short.any():
        # raise illiquid assets x so that deposits == floor: x(1-c) = floor + L - cash - IB(1-cw)
        need = (floor + ib_liab - cash - ib_assets * (1 - c * w)) / (1 - c)
        illiquid = np.where(short, np.maximum(need, illiquid), illiquid)
    deposits = deposits_for(illiquid)
    securities = cfg.marketable_share * illiquid
    w, prices = weights(cfg.asset_classes, cfg.n_assets), class_prices(cfg)
    if cfg.portfolio_concentration is not None:  # each bank its own mix
        base = np.full(cfg.n_assets, 1 / cfg.n_assets) if w is None else w
        mix = rng.dirichlet(cfg.portfolio_concentration * base, size=n)
        holdings = securities[:, None] * mix
    elif w is None:  # alike classes
        holdings = np.repeat((securities / cfg.n_assets)[:, None], cfg.n_assets, axis=1)
    else:
        holdings = securities[:, None] * w[None, :]
    if cfg.asset_classes is not None:
        holdings = holdings / prices  # units at the classes' initial prices
    funding = cfg.funding_share * deposits
    return BalanceSheets(cash, holdings, illiquid - securities, deposits - funding,
                         lender.copy(), borrower.copy(), amount, size, funding, prices)


def class_prices(cfg: ModelConfig) -> np.ndarray:
    """shape (k,): the initial price of each asset class (1 unless given)."""
    if cfg.asset_classes is None:
        return np.ones(cfg.n_assets)
    return np.array([c.price for c in cfg.asset_classes])


def build_ledger(bs: BalanceSheets, cfg: ModelConfig, rng: np.random.Generator) -> Ledger:
    """The ledger of the balance sheets ``bs``: one interbank loan per lending
    relation at the base rate, maturities drawn uniformly from 1..loan_maturity."""
    sheets = (bs.cash, bs.holdings, bs.deposits, bs.other_assets, bs.loan_amount)
    if not all(np.all(np.isfinite(a)) for a in sheets if a is not None):
        raise ConfigError("the balance sheets overflow (non-finite values): lower "
                          f"mean_total_assets ({cfg.mean_total_assets:g}) or size_dispersion "
                          f"({cfg.size_dispersion:g})")
    prices = np.ones(cfg.n_assets) if bs.prices is None else bs.prices
    ledger = Ledger(bs.cash, bs.holdings, bs.deposits, prices, bs.other_assets, bs.funding)
    maturity = rng.integers(1, cfg.loan_maturity + 1, size=len(bs.loan_amount))
    keep = bs.loan_amount > 0
    ledger.loans.append(bs.loan_lender[keep], bs.loan_borrower[keep], bs.loan_amount[keep],
                        np.full(int(keep.sum()), cfg.base_rate), maturity[keep])
    ledger.finish_setup()
    return ledger


# ----------------------------------------------------------------- real balance sheets
TABLE_COLUMNS = ("bank_id", "cet1", "debt_securities", "government_bonds")
EBA_CLASSES = [{"name": "corporate_bonds"}, {"name": "government_bonds"}]


@dataclass
class BankTable:
    """Banks read from a table (arrays shape (n,), money as in the table).

    ``leverage`` is the leverage ratio as a fraction (the table gives it in
    percent, ``leverage_pct``, or as a fraction, ``leverage``)."""

    names: list[str]
    cet1: np.ndarray
    leverage: np.ndarray
    debt_securities: np.ndarray
    government_bonds: np.ndarray
    leverage_pct: np.ndarray | None = None  # as given, to compute assets exactly as published


def read_table(source: str) -> BankTable:
    """The EBA 2018 sample (``"eba2018"``) or a user CSV table in its format.

    Columns: ``bank_id``, ``cet1``, ``leverage_pct`` (percent) or ``leverage``
    (a fraction), ``debt_securities``, ``government_bonds``.

    Raises:
        ConfigError: a missing file or column, a value that is not a number,
            negative amounts, leverage outside (0, 1), government bonds above
            debt securities, or assets too small for the securities and cash.
    """
    import csv
    from importlib import resources
    from pathlib import Path

    if source == "eba2018":
        text = resources.files("finsim_mesa").joinpath("data/eba2018.csv").read_text()
        where = "the EBA 2018 sample"
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"balance_sheets = {source!r}: no such file; give 'eba2018' or "
                              "the path of a CSV table")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"balance sheet table {source} is not UTF-8 text") from None
        where = f"balance sheet table {source}"
    rows = list(csv.DictReader(text.splitlines()))
    cols = set(rows[0]) if rows else set()
    missing = [c for c in TABLE_COLUMNS if c not in cols]
    if not ({"leverage_pct", "leverage"} & cols):
        missing.append("leverage_pct (or leverage)")
    if not rows or missing:
        raise ConfigError(f"{where}: missing columns {missing or list(TABLE_COLUMNS)}; "
                          "need bank_id, cet1, leverage_pct (percent) or leverage (a "
                          "fraction), debt_securities, government_bonds")
    pct = "leverage_pct" in cols

    def number(row: dict[str, str], col: str, i: int) -> float:
        try:
            v = float(row[col])
        except (TypeError, ValueError):
            raise ConfigError(f"{where}, row {i + 1} ({row.get('bank_id')}): {col} = "
                              f"{row[col]!r} is not a number") from None
        if not np.isfinite(v) or v < 0:
            raise ConfigError(f"{where}, row {i + 1} ({row.get('bank_id')}): {col} = {v} "
                              "must be a finite amount >= 0")
        return v

    values = {c: np.array([number(r, c, i) for i, r in enumerate(rows)])
              for c in ("cet1", "debt_securities", "government_bonds",
                        "leverage_pct" if pct else "leverage")}
    lev = values["leverage_pct"] / 100 if pct else values["leverage"]
    table = BankTable([r["bank_id"] for r in rows], values["cet1"], lev,
                      values["debt_securities"], values["government_bonds"],
                      values.get("leverage_pct"))
    for i, name in enumerate(table.names):
        if not 0 < lev[i] < 1:
            raise ConfigError(f"{where}: bank {name} has leverage {lev[i]:g}; it must lie in "
                              "(0, 1) (leverage_pct in (0, 100))")
        if table.government_bonds[i] > table.debt_securities[i]:
            raise ConfigError(f"{where}: bank {name} holds more government bonds than debt "
                              "securities")
        assets = table.cet1[i] / lev[i]
        if table.debt_securities[i] + 0.05 * assets > assets:
            raise ConfigError(f"{where}: bank {name}'s securities and 5% cash exceed its "
                              f"assets (CET1 / leverage = {assets:g})")
    return table


def from_table(table: BankTable) -> BalanceSheets:
    """The balance sheets the reference stress-test model builds from a table:
    total assets A = CET1 / leverage, cash 5% of A, corporate bonds = debt
    securities − government bonds, other assets the rest; liabilities A − CET1,
    half a repayable funding loan, half other (deposits). Two asset classes
    (corporate bonds, government bonds) at price 1; no interbank loans."""
    if table.leverage_pct is not None:  # as the reference: CET1 / (leverage / 100)
        assets = table.cet1 / (table.leverage_pct / 100)
    else:
        assets = table.cet1 / table.leverage
    cash = 0.05 * assets
    holdings = np.column_stack([table.debt_securities - table.government_bonds,
                                table.government_bonds])
    liabilities = assets - table.cet1
    funding = liabilities / 2
    empty = np.zeros(0, dtype=np.int64)
    return BalanceSheets(cash, holdings, assets - table.debt_securities - cash, funding,
                         empty, empty, np.zeros(0), assets, funding.copy(), np.ones(2),
                         list(table.names))


def with_table(cfg: ModelConfig, graph: Any) -> tuple[ModelConfig, Any, BankTable | None]:
    """The configuration and network for ``cfg.balance_sheets`` (unchanged without):
    as many banks as the table has rows, its two asset classes unless others are
    given, and no interbank network.

    Raises:
        ConfigError: a bad table, or a network given as well.
    """
    if cfg.balance_sheets is None:
        return cfg, graph, None
    if graph is not None:
        raise ConfigError("balance_sheets come without an interbank network; do not give "
                          "graph= or exposures= with them")
    import networkx as nx

    from finsim_mesa.config import make_config

    table = read_table(cfg.balance_sheets)
    if "n_banks" in cfg.model_fields_set and cfg.n_banks != len(table.names):
        raise ConfigError(f"balance_sheets {cfg.balance_sheets!r} has {len(table.names)} banks "
                          f"but n_banks={cfg.n_banks}; leave n_banks out (the table sets it)")
    data = cfg.model_dump() | {"n_banks": len(table.names), "topology": "user"}
    if cfg.asset_classes is None:
        data |= {"asset_classes": EBA_CLASSES, "n_assets": 2}
    cfg = make_config(data)
    if cfg.n_assets != 2:
        raise ConfigError(f"balance_sheets tables hold 2 asset classes (corporate and "
                          f"government bonds); asset_classes has {cfg.n_assets}")
    return cfg, nx.empty_graph(cfg.n_banks), table
