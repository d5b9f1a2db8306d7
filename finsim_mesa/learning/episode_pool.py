"""The searches' episodes, in this process or in worker processes (``--workers``).

The neuroevolution searches (:mod:`finsim_mesa.learning.evolve`, ``finsim
train --init-search``; :mod:`finsim_mesa.learning.evolve_objective`, ``finsim
train --refine``) score every candidate actor on many episodes, each a
deterministic function of (actor weights, scenario, seed, model parameters).
:class:`EpisodePool` runs one candidate's episodes either one after another
here (``workers=1``, the default) or spread over ``workers`` spawned processes,
and returns their outcomes *in the order given*: the caller sums them in that
order, so a search's values, choices and written weights are bit-identical
whatever the number of workers (tests/test_episode_pool.py).

Workers are started by ``spawn`` (never ``fork``: the ``finsim train`` process
may have imported torch, whose OpenMP threads do not survive a fork) inside
:func:`finsim_mesa.threads.single_threaded`, so each reads
``OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = MKL_NUM_THREADS = 1`` before it
imports NumPy: one BLAS thread per worker, no oversubscription of the cores.
The weights travel with each episode (about 23 kB at 64 hidden units, against
tens of milliseconds per episode).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np

from finsim_mesa.agents.actor import ActorBrain
from finsim_mesa.forked import check_workers, max_workers

__all__ = ["EpisodePool", "check_workers", "max_workers"]

Outcome = tuple[dict[str, float], set[int]]


class _Recorder(ActorBrain):
    """An :class:`ActorBrain` that notes which bins of the read column its
    observations fell in (within ``margin`` of a cut point: both neighbours)."""

    def __init__(self, weights: dict[str, np.ndarray], names: list[str], col: int,
                 cuts: Sequence[float], margin: float) -> None:
        super().__init__(weights, names)
        self.col, self.cuts, self.margin = col, np.asarray(cuts, dtype=float), margin
        self.seen: set[int] = set()

    def act(self, observations: np.ndarray) -> np.ndarray:
        obs = observations if self.columns is None else observations[:, self.columns]
        x = np.asarray(obs[:, self.col], dtype=float)
        lo = np.searchsorted(self.cuts, x - self.margin)
        hi = np.searchsorted(self.cuts, x + self.margin)
        for a, b in set(zip(lo.tolist(), hi.tolist(), strict=True)):
            self.seen.update(range(a, b + 1))  # every bin the margin reaches
        return super().act(observations)


def _episode(task: tuple[Any, ...]) -> Outcome:
    """One episode: (weights, names, col, cuts, margin, scenario, seed, env) ->
    (:func:`~finsim_mesa.evaluation.evaluate_run`'s outcome, bins seen)."""
    from finsim_mesa.evaluation import evaluate_run

    weights, names, col, cuts, margin, scenario, seed, env = task
    brain = _Recorder(weights, names, col, cuts, margin)
    return evaluate_run(brain, scenario, seed, **env), brain.seen


class EpisodePool:
    """Runs a recorded actor's episodes in ``workers`` processes (1: here).

    Use as a context manager (the workers start on entry and stop on exit)::

        with EpisodePool(2) as pool:
            outcomes = pool.run(weights, names, col, cuts, margin,
                                [("mixture", 1_000_000), ...], {"steps": 50})
    """

    def __init__(self, workers: int = 1) -> None:
        self.workers = check_workers(workers)
        self._pool: Any = None

    def __enter__(self) -> EpisodePool:
        if self.workers > 1:
            from finsim_mesa.threads import single_threaded

            with single_threaded():  # the spawned workers read the thread variables
                self._pool = multiprocessing.get_context("spawn").Pool(self.workers)
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._pool is not None:
            if kind is None:
                self._pool.close()
            else:
                self._pool.terminate()
            self._pool.join()
            self._pool = None

    def run(self, weights: dict[str, np.ndarray], names: list[str], col: int,
            cuts: Sequence[float], margin: float, runs: Sequence[tuple[str, int]],
            env: dict[str, Any]) -> list[Outcome]:
        """The outcome of each (scenario, seed) of ``runs``, in that order:
        ``(evaluate_run(actor, scenario, seed, **env), bins of column col seen)``."""
        tasks = [(weights, names, col, list(cuts), margin, sc, int(s), env) for sc, s in runs]
        if self._pool is None or len(tasks) < 2:
            return [_episode(t) for t in tasks]
        return self._pool.map(_episode, tasks, chunksize=1)
