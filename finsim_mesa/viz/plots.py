"""Static figures with matplotlib (no pyplot state: safe in threads and workers).

* :func:`timeseries_dashboard` — price, defaults, systemic risk, liquidity over time;
* :func:`network_snapshot` — the network: banks coloured by capital ratio (grey =
  defaulted), sized by total assets, edges by exposure; exchanges as squares and
  CCPs as diamonds;
* :func:`risk_dashboard` — per-bank DebtRank, capital ratios, exposures;
* :func:`scenario_comparison` — several runs' time series side by side;
* :func:`run_figure` — the dashboard and the network in one figure
  (``finsim simulate --plot FILE.png``).

Every function returns a :class:`NotebookFigure`: a matplotlib ``Figure`` that
Jupyter shows as a picture when it is the value of a cell, in a fresh kernel,
without ``%matplotlib inline`` or pyplot (a bare ``Figure`` shows only
``<Figure size 1000x600 with 4 Axes>`` there).
"""

from __future__ import annotations

import io
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from finsim_mesa.model import FinancialModel

__all__ = ["NotebookFigure", "network_snapshot", "new_figure", "risk_dashboard", "run_figure",
           "scenario_comparison", "timeseries_dashboard"]

SERIES = (("price", "asset price (start = 1)"), ("n_defaults", "defaults"),
          ("systemic_risk_index", "systemic-risk index"), ("liquidity_index", "liquidity index"))


class NotebookFigure(Figure):
    """A matplotlib ``Figure`` that Jupyter displays by itself.

    IPython shows an object through its ``_repr_png_`` method; a plain ``Figure``
    has none (pyplot's inline backend registers a formatter for it, but these
    figures never touch pyplot, so that they stay safe in Solara threads and
    sweep workers). ``savefig`` and everything else are matplotlib's.
    """

    def _repr_png_(self) -> bytes:
        """The figure as PNG bytes (what a notebook shows as the cell's output)."""
        buf = io.BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def new_figure(figsize: tuple[float, float] = (10, 6), nrows: int = 1, ncols: int = 1
               ) -> tuple[NotebookFigure, Any]:
    """A figure and its axes, without touching pyplot's global state; the figure
    displays itself in a notebook (:class:`NotebookFigure`)."""
    fig = NotebookFigure(figsize=figsize)
    axes = fig.subplots(nrows, ncols)
    return fig, axes


def _frame(data: FinancialModel | pd.DataFrame) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    return data.datacollector.get_model_vars_dataframe()


