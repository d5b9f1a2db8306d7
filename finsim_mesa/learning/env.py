"""A PettingZoo ``ParallelEnv`` over :class:`~finsim_mesa.model.FinancialModel`.

Agents are ``bank_0 .. bank_{n-1}``; each observes its row of the model's
observation matrix (16 columns, 24 with the infrastructure layer; see
``finsim_mesa.observation``) and acts with 4 numbers in [0, 1] (lend, hoard,
sell, borrow). Rewards are the model's rewards with its weights. A bank that
defaults is terminated; the episode's end (``steps`` or a collapse) truncates
everyone left. :meth:`FinancialEnv.state` is the global state for a centralised
critic: every bank's observation row, shape (n_banks * obs_dim,).
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from finsim_mesa import observation
from finsim_mesa.agents.brains import Brain
from finsim_mesa.model import FinancialModel

__all__ = ["ExternalBrain", "FinancialEnv"]

OBS_LOW, OBS_HIGH = -1.0, 2.0  # every observation column lies in this range


class ExternalBrain(Brain):
    """Returns actions set from outside (by the environment), one row per bank.

    ``observed`` is the observation matrix the environment handed out after the
    last step (or reset), on which the actions were chosen: the model's next step
    records it as its observations instead of observing a second time (once: a
    step that follows no hand-out observes the model itself).
    """

    name = "external"
    hands_observations = True  # the model takes ``observed`` (BrainSet.given_observations)

    def __init__(self) -> None:
        self.actions: np.ndarray | None = None
        self.model: FinancialModel | None = None
        self.observed: np.ndarray | None = None

    def setup(self, model: Any) -> None:
        self.model = model

    def act(self, observations: np.ndarray) -> np.ndarray:
        if self.actions is None or self.model is None:
            raise RuntimeError("ExternalBrain: the environment has not set this step's actions")
        return self.actions[self.model.ledger.active]


class FinancialEnv(ParallelEnv):
    """Banks of a FinancialModel as PettingZoo agents.

    Args:
        **model_params: FinancialModel keyword arguments (``n_banks``, ``scenario``,
            ``steps`` = episode length, reward weights, ...). ``brain`` and ``rng``
            are set by the environment. ``agent_collect_every`` defaults to 0
            here: a trainer reads observations and rewards, not the bank rows
            of Mesa's DataCollector (give it, or a ``config``, to collect them).

    ``atomic_steps`` (True): each step of the environment's models is all or
    nothing (:meth:`FinancialModel.step`). A trainer that throws a failed
    episode away whole may set it False to skip the per-step snapshot (about a
    tenth of a step at 100 banks); the :class:`Trainer` does.
    """

    metadata: ClassVar[dict[str, Any]] = {"name": "finsim_v0", "render_modes": [],
                                          "is_parallelizable": True}

    def __init__(self, **model_params: Any) -> None:
        for key in ("brain", "rng"):
            model_params.pop(key, None)
        # no bank rows unless asked for, by the parameter or in a configuration
        self.model_params = (model_params if "config" in model_params
                             else {"agent_collect_every": 0} | model_params)
        probe = FinancialModel(brain="passive", rng=0, **model_params)
        self.n_banks = probe.n_banks
        self.obs_dim = probe.observe().shape[1]
        self.possible_agents = [f"bank_{i}" for i in range(self.n_banks)]
        self.agent_index = {a: i for i, a in enumerate(self.possible_agents)}
        self.agents: list[str] = []
        self.model: FinancialModel | None = None
        self.brain = ExternalBrain()
        self.atomic_steps = True
        self.render_mode = None

    @functools.cache  # noqa: B019 - PettingZoo's convention
    def observation_space(self, agent: str) -> spaces.Box:
        return spaces.Box(OBS_LOW, OBS_HIGH, shape=(self.obs_dim,), dtype=np.float32)

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> spaces.Box:
        return spaces.Box(0.0, 1.0, shape=(4,), dtype=np.float32)

    def _obs(self) -> np.ndarray:
        # row-major for the torch actor (the model stores the matrix by column)
        obs = np.clip(observation.observe(self.model), OBS_LOW, OBS_HIGH).astype(
            np.float32, order="C")
        self.brain.observed = obs  # what the next step's actions are chosen on
        return obs

    def reset(self, seed: int | None = None, options: dict | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        """New model seeded with ``seed`` (``options={"model_params": {...}}`` overrides
        model parameters for this episode; another ``n_banks`` changes
        ``possible_agents`` until the next reset)."""
        params = dict(self.model_params) | dict((options or {}).get("model_params", {}))
        self.model = FinancialModel(brain=self.brain, rng=seed, **params)
        self.model.atomic_steps = self.atomic_steps
        if self.model.n_banks != self.n_banks:  # another size this episode (a mixture)
            self.n_banks = self.model.n_banks
            self.possible_agents = [f"bank_{i}" for i in range(self.n_banks)]
            self.agent_index = {a: i for i, a in enumerate(self.possible_agents)}
        self.agents = list(self.possible_agents)
        obs = self._obs()
        return ({a: obs[self.agent_index[a]] for a in self.agents},
                {a: {} for a in self.agents})

    def observation_matrix(self) -> np.ndarray:
        """All banks' observations, shape (n_banks, obs_dim), float32."""
        return self._obs()

    def state(self) -> np.ndarray:
        """Global state: every bank's observation row, shape (n_banks * obs_dim,)."""
        return self._obs().reshape(-1)

    def step_array(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                       bool]:
        """Vectorised step for trainers: actions shape (n_banks, 4). Returns the next
        observations (n_banks, obs_dim), rewards (n_banks,), which banks are in
        default (n_banks,) and whether the episode has ended."""
        self.brain.actions = np.clip(np.asarray(actions, dtype=float), 0.0, 1.0)
        self.model.step()
        done = not self.model.running
        return self._obs(), self.model.reward.per_bank.astype(np.float32), \
            self.model.ledger.defaulted.copy(), done

    def step(self, actions: dict[str, np.ndarray]):
        """PettingZoo step: dicts keyed by the agents still in the episode."""
        full = np.zeros((self.n_banks, 4))
        for agent, a in actions.items():
            full[self.agent_index[agent]] = a
        obs, rewards, defaulted, done = self.step_array(full)
        live = self.agents
        out_obs = {a: obs[self.agent_index[a]] for a in live}
        out_rew = {a: float(rewards[self.agent_index[a]]) for a in live}
        term = {a: bool(defaulted[self.agent_index[a]]) for a in live}
        trunc = {a: bool(done and not term[a]) for a in live}
        infos = {a: {} for a in live}
        self.agents = [a for a in live if not (term[a] or trunc[a])]
        return out_obs, out_rew, term, trunc, infos
