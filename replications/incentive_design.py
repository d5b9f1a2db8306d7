"""Incentive design: does charging banks for systemic risk make learned banks safer?

Two families of learner, chosen with ``--family``:

``search`` (default): for each λ the searched state-reading policy family
(:mod:`finsim_mesa.learning.incentive`: the actor piecewise constant in
``market_stress``, block CEM on the mixture, the same training seeds, budget and
search seed for every λ) finds the best stance that every bank plays, for the
reward *with* the price. Each policy is then evaluated on the same test seeds
with the price off, so the score column is the banks' own value (what the price
costs them):

    python replications/incentive_design.py --family search --budget 12,6,12 --seeds 100 \
        --out lambda_search

``mappo``: for each system-risk weight λ (``reward_system_risk_weight``: every bank's
reward loses λ × the systemic-risk index each step) one MAPPO policy is trained
with the same budget, the same seed and the same settings, on the mixture of
conditions, with *selfish* rewards (``team_reward = 0``: each bank maximises its
own reward — the setting in which a regulator's price on systemic risk is the
only thing that can align a bank with the system). Each policy is then evaluated
on the same test seeds (10000...), and the outcomes that do not depend on λ are
compared: default rate, DebtRank total distress, final equity (survivors' equity
/ initial equity), with 95% t-intervals.

    python replications/incentive_design.py --family mappo --episodes 160 --seeds 100 \
        --out lambda_out

prints the table and writes ``lambda_table.csv`` and ``lambda.png`` to ``--out``.
Training runs in ``--processes`` parallel processes (one torch thread each).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from finsim_mesa.files import atomic_write, write_text_atomic

LAMBDAS = (0.0, 0.5, 1.0, 2.0, 4.0)


def train_one(lam: float, episodes: int, out: Path, seed: int) -> str:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from finsim_mesa.conditions import MIXTURE
    from finsim_mesa.learning.run import train_policy

    folder = out / f"lambda_{lam:g}"
    train_policy(episodes=episodes, seed=seed, scenarios=["mixture"], out_dir=folder,
                 eval_every=episodes, eval_seeds=(1001, 1002, 1003, 1004), progress=False,
                 n_banks=30, steps=50, reward_system_risk_weight=lam,
                 trainer_config={"team_reward": 0.0, "conditions": MIXTURE.to_dict(),
                                 "advantage_norm": "episode", "episodes_per_update": 8,
                                 "ent_start": 0.0, "ent_end": 0.0},
                 mappo_config={"lr": 1e-3, "init_concentration": 20.0, "normalize_obs": True,
                               "init_action_mean": [0.02, 0.5, 0.1, 0.02], "gamma": 0.95})
    return str(folder / "final")


def evaluate_one(lam: float, folder: str, seeds: int) -> list[dict]:
    from finsim_mesa.evaluation import evaluate_run
    from finsim_mesa.learning.policy_brain import PolicyBrain

    brain = PolicyBrain.load(folder)
    rows = []
    for seed in range(10_000, 10_000 + seeds):
        # price off, as for the searched family: the score is the banks' own value
        r = evaluate_run(brain, "mixture", seed, n_banks=30, steps=50,
                         reward_system_risk_weight=0.0)
        rows.append({"lambda": lam, "seed": seed, **r})
    return rows


def search_one(lam: float, budget: tuple[int, int, int], out: Path, seed: int) -> str:
    from finsim_mesa.learning.incentive import search_lambda
    from finsim_mesa.threads import single_threaded

    folder = out / f"lambda_{lam:g}"
    per, iterations, population = budget
    with single_threaded():
        r = search_lambda(lam, folder, per, iterations, population, seed=seed)
    print(f"λ = {lam:g}: {r['wall_seconds']:.0f} s, actions by band "
          f"{[[round(v, 3) for v in a] for a in r['actions']]}", flush=True)
    return str(folder)


def evaluate_search(lam: float, folder: str, seeds: int) -> list[dict]:
    from finsim_mesa.learning.incentive import evaluate_lambda
    from finsim_mesa.threads import single_threaded

    with single_threaded():
        return evaluate_lambda({lam: folder}, range(10_000, 10_000 + seeds)).to_dict("records")


def write_outputs(rows: list[dict], out: Path, title: str, meta: dict, t0: float) -> None:
    """Write ``lambda_runs.csv``, ``lambda_table.csv`` (means and paired
    differences to λ = 0, :func:`finsim_mesa.learning.incentive.lambda_table`),
    ``lambda.png`` and ``lambda_meta.json`` to ``out``, atomically; print the table."""
    import pandas as pd

    from finsim_mesa.learning.incentive import lambda_table
    from finsim_mesa.viz.plots import new_figure

    runs = pd.DataFrame(rows)
    atomic_write(out / "lambda_runs.csv", lambda tmp: runs.to_csv(tmp, index=False))
    table = lambda_table(runs)
    atomic_write(out / "lambda_table.csv", lambda tmp: table.to_csv(tmp, index=False))
    with pd.option_context("display.width", 200, "display.float_format", "{:.4f}".format):
        print(table.to_string(index=False))
    fig, axes = new_figure((16, 3.6), 1, 4)
    labels = {"default_rate": "default rate (share of banks)",
              "debtrank": "DebtRank (share of value lost)",
              "final_equity": "final equity / initial",
              "episode_reward": "banks' own score (price off)"}
    for ax, (metric, label) in zip(axes, labels.items(), strict=True):
        t = table[table.metric == metric]
        ax.errorbar(t["lambda"], t["mean"], yerr=[t["mean"] - t["ci95_low"],
                                                  t["ci95_high"] - t["mean"]],
                    marker="o", capsize=3)
        ax.set_xlabel("system-risk weight λ")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(out / "lambda.png", lambda tmp: fig.savefig(tmp, dpi=110))
    write_text_atomic(out / "lambda_meta.json", json.dumps(
        meta | {"total_seconds": time.perf_counter() - t0}))
    print(f"wrote {out}/lambda_table.csv and lambda.png ({time.perf_counter() - t0:.0f} s)")


def main_search(args: argparse.Namespace) -> int:

    from finsim_mesa.learning.incentive import check_lambda_free

    budget, out = args.budget, Path(args.out)
    budget_text = ",".join(map(str, budget))
    check_lambda_free()
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.processes) as pool:
        folders = dict(zip(LAMBDAS, pool.map(search_one, LAMBDAS, [budget] * 5, [out] * 5,
                                             [args.seed] * 5), strict=True))
        t1 = time.perf_counter()
        print(f"searched {len(LAMBDAS)} policies in {t1 - t0:.0f} s", flush=True)
        rows = [r for part in pool.map(evaluate_search, LAMBDAS,
                                       [folders[x] for x in LAMBDAS], [args.seeds] * 5)
                for r in part]
    write_outputs(rows, out, f"one searched policy per λ (budget {budget_text} each), "
                  f"{args.seeds} mixture test seeds from 10000; 95% CI",
                  vars(args) | {"budget": budget_text, "search_seconds": t1 - t0}, t0)
    return 0


def parse_budget(text: str) -> tuple[int, int, int]:
    """``"12,6,12"`` -> (12, 6, 12): seeds per scenario, CEM rounds, population."""
    try:
        budget = tuple(int(x) for x in text.split(","))
    except ValueError:
        budget = ()
    if len(budget) != 3 or min(budget[:2]) < 1 or budget[2] < 2:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give SEEDS_PER_SCENARIO,ITERATIONS,POPULATION as whole numbers "
            "(>= 1, >= 1, >= 2), e.g. 12,6,12")
    return budget  # type: ignore[return-value]


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse bad numbers and an --out that cannot be written before any work starts
    (argparse's usage message and exit status 2, no traceback)."""
    from finsim_mesa.errors import ConfigError
    from finsim_mesa.files import check_writable

    for name in ("seeds", "processes", "episodes"):
        if getattr(args, name) < 1:
            p.error(f"--{name} {getattr(args, name)}: give a whole number >= 1")
    if args.seed < 0:
        p.error(f"--seed {args.seed}: give a whole number >= 0")
    try:
        check_writable(Path(args.out) / "lambda_table.csv", "--out")
    except ConfigError as e:
        p.error(str(e))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", choices=("search", "mappo"), default="search")
    p.add_argument("--budget", default="12,6,12", type=parse_budget,
                   help="search: SEEDS_PER_SCENARIO,ITERATIONS,POPULATION per λ")
    p.add_argument("--episodes", type=int, default=160, help="mappo: episodes per λ")
    p.add_argument("--seeds", type=int, default=100, help="test seeds per policy")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--out", default="lambda_out")
    args = p.parse_args()
    check_args(p, args)
    if args.family == "search":
        return main_search(args)
    out = Path(args.out)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.processes) as pool:
        folders = dict(zip(LAMBDAS, pool.map(train_one, LAMBDAS, [args.episodes] * 5,
                                             [out] * 5, [args.seed] * 5), strict=True))
        print(f"trained {len(LAMBDAS)} policies in {time.perf_counter() - t0:.0f} s", flush=True)
        rows = [r for part in pool.map(evaluate_one, LAMBDAS, [folders[x] for x in LAMBDAS],
                                       [args.seeds] * 5) for r in part]
    write_outputs(rows, out, f"one MAPPO policy per λ ({args.episodes} episodes each), "
                  f"{args.seeds} mixture test seeds from 10000; 95% CI", vars(args), t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