def _plot_series(axes: np.ndarray, df: pd.DataFrame, label: str | None = None) -> None:
    classes = [c for c in df.columns if c.startswith("price_")]
    for ax, (col, title) in zip(axes.ravel(), SERIES, strict=False):
        ax.plot(df.index, df[col], label=label)
        if col == "price" and classes and not label:  # one line per asset class
            for c in classes:
                ax.plot(df.index, df[c], lw=0.9, alpha=0.8, label=c.removeprefix("price_"))
            ax.legend(["index", *(c.removeprefix("price_") for c in classes)], fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        if col == "systemic_risk_index" and "debtrank_total" in df:
            ax.plot(df.index, df["debtrank_total"], ls="--", alpha=0.7,
                    label=None if label else "DebtRank total")
            if not label:
                ax.legend(["composite index", "DebtRank total"], fontsize=7)


def timeseries_dashboard(data: FinancialModel | pd.DataFrame) -> Figure:
    """Four panels over time from a model or its model-vars DataFrame."""
    df = _frame(data)
    fig, axes = new_figure((10, 6), 2, 2)
    _plot_series(np.asarray(axes), df)
    for ax in np.asarray(axes)[1]:
        ax.set_xlabel("step")
    fig.tight_layout()
    return fig


_LAYOUTS: weakref.WeakKeyDictionary[Any, dict[int, np.ndarray]] = weakref.WeakKeyDictionary()


def _layout(model: FinancialModel) -> dict[int, np.ndarray]:
    """Node positions of the model's network, computed once per model."""
    pos = _LAYOUTS.get(model)
    G = model.grid.G
    if pos is None or len(pos) != G.number_of_nodes():
        seed = 7
        pos = (nx.kamada_kawai_layout(G) if G.number_of_nodes() <= 150
               else nx.spring_layout(G, seed=seed, iterations=40))
        _LAYOUTS[model] = pos
    return pos


def network_snapshot(model: FinancialModel, ax: Axes | None = None) -> Figure:
    """Draw the network now (see the module docstring for the encoding)."""
    fig = None
    if ax is None:
        fig, ax = new_figure((6, 5))
    pos = _layout(model)
    n = model.n_banks
    L, s = model.ledger, model.sheets
    exp = L.exposure_matrix().tocoo()
    if exp.nnz:
        w = exp.data / exp.data.max()
        segs = np.array([[pos[int(i)], pos[int(j)]] for i, j in zip(exp.row, exp.col,
                                                                     strict=True)])
        from matplotlib.collections import LineCollection

        ax.add_collection(LineCollection(segs, linewidths=0.3 + 2.5 * w, colors="#7f8c8d",
                                         alpha=0.45, zorder=1))
    xy = np.array([pos[i] for i in range(n)])
    size = s.total_assets
    area = 20 + 400 * np.sqrt(np.clip(size, 0, None) / max(size.max(), 1e-12))
    cr = np.clip(s.capital_ratio, 0, 0.3)
    colours = np.where(L.defaulted, np.nan, cr)
    cmap = colormaps["RdYlGn"].with_extremes(bad="#555555")  # grey = defaulted
    sc = ax.scatter(xy[:, 0], xy[:, 1], s=area, c=colours, cmap=cmap, vmin=0.0, vmax=0.3,
                    edgecolors="black", linewidths=0.4, zorder=3, plotnonfinite=True)
    for ex in getattr(model, "exchanges", []):
        p = pos[ex.node]
        ax.scatter([p[0]], [p[1]], marker="s", s=260, c="#2e86de", edgecolors="black",
                   zorder=4)
        ax.annotate(f"X{ex.exchange_id}", p, ha="center", va="center", fontsize=7,
                    color="white", zorder=5)
    for ccp in getattr(model, "ccps", []):
        p = pos[ccp.node]
        ax.scatter([p[0]], [p[1]], marker="D", s=300, c="#8e44ad", edgecolors="black",
                   zorder=4)
        ax.annotate(f"C{ccp.ccp_id}", p, ha="center", va="center", fontsize=7, color="white",
                    zorder=5)
    ax.set_title(f"step {model.t}: {int(L.defaulted.sum())} defaults (grey), colour = "
                 "capital ratio, size = assets", fontsize=9)
    ax.set_axis_off()
    ax.autoscale_view()
    (fig or ax.figure).colorbar(sc, ax=ax, shrink=0.6, label="capital ratio")
    return fig or ax.figure


def risk_dashboard(model: FinancialModel) -> Figure:
    """Per-bank DebtRank (top 15), capital-ratio distribution and exposures."""
    fig, axes = new_figure((12, 4), 1, 3)
    scores = model.debtrank_per_bank()
    top = np.argsort(-scores)[:15]
    axes[0].barh([str(i) for i in top][::-1], scores[top][::-1], color="#c0392b")
    axes[0].set_title("DebtRank if the bank defaulted alone (top 15)", fontsize=9)
    cr = model.sheets.capital_ratio[model.ledger.active]
    axes[1].hist(cr, bins=20, color="#27ae60")
    axes[1].axvline(model.config.capital_requirement, color="black", ls="--",
                    label="requirement")
    axes[1].set_title("capital ratios (active banks)", fontsize=9)
    axes[1].legend(fontsize=7)
    ib = model.sheets.interbank_assets
    axes[2].scatter(model.sheets.total_assets, ib, s=12, alpha=0.7)
    axes[2].set_xlabel("total assets")
    axes[2].set_ylabel("interbank assets")
    axes[2].set_title("interbank exposure by size", fontsize=9)
    fig.tight_layout()
    return fig


def scenario_comparison(frames: Mapping[str, pd.DataFrame]) -> Figure:
    """The dashboard's four series for several runs, one line each."""
    fig, axes = new_figure((10, 6), 2, 2)
    for name, df in frames.items():
        _plot_series(np.asarray(axes), df, label=name)
    np.asarray(axes)[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def run_figure(model: FinancialModel) -> Figure:
    """Time series (left) and the network now (right) in one figure."""
    fig = NotebookFigure(figsize=(15, 7))
    grid = fig.add_gridspec(2, 4)
    df = _frame(model)
    axes = np.array([[fig.add_subplot(grid[r, c]) for c in range(2)] for r in range(2)])
    _plot_series(axes, df)
    network_snapshot(model, ax=fig.add_subplot(grid[:, 2:]))
    fig.tight_layout()
    return fig
