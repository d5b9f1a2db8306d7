"""Multi-agent reinforcement learning for finsim-mesa (needs the ``learn`` extra).

* :mod:`.env` — a PettingZoo ``ParallelEnv`` over :class:`FinancialModel`;
* :mod:`.mappo` — shared-parameter Beta actor, centralised critic on a compressed
  global state, GAE, clipped surrogate, value normalisation;
* :mod:`.checkpoint` — versioned checkpoints without pickled code;
* :mod:`.registry` — :class:`ModelRegistry`: versions, promotion, deletion, loading;
* :mod:`.policy_brain` — a trained policy as a brain.

Torch is imported here, never by ``import finsim_mesa``.
"""
