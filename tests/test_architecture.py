"""The package's shape: no import circles, short modules, a complete snapshot,
and institutions a user can add without touching the package."""

from __future__ import annotations

import ast
import copy
from pathlib import Path
from typing import ClassVar

import mesa
import networkx as nx
import numpy as np
import pytest
from support import model_state, state_of

import finsim_mesa
from finsim_mesa import FinancialModel
from finsim_mesa.state import MODEL_STATE

PACKAGE = Path(finsim_mesa.__file__).parent


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def runtime_imports(path: Path) -> set[str]:
    """finsim_mesa modules imported by ``path`` when it runs (module level and inside
    functions), leaving out ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("finsim_mesa"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            if not base.startswith("finsim_mesa"):
                continue
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in modules else base)
    return out


def import_graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for path in PACKAGE.rglob("*.py"):
        me = module_name(path)
        g.add_node(me)
        for target in runtime_imports(path):
            # a submodule importing its own package's __init__ is Python's usual
            # pattern, not a circle of ours
            if target != me and not me.startswith(target + "."):
                g.add_edge(me, target)
    return g


def test_no_import_circle_anywhere_in_the_package():
    cycles = list(nx.simple_cycles(import_graph()))
    assert not cycles, f"import circles: {cycles[:5]}"


@pytest.mark.parametrize("low_level", ["finsim_mesa.agents", "finsim_mesa.infrastructure",
                                       "finsim_mesa.decision", "finsim_mesa.state",
                                       "finsim_mesa.measures", "finsim_mesa.resolution"])
def test_agents_infrastructure_and_decision_never_import_the_model(low_level):
    g = import_graph()
    mine = [m for m in g if m == low_level or m.startswith(low_level + ".")]
    assert mine
    for m in mine:
        reach = nx.descendants(g, m)
        assert "finsim_mesa.model" not in reach, f"{m} imports finsim_mesa.model"


def test_module_sizes():
    sizes = {module_name(p): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert sizes["finsim_mesa.model"] <= 500
    big = {m: n for m, n in sizes.items() if n > 400 and m != "finsim_mesa.model"}
    assert not big, f"modules over 400 lines: {big}"


def test_import_circle_check_sees_a_circle(tmp_path, monkeypatch):
    """The checker itself: a package with a → b → a is reported."""
    pkg = tmp_path / "finsim_mesa"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from finsim_mesa import b\n")
    (pkg / "b.py").write_text("def f():\n    from finsim_mesa.a import x\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", pkg)
    assert list(nx.simple_cycles(import_graph()))


# --------------------------------------------------------------- the snapshot
@pytest.mark.parametrize("kw", [dict(brain="random"),
                                dict(brain="greedy", n_exchanges=2, n_ccps=2,
                                     scenario="systemic", ccp_clearing_share=0.5)])
def test_snapshot_restores_every_piece_of_state(kw):
    """Run, snapshot, run on, restore: every attribute the model or an exchange or
    CCP has (found by walking them, not from a list) is back as it was. A new
    attribute that changes as the model runs and escapes the snapshot fails here."""
    m = FinancialModel(n_banks=16, rng=3, ranking_every=2, **kw)
    m.run_for(4)
    m.apply_shock("funding_withdrawal", 0.3, banks=[1, 2])
    before = model_state(m)
    snap = m.snapshot()
    m.run_for(6)
    assert model_state(m) != before
    m.restore(snap)
    after = model_state(m)
    assert after.keys() == before.keys()
    diff = [k for k in before if before[k] != after[k]]
    assert not diff, f"not restored: {diff}"
    # and the model goes on exactly as a twin that never left the snapshot
    twin = FinancialModel(n_banks=16, rng=3, ranking_every=2, **kw)
    twin.run_for(4)
    twin.apply_shock("funding_withdrawal", 0.3, banks=[1, 2])
    m.run_for(5)
    twin.run_for(5)
    assert model_state(m) == model_state(twin)


def test_state_dataclasses_are_what_the_snapshot_copies():
    m = FinancialModel(n_banks=8, rng=1)
    snap = m.snapshot()
    assert set(snap["state"]) == set(MODEL_STATE)
    m.flows.rollover_volume = 123.0
    m.measures.debtrank = 0.5
    m.restore(snap)
    assert m.flows.rollover_volume != 123.0 and m.measures.debtrank != 0.5


def test_snapshot_walk_sees_an_uncovered_attribute():
    """The walk finds state outside the snapshot (so the test above can fail)."""
    m = FinancialModel(n_banks=8, rng=1)
    snap = m.snapshot()
    before = model_state(m)
    m.counter_nobody_saves = 1  # a new piece of run-time state
    m.restore(snap)
    assert model_state(m) != before


# --------------------------------------------------------------- a new institution
class Supervisor(mesa.Agent):
    """A toy institution: after each price stage it closes (puts in default) every
    bank whose capital ratio fell below ``threshold``."""

    REPORTERS: ClassVar[dict[str, str]] = {"closed": "closed"}

    def __init__(self, model, threshold):
        super().__init__(model)
        self.threshold = threshold
        self.closed = 0

    def inspect(self):
        cr = self.model.sheets.capital_ratio
        weak = np.flatnonzero(self.model.ledger.active & (cr < self.threshold))
        if weak.size:
            self.model.apply_shock("default", banks=weak)
            self.closed += int(weak.size)


class SupervisedModel(FinancialModel):
    def __init__(self, threshold=0.05, **kw):
        super().__init__(**kw)
        self.add_institution(Supervisor(self, threshold))

    def price(self):
        super().price()
        self.refresh()
        self.agents_by_type[Supervisor].do("inspect")


def test_a_new_institution_needs_no_package_file():
    """The worked example of docs/design.md: an institution defined outside the
    package acts in a stage, sits on the network and has its own agent data."""
    m = SupervisedModel(threshold=0.07, n_banks=20, scenario="systemic", rng=2)
    plain = FinancialModel(n_banks=20, scenario="systemic", rng=2)
    sup = m.agents_by_type[Supervisor][0]
    assert m.grid.G.number_of_nodes() == 21 and sup.pos == 20
    m.run_for(20)
    plain.run_for(20)
    assert sup.closed > 0
    assert m.measures.n_defaults > plain.measures.n_defaults
    df = m.datacollector.get_agenttype_vars_dataframe(Supervisor)
    assert list(df.columns) == ["closed"] and df["closed"].iloc[-1] == sup.closed
    assert df["closed"].is_monotonic_increasing
    m.check()


def test_snapshot_is_data_not_references():
    m = FinancialModel(n_banks=8, n_exchanges=1, n_ccps=1, rng=1)
    snap = m.snapshot()
    copied = copy.deepcopy(snap)  # plain data: copies without reaching the model
    assert copied.keys() == snap.keys()
    m.run_for(3)
    assert state_of(snap) == state_of(copied)  # running the model left the snapshot as it was
