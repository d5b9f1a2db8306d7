"""The REST API's journal: replay time at start-up and the cost per request.

    PYTHONPATH=. python benchmarks/bench_journal.py [--banks 30 100] [--steps 2000]
                                                    [--repeats 3] [--requests 300]

Prints the load average (before and after; figures taken under load are
slower) and:
1. replay time of a simulation journaled over ``--steps`` steps (2,000 by
   default; replay is linear in the steps) for each bank count, with the
   journal written as 100-step requests (20 rows) and as one-step requests
   (2,000 rows), beside the time the same steps take run directly
   (``FinancialModel.run_for``) and through the API's session without a
   journal (what replay must redo: steps, per-step metrics, the fingerprint
   check per row);
2. the journal's overhead per step (medians): a one-step request
   (``Session.advance(1)``, one row each) with the journal (WAL +
   synchronous=FULL, the choice) against no journal, as the difference and
   the ratio, and the alternatives WAL + NORMAL (not durable on power loss)
   and rollback journal + FULL, plus the fingerprint alone; then the same per
   step of 100-step requests (one row per 100 steps).

Times are wall clock, with this process's CPU time in brackets: on a busy
machine the CPU time is the steadier figure (the replay's ratios use it);
the journal's own cost is mostly waiting for the disk (fsync), which only
the wall clock sees. The data folders are temporary folders on the disk of
``--dir`` (default: the system's temporary folder); fsync costs depend on
that disk.
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
    """Per step, wall and CPU time (medians): the CPU time of this process is
    what a busy machine disturbs least, so the ratios use it."""
    def direct() -> int:
        m = FinancialModel(rng=SEED, **params(banks, steps))
        m.run_for(steps)
        return m.t

    def in_api() -> None:
        store, _ = store_with(None, steps)
        session = store.create(params(banks, steps), SEED)
        while session.model.running and session.model.t < steps:
            session.advance(min(100, steps - session.model.t))

    taken = direct()
    run, run_cpu = _medians(direct, repeats, taken)
    api, api_cpu = _medians(in_api, repeats, taken)
    print(f"\n{banks} banks, {steps:,} steps asked, {taken:,} taken (the episode ends "
          f"earlier if the system collapses); ms/step, wall (CPU), medians of {repeats}:\n"
          f"  run directly {1e3 * run:.3f} ({1e3 * run_cpu:.3f}); through the API's session "
          f"without a journal {1e3 * api:.3f} ({1e3 * api_cpu:.3f}: per-step metrics)")
    for per_request in (100, 1):
        folder = Path(tempfile.mkdtemp(dir=base))
        t0 = time.perf_counter()
        path, journaled_steps = journaled(folder, banks, steps, per_request)
        written = time.perf_counter() - t0
        assert journaled_steps == taken, (journaled_steps, taken)
        size = sum(p.stat().st_size for p in path.parent.iterdir()) / 1e6
        rows = []

        def replay(path: Path = path, rows: list[int] = rows) -> None:
            session, sim_journal, n = replay_file(path, 10_000)
            sim_journal.close()
            assert session.model.t == taken
            rows.append(n)

        wall, cpu = _medians(replay, repeats, taken)
        print(f"  {rows[0]:>6,} rows ({per_request}-step requests, {size:.1f} MB, written in "
              f"{written:.2f} s): replay {1e3 * wall:.3f} ({1e3 * cpu:.3f}) ms/step, "
              f"{wall * taken:.2f} s; CPU {cpu / run_cpu:.2f}x the direct run, "
              f"{cpu / api_cpu:.2f}x the API's")
        shutil.rmtree(folder)


def _medians(fn, repeats: int, steps: int) -> tuple[float, float]:
    """Median wall and CPU seconds per step of ``fn()`` over ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall) / steps, statistics.median(cpu) / steps


def request_cost(banks: int, requests: int, base: Path) -> None:
    print(f"\nper one-step request, {banks} banks, ms, wall (CPU), medians of {requests}:")

    def per_request(folder: Path | None) -> tuple[float, float]:
        store, journal = store_with(folder, 100_000)
        session = store.create(params(banks, 100_000), SEED)
        wall, cpu = [], []
        for _ in range(requests):
            w, c = _medians(lambda: session.advance(1), 1, 1)
            wall.append(w)
            cpu.append(c)
        if journal is not None:
            journal.close()
        return statistics.median(wall), statistics.median(cpu)

    bare, bare_cpu = per_request(None)
    print(f"  journal off                  {1e3 * bare:7.3f} ({1e3 * bare_cpu:.3f})")
    for mode, sync, note in (("WAL", "FULL", "the choice: durable when answered"),
                             ("WAL", "NORMAL", "not durable on power loss"),
                             ("DELETE", "FULL", "rollback journal")):
        journal_module.JOURNAL_MODE, journal_module.SYNCHRONOUS = mode, sync
        folder = Path(tempfile.mkdtemp(dir=base))
        t, cpu = per_request(folder)
        shutil.rmtree(folder)
        print(f"  {mode:6} + synchronous={sync:6} {1e3 * t:7.3f} ({1e3 * cpu:.3f})  "
              f"+{1e3 * (t - bare):.3f} ms wall, {t / bare:.2f}x; {note}")
    journal_module.JOURNAL_MODE, journal_module.SYNCHRONOUS = "WAL", "FULL"
    m = FinancialModel(rng=SEED, **params(banks, 100))
    m.run_for(5)
    fp = _medians(lambda: fingerprint(m), 200, 1)
    print(f"  of which the fingerprint     {1e3 * fp[0]:7.3f} ({1e3 * fp[1]:.3f})")
    (off, off_cpu), (on, on_cpu) = (per_step_of_100(banks, max(requests // 20, 5), base, j)
                                    for j in (False, True))
    print(f"per step of a 100-step request: journal off {1e3 * off:.3f} ({1e3 * off_cpu:.3f}) "
          f"ms, on {1e3 * on:.3f} ({1e3 * on_cpu:.3f}) ms: +{1e3 * (on - off):.3f} ms wall, "
          f"{on / off:.2f}x")


def per_step_of_100(banks: int, requests: int, base: Path, journal: bool
                    ) -> tuple[float, float]:
    """Median wall and CPU seconds per step of ``requests`` 100-step requests."""
    folder = Path(tempfile.mkdtemp(dir=base)) if journal else None
    store, sim_journal = store_with(folder, 100_000)
    session = store.create(params(banks, 100_000), SEED)
    times = [_medians(lambda: session.advance(100), 1, 100) for _ in range(requests)]
    if sim_journal is not None:
        sim_journal.close()
        shutil.rmtree(folder)
    return (statistics.median(t[0] for t in times), statistics.median(t[1] for t in times))


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
