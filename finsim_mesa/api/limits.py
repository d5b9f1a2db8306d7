"""The service's limits and the estimates they are checked against.

Every limit bounds real work or memory, and each is either written into the
OpenAPI schema (a ``maximum`` or ``maxItems`` taken from these numbers, see
:mod:`finsim_mesa.api.openapi`) or checked against an estimate made from the
request before any work is done (the size of a network, the memory of a
model), so a refusal names the estimate and the limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from finsim_mesa.balance_sheets import with_table
from finsim_mesa.config import ModelConfig, resolve_config
from finsim_mesa.resources import estimate_memory, expected_links

__all__ = ["ApiLimits", "LookaheadBounds", "NetworkEstimate", "estimate_network",
           "lookahead_bounds"]


@dataclass
class ApiLimits:
    """Server-side limits.

    Attributes:
        max_banks: most banks in one simulation.
        max_links: most interbank links in one simulation's network (estimated
            from the request: topology, banks, ``mean_degree``,
            ``edges_per_node``, core settings) — banks alone do not bound it.
        max_model_mb: most memory one simulation may need (estimated).
        max_total_model_mb: most memory all live simulations together may need.
        max_steps_per_request: most steps one ``/simulation/run`` may ask for.
        max_episode_steps: longest episode a simulation may be given (its
            per-step records grow with it).
        max_simulations: most simulations held at once.
        idle_ttl_s: a simulation not used for this many seconds is dropped.
        max_lookahead_work: most simulated steps (steps x seeds x variants) one
            what-if or one bank's recommendation may take; the schema's bounds
            on ``steps`` and ``seeds`` are derived from it
            (:func:`lookahead_bounds`), and ``GET /recommendations`` answers for
            as many banks as fit in it, saying where to go on.
        max_train_episodes: most episodes one ``/train/start`` may ask for.
        max_train_banks: most banks in a training environment.
        history: per-step metric records kept per simulation for streams.
        max_body_bytes: largest request body read (413 beyond it).
        max_scenarios: most scenarios defined by clients (``/scenarios/set``).
        max_streams: most WebSocket streams open at once.
    """

    max_banks: int = 2000
    max_links: int = 200_000
    max_model_mb: float = 256.0
    max_total_model_mb: float = 2048.0
    max_steps_per_request: int = 5000
    max_episode_steps: int = 100_000
    max_simulations: int = 32
    idle_ttl_s: float = 3600.0
    max_lookahead_work: int = 20_000
    max_train_episodes: int = 20_000
    max_train_banks: int = 200
    history: int = 10_000
    max_body_bytes: int = 1_048_576
    max_scenarios: int = 64
    max_streams: int = 64


# ---------------------------------------------------------------- lookahead
@dataclass(frozen=True)
class LookaheadBounds:
    """Largest ``steps`` and ``seeds`` of a lookahead request, and the defaults
    (never above the largest)."""

    steps: int
    seeds: int
    default_steps: int
    default_seeds: int


def lookahead_bounds(limits: ApiLimits, variants: int, default_steps: int = 10,
                     default_seeds: int = 10) -> LookaheadBounds:
    """Bounds on ``steps`` and ``seeds`` such that every request inside them
    fits the work limit: ``steps * seeds * variants <= max_lookahead_work``
    (a product cannot be written in a schema, so each factor gets its own
    bound: the square root of the budget per variant, at most 1000)."""
    per_variant = max(1, limits.max_lookahead_work // variants)
    steps = max(1, min(1000, math.isqrt(per_variant)))
    seeds = max(1, min(1000, per_variant // steps))
    return LookaheadBounds(steps, seeds, min(default_steps, steps), min(default_seeds, seeds))


# ---------------------------------------------------------------- network size
# on top of the model's own estimate (finsim_mesa.resources: banks and links):
# holdings of each asset class per bank, and the model-level record the
# DataCollector keeps for every step of the episode (measured: about 360 bytes)
BYTES_PER_HOLDING = 24
BYTES_PER_STEP_RECORD = 400


@dataclass(frozen=True)
class NetworkEstimate:
    """What a model built from a configuration will hold, before building it."""

    banks: int
    links: int
    memory_mb: float


def estimate_network(params: dict[str, Any]) -> NetworkEstimate:
    """Links and memory of the model ``FinancialModel(**params)`` would build
    (``params`` as the API passes them), from the configuration alone.

    Raises:
        ConfigError: the parameters are not a valid configuration.
    """
    cfg = resolve_config(None, {k: v for k, v in params.items()
                                if k in ModelConfig.model_fields and k != "scenario"})
    links = expected_links(cfg)
    if cfg.balance_sheets is not None:  # the table sets the banks; no interbank network
        cfg, links = with_table(cfg, None)[0], 0.0
    mem = (estimate_memory(cfg, links) + BYTES_PER_HOLDING * cfg.n_banks * cfg.n_assets
           + BYTES_PER_STEP_RECORD * cfg.steps)
    return NetworkEstimate(cfg.n_banks, round(links), mem / 1e6)
