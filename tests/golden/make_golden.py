"""Golden trajectories: fingerprints of what the model does, to guard refactors.

Each case runs a small model (every scenario, brain, topology, the
infrastructure layer on and off, user networks, user shocks, a what-if and a
recommendation) and records, column by column, a SHA-256 of the raw float64
bytes of everything it produced: the DataCollector's model data, the banks',
exchanges' and CCPs' agent data, the per-step observations, actions and rewards,
the router's audit and the what-if/recommendation tables. A refactor that
changes any number in the last bit changes a hash (``tests/test_golden.py``).

Regenerate only when behaviour is *meant* to change, and say so in the commit::

    python tests/golden/make_golden.py        # writes tests/golden/golden.json
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from finsim_mesa import FinancialModel

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden.json"
STEPS = 30

# name -> (model keyword arguments, shocks {step: [(kind, magnitude, banks)]},
#          extras run at the end: "whatif", "recommend")
CASES: dict[str, dict[str, Any]] = {
    "normal_rule_ba": dict(kw=dict(n_banks=20, scenario="normal", brain="rule_based", rng=1)),
    "liquidity_conservative_cp": dict(kw=dict(n_banks=20, scenario="liquidity_crisis",
                                              brain="conservative", topology="core_periphery",
                                              rng=2)),
    "crash_myopic_er": dict(kw=dict(n_banks=20, scenario="asset_crash", brain="myopic",
                                    topology="erdos_renyi", mean_degree=3.0, rng=3)),
    "systemic_random": dict(kw=dict(n_banks=20, scenario="systemic", brain="random", rng=4),
                            extras=("whatif", "recommend")),
    "systemic_greedy": dict(kw=dict(n_banks=20, scenario="systemic", brain="greedy", rng=5)),
    "normal_passive_user_shocks": dict(
        kw=dict(n_banks=20, scenario="normal", brain="passive", rng=6),
        shocks={5: [("price_crash", 0.15, None)],
                8: [("funding_withdrawal", 0.3, [1, 2, 3])],
                11: [("loss", 0.8, [4, 5])],
                14: [("default", 0.0, [0])]}),
    "infra_2x1_liquidity_rule": dict(kw=dict(n_banks=20, scenario="liquidity_crisis",
                                             brain="rule_based", n_exchanges=2, n_ccps=1,
                                             rng=7),
                                     extras=("whatif", "recommend")),
    "infra_1x0_systemic_random": dict(kw=dict(n_banks=20, scenario="systemic", brain="random",
                                              n_exchanges=1, n_ccps=0, rng=8)),
    "infra_3x2_half_cleared_greedy": dict(kw=dict(n_banks=24, scenario="systemic",
                                                  brain="greedy", n_exchanges=3, n_ccps=2,
                                                  ccp_clearing_share=0.5, venue_rule="random",
                                                  exchange_capacity=0.0005, rng=9),
                                          shocks={6: [("default", 0.0, [2, 7])]}),
    "infra_2x2_stress_conservative": dict(kw=dict(n_banks=20, scenario="asset_crash",
                                                  brain="conservative", n_exchanges=2,
                                                  n_ccps=2, venue_rule="round_robin",
                                                  initial_margin_rate=0.2, rng=10),
                                          shocks={4: [("price_crash", 0.3, None)],
                                                  9: [("default", 0.0, [0, 1])]}),
    "exposures_crash": dict(kw=dict(scenario="asset_crash", brain="rule_based", rng=11),
                            exposures=True),
    "mixed_brains_two_assets": dict(kw=dict(n_banks=20, scenario="systemic", n_assets=2,
                                            brain={0: "greedy", 3: "random",
                                                   "default": "conservative"}, rng=12)),
    "options_no_deleveraging": dict(kw=dict(n_banks=20, scenario="systemic", brain="myopic",
                                            forced_deleveraging=False, default_cost_alpha=0.5,
                                            default_cost_beta=0.7, agent_collect_every=3,
                                            ranking_every=5, rng=13)),
    # deep cascades (many default rounds in one clearing), collapse before the horizon
    "cascade_collapse_rv_costs": dict(kw=dict(n_banks=30, scenario="systemic", brain="passive",
                                              interbank_share=0.4, capital_ratio=0.07,
                                              capital_requirement=0.03,
                                              default_cost_alpha=0.6, default_cost_beta=0.5,
                                              rng=21)),
    # a CCP whose waterfall is exhausted (uncovered losses)
    "infra_uncovered_losses": dict(kw=dict(n_banks=24, scenario="systemic", brain="greedy",
                                           n_exchanges=2, n_ccps=1, interbank_share=0.35,
                                           default_fund_rate=0.0001, ccp_capital_share=0.0,
                                           initial_margin_rate=0.01, capital_ratio=0.08,
                                           capital_requirement=0.04, rng=23)),
    # margin calls a member cannot meet (default on a margin call)
    "infra_margin_shortfall": dict(kw=dict(n_banks=24, scenario="asset_crash", brain="greedy",
                                           n_exchanges=1, n_ccps=1, initial_margin_rate=0.3,
                                           liquidity_share=0.03, marketable_share=0.05,
                                           exchange_capacity=0.05, rng=25)),
}


def exposures() -> np.ndarray:
    """A fixed 10-bank exposure matrix (what j owes i)."""
    e = np.zeros((10, 10))
    for i in range(10):
        e[i, (i + 1) % 10] = 2.0 + i
        e[i, (i + 3) % 10] = 1.0 + 0.5 * i
    return e


def canon(values: Any) -> np.ndarray:
    """float64, C order, -0.0 as 0.0, one NaN pattern (None counts as NaN)."""
    arr = np.asarray(values)
    if arr.dtype == object:
        flat = pd.to_numeric(pd.Series(arr.ravel()), errors="coerce")
        arr = flat.to_numpy(dtype=np.float64).reshape(arr.shape)
    arr = np.array(arr, dtype=np.float64, ndmin=1) + 0.0
    arr[np.isnan(arr)] = np.nan
    return np.ascontiguousarray(arr)


def digest(values: Any) -> str:
    arr = canon(values)
    h = hashlib.sha256(str(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()[:20]


def table_digests(df: pd.DataFrame, prefix: str) -> Iterator[tuple[str, str]]:
    yield f"{prefix}#rows", str(len(df))
    for col in df.columns:
        yield f"{prefix}/{col}", digest(df[col].to_numpy())


def agent_frames(model: FinancialModel) -> dict[str, pd.DataFrame]:
    """Agent data per institution type, as (collection, agent) tables in creation order."""
    from finsim_mesa.agents.bank import Bank

    dc = model.datacollector
    out: dict[str, pd.DataFrame] = {}
    types = {"bank": Bank}
    for agent in model.agents:
        name = type(agent).__name__
        if name == "Exchange":
            types["exchange"] = type(agent)
        elif name == "CentralCounterparty":
            types["ccp"] = type(agent)
    for label, cls in types.items():
        if cls in getattr(dc, "agenttype_reporters", {}):
            df = dc.get_agenttype_vars_dataframe(cls)
        elif label == "bank" and dc.agent_reporters:
            df = dc.get_agent_vars_dataframe()
            ids = {a.unique_id for a in model.agents if isinstance(a, Bank)}
            df = df[df.index.get_level_values("AgentID").isin(ids)]
        else:
            continue
        df = df.reset_index(drop=True)
        if label == "bank":
            df = df[["equity", "cash", "capital_ratio", "defaulted"]]
        out[label] = df.astype(float)
    return out


def read(model: FinancialModel, path: str, before: str) -> Any:
    """``model.<path>``, or ``model.<before>`` in a model of the layout before the
    architecture refactor (so this runner works on both sides of it)."""
    try:
        return attrgetter(path)(model)
    except AttributeError:
        return getattr(model, before)


def run_case(name: str, spec: dict[str, Any], fingerprint: Callable[[str, Any], None]) -> None:
    kw = dict(spec["kw"])
    if spec.get("exposures"):
        kw["exposures"] = exposures()
    model = FinancialModel(steps=STEPS, **kw)
    obs, act, rew = [], [], []
    shocks = spec.get("shocks", {})
    while model.running and model.t < STEPS:
        for kind, magnitude, banks in shocks.get(model.t, []):
            model.apply_shock(kind, magnitude, banks=banks)
        model.step()
        obs.append(read(model, "decisions.observations", "observations").copy())
        act.append(read(model, "decisions.actions", "actions").copy())
        rew.append(np.asarray(read(model, "reward.per_bank", "rewards")).copy())
    fingerprint("steps", model.t)
    fingerprint("observations", np.stack(obs))
    fingerprint("actions", np.stack(act))
    fingerprint("rewards", np.stack(rew))
    for key, value in table_digests(model.datacollector.get_model_vars_dataframe(), "model"):
        fingerprint(key, value)
    for label, df in agent_frames(model).items():
        for key, value in table_digests(df, f"agents_{label}"):
            fingerprint(key, value)
    if getattr(model, "router", None) is not None:
        audit = model.router.audit()
        audit["kind"] = audit["kind"].cat.codes
        audit["outcome"] = audit["outcome"].cat.codes
        for key, value in table_digests(audit, "audit"):
            fingerprint(key, value)
    fingerprint("sib_scores", np.zeros(0) if model.sib_scores is None else model.sib_scores)
    ranking = pd.DataFrame(model.systemic_ranking(top=5))
    for key, value in table_digests(ranking, "ranking"):
        fingerprint(key, value)
    if "whatif" in spec.get("extras", ()):
        res = model.what_if(steps=4, seeds=3, shock={"kind": "price_crash", "magnitude": 0.2},
                            bank=2)
        for key, value in table_digests(res.runs.drop(columns="variant"), "whatif_shock"):
            fingerprint(key, value)
        res = model.what_if(steps=3, seeds=[5, 6], brains={1: "greedy"},
                            actions={2: [0, 1, 1, 0]}, bank=1)
        for key, value in table_digests(res.runs.drop(columns="variant"), "whatif_policy"):
            fingerprint(key, value)
    if "recommend" in spec.get("extras", ()):
        bank = int(np.flatnonzero(model.ledger.active)[0])
        rec = model.recommend(bank, steps=3, seeds=2)
        fingerprint("recommend/action", list(rec.table.action).index(rec.action))
        for key, value in table_digests(rec.table.drop(columns="action"), "recommend"):
            fingerprint(key, value)


def fingerprints() -> dict[str, dict[str, str]]:
    """Every case's fingerprints: {case: {item: digest}}."""
    out: dict[str, dict[str, str]] = {}
    for name, spec in CASES.items():
        got: dict[str, str] = {}

        def fingerprint(key: str, value: Any, got: dict[str, str] = got) -> None:
            got[key] = value if isinstance(value, str) else digest(value)

        run_case(name, spec, fingerprint)
        out[name] = got
    return out


def main() -> int:
    data = fingerprints()
    tmp = GOLDEN.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(GOLDEN)
    print(f"wrote {GOLDEN} ({sum(len(v) for v in data.values())} fingerprints, "
          f"{len(data)} cases)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
