"""Helpers shared by tests (importable as ``support``: pytest puts tests/ on the path)."""

from __future__ import annotations

import numpy as np


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


# attributes that do not change as the model runs (or are Mesa's, or output)
STATIC = {"config", "graph", "node_labels", "network", "grid", "banks", "brains",
          "shock_engine", "scenario_spec", "datacollector", "collect_data",
          "_user_step", "step", "_seed", "_steps", "steps", "time", "_time", "_agents",
          "_agents_by_type", "_all_agents", "agent_id_counter", "data_registry",
          "_event_list", "_default_schedule", "_simulator", "_rng", "rng", "random",
          "_random", "_observables", "_scenario", "_signal", "experimental",
          "_event_generators", "_batch_context", "_suppress", "subscribers"}  # Mesa 3.5


def model_state(m):
    keys = set(vars(m)) - STATIC
    out = {k: state_of(getattr(m, k)) for k in sorted(keys)}
    out["rng"] = repr(m.rng.bit_generator.state)
    out["random"] = repr(m.random.getstate())
    for agent in [*m.exchanges, *m.ccps]:
        out[f"agent{agent.unique_id}"] = state_of({k: v for k, v in vars(agent).items()
                                                   if k not in ("model", "pos", "unique_id")})
    return out
