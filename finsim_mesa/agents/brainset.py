"""Which brain decides for which bank (:class:`BrainSet`): the model's one call
per brain per step, for all its banks (the brains themselves:
:mod:`finsim_mesa.agents.brains`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from finsim_mesa.agents import brains as _brains
from finsim_mesa.agents.brains import BrainLike, brain_name, check_actions, make_brain
from finsim_mesa.errors import ConfigError
from finsim_mesa.fastmath import count_nonzero

__all__ = ["BrainSet"]


class BrainSet:
    """Which brain decides for which bank: each distinct brain once, with its banks.

    Args:
        spec: a brain name, an object with ``act``, a sequence of these (one per
            bank) or a mapping ``{bank_id: brain, "default": brain}``.
        n: number of banks.
        default: the brain name for banks a mapping leaves out.

    Raises:
        ConfigError: unknown names, a list of the wrong length, bad mapping keys.
    """

    def __init__(self, spec: Any, n: int, default: str) -> None:
        if isinstance(spec, Mapping):
            bad = [k for k in spec if k != "default" and not (
                isinstance(k, int | np.integer) and not isinstance(k, bool | np.bool_)
                and 0 <= k < n)]
            if bad:
                raise ConfigError(f"brain mapping has keys {bad!r}; use bank ids 0..{n - 1} "
                                  "or 'default'")
            fallback = spec.get("default", default)
            per = [spec.get(i, fallback) for i in range(n)]
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
        self.per_bank: list[BrainLike] = brains
        self.names = [brain_name(b) for b in brains]
        ids = np.array([id(b) for b in brains])
        self.groups = [(b, np.flatnonzero(ids == id(b))) for b in made.values()]

    def setup(self, model: Any) -> None:
        """Bind every brain to ``model`` (e.g. a random brain takes its generator)."""
        for b, _ in self.groups:
            if hasattr(b, "setup"):
                b.setup(model)

    def given_observations(self) -> np.ndarray | None:
        """The observation matrix the actions were chosen on outside the model, when
        one brain that hands them over (``hands_observations``: the learning
        environment's) decides for every bank and brings one of this size
        (``observed``, taken once: the step it was handed out for); else None."""
        brain = self.groups[0][0] if len(self.groups) == 1 else None
        if not getattr(type(brain), "hands_observations", False):
            return None
        given, brain.observed = brain.observed, None
        return given if given is not None and len(given) == len(self.per_bank) else None

    def decide(self, observations: np.ndarray, active: np.ndarray, banks: Sequence[Any],
               overrides: Mapping[int, np.ndarray]) -> np.ndarray:
        """Actions of all banks, shape (n, 4): each brain acts once on the rows of
        its active banks (a per-bank brain gets the bank agents too); fixed
        ``overrides`` win; defaulted banks get zeros.

        Raises:
            BrainError: a brain returned a wrong shape, NaN/inf or values outside [0, 1].
        """
        actions = None  # zeros, unless one brain acts for every bank (made when needed)
        # each brain gets its own copy of its rows: row-major, as always, or
        # column by column for the brains that read columns (the matrix is
        # stored so; a row gather would leave every column strided); a class
        # that sets reads_only and decides for every bank gets the matrix itself,
        # read-only
        by_column = observations.flags.f_contiguous and observations.ndim == 2
        n = observations.shape[0]
        everyone = count_nonzero(active) == n  # (every bank active: a group of all keeps
        for brain, idx in self.groups:  # its indices, 0..n-1, without two gathers)
            rows = idx if everyone and idx.size == n else idx[active[idx]]
            if 0 < rows.size < n == idx.size and by_column and _rowwise(brain):
                actions = _every_row(brain, observations, active)
                if actions is not None:
                    continue
            if rows.size:
                if not (by_column and getattr(brain, "reads_columns", False)):
                    obs = observations[rows]
                elif rows.size == n and vars(type(brain)).get("reads_only", False):
                    obs = observations.view()  # every bank, read-only: no copy
                    obs.flags.writeable = False
                elif rows.size == n:  # every bank (a group's indices are increasing)
                    obs = observations.copy(order="F")
                else:
                    obs = observations.T.take(rows, axis=1).T
                if getattr(brain, "per_bank", False):
                    out = brain.act_banks([banks[i] for i in rows], obs)
                else:
                    out = brain.act(obs)
                checked = check_actions(brain, out, rows.size)  # a new C-ordered array
                if rows.size == n:  # one brain for every bank, all active
                    actions = checked
                else:
                    if actions is None:
                        actions = np.zeros((n, 4))
                    actions[rows] = checked
        if actions is None:
            actions = np.zeros((n, 4))
        for bank, vec in overrides.items():
            if active[bank]:
                actions[bank] = vec
        return actions

    def snapshot(self, model_rng: np.random.Generator) -> list[Any]:
        """States of the brains' own random generators (None where a brain has
        none or uses the model's, which the model saves itself)."""
        out = []
        for b, _ in self.groups:
            rng = getattr(b, "rng", None)
            own = isinstance(rng, np.random.Generator) and rng is not model_rng
            out.append(rng.bit_generator.state if own else None)
        return out

    def restore(self, states: list[Any]) -> None:
        """Put :meth:`snapshot`'s generator states back (when the brains are the
        same ones; brains changed since the snapshot keep their state)."""
        if len(states) != len(self.groups):
            return
        for (b, _), state in zip(self.groups, states, strict=True):
            if state is not None:
                b.rng.bit_generator.state = state


def _rowwise(brain: Any) -> bool:
    """Whether ``brain``'s own class declares it reads columns only, never writes
    its input and acts on each row alone (see :class:`~finsim_mesa.agents.brains.Brain`),
    with that class's ``act`` (not one set on the instance, which the flag does not cover)."""
    own = vars(type(brain))
    return (own.get("rowwise", False) and own.get("reads_only", False)
            and getattr(brain, "reads_columns", False) and not getattr(brain, "per_bank", False)
            and "act" not in getattr(brain, "__dict__", ()))


def _every_row(brain: Any, observations: np.ndarray, active: np.ndarray) -> np.ndarray | None:
    """The actions of a :func:`_rowwise` brain for all banks, given every bank's
    row (read-only): for the active banks what it gives on their rows alone;
    +0.0 for the others (checked actions lie in [0, 1] with no −0.0, so times
    the active mask is each or +0.0). None if acting or checking fails on some
    row (perhaps only an inactive bank's): then the active rows alone decide,
    as always, with their own errors."""
    obs = observations.view()
    obs.flags.writeable = False
    try:
        checked = check_actions(brain, brain.act(obs), observations.shape[0])
    except Exception:
        return None
    np.multiply(checked, active[:, None], out=checked)
    return checked


# BrainSet lived in brains.py before issue 15: its old name still finds it (pickles of
# models and brain sets made then, ``from finsim_mesa.agents.brains import BrainSet``).
# Set from here: brains.py cannot import this module (an import circle); importing the
# package imports this module, so the name is there before any unpickling.
_brains.BrainSet = BrainSet  # type: ignore[attr-defined]
