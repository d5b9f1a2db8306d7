"""The service's journal: every simulation survives a restart, bit for bit.

The data folder (``finsim serve --data``, default ``finsim-data``) holds::

    scenarios.sqlite             the scenario definitions clients POSTed
    simulations/<sim_id>.sqlite  one journal per simulation (-wal, -shm beside
                                 it while the server runs)

A simulation's journal is an SQLite database (standard library) with one row
per request that changed the simulation: ``init`` (its parameters, with the
full scenario definition, and seed), ``step`` (one row for a request of n
steps: how many were asked for and taken), ``reset``, ``scenario`` (the full
definition), ``shock`` and ``brains`` (which saved policy, its version and a
digest of its weights). Each row carries the model's step and a fingerprint of
its state after the change (:func:`fingerprint`: SHA-256 of everything
``FinancialModel.snapshot()`` holds: ledger, market, generators, run-time
state, brains, infrastructure), so replaying it at start-up
(:mod:`finsim_mesa.api.replay`) checks bit-identity record by record.

Durability: a request is answered only after its row is committed, and a
commit is on disk when it returns: WAL mode with ``synchronous=FULL`` (the
WAL is fsynced at every commit: one sequential append and one fsync per
request, where the rollback journal needs three to four; benchmark in
``benchmarks/bench_journal.py``). A journal file appears only complete: its
``init`` row is written into a hidden temporary file that is renamed into
place (and the folder fsynced) before the simulation is served. Two servers
never share a data folder: the serving process holds an exclusive lock on it
(``flock``; it goes with the process, so a killed server leaves none).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

import finsim_mesa
from finsim_mesa.api.fingerprint import fingerprint
from finsim_mesa.errors import CheckpointError, FinsimError
from finsim_mesa.files import fsync_dir, locked, token
from finsim_mesa.scenarios import Scenario

__all__ = ["FORMAT", "Journal", "JournalError", "Record", "SimJournal", "fingerprint",
           "params_from_json", "params_to_json", "read_journal"]

FORMAT = 1  # the journal's format version (meta table)
SUFFIX = ".sqlite"
# how rows reach the disk (see the module's docstring; benchmarks/bench_journal.py
# compares the alternatives): WAL, and every commit fsynced before it returns
JOURNAL_MODE, SYNCHRONOUS = "WAL", "FULL"
log = logging.getLogger("finsim_mesa.api")
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records (seq INTEGER PRIMARY KEY, op TEXT NOT NULL, args TEXT NOT NULL,
                      step INTEGER NOT NULL, fingerprint TEXT NOT NULL, at REAL NOT NULL);
"""


class JournalError(FinsimError):
    """The journal cannot be written (answered 503) or read (that simulation is
    not served; the message names the file)."""


# ---------------------------------------------------------------- parameters
def params_to_json(params: dict[str, Any]) -> dict[str, Any]:
    """A simulation's parameters as JSON values: a scenario object becomes its
    full definition (``{"definition": {...}}``), so no registry is needed to
    rebuild it."""
    out = dict(params)
    if isinstance(out.get("scenario"), Scenario):
        out["scenario"] = {"definition": out["scenario"].model_dump(mode="json")}
    return out


