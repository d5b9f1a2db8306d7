"""Issue 15's targets beside the measured figures, in one table.

    python benchmarks/bench_issue15.py [--base main] [--no-base] [--big] [--rounds 1] [--only ...]

Each workload runs in a fresh process (``PYTHONPATH`` = the tree measured),
first on this working tree and then, for the ratio, on ``--base`` (exported
with ``git archive`` into a temporary folder, nothing checked out), alternating
``--rounds`` times; the table gives the medians. Step workloads run with
``OPENBLAS_NUM_THREADS=1`` (one thread, as the issue's 100,000-bank target
says); the sweep rows do not, so that the base shows what the thread pinning
of the sweep workers changes. ``--big`` adds ``step()`` at 100,000 banks (a
minute more; peak memory from ``ru_maxrss``). The load average (1 minute) is
printed before and after: on a shared machine, quote figures taken when it is
lowest; the process CPU time printed beside each wall time is what a single-
threaded workload would take on a quiet machine, give or take cache effects.
MAPPO collection runs ``bench_learning.measure`` (100 banks, 50 steps, attention
critic; skipped where torch is not installed).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent

STEP = """
import statistics, time
from finsim_mesa import FinancialModel
m = FinancialModel(n_banks={n}, brain="rule_based", agent_collect_every={collect},
                   steps=10**9, rng=1{extra})
m.run_for(3)
times, cpu = [], []
for _ in range({steps}):
    t0, c0 = time.perf_counter(), time.process_time(); m.step()
    times.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
