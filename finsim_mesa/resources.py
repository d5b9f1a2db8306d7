"""Checks that a model can be built, before anything is: its seed, the size of
its network and the memory it will need."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from finsim_mesa.config import ModelConfig
from finsim_mesa.errors import ConfigError

__all__ = ["available_memory", "check_memory", "check_rng", "estimate_memory",
           "expected_links"]


def check_rng(rng: Any) -> Any:
    """Mesa's ``rng=`` argument, checked: None, a seed (an integer >= 0) or a numpy
    ``Generator``, ``BitGenerator`` or ``SeedSequence``.

    Raises:
        ConfigError: anything else (a negative, fractional, NaN or text seed).
    """
    if rng is None or isinstance(rng, np.random.Generator | np.random.BitGenerator
                                  | np.random.SeedSequence):
        return rng
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool | np.bool_) and rng >= 0:
        return rng
    raise ConfigError(f"rng = {rng!r}: give a seed (an integer >= 0), a numpy Generator or "
                      "None")


def expected_links(cfg: ModelConfig) -> float:
    """Expected number of links of the network ``cfg`` asks a generator for."""
    n = cfg.n_banks
    if cfg.topology == "barabasi_albert":
        return float(cfg.edges_per_node) * max(n - cfg.edges_per_node, 0)
    if cfg.topology == "erdos_renyi":
        directed = 2 if cfg.directed else 1
        return min(cfg.mean_degree * n / 2 * directed, n * (n - 1) / 2 * directed)
    core = max(1, min(n, round(cfg.core_fraction * n)))
    return core * (core - 1) / 2 * cfg.core_density + (n - core) * min(cfg.edges_per_node, core)


# Measured peak memory of a model (benchmarks/bench_memory.py and a fit over
# Barabasi-Albert and Erdos-Renyi networks of 5,000-60,000 banks): about 2.5 KB
# per bank and 400 bytes per link (the networkx graph, the grid, the loan book).
BYTES_PER_BANK, BYTES_PER_LINK = 2_500, 400


def estimate_memory(cfg: ModelConfig, links: float | None = None) -> float:
    """Expected peak memory of a model of ``cfg`` (bytes); ``links`` for a given network."""
    return BYTES_PER_BANK * cfg.n_banks + BYTES_PER_LINK * (
        expected_links(cfg) if links is None else links)


def available_memory() -> float | None:
    """Memory this process can still use (bytes), from /proc/meminfo; None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_memory(cfg: ModelConfig, links: float | None = None) -> None:
    """Refuse a model that would not fit in memory, before anything is built.

    Raises:
        ConfigError: with the estimate and what is available.
    """
    need, have = estimate_memory(cfg, links), available_memory()
    if have is not None and need > have:
        links = expected_links(cfg) if links is None else links
        raise ConfigError(
            f"n_banks = {cfg.n_banks} with about {links:,.0f} links needs about "
            f"{need / 2**30:.1f} GiB of memory; {have / 2**30:.1f} GiB is available. Use "
            "fewer banks or a sparser network.")
