"""What the live view shows of a model, as plain records for Vega-Lite.

A :class:`ModelView` holds what stays fixed while a model runs (the layout of
its network, bank sizes, memberships) and turns the model's state into a
:class:`Frame`: JSON strings of records (``nodes``, ``edges``, ``links``,
``infra``, ``series``), built under the session's lock and read by the page
without touching the model again. Everything is read from the model's public
state: ``ledger``, ``sheets``, ``market``, ``reference``, ``grid``,
``datacollector.model_vars``, the exchange and CCP agents.

Money in the model's currency units; ratios as fractions.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np

if TYPE_CHECKING:
    from finsim_mesa.model import FinancialModel

__all__ = ["Frame", "ModelView", "RunFrame", "bank_layout", "dumps", "series_columns"]

# the balance-sheet fields a bank's tooltip and the inspector show: key -> words
SHEET_FIELDS: dict[str, str] = {
    "ta": "total assets", "cash": "cash", "sec": "securities (market value)",
    "oth": "other assets", "iba": "interbank loans made", "dep": "deposits",
    "ibl": "interbank borrowing", "eq": "equity", "cr": "capital ratio (equity / RWA)",
}
AREA_MIN, AREA_SPAN = 70.0, 1000.0  # bank symbol area in px²: smallest, and added for the largest
_LAYOUTS: weakref.WeakKeyDictionary[nx.Graph, np.ndarray] = weakref.WeakKeyDictionary()


def bank_layout(graph: nx.Graph, n: int) -> np.ndarray:
    """Positions of the ``n`` banks of ``graph``, shape (n, 2), in [-1, 1]
    (a seeded spring layout: the same graph always gets the same picture)."""
    pos = _LAYOUTS.get(graph)
    if pos is None:
        k = 1.6 / np.sqrt(max(n, 1))  # a little more room than networkx's default
        raw = nx.spring_layout(graph, seed=7, iterations=80, k=k)
        pos = np.array([raw[i] for i in range(n)], dtype=float).reshape(n, 2)
        pos -= (pos.max(axis=0) + pos.min(axis=0)) / 2
        pos /= max(float(np.abs(pos).max()), 1e-9)
        _LAYOUTS[graph] = pos
    return pos


def series_columns(model: FinancialModel) -> list[str]:
    """The DataCollector columns the charts plot for ``model``."""
    cols = ["n_defaults", "price", "debtrank_total", "systemic_risk_index", "liquidity_index"]
    if len(model.market.names) > 1:
        cols += [f"price_{c}" for c in model.market.names]
    if model.router is not None:
        cols += ["exchange_utilisation", "margin_posted", "default_fund_used", "uncovered_loss"]
    return cols


def dumps(records: Any) -> str:
    """Compact JSON (no NaN: Vega cannot read it)."""
    return json.dumps(records, separators=(",", ":"), allow_nan=False)


def _r(x: np.ndarray, d: int) -> list[float]:
    return np.round(np.nan_to_num(np.asarray(x, dtype=float)), d).tolist()


@dataclass(frozen=True)
class RunFrame:
    """One model's state for the page: JSON datasets and a few headline numbers."""

    label: str                  # the run's name in compare mode ("" alone)
    t: int                      # the model's step
    running: bool
    n_defaults: int
    new_defaults: tuple[int, ...]   # banks that defaulted at this step
    datasets: dict[str, str]    # Vega dataset name -> JSON records
    sheets: dict[str, list[float]]  # SHEET_FIELDS key -> shape (n,) values
    defaulted: tuple[bool, ...]
    history: tuple[tuple[int, np.ndarray, np.ndarray], ...]  # (step, equity, cash) per record
    default_step: tuple[int, ...] = ()  # the step each bank defaulted at (-1: active)
    headline: str = ""          # defaults, price index and DebtRank now, in words