import resource
print(statistics.median(times), statistics.median(cpu),
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
"""

# MAPPO collection: agent-steps per second (wall), CPU seconds of the collection, 0
MAPPO = """
import sys, time, torch
sys.path.insert(0, {here!r})
torch.set_num_threads(1)
from bench_learning import measure
t0 = time.process_time()
collect, _update, _params = measure(100, {episodes}, 50, True)
print(collect, time.process_time() - t0, 0)
"""

# agent data on and off in turns on one model (the same states, one process):
# wall median with, CPU median with, ratio with / without
AGENTS = """
import statistics, time
from finsim_mesa import FinancialModel
m = FinancialModel(n_banks={n}, brain="rule_based", agent_collect_every=1, steps=10**9, rng=1)
m.run_for(3)
wall, cpu = {{0: [], 1: []}}, {{0: [], 1: []}}
for i in range(2 * {steps}):
    k = i % 2
    m.datacollector.agent_every = k
    t0, c0 = time.perf_counter(), time.process_time(); m.step()
    wall[k].append(time.perf_counter() - t0); cpu[k].append(time.process_time() - c0)
med = {{k: statistics.median(v) for k, v in wall.items()}}
print(med[1], statistics.median(cpu[1]), med[1] / med[0])
"""

CLEAR = """
import sys, statistics, time
sys.path.insert(0, {here!r})
from bench_clearing import hard, system
from finsim_mesa.clearing import eisenberg_noe
L, e, ext = {net}
eisenberg_noe(L, e, ext)
times, cpu = [], []
for _ in range(5):
    t0, c0 = time.perf_counter(), time.process_time(); r = eisenberg_noe(L, e, ext)
    times.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
print(statistics.median(times), statistics.median(cpu), r.n_defaults / L.shape[0])
"""

# workers > 1: forked processes (a tree without the option runs one process);
# None: the default call, whatever the tree's default is; CPU counts the reaped
# workers too
RECOMMEND = """
import os, statistics, time
from finsim_mesa import FinancialModel
m = FinancialModel(n_banks=100, scenario="liquidity_crisis", rng=1{extra})
m.run_for(15)
def recommend():
    if {workers!r} is None:  # the default call (workers="auto" since sweep41)
        return m.recommend(3, steps=10, seeds=10)
    try:
        return m.recommend(3, steps=10, seeds=10, workers={workers})
    except TypeError:  # a tree from before the option
        return m.recommend(3, steps=10, seeds=10)
def cpu_now():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
recommend()
times, cpu = [], []
for _ in range(3):
    t0, c0 = time.perf_counter(), cpu_now(); recommend()
    times.append(time.perf_counter() - t0); cpu.append(cpu_now() - c0)
print(statistics.median(times), statistics.median(cpu), 0)
"""

SWEEP = """
import time
from finsim_mesa.sweeps import run_sweep
grid = {{"scenario": ["normal", "liquidity_crisis", "asset_crash", "systemic"],
        "n_banks": [100]}}
import resource
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(x.ru_utime + x.ru_stime for x in r)
t0, c0 = time.perf_counter(), cpu()
run_sweep(grid, seeds={seeds}, steps=100, progress=False, {kw})
print(time.perf_counter() - t0, cpu() - c0, 0)
"""

# the same sweep on a Dask cluster that is already running (started, and each
# of its workers warmed by one tiny sweep run on it, before the clock starts): what a sweep
# costs a user who keeps a cluster; the third figure is the cluster's start-up
SWEEP_RUNNING = """
import time
from dask.distributed import Client, LocalCluster
from finsim_mesa.sweeps import run_sweep
from finsim_mesa.threads import single_threaded
grid = {{"scenario": ["normal", "liquidity_crisis", "asset_crash", "systemic"],
        "n_banks": [100]}}
if __name__ == "__main__":
    s0 = time.perf_counter()
    with single_threaded():
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    def warm():  # every worker imports the package and builds a model once
        from finsim_mesa.sweeps import run_sweep
        run_sweep({{"n_banks": [10]}}, seeds=1, steps=1, progress=False)
    with Client(cluster) as client:
        client.run(warm)
    start = time.perf_counter() - s0
    t0 = time.perf_counter()
    run_sweep(grid, seeds={seeds}, steps=100, progress=False,
              scheduler=cluster.scheduler_address)
    wall = time.perf_counter() - t0
    cluster.close()
    print(wall, float("nan"), start)  # the workers' CPU is not this process's to count
"""

# (row label, workload name(s), target text, how the figure is formed)
STEPS = {30: 300, 100: 300, 1000: 100, 10_000: 20}


def workloads(big: bool, seeds: int) -> dict[str, tuple[str, bool]]:
    """name -> (code, pinned to one BLAS thread by the environment)."""
    w: dict[str, tuple[str, bool]] = {}
    w["EN hard 77%"] = (CLEAR.format(here=str(HERE), net="hard(100_000, 0.13)"), True)
    w["EN bench 73%"] = (CLEAR.format(here=str(HERE), net="system(100_000, 0.7, 0.01)"), True)
    w["EN bench 36%"] = (CLEAR.format(here=str(HERE), net="system(100_000, 0.3, 1.0)"), True)
    for n, steps in STEPS.items():
        w[f"step {n}"] = (STEP.format(n=n, collect=0, steps=steps, extra=""), True)
    for n in (1000, 10_000):
        w[f"step {n} agents"] = (AGENTS.format(n=n, steps=STEPS[n]), True)
    w["step 1000 infra"] = (STEP.format(n=1000, collect=0, steps=100,
                                        extra=", n_exchanges=2, n_ccps=1"), True)
    if big:
        w["step 100000"] = (STEP.format(n=100_000, collect=0, steps=8, extra=""), True)
    if importlib.util.find_spec("torch") is not None:
        w["mappo"] = (MAPPO.format(here=str(HERE), episodes=8), True)
    for workers, label in ((1, ""), (2, " 2w"), (None, " default")):
        w["recommend" + label] = (RECOMMEND.format(extra="", workers=workers), True)
        w["recommend infra" + label] = (RECOMMEND.format(
            extra=", n_exchanges=2, n_ccps=1", workers=workers), True)
    for label, kw in (("sweep 1", "processes=1"), ("sweep 2", "processes=2"),
                      ("sweep dask", "workers=2")):
        w[label] = (SWEEP.format(seeds=seeds, kw=kw), False)
    if importlib.util.find_spec("distributed") is not None:
        w["sweep dask running"] = (SWEEP_RUNNING.format(seeds=seeds), False)
    return w


def run(tree: Path, code: str, pinned: bool) -> tuple[float, float, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    if pinned:
        env |= dict(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    else:
        for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.pop(k, None)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tree, check=True,
                         capture_output=True, text=True)
    wall, cpu, extra = out.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu), float(extra)


def export(rev: str, into: Path) -> Path:
    """The package at ``rev`` in ``into`` (git archive: no worktree, no checkout)."""
    arch = into / "base.tar"
    with arch.open("wb") as f:
        subprocess.run(["git", "-C", str(ROOT), "archive", rev, "finsim_mesa"], stdout=f,
                       check=True)
    with tarfile.open(arch) as t:
        t.extractall(into, filter="data")
    return into


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="main", help="git revision for the ratio column")
    ap.add_argument("--no-base", action="store_true", help="measure this tree only")
    ap.add_argument("--big", action="store_true", help="add step() at 100,000 banks")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=5, help="seeds per scenario in the sweeps")
    ap.add_argument("--only", nargs="*", help="substrings of workload names to run")
    args = ap.parse_args()
    load0 = os.getloadavg()
    work = {k: v for k, v in workloads(args.big, args.seeds).items()
            if not args.only or any(o in k for o in args.only)}
    head: dict[str, list] = {k: [] for k in work}
    base: dict[str, list] = {k: [] for k in work}
    with tempfile.TemporaryDirectory() as tmp:
        tree = None if args.no_base else export(args.base, Path(tmp))
        for _ in range(args.rounds):
            for name, (code, pinned) in work.items():
                head[name].append(run(ROOT, code, pinned))
                if tree is not None:
                    base[name].append(run(tree, code, pinned))
    med = {k: statistics.median(x[0] for x in v) for k, v in head.items() if v}
    cpu = {k: statistics.median(x[1] for x in v) for k, v in head.items() if v}
    bmed = {k: statistics.median(x[0] for x in v) for k, v in base.items() if v}
    bcpu = {k: statistics.median(x[1] for x in v) for k, v in base.items() if v}
    extra = {k: v[-1][2] for k, v in head.items() if v}

    def row(measure: str, target: str, value: str, ok: bool | None, ratio: str) -> None:
        flag = "" if ok is None else ("yes" if ok else "no")
        print(f"| {measure} | {target} | {value} | {flag} | {ratio} |")

    def ratio(name: str) -> str:
        if name not in bmed or name not in med:
            return "-"
        return f"{med[name] / bmed[name]:.2f} (CPU {cpu[name] / bcpu[name]:.2f})"

    def fmt_ms(name: str) -> str:
        return f"{med[name] * 1e3:.2f} ms (CPU {cpu[name] * 1e3:.2f})"

    print(f"issue 15 targets; medians of {args.rounds} rounds, fresh process each; load "
          f"average before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, after "
          "{:.2f} {:.2f} {:.2f}; ratio = this tree / {}".format(
              *os.getloadavg(), "-" if args.no_base else args.base))
    print("| measure | target | measured (wall; CPU) | met (wall) | ratio wall (CPU) |")
    print("|---|---|---|---|---|")
    if "EN hard 77%" in med:
        row(f"exact EN, 100k, hard (no external debt, {extra['EN hard 77%']:.0%} default)",
            "< 50 ms", fmt_ms("EN hard 77%"), med["EN hard 77%"] < 0.05, ratio("EN hard 77%"))
    for k in ("EN bench 73%", "EN bench 36%"):
        if k in med:
            row(f"exact EN, 100k, benchmark network ({extra[k]:.0%} default)", "< 20 ms",
                fmt_ms(k), med[k] < 0.02, ratio(k))
    for n, target in ((30, 0.4e-3), (100, 0.5e-3), (1000, 1.0e-3), (10_000, 6e-3)):
        k = f"step {n}"
        if k in med:
            row(f"step(), {n:,} banks", f"<= {target * 1e3:g} ms",
                f"{fmt_ms(k)}, {1 / med[k]:,.0f}/s", med[k] <= target, ratio(k))
    if "step 100000" in med:
        k = "step 100000"
        row("step(), 100,000 banks, one BLAS thread", "<= 50 ms, < 1 GB",
            f"{fmt_ms(k)}, peak {extra[k]:.2f} GB", med[k] <= 0.05 and extra[k] < 1,
            ratio(k))
    for n in (1000, 10_000):
        a = f"step {n} agents"
        if a in med:  # with / without, in turns on one model (see AGENTS)
            r = statistics.median(x[2] for x in head[a])
            base_r = (f"{statistics.median(x[2] for x in base[a]):.2f}x on base"
                      if base[a] else "-")
            row(f"agent data every step, {n:,} banks (x model-only, same model in turns)",
                "<= 1.2x", f"{r:.2f}x", r <= 1.2, base_r)
    if "step 1000 infra" in med and "step 1000" in med:
        r = med["step 1000 infra"] / med["step 1000"]
        base_r = (f"{bmed['step 1000 infra'] / bmed['step 1000']:.2f}x on base"
                  if "step 1000 infra" in bmed and "step 1000" in bmed else "-")
        r_cpu = cpu["step 1000 infra"] / cpu["step 1000"]
        row("2 exchanges + 1 CCP, 1,000 banks (x layer off)", "<= 1.3x",
            f"{r:.2f}x (CPU {r_cpu:.2f}x)", r <= 1.3, base_r)
    for k, label in (("recommend", ""), ("recommend infra", " (2 + 1)"),
                     ("recommend 2w", ", 2 forked workers"),
                     ("recommend infra 2w", " (2 + 1), 2 forked workers"),
                     ("recommend default", ", the default call (auto; base: 1)"),
                     ("recommend infra default", " (2 + 1), the default call")):
        if k in med:
            row(f"recommendation, 100 banks, 10 x 10 x 10{label}", "< 0.5 s",
                f"{med[k]:.2f} s (CPU {cpu[k]:.2f})", med[k] < 0.5, ratio(k))
    if "sweep 1" in med:
        for k, target, goal in (("sweep 2", ">= 90%", 0.9), ("sweep dask", ">= 85%", 0.85),
                                ("sweep dask running", ">= 85%", 0.85)):
            if k in med:
                eff = med["sweep 1"] / med[k] / 2
                # CPU: the work done (this process and its workers, reaped), which
                # shows the overhead of going parallel even when the cores are busy
                eff_cpu = cpu["sweep 1"] / cpu[k]
                beff = (f"{bmed['sweep 1'] / bmed[k] / 2:.0%} on base"
                        if k in bmed and "sweep 1" in bmed else "-")
                who = {"sweep 2": "2 processes", "sweep dask": "2 Dask workers (local "
                       "cluster started by the sweep)", "sweep dask running": "2 Dask "
                       "workers (a running cluster)"}[k]
                extra_text = (f"; the cluster's start-up: {extra[k]:.1f} s"
                         if k == "sweep dask running" else "")
                cpu_text = "" if eff_cpu != eff_cpu else f" (CPU {eff_cpu:.0%})"  # NaN: n/a
                row(f"sweep efficiency, {who} (4 x {args.seeds} runs, 1 process "
                    f"{med['sweep 1']:.1f} s)", target,
                    f"{eff:.0%}{cpu_text}{extra_text}", eff >= goal, beff)
    if "mappo" in med:
        row("MAPPO collection, 100 banks (attention critic)", ">= 60k agent-steps/s",
            f"{med['mappo'] / 1e3:.1f}k agent-steps/s", med["mappo"] >= 60_000,
            f"{med['mappo'] / bmed['mappo']:.2f} (higher is faster)" if "mappo" in bmed else "-")


if __name__ == "__main__":
    main()
