"""The Solara app: Mesa's SolaraViz with finsim-mesa's views.

Start it with ``finsim viz`` or ``solara run finsim_mesa.viz.app``.

* network view: banks coloured by capital ratio (grey = defaulted), sized by
  total assets, edges by exposure; exchanges (squares) and CCPs (diamonds);
* live charts: defaults, asset price, DebtRank and the systemic-risk index,
  liquidity; exchange and CCP state when the layer is on;
* controls: banks, topology, scenario, brain, infrastructure on/off, seed;
* a shock control (price crash, funding run, bank loss, default of a chosen
  bank) applied to the running model;
* a bank inspector: one bank's balance sheet now and over time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import solara
from mesa.visualization import SolaraViz, make_plot_component
from mesa.visualization.utils import force_update, update_counter

from finsim_mesa.agents.brains import BRAINS
from finsim_mesa.config import TOPOLOGIES
from finsim_mesa.errors import FinsimError
from finsim_mesa.model import FinancialModel
from finsim_mesa.scenarios import list_scenarios
from finsim_mesa.scenarios.engine import SHOCK_KINDS
from finsim_mesa.viz.plots import network_snapshot, new_figure

__all__ = ["FinancialModelViz", "make_page", "model_params"]


class FinancialModelViz(FinancialModel):
    """FinancialModel with one ``infrastructure`` switch for the app's checkbox
    (on = 2 exchanges and 1 CCP)."""

    def __init__(self, infrastructure: bool = False, **kwargs: Any) -> None:
        if infrastructure:
            kwargs.setdefault("n_exchanges", 2)
            kwargs.setdefault("n_ccps", 1)
        super().__init__(**kwargs)


def brain_choices() -> list[str]:
    """Brains offered in the app: the built-ins (trained checkpoints join them
    once the learning extra provides them)."""
    return list(BRAINS)


model_params: dict[str, Any] = {
    "n_banks": {"type": "SliderInt", "value": 30, "label": "Banks", "min": 5, "max": 200,
                "step": 5},
    "topology": {"type": "Select", "value": "barabasi_albert", "values": list(TOPOLOGIES),
                 "label": "Topology"},
    "scenario": {"type": "Select", "value": "normal", "values": list(list_scenarios()),
                 "label": "Scenario"},
    "brain": {"type": "Select", "value": "rule_based", "values": brain_choices(),
              "label": "Brain"},
    "infrastructure": {"type": "Checkbox", "value": False,
                       "label": "Exchanges and CCP (2 + 1)"},
    "rng": {"type": "SliderInt", "value": 42, "label": "Seed", "min": 0, "max": 999,
            "step": 1},
}


def NetworkView(model: FinancialModel) -> Any:
    """The network now."""
    update_counter.get()
    return solara.FigureMatplotlib(network_snapshot(model), dependencies=[update_counter.value])


def InfrastructureCharts(model: FinancialModel) -> Any:
    """Exchange utilisation and CCP margin / default fund over time (layer on only)."""
    update_counter.get()
    if model.router is None:
        return solara.Markdown("*Exchanges and CCPs are off (tick the box and reset).*")
    df = model.datacollector.get_model_vars_dataframe()
    fig, axes = new_figure((7, 3), 1, 2)
    axes[0].plot(df.index, df["exchange_utilisation"], label="utilisation")
    axes[0].axhline(model.config.congestion_threshold, color="red", ls="--", lw=0.8,
                    label="congestion")
    axes[0].set_title("exchanges", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[1].plot(df.index, df["margin_posted"], label="margin posted")
    axes[1].plot(df.index, df["default_fund_used"], label="default fund used")
    axes[1].plot(df.index, df["uncovered_loss"], label="uncovered loss")
    axes[1].set_title("central counterparties", fontsize=9)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return solara.FigureMatplotlib(fig, dependencies=[update_counter.value])


@solara.component
def ShockControl(model: FinancialModel) -> Any:
    """Apply a shock to the running model."""
    kind, set_kind = solara.use_state("price_crash")
    magnitude, set_magnitude = solara.use_state(0.2)
    bank, set_bank = solara.use_state(0)
    status, set_status = solara.use_state("")

    def apply() -> None:
        banks = None if kind == "price_crash" else [int(bank)]
        try:
            model.apply_shock(kind, magnitude=float(magnitude), banks=banks)
        except FinsimError as err:
            set_status(f"Shock refused: {err}")
            return
        d = int(model.ledger.defaulted.sum())
        set_status(f"Applied {kind} (magnitude {magnitude:g}"
                   f"{'' if banks is None else f', bank {bank}'}) at step {model.t}: "
                   f"{d} defaults now, price {model.market.price_index:.3f}")
        force_update()

    with solara.Card("Shock"):
        solara.Select("Shock kind", values=list(SHOCK_KINDS), value=kind, on_value=set_kind)
        solara.SliderFloat("Magnitude", value=magnitude, min=0.0, max=0.9, step=0.05,
                           on_value=set_magnitude)
        solara.InputInt("Bank (for funding run, loss, default)", value=bank,
                        on_value=set_bank)
        solara.Button("Apply shock", on_click=apply, color="warning")
        if status:
            solara.Markdown(status)


@solara.component
def BankInspector(model: FinancialModel) -> Any:
    """One bank's balance sheet now and its equity and cash over time."""
    update_counter.get()
    bank, set_bank = solara.use_state(0)
    b = int(np.clip(bank, 0, model.n_banks - 1))
    with solara.Card(f"Bank {b}"):
        solara.InputInt("Bank id", value=bank, on_value=set_bank)
        sheet = model.banks[b].balance_sheet()
        rows = "\n".join(f"| {k} | {v:,.3f} |" for k, v in sheet.items())
        solara.Markdown(f"| item | value |\n|---|---|\n{rows}")
        dc = model.datacollector
        if dc.agent_reporters and model.t > 0:
            agents = dc.get_agent_vars_dataframe()  # the banks' data
            uid = model.banks[b].unique_id
            hist = agents.xs(uid, level="AgentID")
            fig, ax = new_figure((5, 2.6))
            ax.plot(hist.index, hist["equity"], label="equity")
            ax.plot(hist.index, hist["cash"], label="cash")
            ax.set_xlabel("step")
            ax.legend(fontsize=7)
            fig.tight_layout()
            solara.FigureMatplotlib(fig, dependencies=[update_counter.value, b])


def make_page(model: FinancialModel | None = None) -> Any:
    """The SolaraViz page for ``model`` (default: the app's default parameters)."""
    if model is None:
        defaults = {k: v["value"] for k, v in model_params.items()}
        model = FinancialModelViz(**defaults)
    components = [
        NetworkView,
        make_plot_component("n_defaults"),
        make_plot_component("price"),
        make_plot_component({"debtrank_total": "tab:red", "systemic_risk_index": "tab:purple"}),
        make_plot_component("liquidity_index"),
        *([make_plot_component([f"price_{c}" for c in model.market.names])]
          if len(model.market.names) > 1 else []),  # one line per asset class
        InfrastructureCharts,
        ShockControl,
        BankInspector,
    ]
    return SolaraViz(model, components=components, model_params=model_params,
                     name="finsim-mesa: financial contagion")


page = make_page()
page  # noqa: B018 - the page Solara serves