@dataclass(frozen=True)
class Frame:
    """Everything the page shows at one moment, for all runs (1, or 2 in compare mode)."""

    stamp: int                  # increases with every frame of a session
    generation: int             # the session's reset count when this was built
    runs: tuple[RunFrame, ...]
    series: str                 # JSON rows of all runs' time series
    message: str = ""           # what the last action did, in words

    @property
    def t(self) -> int:
        """The step (all runs step together)."""
        return self.runs[0].t

    @property
    def running(self) -> bool:
        """Whether every run can still step."""
        return all(r.running for r in self.runs)


class ModelView:
    """The fixed parts of one model's picture, and its frames.

    Args:
        model: the model shown.
        label: its name in compare mode.
        pos: bank positions, shape (n, 2) (default: :func:`bank_layout` of its network).
    """

    def __init__(self, model: FinancialModel, label: str = "", pos: np.ndarray | None = None
                 ) -> None:
        self.model, self.label, n = model, label, model.n_banks
        self.pos = bank_layout(model.graph, n) if pos is None else pos
        size = np.sqrt(np.clip(model.reference.assets0, 0, None)
                       / max(float(model.reference.assets0.max()), 1e-12))
        self.area = AREA_MIN + AREA_SPAN * size  # size at the start: a bank keeps its symbol
        names = [str(x) for x in model.node_labels]
        self.names = [f"bank {i}" if names[i] == str(i) else f"bank {i} ({names[i]})"
                      for i in range(n)]
        exp = model.ledger.exposure_matrix()
        self.exposure_max = float(exp.data.max()) if exp.nnz else 1.0
        self.infra_pos = self._infra_positions()
        self.links = dumps(self._links())
        self.columns = series_columns(model)
        self._rows: list[dict[str, Any]] = []
        self._history: dict[int, tuple[np.ndarray, np.ndarray]] = self._prefill()

    # ---------------------------------------------------------------- fixed parts
    def _infra_positions(self) -> dict[int, tuple[float, float]]:
        """Exchanges on a ring outside the banks, CCPs above them (node -> x, y)."""
        ex, ccps = self.model.exchanges, self.model.ccps
        out: dict[int, tuple[float, float]] = {}
        for k, x in enumerate(ex):
            a = np.pi * (1.0 + 2.0 * k / max(len(ex), 1))  # first one on the left
            out[x.node] = (1.2 * float(np.cos(a)), 1.1 * float(np.sin(a)))
        for k, c in enumerate(ccps):
            out[c.node] = ((k - (len(ccps) - 1) / 2) * 0.6, 1.22)
        return out

    def _links(self) -> list[dict[str, Any]]:
        """Membership edges: bank - exchange, exchange - CCP (from the Mesa grid)."""
        n, out = self.model.n_banks, []
        for u, v in self.model.grid.G.edges():
            a, b = (u, v) if u < v else (v, u)
            if b < n:
                continue  # a bank-bank link: drawn as a loan exposure
            pa = self.pos[a] if a < n else self.infra_pos[a]
            pb = self.infra_pos[b]
            kind = "member of an exchange" if a < n else "exchange clears through a CCP"
            out.append({"x": round(float(pa[0]), 4), "y": round(float(pa[1]), 4),
                        "x2": round(float(pb[0]), 4), "y2": round(float(pb[1]), 4),
                        "kind": kind})
        return out

    def _prefill(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Bank equity and cash at the steps already run (a model handed over mid-run)."""
        m = self.model
        if m.t == 0 or not m.datacollector.agent_reporters:
            return {}
        df = m.datacollector.get_agent_vars_dataframe()
        ids = [b.unique_id for b in m.banks]
        eq = df["equity"].unstack("AgentID").reindex(columns=ids)
        cash = df["cash"].unstack("AgentID").reindex(columns=ids)
        return {int(s): (eq.loc[s].to_numpy(float), cash.loc[s].to_numpy(float))
                for s in eq.index}

    # ---------------------------------------------------------------- the frame
    def frame(self) -> RunFrame:
        """The model's state now (call under the session's lock)."""
        m = self.model
        L, s = m.ledger, m.sheets
        new = np.flatnonzero(L.defaulted & (L.default_step == m.t))
        sheets = {"ta": _r(s.total_assets, 2), "cash": _r(L.cash, 2),
                  "sec": _r(s.asset_values, 2), "oth": _r(L.other_assets, 2),
                  "iba": _r(s.interbank_assets, 2), "dep": _r(L.deposits, 2),
                  "ibl": _r(s.interbank_liabilities, 2), "eq": _r(L.equity, 2),
                  "cr": _r(s.capital_ratio, 4)}
        self._history[m.t] = (L.equity.copy(), L.cash.copy())
        datasets = {"nodes": dumps(self._nodes(sheets, new)), "edges": dumps(self._edges()),
                    "links": self.links, "infra": dumps(self._infra())}
        n_def = int(L.defaulted.sum())
        headline = (f"{n_def} of {m.n_banks} banks defaulted · price index "
                    f"{m.market.price_index:.3f} · DebtRank {m.measures.debtrank_total:.3f}")
        return RunFrame(self.label, m.t, bool(m.running), n_def,
                        tuple(int(i) for i in new), datasets, sheets,
                        tuple(bool(d) for d in L.defaulted),
                        tuple((t, e, c) for t, (e, c) in sorted(self._history.items())
                              if t <= m.t),
                        tuple(int(k) if d else -1
                              for k, d in zip(L.default_step, L.defaulted, strict=True)),
                        headline)

    def _nodes(self, sheets: dict[str, list[float]], new: np.ndarray) -> list[dict[str, Any]]:
        L, n = self.model.ledger, self.model.n_banks
        newset = set(new.tolist())
        x, y = _r(self.pos[:, 0], 4), _r(self.pos[:, 1], 4)
        area, colour = _r(self.area, 1), _r(self.model.sheets.capital_ratio, 4)
        out = []
        for i in range(n):
            d = bool(L.defaulted[i])
            rec = {"id": i, "name": self.names[i], "x": x[i], "y": y[i], "a": area[i],
                   "c": 0.0 if d else colour[i],
                   "st": ("defaulted this step" if i in newset else "defaulted") if d
                   else "active", "new": i in newset}
            rec.update({k: v[i] for k, v in sheets.items()})
            out.append(rec)
        return out

    def _edges(self) -> list[dict[str, float]]:
        exp = self.model.ledger.exposure_matrix().tocoo()
        if not exp.nnz:
            return []
        p, w = self.pos, np.round(exp.data, 3).tolist()
        xy = np.round(np.column_stack([p[exp.row], p[exp.col]]), 4).tolist()
        return [{"x": a, "y": b, "x2": c, "y2": d, "w": wi} for (a, b, c, d), wi
                in zip(xy, w, strict=True)]

    def _infra(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for x in self.model.exchanges:
            px, py = self.infra_pos[x.node]
            out.append({"kind": "exchange", "label": f"X{x.exchange_id}",
                        "name": f"exchange {x.exchange_id}", "x": px, "y": py,
                        "members": int(x.members), "util": round(float(x.utilisation), 3),
                        "backlog": round(float(x.backlog), 2),
                        "fee": round(float(x.fee_rate), 5)})
        for c in self.model.ccps:
            px, py = self.infra_pos[c.node]
            out.append({"kind": "CCP", "label": f"CCP{c.ccp_id}", "name": f"CCP {c.ccp_id}",
                        "x": px, "y": py, "margin": round(float(c.margin_held), 2),
                        "fund": round(float(c.default_fund), 2),
                        "uncovered": round(float(c.uncovered), 2),
                        "handled": int(c.defaults_handled)})
        return out

    def series_rows(self) -> list[dict[str, Any]]:
        """One row per recorded step: ``step``, ``run`` and :attr:`columns`."""
        mv = self.model.datacollector.model_vars
        steps = len(mv["price"])
        if steps < len(self._rows):  # fewer records than we saw: start again
            self._rows = []
        for k in range(len(self._rows), steps):
            row: dict[str, Any] = {"step": k, "run": self.label}
            for c in self.columns:
                v = float(mv[c][k])
                row[c] = round(v, 5) if np.isfinite(v) else None
            self._rows.append(row)
        return self._rows
