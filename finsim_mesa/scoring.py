"""The fixed-horizon episode score: what evaluation ranks and training maximises.

An episode lasts ``horizon`` steps whatever happens. Step t scores the mean over
*all* banks of

* the bank's reward (:mod:`finsim_mesa.rewards`) while it is in business,
  including the step it defaults in (which carries the default penalty α);
* ``-α`` in every later step: a defaulted bank keeps its default penalty each
  remaining step.

So a system that collapses early keeps being scored, and an early default costs
more than a late one: the score of a run is

    S = Σ_{t=1..T} (1/n) Σ_i s_{i,t},   s_{i,t} = R_{i,t} if bank i was in business
                                                 at the start of step t, else -α.

Evaluation runs models with ``collapse_threshold = 1`` (no early stop at a
collapse; the run ends at the horizon or when every bank has defaulted); if a
run ends before the horizon anyway, each remaining step scores ``-α`` times
the share of banks in default (survivors 0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from finsim_mesa.model import FinancialModel

__all__ = ["EpisodeScore", "fixed_horizon_params", "score_episode"]


def fixed_horizon_params(params: dict[str, Any]) -> dict[str, Any]:
    """Model parameters for a fixed-horizon run: ``collapse_threshold`` 1 unless
    the caller set one."""
    return {"collapse_threshold": 1.0} | dict(params)


class EpisodeScore:
    """Accumulates the fixed-horizon score of one model run.

    Args:
        model: the model, before its first step.
        horizon: steps the episode lasts (default: the model's ``steps``).
    """

    def __init__(self, model: FinancialModel, horizon: int | None = None) -> None:
        self.model = model
        self.horizon = int(horizon if horizon is not None else model.config.steps)
        self.alpha = float(model.config.reward_default_penalty)
        self.total = 0.0
        self.per_bank = np.zeros(model.n_banks)  # each bank's score over the episode
        self.steps = 0

    def step_scores(self) -> np.ndarray:
        """Each bank's score for the step just run, shape (n_banks,)."""
        L = self.model.ledger
        s = np.array(self.model.reward.per_bank, dtype=float)
        s[L.defaulted & (L.default_step < self.model.t)] = -self.alpha
        return s

    def add_step(self) -> float:
        """Score the step just run; returns its mean over all banks."""
        s = self.step_scores()
        self.per_bank += s
        self.steps += 1
        step = float(s.mean())
        self.total += step
        return step

    def finish(self) -> float:
        """Score the steps between the run's end and the horizon (each: ``-α`` per
        defaulted bank, 0 per survivor); returns the episode score."""
        remaining = max(self.horizon - self.steps, 0)
        if remaining:
            gone = self.model.ledger.defaulted
            self.per_bank[gone] -= self.alpha * remaining
            self.total -= self.alpha * remaining * float(gone.mean())
            self.steps = self.horizon
        return self.total


def score_episode(model: FinancialModel, horizon: int | None = None,
                  after_step: Callable[[FinancialModel], None] | None = None) -> EpisodeScore:
    """Run ``model`` to its end and score it (see the module docstring);
    ``after_step(model)``, if given, is called after each scored step."""
    score = EpisodeScore(model, horizon)
    while model.running and score.steps < score.horizon:
        model.step()
        score.add_step()
        if after_step is not None:
            after_step(model)
    score.finish()
    return score
