"""Vega-Lite specifications of the live view, as plain dictionaries.

Each spec names its data (``{"name": "nodes"}``, ...) and holds no values:
the page sends the values (:mod:`finsim_mesa.viz.frames`) and the browser's
Vega view swaps them in without rebuilding the chart. Written as Vega-Lite v5
JSON rather than through Altair so that the page does not depend on the
installed Altair's version (Altair 6 writes Vega-Lite v6, which the v5 front
end Solara serves cannot draw).

Fonts are sized for a projector (1280×720): labels 13 px, titles 14-15 px.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from finsim_mesa.viz.frames import SHEET_FIELDS

__all__ = ["CHARTS", "chart_list", "dashboard_spec", "history_spec", "network_spec"]

SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"
FONT = "Roboto, Helvetica, Arial, sans-serif"
CONFIG: dict[str, Any] = {
    "font": FONT,
    "view": {"stroke": None},
    "axis": {"labelFontSize": 13, "titleFontSize": 14, "titleFontWeight": "normal",
             "gridOpacity": 0.5},
    "legend": {"labelFontSize": 13, "titleFontSize": 13, "symbolSize": 120,
               "labelLimit": 260},
    "title": {"fontSize": 15, "anchor": "start", "fontWeight": "bold"},
    "concat": {"spacing": 28},
}
# colours: capital ratio from red (0) to green (0.3); grey = defaulted
DEFAULTED, NEW_RING, SELECTED_RING = "#4d4d4d", "#ff6d00", "#1565c0"
EXCHANGE, CCP = "#1e88e5", "#8e24aa"

# chart key -> (title, y axis in words with units, DataCollector columns -> legend words)
CHARTS: dict[str, tuple[str, str, dict[str, str]]] = {
    "defaults": ("Defaults", "defaults (banks)", {"n_defaults": "defaults"}),
    "prices": ("Asset prices", "price (start = 1)", {"price": "price index"}),
    "debtrank": ("DebtRank", "DebtRank (share of system value lost)",
                 {"debtrank_total": "DebtRank"}),
    "risk": ("Systemic-risk index", "systemic-risk index (0 calm – 1 crisis)",
             {"systemic_risk_index": "systemic-risk index"}),
    "liquidity": ("Liquidity", "cash / short-term liabilities (ratio)",
                  {"liquidity_index": "liquidity index"}),
    "exchanges": ("Exchanges", "utilisation (demand / capacity)",
                  {"exchange_utilisation": "utilisation"}),
    "ccps": ("Central counterparties", "money (currency units)",
             {"margin_posted": "margin posted", "default_fund_used": "default fund used",
              "uncovered_loss": "uncovered loss"}),
}


def chart_list(columns: list[str]) -> list[tuple[str, str, dict[str, str]]]:
    """The charts for a model whose series are ``columns`` (see
    :func:`~finsim_mesa.viz.frames.series_columns`): one price line per asset class,
    the exchange and CCP charts only with the infrastructure layer."""
    out = []
    for key, (title, axis, cols) in CHARTS.items():
        cols = dict(cols)
        if key == "prices":
            cols |= {c: c.removeprefix("price_") for c in columns if c.startswith("price_")}
        if all(c in columns for c in cols):
            out.append((title, axis, cols))
    return out


def _label_expr(words: dict[str, str]) -> str:
    """A Vega expression mapping a folded column name (``datum.key``) to words."""
    expr = "datum.key"
    for col, word in reversed(words.items()):
        expr = f"datum.key === {json.dumps(col)} ? {json.dumps(word)} : ({expr})"
    return expr


def _line_chart(title: str, axis: str, words: dict[str, str], steps: int, compare: bool,
                width: int, height: int, threshold: float | None = None,
                runs: Sequence[str] = ()) -> dict[str, Any]:
    """One time-series chart: a line per column (``words``: column -> legend words)
    and, in compare mode, per run (``runs``: the runs' labels in the order shown).
    The y axis title (``axis``) is written horizontally above the axis, where a
    long title in words fits."""
    several = len(words) > 1
    legend = {"orient": "bottom", "direction": "horizontal", "columns": 2, "title": None,
              "labelLimit": 200, "symbolType": "stroke", "symbolStrokeWidth": 2.5}
    enc: dict[str, Any] = {
        "x": {"field": "step", "type": "quantitative", "title": "step",
              "scale": {"domain": [0, steps], "nice": False}},
        "y": {"field": "value", "type": "quantitative", "title": axis,
              "axis": {"titleAngle": 0, "titleAlign": "left", "titleAnchor": "end",
                       "titleBaseline": "bottom", "titleX": -34, "titleY": -10,
                       "titleLimit": width + 30}},
        "tooltip": [*([{"field": "run", "title": "run"}] if compare else []),
                    {"field": "step", "title": "step"},
                    {"field": "series", "title": "series"},
                    {"field": "value", "title": "value", "format": ",.4~f"}],
    }
    if several:
        enc["color"] = {"field": "series", "type": "nominal", "legend": legend,
                        "scale": {"domain": list(words.values())}}
    if compare:
        channel = "strokeDash" if several else "color"
        enc[channel] = {"field": "run", "type": "nominal", "legend": legend,
                        **({"scale": {"domain": list(runs)}} if runs else {})}
    if not several and not compare:
        enc["color"] = {"value": "#c62828" if "default" in axis else "#1565c0"}
    line = {"mark": {"type": "line", "strokeWidth": 2.5, "interpolate": "linear"},
            "encoding": enc}
    layers = [line]
    if threshold is not None:
        layers.append({"data": {"values": [{"y": threshold}]},
                       "mark": {"type": "rule", "strokeDash": [6, 4], "color": "#e53935"},
                       "encoding": {"y": {"field": "y", "type": "quantitative"}}})
    return {"title": {"text": title, "offset": 26}, "width": width, "height": height,
            "transform": [{"fold": list(words), "as": ["key", "value"]},
                          {"calculate": _label_expr(words), "as": "series"}],
            "layer": layers}


def dashboard_spec(columns: list[str], steps: int, compare: bool, columns_per_row: int = 3,
                   width: int = 220, height: int = 120,
                   congestion: float | None = None, runs: Sequence[str] = ()) -> dict[str, Any]:
    """All time-series charts in one view over the dataset ``series`` (rows of
    ``step``, ``run`` and the DataCollector ``columns``); x from 0 to ``steps``;
    ``runs``: the runs' labels in compare mode."""
    charts = [_line_chart(title, axis, words, steps, compare, width, height,
                          congestion if title == "Exchanges" else None, runs)
              for title, axis, words in chart_list(columns)]
    return {"$schema": SCHEMA, "data": {"name": "series"}, "concat": charts,
            "columns": columns_per_row, "config": CONFIG,
            "resolve": {"scale": {"color": "independent", "strokeDash": "independent"}}}


def _bank_tooltip() -> list[dict[str, Any]]:
    tips: list[dict[str, Any]] = [{"field": "name", "title": "bank"},
                                  {"field": "st", "title": "state"}]
    for key, words in SHEET_FIELDS.items():
        fmt = ".1%" if key == "cr" else ",.2f"
        tips.append({"field": key, "title": words, "type": "quantitative", "format": fmt})
    return tips


def network_spec(exposure_max: float, requirement: float, capital0: float,
                 infrastructure: bool = False, width: int = 460, height: int = 420,
                 title: str | None = None) -> dict[str, Any]:
    """The network: banks (circles, area = total assets at the start, colour =
    capital ratio: red at 0, yellow at the ``requirement``, green at the start's
    ``capital0``; grey with a cross = defaulted, orange ring = defaulted this
    step, blue ring = selected), loan exposures (grey lines, width = exposure;
    ``exposure_max`` sets the widest), and with ``infrastructure`` exchanges
    (squares) and CCPs (diamonds) with dashed membership lines. Datasets:
    ``nodes``, ``edges``, ``links``, ``infra``, ``selected``."""
    xs, ys = ([-1.36, 1.36], [-1.08, 1.4]) if infrastructure else ([-1.08, 1.08],
                                                                    [-1.08, 1.08])
    xy = {"x": {"field": "x", "type": "quantitative", "axis": None,
                "scale": {"domain": xs, "nice": False, "zero": False}},
          "y": {"field": "y", "type": "quantitative", "axis": None,
                "scale": {"domain": ys, "nice": False, "zero": False}}}
    edge = {**xy, "x2": {"field": "x2"}, "y2": {"field": "y2"}}
    area = {"field": "a", "type": "quantitative", "scale": None}
    stops = sorted({0.0, float(requirement), max(float(capital0), float(requirement) + 0.01)})
    layers: list[dict[str, Any]] = [
        {"data": {"name": "links"},
         "mark": {"type": "rule", "strokeDash": [4, 4], "opacity": 0.25, "strokeWidth": 1},
         "encoding": {**edge, "color": {
             "field": "kind", "type": "nominal", "title": None,
             "scale": {"domain": ["member of an exchange", "exchange clears through a CCP"],
                       "range": [EXCHANGE, CCP]},
             "legend": None}}},
        {"data": {"name": "edges"}, "mark": {"type": "rule", "color": "#78909c"},
         "encoding": {**edge,
                      "strokeWidth": {"field": "w", "type": "quantitative", "legend": None,
                                      "scale": {"domain": [0, exposure_max],
                                                "range": [0.4, 4.5], "clamp": True}},
                      "opacity": {"value": 0.55},
                      "tooltip": [{"field": "w", "title": "loan exposure", "format": ",.2f"}]}},
        {"data": {"name": "nodes"},
         "mark": {"type": "point", "filled": True, "shape": "circle", "stroke": "#212121",
                  "strokeWidth": 0.8, "opacity": 1, "cursor": "pointer"},
         "encoding": {**xy, "size": area,
                      "color": {"condition": {"test": "datum.st !== 'active'", "value": DEFAULTED},
                                "field": "c", "type": "quantitative",
                                "title": "capital ratio (equity / risk-weighted assets)",
                                "scale": {"domain": stops, "clamp": True,
                                          "range": ["#c62828", "#fdd835", "#2e7d32"]},
                                "legend": {"orient": "none", "direction": "horizontal",
                                           "legendX": 0, "legendY": height + 4,
                                           "format": ".0%", "gradientLength": 240,
                                           "titleLimit": 460}},
                      "tooltip": _bank_tooltip()}},
        # marks named nopointer_* let the pointer through to the bank under them
        # (vega.py's style): hover and click always reach the bank's circle
        {"name": "nopointer_cross",
         "data": {"name": "nodes"}, "transform": [{"filter": "datum.st !== 'active'"},
                                                  {"calculate": "datum.a * 0.4", "as": "xa"}],
         "mark": {"type": "point", "shape": "cross", "filled": True, "color": "white",
                  "opacity": 0.95, "angle": 45},
         "encoding": {**xy, "size": {"field": "xa", "type": "quantitative", "scale": None}}},
        {"name": "nopointer_new",
         "data": {"name": "nodes"}, "transform": [{"filter": "datum.new"},
                                                  {"calculate": "datum.a * 2.4 + 200",
                                                   "as": "ring"}],
         "mark": {"type": "point", "filled": False, "shape": "circle", "stroke": NEW_RING,
                  "strokeWidth": 4},
         "encoding": {**xy, "size": {"field": "ring", "type": "quantitative", "scale": None}}},
        {"name": "nopointer_selected", "data": {"name": "selected"},
         "transform": [{"calculate": "datum.a * 3 + 320", "as": "ring"}],
         "mark": {"type": "point", "filled": False, "shape": "circle",
                  "stroke": SELECTED_RING, "strokeWidth": 3.5},
         "encoding": {**xy, "size": {"field": "ring", "type": "quantitative", "scale": None}}},
        {"data": {"name": "infra"}, "transform": [{"filter": "datum.kind === 'exchange'"}],
         "mark": {"type": "point", "shape": "square", "filled": True, "size": 900,
                  "color": EXCHANGE, "stroke": "#0d47a1", "strokeWidth": 1.5},
         "encoding": {**xy, "tooltip": [
             {"field": "name", "title": "exchange"},
             {"field": "members", "title": "member banks"},
             {"field": "util", "title": "utilisation (demand / capacity)", "format": ".0%"},
             {"field": "backlog", "title": "orders waiting (money)", "format": ",.2f"},
             {"field": "fee", "title": "fee rate", "format": ".3%"}]}},
        {"data": {"name": "infra"}, "transform": [{"filter": "datum.kind === 'CCP'"}],
         "mark": {"type": "point", "shape": "diamond", "filled": True, "size": 1100,
                  "color": CCP, "stroke": "#4a148c", "strokeWidth": 1.5},
         "encoding": {**xy, "tooltip": [
             {"field": "name", "title": "central counterparty"},
             {"field": "margin", "title": "margin held (money)", "format": ",.2f"},
             {"field": "fund", "title": "default fund (money)", "format": ",.2f"},
             {"field": "uncovered", "title": "uncovered losses (money)", "format": ",.2f"},
             {"field": "handled", "title": "member defaults handled"}]}},
        {"data": {"name": "infra"},
         "mark": {"type": "text", "color": "#212121", "fontSize": 13, "fontWeight": "bold",
                  "dy": 26},
         "encoding": {**xy, "text": {"field": "name"}}},
    ]
    spec: dict[str, Any] = {"$schema": SCHEMA, "width": width, "height": height,
                            "layer": layers, "config": CONFIG,
                            "resolve": {"scale": {"color": "independent",
                                                  "size": "independent"}}}
    if title:
        spec["title"] = title
    return spec


def history_spec(steps: int, compare: bool, width: int = 270, height: int = 140,
                 runs: Sequence[str] = ()) -> dict[str, Any]:
    """The selected bank's equity and cash over time (dataset ``history``: rows of
    ``step``, ``run``, ``equity``, ``cash``)."""
    chart = _line_chart("", "money (currency units)", {"equity": "equity", "cash": "cash"},
                        steps, compare, width, height, runs=runs)
    chart.pop("title")
    chart["layer"][0]["mark"]["point"] = {"filled": True, "size": 20}  # step 0 shows too
    return {"$schema": SCHEMA, "data": {"name": "history"}, **chart, "config": CONFIG}
