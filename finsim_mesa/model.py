"""FinancialModel: banks on a Mesa network, stepped through named stages.

One call of :meth:`FinancialModel.step` runs, in order:

1. :meth:`~FinancialModel.shock`   — exogenous price move and the scenario's shocks;
2. :meth:`~FinancialModel.observe` — one observation row per bank;
3. :meth:`~FinancialModel.decide`  — each distinct brain acts once for its banks;
4. :meth:`~FinancialModel.act`     — asset sales, lending matched over the network;
5. :meth:`~FinancialModel.settle`  — interest, deposit costs, asset income;
6. :meth:`~FinancialModel.clear`   — Eisenberg–Noe clearing of what is due, defaults
   and the resolution of defaulted banks;
7. :meth:`~FinancialModel.price`   — fire-sale impact, forced deleveraging, marking;
8. :meth:`~FinancialModel.record`  — rewards, risk measures, DataCollector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mesa
import networkx as nx
import numpy as np
import scipy.sparse as sp
from mesa.datacollection import DataCollector

from finsim_mesa import risk
from finsim_mesa.agents.bank import Bank
from finsim_mesa.agents.brains import BrainLike, brain_name, make_brain
from finsim_mesa.agents.ccp import CentralCounterparty
from finsim_mesa.agents.exchange import Exchange
from finsim_mesa.agents.router import OUTCOMES, InfrastructureRouter, assign_venues
from finsim_mesa.clearing import eisenberg_noe
from finsim_mesa.config import ModelConfig, load_config, make_config
from finsim_mesa.errors import BrainError, ConfigError, ShockError
from finsim_mesa.infrastructure import ExchangeQueue, default_waterfall
from finsim_mesa.ledger import Ledger
from finsim_mesa.market import Market, fire_sale_loop
from finsim_mesa.network import (
    build_topology,
    calibrate,
    graph_from_exposures,
    normalise_graph,
    oriented_edges,
)
from finsim_mesa.observation import INFRA_OBS_DIM, OBS_DIM
from finsim_mesa.scenarios import Scenario, get_scenario
from finsim_mesa.scenarios.engine import SHOCK_KINDS, Shock, ShockEngine

__all__ = ["MODEL_REPORTERS", "FinancialModel", "build_space"]

RUNOFF = 0.1  # share of deposits assumed to run in a short stress (liquidity measures)
LIQUIDITY_CAP = 100.0  # liquidity index reported at most this (no short-term debt left)

MODEL_REPORTERS: dict[str, str] = {"price": "asset_price"} | {
    name: name for name in (
        "total_equity", "n_defaults", "default_rate", "debtrank", "debtrank_total",
        "liquidity_index", "stress_index", "contagion_depth", "systemic_risk_index",
        "mean_capital_ratio", "min_capital_ratio", "interbank_exposure", "interbank_volume",
        "rollover_volume",
        "fire_sale_volume", "interbank_rate", "mean_reward", "reward_profit",
        "reward_liquidity", "reward_default", "reward_system_risk",
    )
}
AGENT_REPORTERS = {name: name for name in ("equity", "cash", "capital_ratio", "defaulted")}
INFRA_REPORTERS: dict[str, str] = {name: name for name in (
    "exchange_fees", "exchange_utilisation", "congested_exchanges", "order_backlog",
    "orders_expired", "margin_posted", "margin_called", "netting_efficiency",
    "default_fund_used", "uncovered_loss", "routed_transactions",
)}
EXCHANGE_REPORTERS = {name: name for name in ("utilisation", "fee_rate", "backlog", "processed",
                                              "expired", "mean_delay")}
CCP_REPORTERS = {name: name for name in ("margin_held", "default_fund", "capital",
                                         "cleared_volume", "netting_efficiency", "uncovered")}


def capped_share(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """``min(1, part / whole)`` elementwise (1 where ``part >= whole``), dividing
    only where ``part < whole`` so that tiny denominators cannot overflow."""
    out = np.ones_like(part, dtype=float)
    m = part < whole
    out[m] = part[m] / whole[m]
    return out


def n_ccp_node(model: Any, c: np.ndarray) -> np.ndarray:
    """Grid node ids of CCPs ``c`` (used as the CCP's id in audit records)."""
    return model.config.n_banks + model.config.n_exchanges + np.asarray(c)


def build_space(graph: nx.Graph) -> mesa.space.NetworkGrid:
    """The model's Mesa space over ``graph``.

    The one place the space is built: moving to ``mesa.discrete_space.Network``
    (the successor of ``mesa.space.NetworkGrid`` since Mesa 3.5) changes only this.
    """
    return mesa.space.NetworkGrid(graph)


class FinsimDataCollector(DataCollector):
    """Mesa's DataCollector that records agent data only every ``agent_every`` steps."""

    def __init__(self, agent_every: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.agent_every = agent_every

    def collect(self, model: mesa.Model) -> None:
        """Model data every call; agent data when ``model.t % agent_every == 0``."""
        if self.agent_every and model.t % self.agent_every == 0:
            super().collect(model)
            return
        saved, self.agent_reporters = self.agent_reporters, {}
        try:
            super().collect(model)
        finally:
            self.agent_reporters = saved


class FinancialModel(mesa.Model):
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
        **params: any other ModelConfig field.

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
        scenario: str | Scenario | None = None,
        brain: Any = None,
        steps: int | None = None,
        *,
        config: ModelConfig | Mapping[str, Any] | str | Path | None = None,
        graph: nx.Graph | None = None,
        exposures: np.ndarray | sp.spmatrix | None = None,
        rng: Any = None,
        **params: Any,
    ) -> None:
        super().__init__(rng=rng)
        explicit = {
            k: v for k, v in {
                "n_banks": n_banks, "topology": topology, "edges_per_node": edges_per_node,
                "core_fraction": core_fraction, "mean_degree": mean_degree, "steps": steps,
            }.items() if v is not None
        }
        scenario_obj = scenario if isinstance(scenario, Scenario) else None
        if scenario is not None:
            explicit["scenario"] = scenario.name if scenario_obj else scenario
        if isinstance(brain, str):
            explicit["brain"] = brain
        explicit.update(params)
        if exposures is not None:
            exposures = _check_exposures(exposures)
            graph = graph_from_exposures(exposures)
        if graph is not None:
            if not isinstance(graph, nx.Graph):
                raise ConfigError(f"graph must be a networkx graph, not {type(graph).__name__}")
            graph, self.node_labels = normalise_graph(graph)
            given = explicit.get("n_banks")
            if given is not None and given != graph.number_of_nodes():
                raise ConfigError(f"n_banks = {given} but the graph has "
                                  f"{graph.number_of_nodes()} nodes; leave n_banks out")
            explicit["n_banks"] = graph.number_of_nodes()
        self.config: ModelConfig = _base_config(config, explicit)
        cfg = self.config
        self.scenario_spec: Scenario = scenario_obj or get_scenario(cfg.scenario)
        self.scenario_name = self.scenario_spec.name
        self.t = 0  # own step counter: Mesa 3.3 and 3.5 count steps differently

        # --- network and balance sheets (all draws from self.rng)
        if graph is None:
            graph = build_topology(cfg, self.rng)
            self.node_labels = list(range(cfg.n_banks))
        self.graph: nx.Graph = graph
        lender, borrower = oriented_edges(graph, self.rng)
        sheets = calibrate(cfg.n_banks, lender, borrower, cfg, self.rng, exposures=exposures)
        self.ledger = Ledger(sheets.cash, sheets.holdings, sheets.deposits, np.ones(cfg.n_assets),
                             sheets.other_assets)
        maturity = self.rng.integers(1, cfg.loan_maturity + 1, size=len(sheets.loan_amount))
        keep = sheets.loan_amount > 0
        self.ledger.loans.append(sheets.loan_lender[keep], sheets.loan_borrower[keep],
                                 sheets.loan_amount[keep],
                                 np.full(int(keep.sum()), cfg.base_rate), maturity[keep])
        self.ledger.finish_setup()
        self.market = Market(cfg, sheets.holdings.sum(axis=0))
        und = nx.to_undirected(graph) if graph.is_directed() else graph
        edges = np.asarray(list(und.edges()), dtype=np.int64).reshape(-1, 2)
        self._adj_src = np.concatenate([edges[:, 0], edges[:, 1]])
        self._adj_dst = np.concatenate([edges[:, 1], edges[:, 0]])
        n = cfg.n_banks
        self._adjacency = sp.csr_matrix((np.ones(self._adj_src.size),
                                         (self._adj_src, self._adj_dst)), shape=(n, n))
        self._degree = np.asarray(self._adjacency.sum(axis=1)).reshape(-1)

        # --- Mesa agents on the network (exchanges and CCPs are nodes too)
        self._infra = cfg.infrastructure
        space_graph = graph
        if self._infra:
            space_graph = nx.Graph(graph)
            space_graph.add_nodes_from(range(n, n + cfg.n_exchanges + cfg.n_ccps))
        self.grid = build_space(space_graph)
        self.banks: list[Bank] = []
        for i in range(n):
            bank = Bank(self, i)
            self.grid.place_agent(bank, i)
            self.banks.append(bank)
        self._setup_brains(brain if brain is not None and not isinstance(brain, str)
                           else cfg.brain)
        self.shock_engine = ShockEngine(self.scenario_spec)
        self.router: InfrastructureRouter | None = None
        self.exchanges: list[Exchange] = []
        self.ccps: list[CentralCounterparty] = []
        self.margin_called = 0.0
        if self._infra:
            self._refresh_state()
            self._setup_infrastructure(space_graph)

        # --- run-time state
        self._withdrawals = np.zeros(n)
        self._units_sold = np.zeros(cfg.n_assets)
        self.observations = np.zeros((n, OBS_DIM))
        self.actions = np.zeros((n, 4))
        self.rewards = np.zeros(n)
        self.reward_components: dict[str, np.ndarray] = {}
        self._equity_prev = self.ledger.equity.copy()
        self._price_prev = self.market.price_index
        self.price_return = 0.0
        self.collapsed = False
        self.shock_log: list[dict[str, Any]] = []
        self.action_overrides: dict[int, np.ndarray] = {}  # fixed actions (what-if analysis)
        self.collect_data = True
        self.sib_scores: np.ndarray | None = None
        self._assets0 = self.ledger.total_assets()
        self._size0 = float(self._assets0.mean())
        self.contagion_depth = 0
        self.interbank_volume = 0.0
        self.rollover_volume = 0.0
        self.exchange_fees = 0.0
        self.fire_sale_volume = 0.0
        self.mean_reward = 0.0
        for name in ("profit", "liquidity", "default", "system_risk"):
            setattr(self, f"reward_{name}", 0.0)
        self._refresh_state()
        self._liquidity0 = self._liquidity()
        self._measure()
        reporters = dict(MODEL_REPORTERS) | (INFRA_REPORTERS if self._infra else {})
        types = ({Exchange: EXCHANGE_REPORTERS, CentralCounterparty: CCP_REPORTERS}
                 if self._infra and cfg.agent_collect_every else None)
        self.datacollector = FinsimDataCollector(
            agent_every=cfg.agent_collect_every, model_reporters=reporters,
            agent_reporters=dict(AGENT_REPORTERS) if cfg.agent_collect_every else None,
            agenttype_reporters=types)
        self.datacollector.collect(self)

    # ================================================================ set-up
    def _setup_brains(self, spec: Any) -> None:
        n = self.config.n_banks
        if isinstance(spec, Mapping):
            bad = [k for k in spec if k != "default" and not (isinstance(k, int | np.integer)
                                                              and 0 <= k < n)]
            if bad:
                raise ConfigError(f"brain mapping has keys {bad!r}; use bank ids 0..{n - 1} "
                                  "or 'default'")
            default = spec.get("default", self.config.brain)
            per = [spec.get(i, default) for i in range(n)]
        elif isinstance(spec, Sequence) and not isinstance(spec, str):
            if len(spec) != n:
                raise ConfigError(f"brain list has {len(spec)} entries for {n} banks; give one "
                                  "per bank or a mapping {bank_id: brain, 'default': brain}")
            per = list(spec)
        else:
            per = [spec] * n
        made: dict[Any, BrainLike] = {}
        brains = []
        for s in per:
            key = s if isinstance(s, str) else id(s)
            if key not in made:
                made[key] = make_brain(s)
            brains.append(made[key])
        for b in made.values():
            if hasattr(b, "setup"):
                b.setup(self)
        self.brains: list[BrainLike] = brains
        self.brain_names = [brain_name(b) for b in brains]
        ids = np.array([id(b) for b in brains])
        self._brain_groups = [(b, np.flatnonzero(ids == id(b))) for b in made.values()]

    def _setup_infrastructure(self, space_graph: nx.Graph) -> None:
        """Exchanges and CCPs as agents and grid nodes; the initial loans are
        novated to the CCPs (share ``ccp_clearing_share``); members register,
        contribute ``default_fund_rate`` of their assets to the default funds (at
        most half their cash) and post initial margin (up to their cash; the rest
        is called at the first step)."""
        cfg, L, n = self.config, self.ledger, self.config.n_banks
        size = self.state["total_assets"]
        bank_exchange = assign_venues(cfg.venue_rule, cfg.n_exchanges, size, self.rng)
        L.setup_infrastructure(cfg.n_ccps, cfg.n_exchanges)
        for x in range(cfg.n_exchanges):
            members = bank_exchange == x
            queue = ExchangeQueue(max(cfg.exchange_capacity * float(size[members].sum()), 1e-9),
                                  cfg.congestion_threshold, cfg.exchange_base_fee,
                                  cfg.exchange_fee_slope, cfg.max_order_wait)
            ex = Exchange(self, x, queue, node=n + x)
            self.grid.place_agent(ex, n + x)
            space_graph.add_edges_from((int(i), n + x) for i in np.flatnonzero(members))
            self.exchanges.append(ex)
        for c in range(cfg.n_ccps):
            node = n + cfg.n_exchanges + c
            ccp = CentralCounterparty(self, c, node=node)
            self.grid.place_agent(ccp, node)
            self.ccps.append(ccp)
        self.router = InfrastructureRouter(self, self.exchanges, self.ccps, bank_exchange)
        for x, c in enumerate(self.router.exchange_ccp):
            if c >= 0:
                space_graph.add_edge(n + x, n + cfg.n_exchanges + int(c))
        if not self.ccps:
            return
        lb = L.loans
        home = self.router.bank_ccp[lb.lender]
        if cfg.ccp_clearing_share >= 1.0:
            lb.ccp = home.copy()
        elif cfg.ccp_clearing_share > 0.0:
            lb.ccp = np.where(self.rng.random(len(lb)) < cfg.ccp_clearing_share, home, -1)
        # a member pays at most half its cash into the default funds at registration
        per_ccp = np.minimum(cfg.default_fund_rate * size, 0.5 * L.cash) / cfg.n_ccps
        L.move_to_ccp("fund", np.repeat(per_ccp[:, None], cfg.n_ccps, axis=1))
        L.inject_ccp_capital(cfg.ccp_capital_share * L.fund.sum(axis=0))
        # initial margin up to the cash it has; the rest is called in the first step
        req = self._margin_requirement()
        total = req.sum(axis=1)
        short = total > L.cash  # only there is the ratio below 1 (and never overflows)
        scale = np.ones(L.n)
        scale[short] = np.maximum(L.cash[short], 0.0) / total[short]
        L.move_to_ccp("margin", req * scale[:, None])
        for c, ccp in enumerate(self.ccps):
            ccp.initial_fund = float(L.fund[:, c].sum())
            ccp.initial_capital = float(L.ccp_capital[c])

    def _cleared_liabilities(self) -> np.ndarray:
        """shape (n, C): what each bank owes each CCP on novated loans."""
        L = self.ledger
        out = np.zeros((L.n, L.ccp_cash.size))
        m = L.loans.ccp >= 0
        np.add.at(out, (L.loans.borrower[m], L.loans.ccp[m]), L.loans.owed[m])
        return out

    @property
    def margin_rate(self) -> float:
        """Margin per unit of cleared borrowing: initial margin, scaled up as the
        collateral (securities) price falls below its initial level (variation margin)."""
        return min(1.0, self.config.initial_margin_rate
                   / max(self.market.price_index, self.config.price_floor))

    def _margin_requirement(self) -> np.ndarray:
        return self.margin_rate * self._cleared_liabilities()

    # ================================================================ stages
    def step(self) -> None:
        """Advance one step through all stages."""
        self.t += 1
        self.shock()
        obs = self.observe()
        actions = self.decide(obs)
        self.act(actions)
        self.settle()
        self.clear()
        self.price()
        self.record()

    def shock(self) -> None:
        """Stage 1: exogenous price move, then this step's scenario shocks."""
        self._price_prev = self.market.price_index
        prices = self.market.exogenous_prices(self.scenario_spec.price_volatility, self.rng)
        self._set_prices(prices)
        size = self.state["total_assets"]
        for shock in self.shock_engine.draw(self.t, self.ledger.active, size, self.rng):
            self._apply(shock)
        self._refresh_state()

    def observe(self) -> np.ndarray:
        """Stage 2: the observation matrix, shape (n_banks, OBS_DIM); see ``OBS_FIELDS``."""
        L, s, cfg = self.ledger, self.state, self.config
        ta = s["total_assets"]
        safe = np.where(ta > 0, ta, 1.0)
        lb = L.loans
        n = L.n
        due2 = np.bincount(lb.borrower[lb.maturity <= self.t + 1], minlength=n,
                           weights=lb.owed[lb.maturity <= self.t + 1])
        due_next = np.bincount(lb.borrower[lb.maturity <= self.t], minlength=n,
                               weights=lb.owed[lb.maturity <= self.t])
        need = due2 + self._withdrawals + RUNOFF * L.deposits
        h = risk.distress(L.equity, L.equity0, L.defaulted)
        bil = (lb.ccp < 0) if self._infra else slice(None)
        at_risk = np.bincount(lb.lender[bil], weights=(lb.owed * h[lb.borrower])[bil],
                              minlength=n)
        ib = (np.bincount(lb.lender[bil], weights=lb.owed[bil], minlength=n) if self._infra
              else s["interbank_assets"])
        rate_scale = cfg.base_rate + cfg.rate_stress_spread
        o = np.empty((n, OBS_DIM))
        o[:, 0] = np.clip(s["capital_ratio"], -1, 1)
        o[:, 1] = np.clip(L.equity / safe, -1, 1)
        o[:, 2] = np.clip(L.cash / safe, 0, 1)
        o[:, 3] = np.clip(np.divide(L.cash, need, out=np.full(n, 5.0), where=need > 0), 0, 5) / 5
        o[:, 4] = np.clip(ib / safe, 0, 1)
        o[:, 5] = np.clip(s["interbank_liabilities"] / safe, 0, 1)
        o[:, 6] = np.clip(L.deposits / safe, 0, 1)
        o[:, 7] = np.clip(due_next / safe, 0, 1)
        o[:, 8] = np.divide(at_risk, ib, out=np.zeros(n), where=ib > 0)
        o[:, 9] = np.divide(self._adjacency @ L.defaulted.astype(float), self._degree,
                            out=np.zeros(n), where=self._degree > 0)
        o[:, 10] = np.clip(self.market.price_index, 0, 2)
        o[:, 11] = np.clip(10 * self.price_return, -1, 1)
        o[:, 12] = self.market.rate / rate_scale if rate_scale > 0 else 0.0
        o[:, 13] = self.market_stress
        o[:, 14] = h
        o[:, 15] = np.clip(np.log(np.maximum(ta, 1e-12) / self._size0) / 3, -1, 1)
        if self._infra:
            o = np.hstack([o, self._observe_infrastructure(safe)])
        self.observations = o
        return o

    def _observe_infrastructure(self, total_assets: np.ndarray) -> np.ndarray:
        """The 8 infrastructure columns, shape (n, 8); see ``INFRA_OBS_FIELDS``."""
        L, cfg, router = self.ledger, self.config, self.router
        x = router.bank_exchange
        util = np.array([e.utilisation for e in self.exchanges])
        fee = np.array([e.fee_rate for e in self.exchanges])
        cap = np.array([e.queue.max_throughput for e in self.exchanges])
        backlog = np.array([e.backlog for e in self.exchanges])
        delay = np.array([e.mean_delay for e in self.exchanges])
        o = np.zeros((L.n, INFRA_OBS_DIM))
        o[:, 0] = np.clip(util[x], 0, 2) / 2
        base = max(cfg.exchange_base_fee, 1e-12)
        o[:, 1] = np.clip((fee[x] / base - 1) / max(cfg.exchange_fee_slope, 1e-12), 0, 1)
        o[:, 2] = np.clip(backlog[x] / cap[x], 0, 3) / 3
        o[:, 3] = np.clip(delay[x] / max(cfg.max_order_wait, 1), 0, 1)
        if self.ccps:
            lb = L.loans
            m = lb.ccp >= 0
            cleared_net = (np.bincount(lb.lender[m], weights=lb.owed[m], minlength=L.n)
                           - np.bincount(lb.borrower[m], weights=lb.owed[m], minlength=L.n))
            health = np.array([c.default_fund_health for c in self.ccps])
            o[:, 4] = self.margin_rate
            o[:, 5] = np.clip(L.margin.sum(axis=1) / total_assets, 0, 1)
            o[:, 6] = np.clip(cleared_net / total_assets, -1, 1)
            o[:, 7] = np.clip(health[router.bank_ccp], 0, 1)
        else:
            o[:, 7] = 1.0
        return o

    def decide(self, observations: np.ndarray) -> np.ndarray:
        """Stage 3: each distinct brain acts once on the rows of its active banks.

        Returns actions, shape (n_banks, 4), in [0, 1]; zero for defaulted banks.

        Raises:
            BrainError: a brain returned a wrong shape, NaN/inf or values outside [0, 1].
        """
        actions = np.zeros((self.config.n_banks, 4))
        active = self.ledger.active
        for brain, idx in self._brain_groups:
            rows = idx[active[idx]]
            if rows.size:
                actions[rows] = _check_actions(brain, brain.act(observations[rows]), rows.size)
        for bank, vec in self.action_overrides.items():
            if active[bank]:
                actions[bank] = vec
        self.actions = actions
        return actions

    def act(self, actions: np.ndarray) -> None:
        """Stage 4: voluntary asset sales; maturing loans rolled over unless the
        lender hoards; new lending offers and borrowing requests matched between
        network neighbours (pro rata on both sides, within the large-exposure
        limit of each lender)."""
        L, cfg = self.ledger, self.config
        active = L.active
        lend, hoard, sell, borrow = (actions[:, i] * active for i in range(4))
        self._sell(L.holdings * (sell * cfg.max_sell_fraction)[:, None],
                   L.prices * (1 - cfg.sale_discount), "voluntary_sales")
        h = risk.distress(L.equity, L.equity0, L.defaulted)
        lb = L.loans
        first_new = len(lb)
        maturing = (lb.maturity <= self.t) & active[lb.lender] & active[lb.borrower]
        rolled = L.rollover(maturing, 1.0 - hoard[lb.lender],
                            self.market.rate + cfg.rate_stress_spread * h[lb.borrower],
                            self.t + cfg.loan_maturity)
        self.rollover_volume = float(rolled["amount"].sum())
        if self.router is not None:
            self.router.record("rollover", rolled["lender"], rolled["borrower"],
                               rolled["amount"], rolled["amount"],
                               self.router.bank_exchange[rolled["lender"]], rolled["ccp"], 0.0,
                               0, "renewed", self.t)
        ta = L.total_assets()
        reserve = ta * (cfg.reserve_ratio + hoard * max(cfg.liquidity_share - cfg.reserve_ratio,
                                                        0.0))
        offer = lend * np.maximum(L.cash - reserve, 0.0) * cfg.max_lend_fraction
        request = borrow * cfg.max_borrow_fraction * ta
        self.interbank_volume = 0.0
        src, dst = self._adj_src, self._adj_dst
        if src.size == 0 or not offer.any() or not request.any():
            L.loans.consolidate(first_new)
            return
        # large-exposure limit: room left on each (lender, borrower) pair
        held = np.asarray(L.exposure_matrix()[src, dst]).reshape(-1)
        room = np.maximum(cfg.large_exposure_limit * np.maximum(L.equity[src], 0.0) - held, 0.0)
        want = np.minimum(request[dst], room)
        asked = np.bincount(src, weights=want, minlength=L.n)
        x = np.minimum(np.divide(offer[src] * want, asked[src],
                                 out=np.zeros(src.size), where=asked[src] > 0), want)
        got = np.bincount(dst, weights=x, minlength=L.n)
        scale = np.divide(request, got, out=np.ones(L.n), where=got > request)
        x *= np.minimum(scale, 1.0)[dst]
        ok = x > 1e-9
        rate = self.market.rate + cfg.rate_stress_spread * h[dst[ok]]
        if self.router is not None:
            # no direct settlement: orders go to the lender's exchange (settle stage)
            self.router.submit_many(src[ok], dst[ok], x[ok], rate, self.t)
            L.loans.consolidate(first_new)
            return
        L.lend(src[ok], dst[ok], x[ok], rate, np.full(int(ok.sum()), self.t + cfg.loan_maturity))
        L.loans.consolidate(first_new)  # one loan per pair for all of this step's lending
        self.interbank_volume = float(x[ok].sum())

    def settle(self) -> None:
        """Stage 5: interest accrues on loans and deposits; assets pay their yield.
        With the infrastructure layer on, exchanges then process what their
        capacity allows (fees, delays, expiry) and CCPs call margin."""
        L = self.ledger
        L.accrue_interest()
        L.charge_deposit_interest(self.config.deposit_rate)
        L.receive_asset_income(self.config.asset_return)
        if self.router is not None:
            self._process_exchanges()
            if self.ccps:
                self._margin_calls()

    def _process_exchanges(self) -> None:
        """Processed orders become loans (novated to the exchange's CCP for a share
        ``ccp_clearing_share``); the lender pays the fee; a lender short of cash
        for amount plus fee has its orders fail, in order."""
        L, cfg, router = self.ledger, self.config, self.router
        first_new = len(L.loans)
        orders = router.process(self.t)
        self.exchange_fees = 0.0
        self.interbank_volume = 0.0
        if not orders:
            return
        snd, rcv, amt = orders["sender"], orders["receiver"], orders["amount"]
        need = amt * (1.0 + orders["fee_rate"])
        order = np.argsort(snd, kind="stable")
        cs = np.cumsum(need[order])
        first = np.r_[True, snd[order][1:] != snd[order][:-1]]
        within = cs - np.maximum.accumulate(np.where(first, cs - need[order], 0.0))
        affordable = np.empty(snd.size, dtype=bool)
        affordable[order] = within <= L.cash[snd[order]] * (1 + 1e-12)
        ok = affordable & L.active[snd] & L.active[rcv]
        fee = amt[ok] * orders["fee_rate"][ok]
        L.lend(snd[ok], rcv[ok], amt[ok], orders["rate"][ok],
               np.full(int(ok.sum()), self.t + cfg.loan_maturity), orders["ccp"][ok])
        L.charge_fees(snd[ok], fee, orders["exchange"][ok])
        L.loans.consolidate(first_new)
        router.record("loan", snd[ok], rcv[ok], amt[ok], amt[ok], orders["exchange"][ok],
                      orders["ccp"][ok], fee, orders["delay"][ok], "processed", self.t)
        bad = ~ok
        router.record("loan", snd[bad], rcv[bad], amt[bad], 0.0, orders["exchange"][bad],
                      orders["ccp"][bad], 0.0, orders["delay"][bad], "failed", self.t)
        self.exchange_fees = float(fee.sum())
        self.interbank_volume = float(amt[ok].sum())

    def _margin_calls(self) -> None:
        """CCPs call (or return) margin so that each member's margin equals
        ``margin_rate`` × its cleared borrowing. A member short of cash sells
        securities at the liquidation price; one that still cannot pay is in default."""
        L, cfg, router = self.ledger, self.config, self.router
        active = L.active
        delta = (self._margin_requirement() - L.margin) * active[:, None]
        back = np.minimum(delta, 0.0)
        if back.any():
            L.move_to_ccp("margin", back)
            i, c = np.nonzero(back)
            router.record("margin_return", n_ccp_node(self, c), i, -back[i, c], -back[i, c],
                          router.bank_exchange[i], c, 0.0, 0, "returned", self.t)
        call = np.maximum(delta, 0.0)
        need = call.sum(axis=1)
        self.margin_called = float(need.sum())
        if not need.any():
            return
        short = np.maximum(need - L.cash, 0.0)
        if short.any():
            fire_price = L.prices * (1 - cfg.liquidation_discount)
            liquid = L.holdings @ fire_price
            self._sell(L.holdings * capped_share(short, liquid)[:, None], fire_price,
                       "margin_sales")
        frac = capped_share(L.cash, need)
        pay = call * frac[:, None]
        L.move_to_ccp("margin", pay)
        i, c = np.nonzero(call)
        outcome = np.where(frac[i] < 1 - 1e-12, OUTCOMES.index("short"),
                           OUTCOMES.index("posted"))
        router.record("margin_call", i, n_ccp_node(self, c), call[i, c], pay[i, c],
                      router.bank_exchange[i], c, 0.0, 0, outcome, self.t)
        L.mark_default((need > 0) & (frac < 1 - 1e-12) & active, self.t)

    def clear(self) -> None:
        """Stage 6: Eisenberg–Noe clearing of obligations due, then resolution.

        Due are: loans at maturity (the part not rolled over), withdrawals, and
        *everything* owed to or by a bank in resolution (its loans are called,
        its deposits paid out, its assets liquidated at ``liquidation_discount``).
        A bank's external assets in the clearing are its cash plus its illiquid
        assets at the liquidation price: a bank short of cash sells assets
        (emergency sales, which add to the fire-sale volume) and defaults only
        if that is not enough. Banks that cannot pay, or whose equity turns
        negative, default and are resolved in a further clearing round within
        the same step, until no new default occurs.
        """
        L, cfg, n = self.ledger, self.config, self.ledger.n
        resolving = L.defaulted & ~L.resolved
        depth = 0
        for _ in range(n + 1):
            if resolving.any():
                L.liquidate_other_assets(np.flatnonzero(resolving), cfg.liquidation_discount)
                self._sell(L.holdings * resolving[:, None],
                           L.prices * (1 - cfg.liquidation_discount), "liquidations")
            lb = L.loans
            due = (lb.maturity <= self.t) | resolving[lb.borrower] | resolving[lb.lender]
            ext_due = np.where(resolving, L.deposits, np.minimum(self._withdrawals, L.deposits))
            self._withdrawals[:] = 0.0
            if due.any() or ext_due.any():
                res = self._clear_due(due, ext_due, resolving)
                depth += res.rounds
                failed = res.defaulted[:n]
            else:
                failed = np.zeros(n, dtype=bool)
            if resolving.any():
                L.wind_down(np.flatnonzero(resolving))
            new = L.mark_default(failed | self._insolvent(), self.t)
            if new.size == 0:
                break
            resolving = np.zeros(n, dtype=bool)
            resolving[new] = True
        self.contagion_depth = depth

    def _clear_due(self, due: np.ndarray, ext_due: np.ndarray,
                   resolving: np.ndarray) -> Any:
        """One Eisenberg–Noe clearing of the loans in ``due`` and the external dues.

        CCPs are extra nodes: a novated loan is two legs, borrower → CCP and
        CCP → lender. A member in resolution first loses its margin, then its
        default-fund contribution, to what it owes each CCP (waterfall layers 1
        and 2; the rest of its accounts is returned to it); the CCP's resources
        in the clearing are its own capital and the surviving members' fund, and
        :func:`default_waterfall` says who bears the loss (layers 3 and 4, and
        anything uncovered, which the lenders then lose pro rata).
        """
        L, cfg = self.ledger, self.config
        n, C = L.n, L.ccp_cash.size
        lb = L.loans
        owed = lb.owed
        cle = due & (lb.ccp >= 0)
        bil = due & (lb.ccp < 0)
        seized_m = np.zeros((n, C))
        seized_f = np.zeros((n, C))
        leg = owed.copy()  # the borrower's leg, after set-off
        if C and cle.any():
            due_ccp = np.zeros((n, C))  # what members in resolution owe each CCP now
            np.add.at(due_ccp, (lb.borrower[cle], lb.ccp[cle]), owed[cle])
            due_ccp[~resolving] = 0.0
            seized_m = np.clip(np.minimum(due_ccp, L.margin), 0.0, None)
            seized_f = np.clip(np.minimum(due_ccp - seized_m, L.fund), 0.0, None)
            rest = resolving[:, None]
            L.move_to_ccp("margin", -np.where(rest, L.margin - seized_m, 0.0))
            L.move_to_ccp("fund", -np.where(rest, L.fund - seized_f, 0.0))
            factor = np.maximum(1.0 - np.divide(seized_m + seized_f, due_ccp,
                                                out=np.zeros((n, C)), where=due_ccp > 0), 0.0)
            leg[cle] = owed[cle] * factor[lb.borrower[cle], lb.ccp[cle]]
        rows = np.concatenate([lb.borrower[bil], lb.borrower[cle], n + lb.ccp[cle]])
        cols = np.concatenate([lb.lender[bil], n + lb.ccp[cle], lb.lender[cle]])
        vals = np.concatenate([owed[bil], leg[cle], owed[cle]])
        liab = sp.coo_matrix((vals, (rows, cols)), shape=(n + C, n + C))
        fire_price = L.prices * (1 - cfg.liquidation_discount)
        liquid = L.holdings @ fire_price
        survivors_fund = np.where(resolving[:, None], 0.0, L.fund).sum(axis=0)
        # clamp round-off (e.g. cash after a margin payment that used all of it)
        e = np.maximum(np.concatenate([
            L.cash + liquid,
            L.ccp_capital + survivors_fund + (seized_m + seized_f).sum(axis=0)]), 0.0)
        ones = np.ones(C)
        res = eisenberg_noe(liab, e, np.concatenate([ext_due, np.zeros(C)]),
                            alpha=np.concatenate([np.full(n, cfg.default_cost_alpha), ones]),
                            beta=np.concatenate([np.full(n, cfg.default_cost_beta), ones]))
        rec = res.recovery
        b_paid = np.zeros(len(lb))
        l_paid = np.zeros(len(lb))
        b_paid[bil] = owed[bil] * rec[lb.borrower[bil]]
        l_paid[bil] = b_paid[bil]
        b_paid[cle] = leg[cle] * rec[lb.borrower[cle]]
        l_paid[cle] = owed[cle] * rec[n + lb.ccp[cle]]
        inflow = np.bincount(lb.lender[due], weights=l_paid[due], minlength=n)
        pay = res.payments[:n]
        # cash short of what must be paid is raised by emergency sales at the
        # liquidation discount (defaulters sell everything)
        short = np.maximum(pay - L.cash - inflow, 0.0)
        share = np.where(res.defaulted[:n], 1.0, capped_share(short, liquid))
        self._sell(L.holdings * share[:, None], fire_price, "emergency_sales")
        cost = np.where(res.defaulted[:n], L.cash + inflow - pay, 0.0)
        cost[cost < 1e-12 * np.maximum(1.0, res.obligations[:n])] = 0.0
        capital_used, charges = np.zeros(C), np.zeros((n, C))
        for c, ccp in enumerate(self.ccps):
            rows_c = cle & (lb.ccp == c)
            loss = float(owed[rows_c].sum() - b_paid[rows_c].sum())
            if loss <= 1e-12 * max(1.0, float(owed[rows_c].sum())):
                continue
            surv = ~resolving
            w = default_waterfall(loss, float(seized_m[:, c].sum()), float(seized_f[:, c].sum()),
                                  max(float(L.ccp_capital[c]), 0.0),
                                  np.maximum(L.fund[surv, c], 0.0))
            capital_used[c] = w.layers["ccp_capital"]
            charges[surv, c] = w.survivor_charges
            ccp.margin_used += w.layers["defaulter_margin"]
            ccp.fund_used += w.layers["defaulter_fund"] + w.layers["mutualised"]
            ccp.capital_used += w.layers["ccp_capital"]
            ccp.uncovered += w.uncovered
            ccp.defaults_handled += int((seized_m[:, c] + seized_f[:, c] > 0).sum())
            ccp.waterfalls.append({"step": self.t, "loss": loss, **w.layers,
                                   "uncovered": w.uncovered})
        if self.router is not None:  # audit before the settled rows leave the book
            d = np.flatnonzero(due)
            full = b_paid[d] >= leg[d] * (1 - 1e-12)
            outcome = np.where(full, OUTCOMES.index("paid"),
                               np.where(b_paid[d] > 0, OUTCOMES.index("partial"),
                                        OUTCOMES.index("unpaid")))
            self.router.record("repayment", lb.borrower[d], lb.lender[d], b_paid[d], l_paid[d],
                               self.router.bank_exchange[lb.lender[d]], lb.ccp[d], 0.0, 0,
                               outcome, self.t)
        L.settle(due, b_paid, l_paid, ext_due, rec[:n], cost,
                 seized_m if C else None, seized_f if C else None,
                 capital_used if C else None, charges if C else None)
        return res

    def price(self) -> None:
        """Stage 7: price impact of this step's sales and the forced-deleveraging
        spiral; banks left with negative equity default (resolved next step)."""
        L = self.ledger
        prices_before = L.prices.copy()
        forced, _ = fire_sale_loop(L, self.market, self.config, self._units_sold)
        sold = self._units_sold + forced.sum(axis=0)
        self.fire_sale_volume = float(sold @ prices_before)
        self._units_sold = np.zeros_like(self._units_sold)
        L.mark_default(self._insolvent(), self.t)

    def _sell(self, units: np.ndarray, prices: np.ndarray, kind: str) -> None:
        """Sell ``units`` (n, k) to buyers outside the system at ``prices`` (k,) and
        count them for this step's price impact (the price stage)."""
        if units.any():
            self.ledger.sell_assets(units, prices, kind=kind)
            self._units_sold += units.sum(axis=0)

    def _insolvent(self) -> np.ndarray:
        """shape (n,), bool: equity below zero (beyond round-off)."""
        L = self.ledger
        return L.equity < -1e-9 * np.maximum(1.0, L.equity0)

    def record(self) -> None:
        """Stage 8: rewards, risk measures, end-of-episode test, DataCollector.

        With ``collect_data`` off (lookahead runs) only the measures the next
        steps need are computed, and no rewards or data are recorded.
        """
        self._refresh_state()
        L, cfg = self.ledger, self.config
        if not self.collect_data:
            self._measure(full=False)
            self.collapsed = self.default_rate >= cfg.collapse_threshold
            if self.t >= cfg.steps or self.collapsed:
                self.running = False
            return
        self._measure()
        was_out = L.defaulted & (L.default_step < self.t)
        profit = (L.equity - self._equity_prev) / np.where(L.equity0 > 0, L.equity0, 1.0)
        ta = self.state["total_assets"]
        liquidity = np.divide(L.cash, ta, out=np.zeros(L.n), where=ta > 0)
        default = (L.default_step == self.t).astype(float)
        sri = np.full(L.n, self.systemic_risk_index)
        comps = {"profit": profit, "liquidity": liquidity, "default": default,
                 "system_risk": sri}
        for v in comps.values():
            v[was_out] = 0.0
        self.reward_components = comps
        self.rewards = (cfg.reward_profit_weight * profit
                        + cfg.reward_liquidity_weight * liquidity
                        - cfg.reward_default_penalty * default
                        - cfg.reward_system_risk_weight * sri)
        self._equity_prev = L.equity.copy()
        live = ~was_out
        self.mean_reward = float(self.rewards[live].mean()) if live.any() else 0.0
        for name, v in comps.items():
            setattr(self, f"reward_{name}", float(v[live].mean()) if live.any() else 0.0)
        if cfg.ranking_every and self.t % cfg.ranking_every == 0:
            self.sib_scores = self.debtrank_per_bank()
        self.collapsed = self.default_rate >= cfg.collapse_threshold
        if self.t >= cfg.steps or self.collapsed:
            self.running = False
        if self.collect_data:
            self.datacollector.collect(self)

    # ============================================================ measures
    def _refresh_state(self) -> None:
        L, cfg = self.ledger, self.config
        values = L.asset_values()
        ib_a, ib_l = L.interbank_assets(), L.interbank_liabilities()
        ta = L.cash + values + L.other_assets + ib_a + L.infrastructure_assets()
        rwa = values + L.other_assets + cfg.interbank_risk_weight * ib_a
        cr = np.divide(L.equity, rwa, out=np.zeros(L.n), where=rwa > 0)
        cr[L.defaulted] = 0.0
        self.state: dict[str, np.ndarray] = {
            "asset_values": values, "interbank_assets": ib_a, "interbank_liabilities": ib_l,
            "total_assets": ta, "rwa": rwa, "capital_ratio": cr,
        }

    def _liquidity(self) -> float:
        L = self.ledger
        act = L.active
        li = risk.liquidity_index(L.cash[act], (self.state["interbank_liabilities"]
                                                + RUNOFF * L.deposits)[act])
        return min(li, LIQUIDITY_CAP)

    def _measure(self, full: bool = True) -> None:
        """Model-level measures of the current state (attributes read by reporters).

        With ``full=False`` only what the next steps' dynamics read (defaults,
        price, stress, interbank rate) — used by lookahead runs, which collect
        no data.
        """
        L, s = self.ledger, self.state
        act = L.active
        self.n_defaults = int(L.defaulted.sum())
        self.default_rate = self.n_defaults / L.n
        self.asset_price = self.market.price_index
        self.price_return = float(np.log(max(self.asset_price, 1e-12)
                                         / max(self._price_prev, 1e-12)))
        self.stress_index = risk.stress_index(L.equity, L.equity0, L.defaulted)
        self.market_stress = max(self.scenario_spec.stress_level, self.stress_index)
        self.interbank_rate = self.market.interbank_rate(self.market_stress)
        if not full:
            return
        h = risk.distress(L.equity, L.equity0, L.defaulted)
        # economic value v = share of total assets at the start (a stable weight)
        dr = risk.debtrank(L.exposure_matrix(bilateral_only=self._infra), L.equity0, h,
                           value=self._assets0)
        self.debtrank, self.debtrank_total = float(dr.debtrank), float(dr.total)
        self.total_equity = float(L.equity[act].sum())
        cr = s["capital_ratio"][act]
        self.mean_capital_ratio = float(cr.mean()) if cr.size else 0.0
        self.min_capital_ratio = float(cr.min()) if cr.size else 0.0
        self.interbank_exposure = float(s["interbank_assets"].sum())
        self.liquidity_index = self._liquidity()
        self.systemic_risk_index = risk.systemic_risk_index(
            self.debtrank_total, self.default_rate, self.stress_index, self.asset_price,
            self.liquidity_index, getattr(self, "_liquidity0", self.liquidity_index))
        if self._infra:
            self._measure_infrastructure()

    def _measure_infrastructure(self) -> None:
        """Model-level infrastructure figures (read by the infrastructure reporters)."""
        L, ex, ccps = self.ledger, self.exchanges, self.ccps
        self.exchange_utilisation = float(np.mean([e.utilisation for e in ex]))
        self.congested_exchanges = int(sum(e.congested for e in ex))
        self.order_backlog = float(np.sum([e.backlog for e in ex]))
        self.orders_expired = float(self.router.step_expired)
        self.margin_posted = float(L.margin.sum())
        self.netting_efficiency = (float(np.mean([c.netting_efficiency for c in ccps]))
                                   if ccps else 0.0)
        self.default_fund_used = float(np.sum([c.fund_used for c in ccps]))
        self.uncovered_loss = float(np.sum([c.uncovered for c in ccps]))
        self.routed_transactions = self.router.transactions(self.t)

    def debtrank_per_bank(self) -> np.ndarray:
        """DebtRank of each bank defaulting alone on today's exposures, shape (n,)."""
        L = self.ledger
        eq = np.where(L.active, np.maximum(L.equity, 0.0), 0.0)
        return risk.debtrank_per_bank(L.exposure_matrix(bilateral_only=self._infra), eq,
                                      value=self._assets0)

    def systemic_ranking(self, top: int = 5) -> list[dict[str, float]]:
        """The ``top`` most systemically important active banks by DebtRank."""
        scores = self.debtrank_per_bank()
        scores[self.ledger.defaulted] = -1.0
        order = risk.rank_systemic(scores, self.state["total_assets"], top=top)
        return [{"bank": int(i), "debtrank": float(scores[i]),
                 "total_assets": float(self.state["total_assets"][i]),
                 "degree": int(self._degree[i])} for i in order if scores[i] >= 0]

    # ============================================================ shocks
    def apply_shock(self, kind: str, magnitude: float = 0.0,
                    banks: Sequence[int] | np.ndarray | None = None) -> None:
        """Apply a shock now (between steps or inside a stage).

        Args:
            kind: one of :data:`~finsim_mesa.scenarios.engine.SHOCK_KINDS`.
            magnitude: size of the shock (meaning per kind; see SHOCK_KINDS).
            banks: bank ids hit (``None`` = all active banks; required for
                ``loss`` and ``default``).

        Raises:
            ShockError: unknown kind, bad magnitude or bank ids; nothing is changed.
        """
        if kind not in SHOCK_KINDS:
            raise ShockError(f"shock kind {kind!r} is unknown; choose one of "
                             f"{', '.join(SHOCK_KINDS)}")
        try:
            m = float(magnitude)
        except (TypeError, ValueError):
            raise ShockError(f"magnitude must be a number, got {magnitude!r}") from None
        limits = {"price_crash": (0.0, 1.0, False), "funding_withdrawal": (0.0, 1.0, True),
                  "loss": (0.0, 10.0, True), "default": (-np.inf, np.inf, True)}
        lo, hi, closed = limits[kind]
        if not np.isfinite(m) or m < lo or m > hi or (not closed and m >= hi):
            raise ShockError(f"{kind} magnitude {magnitude!r} out of range: "
                             f"{SHOCK_KINDS[kind]}")
        idx = None
        if banks is not None:
            idx = np.unique(np.asarray(banks).reshape(-1))
            if idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
                raise ShockError(f"banks must be a non-empty list of bank ids, got {banks!r}")
            if idx.min() < 0 or idx.max() >= self.config.n_banks:
                raise ShockError(f"bank ids must lie in 0..{self.config.n_banks - 1}, "
                                 f"got {idx.tolist()}")
        elif kind in ("loss", "default"):
            raise ShockError(f"a {kind} shock needs banks=[...]")
        self._apply(Shock(kind, m, idx, source="user"))
        self._refresh_state()
        self.asset_price = self.market.price_index  # reported at once; risk measures next step

    def _apply(self, shock: Shock) -> None:
        L = self.ledger
        banks = np.flatnonzero(L.active) if shock.banks is None else shock.banks
        banks = banks[L.active[banks]]
        if shock.kind == "price_crash":
            self._set_prices(self.market.crash_prices(shock.magnitude))
        elif shock.kind == "funding_withdrawal":
            self._withdrawals[banks] = np.minimum(
                self._withdrawals[banks] + shock.magnitude * L.deposits[banks], L.deposits[banks])
        elif shock.kind == "loss":
            L.write_down_assets(banks, shock.magnitude * np.maximum(L.equity[banks], 0.0))
        elif shock.kind == "default":
            L.mark_default(banks, max(self.t, 0))
        self.shock_log.append({"step": self.t, "kind": shock.kind, "magnitude": shock.magnitude,
                               "banks": banks.tolist(), "source": shock.source})

    def _set_prices(self, prices: np.ndarray) -> None:
        self.ledger.revalue(prices)
        self.market.set_prices(prices)

    # ============================================================ run-time changes
    def set_brains(self, brain: Any) -> None:
        """Hand the banks to new brains from the next step on (same forms as the
        ``brain`` argument: name, object, list or mapping).

        Raises:
            ConfigError, CheckpointError: the brains do not fit; nothing is changed.
        """
        self._setup_brains(brain)

    def set_scenario(self, scenario: str | Scenario) -> None:
        """Switch to another scenario from the next step on (its schedule keeps
        counting steps from the start of the run).

        Raises:
            ConfigError: unknown scenario name or invalid definition.
        """
        spec = scenario if isinstance(scenario, Scenario) else get_scenario(scenario)
        self.scenario_spec, self.scenario_name = spec, spec.name
        self.shock_engine = ShockEngine(spec)
        self.market_stress = max(spec.stress_level, self.stress_index)

    # ============================================================ decisions
    def what_if(self, steps: int = 10, seeds: int | Sequence[int] = 10, **hypothetical: Any
                ) -> Any:
        """Look ``steps`` ahead under a hypothetical (``shock=``, ``brains=``,
        ``actions=``, ``bank=``) against the no-change baseline on the same seeds;
        this model is not changed. See :func:`finsim_mesa.decision.what_if`."""
        from finsim_mesa.decision import what_if

        return what_if(self, steps, seeds, **hypothetical)

    def recommend(self, bank_id: int, candidates: Mapping[str, Any] | None = None,
                  steps: int = 10, seeds: int | Sequence[int] = 10) -> Any:
        """The best candidate action for one bank by lookahead. See
        :func:`finsim_mesa.decision.recommend`."""
        from finsim_mesa.decision import recommend

        return recommend(self, bank_id, candidates, steps, seeds)

    # ============================================================ running
    def run_for(self, steps: int) -> None:
        """Advance ``steps`` steps (stops early once ``running`` is False)."""
        if int(steps) != steps or steps < 0:
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

    def summary(self, top: int = 5) -> dict[str, Any]:
        """Headline figures of the current state (used by ``finsim simulate``)."""
        cr = self.state["capital_ratio"][self.ledger.active]
        return {
            "scenario": self.scenario_name, "steps": self.t, "banks": self.n_banks,
            "defaults": self.n_defaults, "default_rate": self.default_rate,
            "collapsed": self.collapsed, "price": self.asset_price,
            "total_equity": self.total_equity,
            "capital_ratio_mean": float(cr.mean()) if cr.size else 0.0,
            "capital_ratio_p10": float(np.percentile(cr, 10)) if cr.size else 0.0,
            "capital_ratio_min": float(cr.min()) if cr.size else 0.0,
            "debtrank": self.debtrank, "debtrank_total": self.debtrank_total,
            "liquidity_index": self.liquidity_index, "stress_index": self.stress_index,
            "systemic_risk_index": self.systemic_risk_index,
            "max_contagion_depth": int(max(self.datacollector.model_vars["contagion_depth"],
                                           default=0)),
            "most_systemic": self.systemic_ranking(top),
        } | (self.infrastructure_summary() if self._infra else {})

    def infrastructure_summary(self) -> dict[str, Any]:
        """Exchange and CCP figures for the run so far."""
        df = self.datacollector.get_model_vars_dataframe()
        out: dict[str, Any] = {
            "exchange_fees_total": float(self.ledger.exchange_cash.sum()),
            "exchange_utilisation_mean": float(df["exchange_utilisation"].iloc[1:].mean())
            if len(df) > 1 else 0.0,
            "congested_exchange_steps": int(df["congested_exchanges"].sum()),
            "orders_expired_total": float(df["orders_expired"].sum()),
            "mean_delay": float(np.mean([h.mean_delay for e in self.exchanges
                                         for h in e.queue.history]) if self.t else 0.0),
        }
        for c in self.ccps:
            out[f"ccp{c.ccp_id}"] = {
                "margin_held": c.margin_held, "default_fund": c.default_fund,
                "initial_default_fund": c.initial_fund, "capital": c.capital,
                "netting_efficiency": c.netting_efficiency, "fund_used": c.fund_used,
                "capital_used": c.capital_used, "margin_used": c.margin_used,
                "uncovered_loss": c.uncovered, "member_defaults_handled": c.defaults_handled,
            }
        return out


def _base_config(config: Any, explicit: dict[str, Any]) -> ModelConfig:
    if config is None:
        return make_config(None, **explicit)
    if isinstance(config, ModelConfig):
        return make_config(config.model_dump(), **explicit)
    if isinstance(config, Mapping):
        return make_config(dict(config), **explicit)
    if isinstance(config, str | Path):
        return load_config(config, **explicit)
    raise ConfigError(f"config must be a ModelConfig, a mapping or a YAML path, "
                      f"not {type(config).__name__}")


def _check_exposures(exposures: Any) -> np.ndarray:
    arr = exposures.toarray() if sp.issparse(exposures) else np.asarray(exposures, dtype=float)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] < 2:
        raise ConfigError(f"exposures must be a square (n, n) matrix with n >= 2, "
                          f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or (arr < 0).any():
        raise ConfigError("exposures must be finite and non-negative")
    if np.diag(arr).any():
        raise ConfigError("exposures must have a zero diagonal (a bank cannot lend to itself)")
    return arr


def _check_actions(brain: Any, out: Any, rows: int) -> np.ndarray:
    name = brain_name(brain)
    try:
        arr = np.asarray(out, dtype=float)
    except (TypeError, ValueError):
        raise BrainError(f"brain '{name}' returned {type(out).__name__}, not an array of "
                         "numbers") from None
    if arr.shape != (rows, 4):
        raise BrainError(f"brain '{name}' returned actions of shape {arr.shape}; expected "
                         f"({rows}, 4): lend, hoard, sell, borrow per bank")
    if not np.all(np.isfinite(arr)):
        bad = int(np.argwhere(~np.isfinite(arr))[0][0])
        raise BrainError(f"brain '{name}' returned NaN or infinite actions (first in row {bad})")
    if arr.min() < -1e-6 or arr.max() > 1 + 1e-6:
        raise BrainError(f"brain '{name}' returned actions outside [0, 1] "
                         f"(min {arr.min():g}, max {arr.max():g})")
    return np.clip(arr, 0.0, 1.0)
