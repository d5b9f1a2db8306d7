"""Brains: how banks decide. One call per brain per step, for all its banks.

The protocol is ``act(observations) -> actions`` with ``observations`` of
shape (b, obs_dim) (columns in :data:`finsim_mesa.observation.OBS_FIELDS`) and
actions of shape (b, 4) in [0, 1]: lend, hoard, sell, borrow (meanings in
:data:`finsim_mesa.observation.ACTIONS`). A new brain is a few lines::

    class Cautious(Brain):
        name = "cautious"
        def act(self, obs):
            a = np.zeros((len(obs), 4))
            a[:, 1] = obs[:, OBS["market_stress"]]   # hoard as stress rises
            return a
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from finsim_mesa.errors import ConfigError
from finsim_mesa.observation import OBS

__all__ = [
    "BRAINS",
    "Brain",
    "BrainLike",
    "ConservativeBrain",
    "GreedyBrain",
    "MyopicBrain",
    "PassiveBrain",
    "RandomBrain",
    "RuleBasedBrain",
    "make_brain",
]


@runtime_checkable
class BrainLike(Protocol):
    """Anything with ``act(observations: ndarray[b, d]) -> ndarray[b, 4]``."""

    def act(self, observations: np.ndarray) -> np.ndarray: ...


class Brain:
    """Base class. ``setup(model)`` is called once when a model adopts the brain."""

    name = "brain"

    def setup(self, model: Any) -> None:
        """Bind to a model (e.g. take its random generator). Default: nothing."""

    def act(self, observations: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class PassiveBrain(Brain):
    """No behaviour at all (all zeros): for pure contagion studies."""

    name = "passive"

    def act(self, observations: np.ndarray) -> np.ndarray:
        return np.zeros((len(observations), 4))


class RandomBrain(Brain):
    """Uniform random actions, drawn from the model's generator."""

    name = "random"

    def __init__(self) -> None:
        self.rng: np.random.Generator | None = None

    def setup(self, model: Any) -> None:
        self.rng = model.rng

    def act(self, observations: np.ndarray) -> np.ndarray:
        if self.rng is None:
            raise RuntimeError("RandomBrain needs setup(model) before act() (it uses model.rng)")
        return self.rng.random((len(observations), 4))


class _RequirementAware(Brain):
    """A brain whose rules refer to the model's capital requirement."""

    def __init__(self, capital_requirement: float = 0.05) -> None:
        self.capital_requirement = capital_requirement

    def setup(self, model: Any) -> None:
        self.capital_requirement = model.config.capital_requirement


class RuleBasedBrain(_RequirementAware):
    """A prudent treasurer's rules of thumb.

    * lend surplus cash (coverage above 1) while counterparties and markets are calm;
    * hoard (refuse roll-over) as market stress and own distress rise;
    * sell assets when the capital ratio nears the requirement;
    * borrow when cash does not cover what may fall due (coverage below 1).
    """

    name = "rule_based"

    def act(self, observations: np.ndarray) -> np.ndarray:
        o = observations
        stress = np.maximum(o[:, OBS["market_stress"]], o[:, OBS["counterparty_stress"]])
        coverage = o[:, OBS["liquidity_coverage"]] * 5.0
        cr = o[:, OBS["capital_ratio"]]
        headroom = cr / max(self.capital_requirement, 1e-9)
        a = np.empty((len(o), 4))
        calm = np.clip(0.8 - stress - o[:, OBS["own_distress"]], 0.0, 1.0)
        a[:, 0] = calm * np.clip(coverage - 1.0, 0.0, 1.0)  # lend only liquidity to spare
        a[:, 1] = np.clip(0.5 * stress + o[:, OBS["own_distress"]] - 0.1, 0.0, 1.0)
        a[:, 2] = np.clip(1.5 - headroom, 0.0, 1.0)
        a[:, 3] = np.clip(1.0 - coverage, 0.0, 1.0)  # borrow only when short
        return a


class MyopicBrain(Brain):
    """Maximises this step's income: lends everything it can, never sells
    (a sale realises a discount), borrows only when about to run out of cash."""

    name = "myopic"

    def act(self, observations: np.ndarray) -> np.ndarray:
        a = np.zeros((len(observations), 4))
        a[:, 0] = 1.0
        a[:, 3] = (observations[:, OBS["liquidity_coverage"]] * 5.0 < 1.0).astype(float)
        return a


class GreedyBrain(Brain):
    """Maximal balance-sheet growth: lend all, borrow all, never hoard or sell."""

    name = "greedy"

    def act(self, observations: np.ndarray) -> np.ndarray:
        a = np.zeros((len(observations), 4))
        a[:, 0] = 1.0
        a[:, 3] = 1.0
        return a


class ConservativeBrain(_RequirementAware):
    """Hoards liquidity (rolls over only half its maturing loans), lends little,
    sells early, never borrows."""

    name = "conservative"

    def act(self, observations: np.ndarray) -> np.ndarray:
        a = np.zeros((len(observations), 4))
        a[:, 0] = 0.1
        a[:, 1] = 0.5
        headroom = observations[:, OBS["capital_ratio"]] / max(self.capital_requirement, 1e-9)
        a[:, 2] = np.clip(2.0 - headroom, 0.0, 1.0)
        return a


BRAINS: dict[str, type[Brain]] = {
    cls.name: cls
    for cls in (RandomBrain, RuleBasedBrain, MyopicBrain, GreedyBrain, ConservativeBrain,
                PassiveBrain)
}


def make_brain(spec: str | BrainLike) -> BrainLike:
    """A brain from a name in :data:`BRAINS` or any object with ``act``.

    Raises:
        ConfigError: unknown name or an object without ``act``.
    """
    if isinstance(spec, str):
        if spec not in BRAINS:
            raise ConfigError(f"brain = {spec!r}: unknown brain; choose one of "
                              f"{', '.join(BRAINS)} or pass an object with act(observations)")
        return BRAINS[spec]()
    if isinstance(spec, BrainLike):
        return spec
    raise ConfigError(f"brain = {spec!r}: a brain must be a name ({', '.join(BRAINS)}) or an "
                      "object with an act(observations) -> actions method")


def brain_name(brain: BrainLike) -> str:
    """Display name of a brain."""
    return getattr(brain, "name", type(brain).__name__)
