"""The REST API's journal: replay time at start-up and the cost per request.

    PYTHONPATH=. python benchmarks/bench_journal.py [--banks 30 100] [--steps 2000]
                                                    [--repeats 3] [--requests 300]

Prints the load average (before and after; figures taken under load are
slower) and:
1. replay time of a simulation journaled over ``--steps`` steps (2,000 by
   default; replay is linear in the steps) for each bank count, with the
   journal written as 100-step requests (20 rows) and as one-step requests
   (2,000 rows), beside the
   time the same steps take run directly (``FinancialModel.run_for``) and
   through the API's session without a journal (what replay must redo:
   steps, per-step metrics, the fingerprint check per row);
2. the journal's overhead per step (medians): a one-step request
   (``Session.advance(1)``, one row each) with the journal (WAL +
   synchronous=FULL, the choice) against no journal, as the difference and
   the ratio, and the alternatives WAL + NORMAL (not durable on power loss)
   and rollback journal + FULL, plus the fingerprint alone; then the same per
   step of 100-step requests (one row per 100 steps).

The data folder is a temporary folder on the disk of ``--dir`` (default: the
system's temporary folder); fsync costs depend on that disk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from finsim_mesa import FinancialModel
from finsim_mesa.api import journal as journal_module
from finsim_mesa.api.fingerprint import fingerprint
from finsim_mesa.api.journal import Journal
from finsim_mesa.api.limits import ApiLimits
from finsim_mesa.api.replay import replay_file
from finsim_mesa.api.sessions import SessionStore
from finsim_mesa.scenarios import get_scenario

SEED = 7


def params(banks: int, steps: int) -> dict:
    return {"n_banks": banks, "steps": steps, "scenario": get_scenario("normal"),
            "brain": "rule_based", "agent_collect_every": 0}


def store_with(folder: Path | None, steps: int) -> tuple[SessionStore, Journal | None]:
    limits = ApiLimits(max_episode_steps=max(steps, 100_000), history=10_000)
    store = SessionStore(limits)
    journal = None
    if folder is not None:
        journal = Journal(folder)
        store.listeners.append(journal.listen)
    return store, journal


def journaled(folder: Path, banks: int, steps: int, per_request: int) -> tuple[Path, int]:
    """A journal of ``steps`` steps taken ``per_request`` at a time: (file, steps taken)."""
    store, journal = store_with(folder, steps)
    session = store.create(params(banks, steps), SEED)
    while session.model.running and session.model.t < steps:
        session.advance(min(per_request, steps - session.model.t))
    taken = session.model.t
    journal.close()
    return folder / "simulations" / f"{session.sim_id}.sqlite", taken


def replay_times(banks: int, steps: int, repeats: int, base: Path) -> None:
    t0 = time.perf_counter()
    FinancialModel(rng=SEED, **{k: v for k, v in params(banks, steps).items()}).run_for(steps)
    direct = time.perf_counter() - t0
    store, _ = store_with(None, steps)
    t0 = time.perf_counter()
    session = store.create(params(banks, steps), SEED)
    while session.model.running and session.model.t < steps:
        session.advance(min(100, steps - session.model.t))
    in_api = time.perf_counter() - t0
    print(f"\n{banks} banks, {steps:,} steps: run directly {direct:.2f} s, through the API's "
          f"session without a journal {in_api:.2f} s")
    for per_request in (100, 1):
        folder = Path(tempfile.mkdtemp(dir=base))
        t0 = time.perf_counter()
        path, taken = journaled(folder, banks, steps, per_request)
        written = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in path.parent.iterdir()) / 1e6
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            session, sim_journal, rows = replay_file(path, 10_000)
            times.append(time.perf_counter() - t0)
            sim_journal.close()
            assert session.model.t == taken
        replay = statistics.median(times)
        print(f"  {rows:>6,} rows ({per_request}-step requests, {taken:,} steps, {size:.1f} MB):"
              f" written in {written:.2f} s, replay {replay:.2f} s (median of {repeats}; "
              f"{replay / direct:.2f}x the direct run, {1e3 * replay / taken:.3f} ms/step)")
        shutil.rmtree(folder)


def request_cost(banks: int, requests: int, base: Path) -> None:
    print(f"\nper one-step request, {banks} banks (median of {requests}):")

    def per_request(folder: Path | None) -> float:
        store, journal = store_with(folder, 100_000)
        session = store.create(params(banks, 100_000), SEED)
        times = []
        for _ in range(requests):
            t0 = time.perf_counter()
            session.advance(1)
            times.append(time.perf_counter() - t0)
        if journal is not None:
            journal.close()
        return statistics.median(times)

    bare = per_request(None)
    print(f"  journal off                  {1e3 * bare:7.3f} ms")
    for mode, sync, note in (("WAL", "FULL", "the choice: durable when answered"),
                             ("WAL", "NORMAL", "not durable on power loss"),
                             ("DELETE", "FULL", "rollback journal")):
        journal_module.JOURNAL_MODE, journal_module.SYNCHRONOUS = mode, sync
        folder = Path(tempfile.mkdtemp(dir=base))
        t = per_request(folder)
        shutil.rmtree(folder)
        print(f"  {mode:6} + synchronous={sync:6} {1e3 * t:7.3f} ms  (+{1e3 * (t - bare):.3f} ms"
              f", {t / bare:.2f}x; {note})")
    journal_module.JOURNAL_MODE, journal_module.SYNCHRONOUS = "WAL", "FULL"
    m = FinancialModel(rng=SEED, **params(banks, 100))
    m.run_for(5)
    fp = statistics.median(_time(lambda: fingerprint(m)) for _ in range(200))
    print(f"  of which the fingerprint     {1e3 * fp:7.3f} ms")
    off, on = (per_step_of_100(banks, max(requests // 20, 5), base, journal)
               for journal in (False, True))
    print(f"per step of a 100-step request: journal off {1e3 * off:.3f} ms, on "
          f"{1e3 * on:.3f} ms (+{1e3 * (on - off):.3f} ms, {on / off:.2f}x)")


def per_step_of_100(banks: int, requests: int, base: Path, journal: bool) -> float:
    """Median time per step of ``requests`` 100-step requests (seconds)."""
    folder = Path(tempfile.mkdtemp(dir=base)) if journal else None
    store, sim_journal = store_with(folder, 100_000)
    session = store.create(params(banks, 100_000), SEED)
    times = [_time(lambda: session.advance(100)) / 100 for _ in range(requests)]
    if sim_journal is not None:
        sim_journal.close()
        shutil.rmtree(folder)
    return statistics.median(times)


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--banks", type=int, nargs="+", default=[30, 100])
    ap.add_argument("--steps", type=int, default=2_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--dir", default=None, help="where the temporary data folders go")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-journal-", dir=args.dir))
    print(f"load average {_load()} (1, 5, 15 min) on {os.cpu_count()} CPUs")
    try:
        print("replay at start-up")
        for banks in args.banks:
            replay_times(banks, args.steps, args.repeats, base)
        for banks in args.banks:
            request_cost(banks, args.requests, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"\nload average {_load()} at the end")


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
