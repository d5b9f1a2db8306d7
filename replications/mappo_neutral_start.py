"""Does MAPPO learn the state dependence from a neutral start? (issue 14, item 3)

    python replications/mappo_neutral_start.py [--variants 1,2,3,4,5] [--episodes 1600] [--seed 7]

The shipped policy reads ``market_stress`` in four bands (cut at 0.15, 0.4,
0.65: the scenarios' stress levels) and was found by a band-by-band search
(CEM with common random numbers). Here MAPPO gets the same chance: its actor
starts as the *neutral* band actor — the same exact band features
(:func:`finsim_mesa.learning.evolve.binned_actor`), playing the searched best
constant in every band — so learning only has to move each band's action. Each
variant trains on the mixture (team reward 1, 30 banks per default, 50 steps,
seed 7) and its final actor is paired by seed against the neutral start on the
mixture's selection seeds 22000-22059 (never used for training). Printed: the
paired difference with its 95% interval and each band's mean action.

Variants (all from the neutral actor, lr 3e-4 unless named):

1. the trainer's defaults otherwise (entropy bonus 0.01 -> 0, per-episode
   advantage standardisation);
2. no entropy bonus;
3. no entropy bonus, lr 3e-3;
4. no entropy bonus, exploration noise *shared by all banks in an episode*: one
   uniform u per action and episode, each bank plays its own Beta's inverse CDF
   at u (so a band's banks play one perturbed stance, whose effect on the team
   score is the whole population's, not 1/n of it);
5. as 4, advantages standardised over the batch (the per-episode form removes
   each episode's mean advantage: exactly the signal shared noise creates);
6. common random numbers: the update's episodes come in pairs run on one episode
   draw (seed and conditions), the shared noise mirrored (u in one, 1 - u in
   the other); a step's advantage is the episode's team return-to-go minus the
   pair's mean (``TrainerConfig(pairing="antithetic")``; no per-episode
   centering, then the batch standardisation of every PPO update);
7. pairs on one draw with each bank's own noise (``pairing="common"``): what
   the common draw alone buys;
8. as 6, lr 3e-3;
9. as 8, 16 episodes (8 pairs) per update;
10. as 8, advantages not standardised (``MAPPOConfig(standardize_advantages=False)``);
11. as 7, lr 3e-3;
12. as 5, lr 3e-3 (shared noise, no pairs);
13. as 8, but each episode of a pair draws its own shared u (pairs on one draw,
    shared noise, not mirrored: ``pairing="shared"``).

Variants 4-5 draw each episode's u from the trainer's generator before the
episode's seed (so their training episodes are not those of 1-3) and act with
``MAPPO.act(obs, u=u)``; 6-13 draw a pair's u, then its seed and conditions
(7 and 11 draw no u).
About 4.5-5.5 min per variant on one free core (load average about 2 on
the 2-core machine; up to 9 min under heavier load).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from finsim_mesa.agents.actor import load_actor_folder
from finsim_mesa.conditions import MIXTURE
from finsim_mesa.evaluation import BEST_CONSTANT, evaluate_run, run_params
from finsim_mesa.intervals import ci95
from finsim_mesa.model import FinancialModel

SELECTION_SEEDS = range(22000, 22060)
SCENARIOS = ("normal", "liquidity_crisis", "asset_crash", "systemic")
VARIANTS = {
    1: ("defaults (entropy 0.01 -> 0)", {}, {}, None),
    2: ("no entropy", {"ent_start": 0.0, "ent_end": 0.0}, {}, None),
    3: ("no entropy, lr 3e-3", {"ent_start": 0.0, "ent_end": 0.0}, {"lr": 3e-3}, None),
    4: ("shared noise per episode", {"ent_start": 0.0, "ent_end": 0.0}, {}, "episode"),
    5: ("shared noise, batch advantages",
        {"ent_start": 0.0, "ent_end": 0.0, "advantage_norm": "batch"}, {}, "episode"),
    6: ("antithetic pairs, pair-mean advantage",
        {"ent_start": 0.0, "ent_end": 0.0, "pairing": "antithetic"}, {}, None),
    7: ("same-draw pairs, own noise, pair-mean advantage",
        {"ent_start": 0.0, "ent_end": 0.0, "pairing": "common"}, {}, None),
    8: ("as 6, lr 3e-3",
        {"ent_start": 0.0, "ent_end": 0.0, "pairing": "antithetic"}, {"lr": 3e-3}, None),
    9: ("as 8, 16 episodes (8 pairs) per update",
        {"ent_start": 0.0, "ent_end": 0.0, "pairing": "antithetic",
         "episodes_per_update": 16}, {"lr": 3e-3}, None),
    10: ("as 8, advantages not standardised",
         {"ent_start": 0.0, "ent_end": 0.0, "pairing": "antithetic"},
         {"lr": 3e-3, "standardize_advantages": False}, None),
    11: ("as 7, lr 3e-3", {"ent_start": 0.0, "ent_end": 0.0, "pairing": "common"},
         {"lr": 3e-3}, None),
    12: ("as 5, lr 3e-3", {"ent_start": 0.0, "ent_end": 0.0, "advantage_norm": "batch"},
         {"lr": 3e-3}, "episode"),
    13: ("as 8, each episode of a pair its own shared u (not mirrored)",
         {"ent_start": 0.0, "ent_end": 0.0, "pairing": "shared"}, {"lr": 3e-3}, None),
}


def neutral_actor(folder: Path, env: dict) -> Path:
    """Write the neutral band actor (the best constant in every band) to ``folder``."""
    from finsim_mesa.learning.evolve import (
        EvolveResult,
        _obs_fields,
        binned_actor,
        save_actor,
        stress_cuts,
    )

    cuts = stress_cuts(SCENARIOS)
    names = _obs_fields(env)
    actions = np.tile(BEST_CONSTANT, (len(cuts) + 1, 1))
    weights = binned_actor(actions, cuts, names.index("market_stress"), len(names))
    save_actor(EvolveResult("market_stress", cuts, actions, weights, names, 0.0, [], 0, 0.0),
               folder, "neutral band actor: the best constant in every band", env)
    return folder


@contextlib.contextmanager
def shared_noise():
    """For the duration: each of MAPPO's training episodes draws one u from the
    trainer's generator (before the episode's seed) and every bank acts at it."""
    from finsim_mesa.learning import trainer

    collect = trainer.Trainer.collect_episode

    def collect_episode(self, draw=None, u=None):
        return collect(self, draw, self.rng.random(4) if u is None else u)

    trainer.Trainer.collect_episode = collect_episode
    try:
        yield
    finally:
        trainer.Trainer.collect_episode = collect


def train_variant(variant: int, start: Path, out: Path, episodes: int, seed: int = 7,
                  **env) -> Path:
    """Train ``variant`` (:data:`VARIANTS`) from the actor in ``start``; returns
    the final actor's folder."""
    from finsim_mesa.learning import run

    _, tcfg, mcfg, noise = VARIANTS[variant]
    with shared_noise() if noise else contextlib.nullcontext():
        summary = run.train_policy(
            episodes=episodes, seed=seed, scenarios=["mixture"], out_dir=out,
            eval_every=max(episodes // 5, 1), eval_seeds=tuple(range(1001, 1011)),
            progress=False, init_actor=start,
            trainer_config={"team_reward": 1.0, "advantage_norm": "episode",
                            "episodes_per_update": 8, "conditions": MIXTURE.to_dict()} | tcfg,
            mappo_config={"lr": 3e-4, "hidden": 64} | mcfg, **env)
    return Path(summary["final"])


def band_means(brain, seeds: range, **env) -> dict[str, np.ndarray]:
    """Mean action of the banks that decide (in business at the step's start), per
    scenario (keys the scenario names) and per ``market_stress`` band of the
    deciding row (keys ``band0`` … ``band3``, cut at 0.15, 0.4, 0.65), over
    ``seeds``' runs in each scenario; each value shape (4,)."""
    from finsim_mesa.learning.evolve import stress_cuts
    from finsim_mesa.observation import OBS

    col = OBS["market_stress"]
    cuts = stress_cuts(SCENARIOS)  # the band actor's own cuts
    out, rows, stress = {}, [], []
    for sc in SCENARIOS:
        acts = []
        for s in seeds:
            m = FinancialModel(brain=brain, rng=s, agent_collect_every=0,
                               **run_params(sc, s, **env))
            while m.running:
                acting = m.ledger.active.copy()  # the banks that decide this step
                m.step()
                acts.append(m.decisions.actions[acting])
                stress.append(m.decisions.observations[acting, col])
        out[sc] = np.concatenate(acts).mean(axis=0)
        rows += acts
    band = np.digitize(np.concatenate(stress), cuts)
    rows = np.concatenate(rows)
    for b in range(len(cuts) + 1):
        out[f"band{b}"] = rows[band == b].mean(axis=0) if (band == b).any() else np.full(4, np.nan)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="1,2,3,4,5")
    ap.add_argument("--episodes", type=int, default=1600)
    ap.add_argument("--banks", type=int, default=30)
    ap.add_argument("--seed", type=int, default=7, help="the training's seed (default 7)")
    ap.add_argument("--out", help="folder for the runs (default: a temporary one)")
    args = ap.parse_args()
    try:
        variants = [int(x) for x in args.variants.split(",")]
    except ValueError:
        variants = []
    if not variants or not set(variants) <= set(VARIANTS):
        ap.error(f"--variants {args.variants!r}: give numbers from {sorted(VARIANTS)}, "
                 "separated by commas")
    if args.episodes < 8 or args.banks < 2:
        ap.error("--episodes must be at least 8 (one update) and --banks at least 2")
    env = {"n_banks": args.banks, "steps": 50}
    root = Path(args.out or tempfile.mkdtemp(prefix="mappo-neutral-"))
    start = neutral_actor(root / "neutral", env)
    base = [evaluate_run(load_actor_folder(start), "mixture", s, **env)["episode_reward"]
            for s in SELECTION_SEEDS]
    print(f"neutral start: {np.mean(base):.3f} on the mixture, seeds 22000-22059")
    for v in variants:
        t0 = time.perf_counter()
        final = train_variant(v, start, root / f"variant{v}", args.episodes, args.seed, **env)
        brain = load_actor_folder(final)
        got = [evaluate_run(brain, "mixture", s, **env)["episode_reward"]
               for s in SELECTION_SEEDS]
        mean, _, low, high = ci95(np.subtract(got, base))
        bands = {k: np.round(a, 3).tolist() for k, a in band_means(brain, range(22000, 22005),
                                                                     **env).items()}
        print(json.dumps({"variant": v, "what": VARIANTS[v][0], "seed": args.seed,
                          "minus_neutral": [round(mean, 3), round(low, 3), round(high, 3)],
                          "share_better": float(np.mean(np.subtract(got, base) > 0)),
                          "train_minutes": round((time.perf_counter() - t0) / 60, 1),
                          "mean_action_by_scenario_and_band": bands}))


if __name__ == "__main__":
    main()