def params_from_json(data: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`params_to_json`."""
    out = dict(data)
    if isinstance(out.get("scenario"), dict):
        out["scenario"] = Scenario(**out["scenario"]["definition"])
    return out


def _dumps(args: dict[str, Any]) -> str:
    return json.dumps(args, allow_nan=False, sort_keys=True, separators=(",", ":"))


@dataclasses.dataclass(frozen=True)
class Record:
    """One row of a journal."""

    seq: int
    op: str
    args: dict[str, Any]
    step: int
    fingerprint: str
    at: float


# ---------------------------------------------------------------- one simulation
def read_journal(path: Path) -> tuple[dict[str, str], list[Record]]:
    """(meta, records in order) of a journal file, read without writing to it
    (a read-only connection: a damaged file stays exactly as it is).

    Raises:
        sqlite3.Error, ValueError, KeyError: the file is damaged or not a journal.
    """
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        rows = conn.execute("SELECT seq, op, args, step, fingerprint, at FROM records "
                            "ORDER BY seq").fetchall()
    finally:
        conn.close()
    return meta, [Record(seq, op, json.loads(a), step, f, at)
                  for seq, op, a, step, f, at in rows]


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5)
    conn.execute(f"PRAGMA synchronous={SYNCHRONOUS}")
    return conn


class SimJournal:
    """The journal file of one simulation, open for appending.

    Writes come from the thread that holds the simulation's ``op_lock``; the
    lock here only orders them against :meth:`close` (an expiry)."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.Lock()
        self.broken: str | None = None  # why the last write failed (changes are refused)

    @classmethod
    def create(cls, folder: Path, sim_id: str, args: dict[str, Any], step: int, fp: str
               ) -> SimJournal:
        """A new journal holding the ``init`` row: written aside (rollback
        journal, fsynced), renamed into place, then switched to WAL."""
        path = folder / f"{sim_id}{SUFFIX}"
        tmp = folder / f".{path.name}.tmp-{token()}"
        placed = False
        try:
            conn = _connect(tmp)
            conn.executescript(_SCHEMA)
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("format", str(FORMAT)), ("finsim_version", finsim_mesa.__version__),
                ("sim_id", sim_id), ("numpy_version", np.__version__),
                ("python_version", platform.python_version())])
            conn.execute("INSERT INTO records (op, args, step, fingerprint, at) VALUES "
                         "('init', ?, ?, ?, ?)", (_dumps(args), step, fp, time.time()))
            conn.execute("COMMIT")
            conn.close()
            os.replace(tmp, path)
            placed = True
            fsync_dir(folder)
            conn = _connect(path)
            conn.execute(f"PRAGMA journal_mode={JOURNAL_MODE}")
        except (sqlite3.Error, OSError, TypeError, ValueError) as err:
            for leftover in (tmp, path) if placed else (tmp,):  # no journal without its sim
                with contextlib.suppress(OSError):
                    leftover.unlink()
            raise JournalError(f"cannot create the journal {path}: {err}; the simulation "
                               "was not made (check the data folder: space, permissions)"
                               ) from None
        return cls(path, conn)

    @classmethod
    def open(cls, path: Path) -> SimJournal:
        """An existing journal (replayed already), open for appending."""
        conn = _connect(path)
        conn.execute(f"PRAGMA journal_mode={JOURNAL_MODE}")
        return cls(path, conn)

    def append(self, op: str, args: dict[str, Any], step: int, fp: str) -> None:
        """Commit one row (on disk when this returns).

        Raises:
            JournalError: the row could not be written; every later change of
                this simulation is refused too (its journal would miss one).
        """
        with self._lock:
            if self._conn is None:
                return  # deleted or expired meanwhile: nothing to keep
            if self.broken:
                raise JournalError(self.broken)
            try:
                self._conn.execute("INSERT INTO records (op, args, step, fingerprint, at) "
                                   "VALUES (?, ?, ?, ?, ?)",
                                   (op, _dumps(args), step, fp, time.time()))
            except (sqlite3.Error, OSError, TypeError, ValueError) as err:
                self.broken = (f"the journal {self.path} could not record a change ({err}); "
                               "this simulation can no longer be kept across restarts and "
                               "takes no more changes: read what you need, then DELETE it")
                raise JournalError(self.broken) from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None

    def remove(self) -> None:
        """Close and delete the journal (the simulation was deleted or expired)."""
        self.close()
        for name in (self.path.name, self.path.name + "-wal", self.path.name + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                (self.path.parent / name).unlink()
        fsync_dir(self.path.parent)


# ---------------------------------------------------------------- the data folder
class Journal:
    """The data folder of a service: the lock, the scenario table and the
    journals of its simulations; :meth:`listen` is the ``SessionStore`` listener
    that writes them.

    Raises:
        JournalError: the folder cannot be made, or another server holds it.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.folder = self.root / "simulations"
        self._held = contextlib.ExitStack()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._held.enter_context(locked(self.root, wait=False, what=" (a finsim serve)"))
        except CheckpointError as err:
            raise JournalError(f"data folder {self.root}: {err}; two servers must not share "
                               "one (give each its own --data)") from None
        except OSError as err:
            raise JournalError(f"data folder {self.root} cannot be used: {err}") from None
        try:
            self._start()
        except BaseException:
            self._held.close()
            raise

    def _start(self) -> None:
        for stray in self.folder.glob(f".*{SUFFIX}.tmp-*"):  # an init a kill interrupted
            with contextlib.suppress(OSError):
                stray.unlink()
        self.open: dict[str, SimJournal] = {}
        self.closed = False
        path = self.root / "scenarios.sqlite"
        try:
            self._scenarios: sqlite3.Connection | None = _connect(path)
            self._scenarios.execute("PRAGMA journal_mode=WAL")
            self._scenarios.execute("CREATE TABLE IF NOT EXISTS scenarios (name TEXT PRIMARY "
                                    "KEY, definition TEXT NOT NULL)")
            self.scenarios_error = ""
        except sqlite3.Error as err:  # served without it; the file is left as it is
            self._scenarios = None
            self.scenarios_error = (f"{path} cannot be used ({err}): client scenario "
                                    "definitions are not restored nor kept; move the file "
                                    "away and restart to keep them again")
            log.error("%s", self.scenarios_error)

    def files(self) -> list[Path]:
        """The journal files, oldest first (by the number in ``sim-N-xxxxxx``)."""
        def order(p: Path) -> tuple[int, str]:
            number = p.stem.split("-")[1] if p.stem.count("-") >= 2 else ""
            return (int(number) if number.isdigit() else 0, p.stem)
        return sorted((p for p in self.folder.glob(f"*{SUFFIX}")
                       if not p.name.startswith(".")), key=order)

    def listen(self, session: Any, op: str, args: dict[str, Any]) -> None:
        """Record ``op`` on ``session`` (a :data:`~finsim_mesa.api.sessions.Listener`).

        Raises:
            JournalError: the row could not be written (the request is answered
                503; the simulation refuses every later change).
        """
        if op == "delete":
            journal = self.open.pop(session.sim_id, None)
            if journal is not None:
                try:
                    journal.remove()
                except OSError as err:  # the simulation is gone either way
                    log.error("the journal %s of deleted simulation %s could not be "
                              "removed: %s", journal.path, session.sim_id, err)
            return
        if self.closed:
            raise JournalError(f"the server is shutting down; {self.root} takes no more changes")
        model = session.model
        if op == "init":
            self.open[session.sim_id] = SimJournal.create(
                self.folder, session.sim_id, {"params": params_to_json(args["params"]),
                                              "seed": args["seed"], "created": session.created},
                model.t, fingerprint(model))
            return
        journal = self.open.get(session.sim_id)
        if journal is not None:
            try:
                journal.append(op, _record_args(op, args), model.t, fingerprint(model))
            except JournalError as err:
                session.refusal = err
                raise

    # ------------------------------------------------------------ scenarios
    def save_scenario(self, spec: Scenario) -> None:
        """Keep a client's scenario definition (on disk when this returns).

        Raises:
            JournalError: it cannot be written (the definition is not added).
        """
        if self._scenarios is None:
            raise JournalError(self.scenarios_error)
        try:
            self._scenarios.execute("INSERT OR REPLACE INTO scenarios VALUES (?, ?)",
                                    (spec.name, _dumps(spec.model_dump(mode="json"))))
        except sqlite3.Error as err:
            raise JournalError(f"cannot record scenario {spec.name!r} in "
                               f"{self.root / 'scenarios.sqlite'}: {err}") from None

    def scenarios(self) -> list[tuple[str, dict[str, Any]]]:
        """(name, definition) of every kept scenario definition."""
        if self._scenarios is None:
            return []
        rows = self._scenarios.execute("SELECT name, definition FROM scenarios ORDER BY rowid")
        return [(name, json.loads(text)) for name, text in rows.fetchall()]

    def close(self) -> None:
        """Close every file and let go of the folder (server shutdown)."""
        self.closed = True
        for journal in self.open.values():
            journal.close()
        self.open.clear()
        if self._scenarios is not None:
            with contextlib.suppress(sqlite3.Error):
                self._scenarios.close()
        self._held.close()


def _record_args(op: str, args: dict[str, Any]) -> dict[str, Any]:
    """What a row keeps of a change: everything replay needs, as JSON."""
    if op == "scenario":
        spec = args["scenario"]
        return {"scenario": spec if isinstance(spec, dict) else spec.model_dump(mode="json"),
                "restart": args["restart"]}
    return dict(args)
