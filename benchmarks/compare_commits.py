"""The same workloads on two versions of the package, side by side in one run.

    python benchmarks/compare_commits.py --base 2996d4f [--rounds 5] [--instructions]

Checks out ``--base`` into a temporary git worktree and times each workload
(``step()`` at several sizes, the infrastructure layer, a recommendation and a
what-if) on the base and on the working tree, alternating base/head in fresh
processes ``--rounds`` times so both see the same machine load. Prints the
median of each and the ratio head / base (< 1: head is faster). The workloads
use only the public API both versions share.

Wall time on a shared 2-core machine varies by ±10% between processes; with
``--instructions`` each workload also runs under valgrind's callgrind, which
counts the instructions of the timed part (a run with the work minus a run
without it): repeatable to a fraction of a percent whatever the load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> code run in a fresh process; it prints one number, seconds
WORKLOADS: dict[str, str] = {}
STEP = """
import os, statistics, time
WORK = os.environ.get("FINSIM_BENCH_WORK", "1") == "1"
from finsim_mesa import FinancialModel
m = FinancialModel(n_banks={n}, brain="rule_based", agent_collect_every={collect},
                   steps=10**9, rng=1{extra})
m.run_for(3)
times = []
for _ in range({steps} if WORK else 0):
    t0 = time.perf_counter(); m.step(); times.append(time.perf_counter() - t0)
print(statistics.median(times) if times else 0.0)
"""
for n, steps in ((100, 200), (1000, 100), (10_000, 20)):
    WORKLOADS[f"step, {n} banks"] = STEP.format(n=n, collect=0, steps=steps, extra="")
WORKLOADS["step, 1000 banks, agent data"] = STEP.format(n=1000, collect=1, steps=100, extra="")
for scenario in ("normal", "liquidity_crisis"):
    WORKLOADS[f"step, 1000 banks, 2 ex + 1 CCP, {scenario}"] = STEP.format(
        n=1000, collect=0, steps=60, extra=f", n_exchanges=2, n_ccps=1, scenario='{scenario}'")
DECISION = """
import os, statistics, time
WORK = os.environ.get("FINSIM_BENCH_WORK", "1") == "1"
from finsim_mesa import FinancialModel
m = FinancialModel(n_banks=100, scenario="liquidity_crisis", rng=1{extra})
m.run_for(15)
times = []
for _ in range(int(os.environ.get("FINSIM_BENCH_REPS", "3")) if WORK else 0):
    t0 = time.perf_counter(); {call}; times.append(time.perf_counter() - t0)
print(statistics.median(times) if times else 0.0)
"""
for label, extra in (("", ""), (", 2 ex + 1 CCP", ", n_exchanges=2, n_ccps=1")):
    WORKLOADS[f"recommend, 100 banks{label}"] = DECISION.format(
        extra=extra, call="m.recommend(3, steps=10, seeds=10)")
    WORKLOADS[f"what-if, 100 banks{label}"] = DECISION.format(
        extra=extra, call="m.what_if(steps=10, seeds=10, shock={'kind': 'price_crash', "
                          "'magnitude': 0.1})")


def _env(tree: Path, work: bool, valgrind: bool = False) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(tree), OPENBLAS_NUM_THREADS="1",
                OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", FINSIM_BENCH_WORK=str(int(work)),
                FINSIM_BENCH_REPS="1" if valgrind else "3")


def run(tree: Path, code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], env=_env(tree, True), cwd=tree,
                         check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def instructions(tree: Path, code: str) -> int:
    """Instructions of the workload's timed part (callgrind, with minus without)."""
    counts = []
    for work in (True, False):
        out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                              sys.executable, "-c", code], env=_env(tree, work, True), cwd=tree,
                             check=True, capture_output=True, text=True)
        line = next(x for x in out.stderr.splitlines() if "Collected :" in x)
        counts.append(int(line.split(":")[-1].strip()))
    return counts[0] - counts[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision to compare with")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", nargs="*", help="substrings of workload names to run")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--instructions", action="store_true",
                    help="also count instructions with valgrind (slow, repeatable)")
    args = ap.parse_args()
    names = [n for n in WORKLOADS if not args.only or any(o in n for o in args.only)]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(base),
                        args.base], check=True)
        try:
            rows, counts = {}, {}
            for name in names:
                b, h = [], []
                for _ in range(args.rounds):
                    b.append(run(base, WORKLOADS[name]))
                    h.append(run(ROOT, WORKLOADS[name]))
                rows[name] = (statistics.median(b), statistics.median(h))
                if args.instructions:
                    counts[name] = (instructions(base, WORKLOADS[name]),
                                    instructions(ROOT, WORKLOADS[name]))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                           check=False)
    load = os.getloadavg()[0]
    print(f"base {args.base} vs working tree, medians of {args.rounds} alternating rounds, "
          f"load average {load:.2f}")
    extra = f" {'base Minstr':>11} {'head Minstr':>11} {'head/base':>9}" if counts else ""
    print(f"{'workload':<48} {'base ms':>9} {'head ms':>9} {'head/base':>9}{extra}")
    for name, (b, h) in rows.items():
        line = f"{name:<48} {b * 1e3:>9.2f} {h * 1e3:>9.2f} {h / b:>9.3f}"
        if name in counts:
            ib, ih = counts[name]
            line += f" {ib / 1e6:>11.1f} {ih / 1e6:>11.1f} {ih / ib:>9.3f}"
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {k: {"base_s": b, "head_s": h} | ({"base_instructions": counts[k][0],
                                                "head_instructions": counts[k][1]}
                                               if k in counts else {})
             for k, (b, h) in rows.items()}, indent=1))


if __name__ == "__main__":
    main()
