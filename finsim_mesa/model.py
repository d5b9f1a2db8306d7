"""FinancialModel: banks on a Mesa network, stepped through named stages.

One call of :meth:`FinancialModel.step` runs, in order:

1. :meth:`~FinancialModel.shock`   — exogenous price move and the scenario's shocks
   (:mod:`finsim_mesa.scenarios.engine`);
2. :meth:`~FinancialModel.observe` — one observation row per bank
   (:mod:`finsim_mesa.observation`);
3. :meth:`~FinancialModel.decide`  — each distinct brain acts once for its banks
   (:mod:`finsim_mesa.agents.brains`);
4. :meth:`~FinancialModel.act`     — asset sales, roll-over, lending matched over the
   network (:mod:`finsim_mesa.lending`);
5. :meth:`~FinancialModel.settle`  — interest and income; exchanges process their
   queues, CCPs call margin (:mod:`finsim_mesa.infrastructure`);
6. :meth:`~FinancialModel.clear`   — Eisenberg–Noe clearing of what is due, defaults,
   resolution, CCP waterfalls (:mod:`finsim_mesa.resolution`);
7. :meth:`~FinancialModel.price`   — fire-sale impact, forced deleveraging
   (:mod:`finsim_mesa.market`);
8. :meth:`~FinancialModel.record`  — risk measures, rewards, DataCollector
   (:mod:`finsim_mesa.measures`, :mod:`finsim_mesa.rewards`).

The model holds the shared state — the :class:`~finsim_mesa.ledger.Ledger` (all
balance sheets), the :class:`~finsim_mesa.market.Market` and the run-time state
declared in :mod:`finsim_mesa.state` — and the Mesa agents: banks, exchanges and
CCPs on a ``NetworkGrid``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from math import isfinite
from pathlib import Path
from typing import Any

import mesa
import networkx as nx
import numpy as np
import scipy.sparse as sp

from finsim_mesa import balance_sheets, lending, measures, network, observation, resolution, risk
from finsim_mesa.agents.bank import Bank
from finsim_mesa.agents.brainset import BrainSet
from finsim_mesa.config import ModelConfig, explicit_params, resolve_config
from finsim_mesa.errors import ConfigError
from finsim_mesa.fastmath import count_nonzero, total
from finsim_mesa.infrastructure import CentralCounterparty, Exchange, InfrastructureRouter, layer
from finsim_mesa.infrastructure.kept import KeptAgentLists
from finsim_mesa.market import Market, fire_sales, sell_to_market, set_prices
from finsim_mesa.resources import check_memory, check_rng
from finsim_mesa.rewards import update_rewards
from finsim_mesa.scenarios import Scenario, get_scenario
from finsim_mesa.scenarios.engine import Shock, ShockEngine, apply_shock, make_shock
from finsim_mesa.state import (
    Decisions,
    Measures,
    Reference,
    RewardBreakdown,
    Sheets,
    StepFlows,
    restore_model,
    snapshot_model,
    transaction,
)

__all__ = ["MODEL_REPORTERS", "FinancialModel", "build_space"]

MODEL_REPORTERS = measures.MODEL_REPORTERS


def build_space(graph: nx.Graph) -> mesa.space.NetworkGrid:
    """The model's Mesa space over ``graph``.

    The one place the space is built: moving to ``mesa.discrete_space.Network``
    (the successor of ``mesa.space.NetworkGrid`` since Mesa 3.5) changes only this.
    """
    return mesa.space.NetworkGrid(graph)


class FinancialModel(KeptAgentLists, mesa.Model):
    """An interbank system under stress.

    Any :class:`~finsim_mesa.config.ModelConfig` field can be passed as a
    keyword argument (``mesa.batch_run`` and ``SolaraViz`` drive it this way);
    keywords override ``config``. Seed only with Mesa's ``rng=``.

    Args:
        n_banks: number of banks.
        topology: ``barabasi_albert``, ``core_periphery`` or ``erdos_renyi``.
        edges_per_node, core_fraction, mean_degree: topology parameters.
        scenario: scenario name, YAML path or :class:`Scenario`.
        brain: a brain name, an object with ``act``, a sequence of these (one per
            bank) or a mapping ``{bank_id: brain, "default": brain}``.
        steps: episode length; ``running`` goes False after it.
        config: a :class:`ModelConfig`, a mapping or the path of a YAML file.
        graph: a user ``networkx`` graph (nodes become banks in order; directed
            edges point lender → borrower).
        exposures: a user exposure matrix, shape (n, n): ``[i, j]`` = what *j*
            owes *i* (money); sets the network and the interbank loans.
        rng: seed or ``numpy.random.Generator`` (Mesa's argument).
        **kwargs: any other ModelConfig field (named ``kwargs``: Mesa 3.3's SolaraViz
            accepts a catch-all keyword parameter only under that name).

    Raises:
        ConfigError: invalid or unknown parameters, naming each one.
    """

    def __init__(
        self,
        n_banks: int | None = None,
        topology: str | None = None,
        edges_per_node: int | None = None,
        core_fraction: float | None = None,
        mean_degree: float | None = None,
        scenario: str | Scenario | None = None, brain: Any = None,
        steps: int | None = None,
        *,
        config: ModelConfig | Mapping[str, Any] | str | Path | None = None,
        graph: nx.Graph | None = None,
        exposures: np.ndarray | sp.spmatrix | None = None,
        rng: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(rng=check_rng(rng))
        explicit = explicit_params(dict(
            n_banks=n_banks, topology=topology, edges_per_node=edges_per_node,
            core_fraction=core_fraction, mean_degree=mean_degree, steps=steps,
            scenario=scenario, brain=brain), kwargs)
        graph, self.node_labels, exposures = network.user_network(graph, exposures, explicit)
        cfg, graph, table = balance_sheets.with_table(resolve_config(config, explicit), graph)
        self.config = cfg
        self.node_labels = table.names if table is not None else self.node_labels
        check_memory(cfg, None if graph is None else graph.number_of_edges())
        n = cfg.n_banks
        self.scenario_spec: Scenario = (scenario if isinstance(scenario, Scenario)
                                        else get_scenario(cfg.scenario))
        self.t = 0  # own step counter: Mesa 3.3 and 3.5 count steps differently

        # --- network and balance sheets (all draws from self.rng)
        if graph is None:
            graph, self.node_labels = network.build_topology(cfg, self.rng), list(range(n))
        self.graph: nx.Graph = graph
        lender, borrower = network.oriented_edges(graph, self.rng)
        bs = (balance_sheets.from_table(table) if table is not None else
              balance_sheets.calibrate(n, lender, borrower, cfg, self.rng, exposures=exposures))
        self.ledger = balance_sheets.build_ledger(bs, cfg, self.rng)
        self.market = Market(cfg, bs.holdings.sum(axis=0), self.ledger.prices)
        self.network = network.Adjacency.from_graph(graph, n)

        # --- run-time state (declared in finsim_mesa.state)
        obs_dim = len(observation.observation_names(cfg, self.market.names))
        self.sheets = Sheets()
        self.flows = StepFlows(withdrawals=np.zeros(n), units_sold=np.zeros(cfg.n_assets),
                               price_prev=self.market.price_index)
        self.measures = Measures()
        self.reward = RewardBreakdown(per_bank=np.zeros(n))
        self.decisions = Decisions(np.zeros((n, obs_dim)), np.zeros((n, 4)), {})
        self.reference = Reference()
        self.shock_log: list[dict[str, Any]] = []
        self.collapsed = False
        self.collect_data = True  # off in lookahead copies: no rewards, DebtRank or data
        self.atomic_steps = True  # off in a trainer's throwaway models (no rollback)
        self.sib_scores: np.ndarray | None = None  # per-bank DebtRank, every ranking_every

        # --- Mesa agents on the network (exchanges and CCPs are nodes too)
        space_graph = graph
        if cfg.infrastructure:
            space_graph = nx.Graph(graph)
            space_graph.add_nodes_from(range(n, n + cfg.n_exchanges + cfg.n_ccps))
        self.grid = build_space(space_graph)
        self.banks: list[Bank] = []
        for i in range(n):
            bank = Bank(self, i)
            self.grid.place_agent(bank, i)
            self.banks.append(bank)
        self.brains = BrainSet(brain if brain is not None and not isinstance(brain, str)
                               else cfg.brain, n, cfg.brain)
        self.brains.setup(self)
        self.shock_engine = ShockEngine(self.scenario_spec, self.market.names)
        self.router: InfrastructureRouter | None = None
        if cfg.infrastructure:
            self.refresh()
            self.router = layer.build(self, space_graph, self.sheets.total_assets)

        self.reward.equity_prev = self.ledger.equity.copy()
        assets0 = self.ledger.total_assets()
        self.reference.assets0, self.reference.size0 = assets0, float(assets0.mean())
        self.reference.exposures0 = self.ledger.exposure_matrix(bilateral_only=cfg.infrastructure)
        self.refresh()
        self.reference.liquidity0 = measures.liquidity(self.ledger, self.sheets)
        self.measure()
        collect = cfg.agent_collect_every
        types = {Exchange: Exchange.REPORTERS, CentralCounterparty: CentralCounterparty.REPORTERS}
        self.datacollector = measures.FinsimDataCollector(
            agent_every=collect,
            model_reporters=measures.make_reporters(cfg.infrastructure, self.market.names),
            agent_reporters=dict(Bank.REPORTERS) if collect else None,
            agent_columns=Bank.COLUMNS,
            agenttype_reporters=types if collect and cfg.infrastructure else None)
        self.datacollector.collect(self)

    # ================================================================ stages
    def step(self) -> None:
        """Advance one step through all stages — all or nothing: if anything fails
        (a brain, a shock, a bug), the model is left exactly as before the step
        and the error goes on (lookahead copies and ``atomic_steps = False`` skip it)."""
        with transaction(self) if self.collect_data and self.atomic_steps else nullcontext():
            self.t += 1
            self.shock()
            obs = self.observe(self.brains.given_observations())
            actions = self.decide(obs)
            self.act(actions)
            self.settle()
            self.clear()
            self.price()
            self.record()

    def shock(self) -> None:
        """Stage 1: exogenous price move, then this step's scenario shocks."""
        self.flows.price_prev = self.market.price_index
        prices = self.market.exogenous_prices(self.scenario_spec.price_volatility, self.rng)
        set_prices(self.ledger, self.market, prices)
        for shock in self.shock_engine.draw(self.t, self.ledger.active,
                                            self.sheets.total_assets, self.rng):
            self._apply(shock)
        self.refresh()

    def observe(self, given: np.ndarray | None = None) -> np.ndarray:
        """Stage 2: the observation matrix, shape (n_banks, obs_dim); columns in
        ``observation.observation_names`` (``OBS_FIELDS`` first). In a step, the
        matrix an environment already gave the brains is taken ``given``."""
        self.decisions.observations = observation.observe(self) if given is None else given
        return self.decisions.observations

    def decide(self, observations: np.ndarray) -> np.ndarray:
        """Stage 3: each distinct brain acts once on the rows of its active banks.

        Returns actions, shape (n_banks, 4), in [0, 1]; zero for defaulted banks.

        Raises:
            BrainError: a brain returned a wrong shape, NaN/inf or values outside [0, 1].
        """
        actions = self.brains.decide(observations, self.ledger.active, self.banks,
                                     self.decisions.overrides)
        self.decisions.actions = actions
        return actions

    def act(self, actions: np.ndarray) -> None:
        """Stage 4: voluntary asset sales; maturing loans rolled over unless the
        lender hoards; new lending matched between network neighbours (through
        the lender's exchange when the infrastructure layer is on)."""
        L, cfg, t = self.ledger, self.config, self.t
        rows = np.multiply(actions.T, L.active, order="C")  # 4 C rows, by index (unpacking
        lend, hoard, sell, borrow = ((rows[0], rows[1], rows[2], rows[3]) if len(rows) == 4
                                     else rows)  # iterates the array: other lengths, its error)
        # (nobody sells, finite holdings: units +-0.0, skipped by sell_to_market; NaN: sold)
        if count_nonzero(sell) or not isfinite(total(L.holdings)):
            self._sell(L.holdings * (sell * cfg.max_sell_fraction)[:, None],
                       L.prices * (1 - cfg.sale_discount), "voluntary_sales")
        spread = cfg.rate_stress_spread * risk.distress(L.equity, L.equity0, L.defaulted)
        first_new = len(L.loans)
        rolled = lending.roll_over(L, hoard, self.market.rate, spread, t, t + cfg.loan_maturity)
        self.flows.rollover_volume = float(np.add.reduce(rolled["amount"], axis=None))
        src, dst, amount, link = lending.new_loans(L, self.network, lend, hoard, borrow, cfg)
        rate = self.market.rate + spread[dst]
        self.flows.interbank_volume = 0.0
        if self.router is not None:
            self.router.record_rollovers(rolled, t)
            self.router.submit_many(src, dst, amount, rate, t, link)  # settled by the exchanges
        else:
            L.lend(src, dst, amount, rate, t + cfg.loan_maturity, link=link)
            self.flows.interbank_volume = float(np.add.reduce(amount, axis=None))
        L.loans.consolidate(first_new)  # one loan per pair for all of this step's lending

    def settle(self) -> None:
        """Stage 5: interest accrues on loans and deposits; assets pay their yield.
        With the infrastructure layer on, each exchange processes its queue and
        the processed trades become loans (fees paid, novated to CCPs); then the
        CCPs call margin."""
        L, cfg, flows = self.ledger, self.config, self.flows
        L.accrue_interest()
        L.charge_deposit_interest(cfg.deposit_rate)
        L.receive_asset_income(cfg.asset_return)
        if self.router is None:
            return
        processed = [ex.process(self.t) for ex in self.of_type(Exchange)]  # (in id order)
        flows.exchange_fees, flows.interbank_volume = layer.book_orders(
            L, self.router, processed, cfg, self.t)
        if cfg.n_ccps:
            flows.margin_called = layer.call_margin(L, self.ccps, self.router, self.margin_rate,
                                                    cfg, self._sell, self.t)

    def clear(self) -> None:
        """Stage 6: Eisenberg–Noe clearing of the obligations due, defaults and the
        resolution of defaulted banks, round after round (see
        :mod:`finsim_mesa.resolution`); CCPs absorb members' defaults."""
        self.flows.contagion_depth = resolution.clear_and_resolve(
            self.ledger, self.config, self.flows.withdrawals, self._sell, self.t, self.ccps,
            self.router)

    def price(self) -> None:
        """Stage 7: price impact of this step's sales and the forced-deleveraging
        spiral; banks left with negative equity default (resolved next step)."""
        L, flows = self.ledger, self.flows
        p0 = L.prices.copy()  # (below, np.add.reduce: .sum(axis=0) without its wrapper)
        forced, _ = fire_sales(L, self.market, self.config, flows.units_sold, self.t)
        sold = (flows.units_sold + np.add.reduce(forced, axis=0) if count_nonzero(forced)
                else flows.units_sold)  # (no forced sale: + (+-0.0) changes no units sold)
        flows.fire_sale_volume = (sold.item() * p0.item() + 0.0 if sold.size == 1  # (one class:
                                  else float(sold @ p0))  # matmul's 0.0 + x * p, in floats)
        flows.units_sold = np.zeros(flows.units_sold.shape)
        L.mark_default(resolution.insolvent(L), self.t)

    def record(self) -> None:
        """Stage 8: risk measures, rewards, end-of-episode test, DataCollector.

        With ``collect_data`` off (lookahead runs) only the measures the next
        steps need are computed, and no rewards or data are recorded.
        """
        self.refresh()
        cfg = self.config
        self.measure(full=self.collect_data)
        if self.collect_data:
            update_rewards(self.reward, self.ledger, self.sheets.total_assets,
                           self.measures.systemic_risk_index, cfg, self.t)
            if cfg.ranking_every and self.t % cfg.ranking_every == 0:
                self.sib_scores = self.debtrank_per_bank()
        self.collapsed = self.measures.default_rate >= cfg.collapse_threshold
        if self.t >= cfg.steps or self.collapsed:
            self.running = False
        if self.collect_data:
            self.datacollector.collect(self)

    # ============================================================ state
    def refresh(self) -> None:
        """Recompute :attr:`sheets` (derived balance-sheet figures) from the ledger."""
        measures.refresh_sheets(self.sheets, self.ledger, self.config.interbank_risk_weight)

    def measure(self, full: bool = True) -> None:
        """Update :attr:`measures` from the current state; with ``full=False`` only
        what the next steps' dynamics read (defaults, price, stress, rate)."""
        m, L, infra = self.measures, self.ledger, self.router is not None
        h = measures.update_core(m, L, self.market, self.scenario_spec.stress_level,
                                 self.flows.price_prev)
        if full:
            measures.update_full(m, L, self.sheets, self.reference.assets0,
                                 self.reference.liquidity0, bilateral_only=infra, h=h)
            if infra:
                measures.update_infrastructure(m, L, self.exchanges, self.ccps, self.router,
                                               self.t, self.sheets)

    def snapshot(self) -> dict[str, Any]:
        """Copies of everything that changes as the model runs (see
        :func:`finsim_mesa.state.snapshot_model`); :meth:`restore` puts it back, here
        or in a model with the same config and network (what-if analysis)."""
        return snapshot_model(self)

    def restore(self, snap: Mapping[str, Any]) -> None:
        """Put a :meth:`snapshot` back (the snapshot stays valid for reuse)."""
        restore_model(self, snap)

    # ============================================================ helpers of the stages
    def _sell(self, units: np.ndarray, prices: np.ndarray, kind: str) -> None:
        sell_to_market(self.ledger, self.flows, units, prices, kind)

    def _apply(self, shock: Shock) -> None:
        self.shock_log.append(apply_shock(shock, self.ledger, self.market,
                                          self.flows.withdrawals, self.t))

    @property
    def margin_rate(self) -> float:
        """The CCPs' margin per unit of cleared borrowing now (see ``layer.margin_rate``)."""
        return layer.margin_rate(self.config, self.market.price_index)

    # ============================================================ institutions
    def add_institution(self, agent: mesa.Agent) -> int:
        """Put a new institution (a Mesa agent of this model) on its own node of the
        network; its class's ``REPORTERS`` (column -> attribute) are collected per
        agent type. The model's stages do not call it: a subclass's stage does
        (see "Adding an institution" in docs/design.md). Returns its node."""
        node = self.grid.G.number_of_nodes()
        self.grid.G.add_node(node, agent=[])
        self.grid.place_agent(agent, node)
        reporters = getattr(type(agent), "REPORTERS", None)
        if reporters and self.config.agent_collect_every:  # a second one re-registers them
            self.datacollector.add_agent_type(type(agent), reporters)
        return node

    # ============================================================ shocks and changes
    def apply_shock(self, kind: str, magnitude: float = 0.0,
                    banks: Sequence[int] | np.ndarray | None = None,
                    asset: str | None = None) -> None:
        """Apply a shock now (between steps or inside a stage).

        Args:
            kind: one of :data:`~finsim_mesa.scenarios.engine.SHOCK_KINDS`.
            magnitude: size of the shock (meaning per kind; see SHOCK_KINDS).
            banks: ids hit (None = all active; required for ``loss``, ``default``).
            asset: the asset class a ``price_crash`` hits (None = all).

        Raises:
            ShockError: unknown kind, bad magnitude or bank ids; nothing is changed.
        """
        self._apply(make_shock(kind, magnitude, banks, self.n_banks, asset, self.market.names))
        self.refresh()
        m, L = self.measures, self.ledger  # reported at once; the risk measures next step
        m.asset_price, m.n_defaults = self.market.price_index, int(L.defaulted.sum())
        m.default_rate = m.n_defaults / L.n

    def set_brains(self, brain: Any) -> None:
        """Hand the banks to new brains from the next step on (same forms as the
        ``brain`` argument: name, object, list or mapping).

        Raises:
            ConfigError, CheckpointError: the brains do not fit; nothing is changed.
        """
        brains = BrainSet(brain, self.n_banks, self.config.brain)
        brains.setup(self)
        self.brains = brains

    def set_scenario(self, scenario: str | Scenario) -> None:
        """Switch to another scenario from the next step on (its schedule keeps
        counting steps from the start of the run).

        Raises:
            ConfigError: unknown scenario name or invalid definition.
        """
        spec = scenario if isinstance(scenario, Scenario) else get_scenario(scenario)
        self.shock_engine = ShockEngine(spec, self.market.names)
        self.scenario_spec = spec
        self.measures.market_stress = max(spec.stress_level, self.measures.stress_index)

    # ============================================================ decisions
    def twin(self, brain: Any = None, **params: Any) -> FinancialModel:
        """A new model with this one's configuration (``params`` on top), network and
        scenario, its own agents and ``brain`` (default: the config's) — not its
        state: ``twin.restore(self.snapshot())`` copies that (what-if analysis)."""
        cfg = self.config.model_dump() | params
        return FinancialModel(config=cfg, graph=self.graph, scenario=self.scenario_spec,
                              brain=brain, rng=0)

    def what_if(self, steps: int = 10, seeds: Any = 10, **hypothetical: Any) -> Any:
        """Look ``steps`` ahead under a hypothetical (``shock=``, ``brains=``,
        ``actions=``, ``bank=``) against the no-change baseline on the same seeds;
        this model is not changed. See :func:`finsim_mesa.decision.what_if`."""
        from finsim_mesa.decision import what_if

        return what_if(self, steps, seeds, **hypothetical)

    def recommend(self, bank_id: int, candidates: Mapping[str, Any] | None = None,
                  steps: int = 10, seeds: Any = 10, shock: Mapping[str, Any] | None = None,
                  workers: int | str = "auto") -> Any:
        """The best candidate action for one bank by lookahead (after ``shock``, if
        given; in ``workers`` processes). See :func:`finsim_mesa.decision.recommend`."""
        from finsim_mesa.decision import recommend

        return recommend(self, bank_id, candidates, steps, seeds, shock=shock, workers=workers)

    # ============================================================ running and reading
    def run_for(self, steps: int) -> None:
        """Advance ``steps`` steps (stops early once ``running`` is False)."""
        if (isinstance(steps, bool) or not isinstance(steps, int | float | np.number)
                or not np.isfinite(steps) or int(steps) != steps or steps < 0):
            raise ConfigError(f"steps = {steps!r}: must be a non-negative integer")
        for _ in range(int(steps)):
            if not self.running:
                break
            self.step()

    def check(self) -> None:
        """Raise :class:`~finsim_mesa.errors.AccountingError` if an identity is broken."""
        self.ledger.check()

    @property
    def n_banks(self) -> int:
        """Number of banks."""
        return self.config.n_banks

    # Mesa 3.5 reserves Model.scenario for its experiment scenarios (and SolaraViz's
    # Reset passes it back as scenario=); finsim's scenario is scenario_spec
    scenario = property(lambda self: None, lambda self, value: setattr(self, "_scenario", value))

    @property
    def scenario_name(self) -> str:
        """Name of the scenario in force."""
        return self.scenario_spec.name

    def debtrank_per_bank(self) -> np.ndarray:
        """DebtRank of each bank defaulting alone on today's exposures, shape (n,)."""
        return measures.debtrank_per_bank(self.ledger, self.reference.assets0,
                                          bilateral_only=self.router is not None)

    def systemic_ranking(self, top: int = 5) -> list[dict[str, float]]:
        """The ``top`` most systemically important surviving banks, by DebtRank on
        the initial network (see :func:`finsim_mesa.measures.systemic_ranking`)."""
        return measures.systemic_ranking(self, top)

    def summary(self, top: int = 5) -> dict[str, Any]:
        """Headline figures of the current state (used by ``finsim simulate``)."""
        return measures.summary(self, top)
