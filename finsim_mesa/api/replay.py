"""Start-up: the simulations of the data folder, rebuilt from their journals.

Each journal (:mod:`finsim_mesa.api.journal`) is replayed request by request
into a fresh :class:`~finsim_mesa.api.sessions.Session`: the ``init`` row
builds the model from its parameters and seed, then every ``step``,
``reset``, ``scenario``, ``shock`` and ``brains`` row is applied as the
request was, through the same methods. After every row the model's
fingerprint must equal the one recorded, so a simulation is served again only
if it is bit-identical to what the clients saw before the restart.

A journal that cannot be read (damaged, truncated, not SQLite, a newer
format) or that replays to a different state (a code upgrade changed the
dynamics, a saved policy changed) is reported in the log, naming the file and
the first row that failed; that simulation is not served and its file is
left as it is (the id is never handed out again). The server starts
regardless.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import finsim_mesa
from finsim_mesa.api.fingerprint import fingerprint
from finsim_mesa.api.journal import (
    FORMAT,
    Journal,
    JournalError,
    Record,
    SimJournal,
    params_from_json,
    read_journal,
)
from finsim_mesa.api.limits import estimate_network
from finsim_mesa.api.scenario_table import ScenarioTable
from finsim_mesa.api.sessions import Session, SessionStore
from finsim_mesa.scenarios import Scenario

__all__ = ["ReplayReport", "replay_file", "restore"]

log = logging.getLogger("finsim_mesa.api")

# loads a saved policy again from a brains row's "source" (model, version,
# deterministic, weights digest); None: the server cannot (no learn extra)
BrainLoader = Callable[[dict[str, Any]], Any]


@dataclasses.dataclass
class ReplayReport:
    """What start-up found in the data folder.

    Attributes:
        restored: (sim_id, step, rows, seconds) of each simulation served again.
        skipped: (file, why) of each journal that was not.
        scenarios: client-defined scenarios put back in the service's table.
        seconds: wall time of the whole replay.
    """

    restored: list[tuple[str, int, int, float]] = dataclasses.field(default_factory=list)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    scenarios: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        text = (f"journal: {len(self.restored)} simulation(s) restored in {self.seconds:.1f} s"
                + (f", {len(self.skipped)} skipped (see the errors above)"
                   if self.skipped else ""))
        return text + (f", {self.scenarios} client scenario(s)" if self.scenarios else "")


def _mismatch(path: Path, rec: Record, session: Session, meta: dict[str, str]) -> str:
    got = fingerprint(session.model)
    if got == rec.fingerprint and session.model.t == rec.step:
        return ""
    written = meta.get("finsim_version", "?")
    why = (f"the journal was written by finsim {written}, this is finsim "
           f"{finsim_mesa.__version__}: the model's dynamics differ between them"
           if written != finsim_mesa.__version__ else
           "the same finsim version: a saved policy, Python (then "
           f"{meta.get('python_version', '?')}), numpy (then "
           f"{meta.get('numpy_version', '?')}) or the platform differs")
    return (f"{path}: row {rec.seq} ({rec.op}) replays to a different state than was "
            f"recorded (step {session.model.t} vs {rec.step}, fingerprint {got[:12]} vs "
            f"{rec.fingerprint[:12]}); {why}")


def _apply(session: Session, rec: Record, load_brain: BrainLoader | None) -> None:
    a = rec.args
    if rec.op == "step":
        done = session.advance(int(a["done"]))
        if done != a["done"]:
            raise JournalError(f"row {rec.seq}: {done} steps taken, {a['done']} recorded")
    elif rec.op == "reset":
        session.reset(a["seed"])
    elif rec.op == "scenario":
        session.switch_scenario(Scenario(**a["scenario"]), bool(a["restart"]))
    elif rec.op == "shock":
        session.shock(a["kind"], float(a["magnitude"]), a["banks"])
    elif rec.op == "brains":
        if load_brain is None:
            raise JournalError(f"row {rec.seq} loads the saved policy "
                               f"{a['source']['model']!r}, and this server has no 'learn' "
                               "extra (pip install 'finsim-mesa[learn]')")
        session.set_brains(load_brain(a["source"]), a["banks"], a["policy"], a["source"])
    else:
        raise JournalError(f"row {rec.seq}: unknown operation {rec.op!r}")


def replay_file(path: Path, history: int, load_brain: BrainLoader | None = None
                ) -> tuple[Session, SimJournal, int]:
    """Rebuild the simulation of one journal file: (session, its journal open
    for appending, rows replayed).

    Raises:
        JournalError: the file cannot be read or replays to another state (the
            message names the file and the row).
    """
    try:
        meta, records = read_journal(path)
    except Exception as err:  # sqlite3.Error, OSError, JSON: any reason means "skip it"
        raise JournalError(f"{path} cannot be read ({type(err).__name__}: {err}); it is "
                           "damaged or not a finsim journal") from None
    if meta.get("format") != str(FORMAT):
        raise JournalError(f"{path} has journal format {meta.get('format')!r}; this finsim "
                           f"reads format {FORMAT}")
    if not records or records[0].op != "init" or meta.get("sim_id") != path.stem:
        raise JournalError(f"{path} does not start with the init row of {path.stem}")
    rec = init = records[0]
    try:
        params = params_from_json(init.args["params"])
        session = Session(path.stem, params, int(init.args["seed"]), history,
                          estimate_network(params))
        session.created = float(init.args.get("created", init.at))
        why = _mismatch(path, init, session, meta)
        for rec in records[1:]:
            if why:
                break
            _apply(session, rec, load_brain)
            why = _mismatch(path, rec, session, meta)
    except Exception as err:  # a row the code refuses now: skip, never crash
        raise JournalError(f"{path}: row {rec.seq} ({rec.op}) cannot be replayed "
                           f"({type(err).__name__}: {err})") from None
    if why:
        raise JournalError(why)
    try:
        journal = SimJournal.open(path)
    except Exception as err:
        raise JournalError(f"{path} cannot be opened for writing: {err}") from None
    return session, journal, len(records)


def restore(journal: Journal, store: SessionStore, table: ScenarioTable,
            load_brain: BrainLoader | None) -> ReplayReport:
    """Put the data folder's scenarios into ``table`` and its simulations into
    ``store`` (before the service answers requests). Never raises for a bad
    journal: it is logged, skipped and left in place."""
    report, start = ReplayReport(), time.perf_counter()
    try:
        kept = journal.scenarios()
    except Exception as err:
        log.error("%s cannot be read (%s): client scenarios are not restored",
                  journal.root / "scenarios.sqlite", err)
        kept = []
    for name, definition in kept:
        try:
            table.add(Scenario(**definition))
            report.scenarios += 1
        except Exception as err:
            log.error("client scenario %r in %s is not restored: %s", name, journal.root, err)
    for path in journal.files():
        store.reserve(path.stem)
        began = time.perf_counter()
        try:
            session, sim_journal, rows = replay_file(path, store.limits.history, load_brain)
        except JournalError as err:
            log.error("%s; simulation %s is not served, its journal is left as it is",
                      err, path.stem)
            report.skipped.append((str(path), str(err)))
            continue
        journal.open[session.sim_id] = sim_journal
        store.adopt(session)
        report.restored.append((session.sim_id, session.model.t, rows,
                                time.perf_counter() - began))
    report.seconds = time.perf_counter() - start
    return report
