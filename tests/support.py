"""Helpers shared by tests (importable as ``support``: pytest puts tests/ on the path)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest


def state_of(obj, seen=None, depth=0):
    """Everything reachable from ``obj``'s attributes as comparable plain data
    (arrays as bytes), skipping Mesa's own machinery and static structure."""
    seen = set() if seen is None else seen
    if isinstance(obj, np.ndarray):
        return ("array", obj.dtype.str, obj.shape, obj.tobytes())
    if isinstance(obj, np.random.Generator):
        return ("rng", repr(obj.bit_generator.state))
    if isinstance(obj, float | int | str | bool | type(None) | np.generic):
        return obj
    if isinstance(obj, dict):
        return {k: state_of(v, seen, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [state_of(v, seen, depth + 1) for v in obj]
    if id(obj) in seen or depth > 6:
        return "<seen>"
    seen.add(id(obj))
    if hasattr(obj, "__dict__"):
        return {k: state_of(v, seen, depth + 1) for k, v in vars(obj).items()
                if not k.startswith("__") and k != "model"}  # not back up to the model
    return repr(obj)


def random_network(rng: np.random.Generator, n: int, m: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random obligations among ``n`` banks: ``m`` (debtor, creditor) pairs drawn
    uniformly, self-pairs dropped, repeated pairs kept; amounts ~ Exp(1) (money).
    Returns (debtor, creditor, amount), each of shape (k,), k <= m."""
    i, j = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = i != j
    return i[keep], j[keep], rng.exponential(1.0, keep.sum())


# attributes that do not change as the model runs (or are Mesa's, or output)
STATIC = {"config", "graph", "node_labels", "network", "grid", "banks", "brains",
          "shock_engine", "scenario_spec", "datacollector", "collect_data",
          "_user_step", "step", "_seed", "_steps", "steps", "time", "_time", "_agents",
          "_agents_by_type", "_all_agents", "agent_id_counter", "data_registry",
          "_event_list", "_default_schedule", "_simulator", "_rng", "rng", "random",
          "_random", "_observables", "_scenario", "_signal", "experimental",
          "_event_generators", "_batch_context", "_suppress", "subscribers"}  # Mesa 3.5


def model_state(m):
    if getattr(m, "router", None) is not None:  # the audit as read: its records kept as
        _ = m.router._audit  # given (record_owned) turned into their columns, as a reader sees them
    keys = set(vars(m)) - STATIC
    out = {k: state_of(getattr(m, k)) for k in sorted(keys)}
    out["rng"] = repr(m.rng.bit_generator.state)
    out["random"] = repr(m.random.getstate())
    for agent in [*m.exchanges, *m.ccps]:
        out[f"agent{agent.unique_id}"] = state_of({k: v for k, v in vars(agent).items()
                                                   if k not in ("model", "pos", "unique_id")})
    return out


# ---------------------------------------------------------------- a real server
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(data: Path, models: Path, *, token: str | None = None,
          timeout: float = 60) -> tuple[subprocess.Popen, str]:
    """Start ``finsim serve`` on 127.0.0.1 (a free port) with this data and models
    folder, and wait until ``/health`` answers 200 (at most ``timeout`` seconds;
    the test fails with the server's output if it exits or does not answer).
    ``token``: FINSIM_API_TOKEN of the server (None: none, even if set here).
    Returns the process (stdout and stderr piped) and its base URL."""
    import httpx  # the 'api' extra; the tests that call this skip without it

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "FINSIM_API_TOKEN"}
    if token is not None:
        env["FINSIM_API_TOKEN"] = token
    proc = subprocess.Popen(
        [sys.executable, "-m", "finsim_mesa.cli", "serve", "--port", str(port), "--data",
         str(data), "--models", str(models), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"server did not start: {proc.stdout.read()}")
        time.sleep(0.1)


def per_entry_impact_weights(exposures, denom, present):
    """DebtRank's impact weights formed entry by entry (the project's former
    ``risk._impact_weights``), a reference for the per-bank form:
    ``min(1, exposure / denom)`` with ``denom`` the creditor's equity per entry,
    1 where it is not positive, 0 where not ``present``."""
    pos = denom > 0
    data = np.minimum(1.0, exposures / np.where(pos, denom, 1.0))
    data[~pos] = 1.0
    if present is not None:
        data *= present
    return data


def masked_rewards(r, L, total_assets, sri_value, cfg, t):
    """``rewards.update_rewards`` in its masked form (as of 87a6056: separate
    arrays, one mean each), the tests' reference: (components, per-bank
    rewards, their mean over live banks, the components' means)."""
    was_out = L.defaulted & (L.default_step < t)
    profit = (L.equity - r.equity_prev) / np.where(L.equity0 > 0, L.equity0, 1.0)
    liquidity = np.divide(L.cash, total_assets, out=np.zeros(L.n), where=total_assets > 0)
    default = (L.default_step == t).astype(float)
    sri = np.full(L.n, sri_value)
    comps = {"profit": profit, "liquidity": liquidity, "default": default, "system_risk": sri}
    for v in comps.values():
        v[was_out] = 0.0
    per_bank = (cfg.reward_profit_weight * profit + cfg.reward_liquidity_weight * liquidity
                - cfg.reward_default_penalty * default - cfg.reward_system_risk_weight * sri)
    live = ~was_out
    means = {name: float(np.mean(v[live])) if live.any() else 0.0 for name, v in comps.items()}
    return comps, per_bank, float(np.mean(per_bank[live])) if live.any() else 0.0, means


def loop_match(offer, request, src, dst, room):
    """``lending.match_lending`` as a Python loop over the edges (the tests'
    reference): each lender's offer shared pro rata to what its neighbours ask
    (capped by the edge's room), then each borrower's total scaled down to its
    request."""
    n, e = offer.size, src.size
    want = [min(float(request[dst[k]]), float(room[k])) for k in range(e)]
    asked = [0.0] * n
    for k in range(e):
        asked[src[k]] += want[k]
    x = [min(float(offer[src[k]]) * want[k] / asked[src[k]], want[k]) if asked[src[k]] > 0
         else min(0.0, want[k]) for k in range(e)]
    got = [0.0] * n
    for k in range(e):
        got[dst[k]] += x[k]
    scale = [float(request[i]) / got[i] if got[i] > request[i] else 1.0 for i in range(n)]
    return [x[k] * min(scale[dst[k]], 1.0) for k in range(e)]


def ledger_bits(L) -> dict:
    """A ledger's every array and loan-book column as bytes (dtype and shape
    included: signed zeros and NaN payloads count) and its external flows as
    hex, for bit-for-bit comparisons of two ledgers."""
    from finsim_mesa.ledger import Ledger
    from finsim_mesa.loans import LoanBook

    def bits(a) -> bytes:
        a = np.asarray(a)
        return str(a.dtype).encode() + str(a.shape).encode() + np.ascontiguousarray(a).tobytes()

    out = {k: bits(getattr(L, k)) for k in Ledger._ARRAYS}
    out |= {f"loans.{k}": bits(getattr(L.loans, k)) for k in LoanBook._ROWS}
    out["external_in"] = sorted((k, float(v).hex()) for k, v in L.external_in.items())
    out["external_out"] = sorted((k, float(v).hex()) for k, v in L.external_out.items())
    return out


def stages_until_clear(m) -> None:
    """Run a step's stages up to (not including) the clear stage."""
    m.t += 1
    m.shock()
    m.act(m.decide(m.observe()))
    m.settle()


def former_rule_act(brain, o):
    """``RuleBasedBrain.act`` as of 7c9fe3b (each action a column of the result): the
    former form the small62 and rev63 tests compare the rule brain with."""
    from finsim_mesa.agents.brains import _RULE_F64, _RULE_NUMBERS
    from finsim_mesa.fastmath import clip
    from finsim_mesa.observation import OBS

    five, p8, zero, one, half, p1, p15 = (_RULE_F64 if getattr(o, "dtype", None) == np.float64
                                          else _RULE_NUMBERS)
    stress = np.maximum(o[:, OBS["market_stress"]], o[:, OBS["counterparty_stress"]])
    coverage = o[:, OBS["liquidity_coverage"]] * five
    headroom = o[:, OBS["capital_ratio"]] / max(brain.capital_requirement, 1e-9)
    own = o[:, OBS["own_distress"]]
    calm = clip(p8 - stress - own, zero, one)
    a = np.empty((len(o), 4))
    np.subtract(coverage, one, out=a[:, 0])
    np.subtract(half * stress + own, p1, out=a[:, 1])
    np.subtract(p15, headroom, out=a[:, 2])
    np.subtract(one, coverage, out=a[:, 3])
    np.minimum(np.maximum(a, zero, out=a), one, out=a)
    a[:, 0] *= calm
    return a
