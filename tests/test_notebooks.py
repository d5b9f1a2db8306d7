"""The course pack: every notebook in ``notebooks/`` executes top to bottom in a
fresh Jupyter kernel, and a cell that raises fails the test.

The notebooks check themselves: notebook 2 ``assert``s that its hand
computations of Eisenberg–Noe clearing and DebtRank equal the library's, notebook
5 that its hand-made confidence intervals equal ``summarise_sweep``'s, notebook 4
that a per-bank rule equals its vectorised twin, and so on; an assertion that
fails is a cell error, so the test fails. Notebooks that need torch (7) skip
where the ``learn`` extra is missing, and say so.

With ``FINSIM_EXECUTED_NOTEBOOKS=DIR`` set, each executed notebook is written to
``DIR`` (same relative path), and the documentation build renders those copies,
so CI executes each notebook once (``.ci/run``). The repository keeps the
notebooks without outputs (tested here).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.rglob("*.ipynb"))
COURSE = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
NEEDS_TORCH = {"07_learning", "07_learning_solutions"}
OUT_ENV = "FINSIM_EXECUTED_NOTEBOOKS"
CELL_TIMEOUT_S = 600


def execute_notebook(path: Path) -> Any:
    """Run the notebook at ``path`` in a fresh ``python3`` kernel whose working
    folder is the notebook's and whose ``finsim_mesa`` is this checkout's.

    Returns the executed notebook (nbformat). Raises nbclient's
    ``CellExecutionError`` at the first cell that raises.
    """
    nbformat = pytest.importorskip("nbformat", reason="the notebooks extra is not installed")
    nbclient = pytest.importorskip("nbclient", reason="the notebooks extra is not installed")
    nb = nbformat.read(path, as_version=4)
    # no widget state: the rendered page would load a widget manager from a CDN
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", store_widget_state=False,
        resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return nb


@pytest.fixture
def checkout_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels import this checkout's package, not another installed copy."""
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + (os.pathsep + old if old else ""))


def _outputs(nb: Any) -> list[dict[str, Any]]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def _save(nb: Any, path: Path) -> None:
    out_dir = os.environ.get(OUT_ENV)
    if not out_dir:
        return
    import nbformat

    from finsim_mesa.files import write_text_atomic

    target = Path(out_dir) / path.relative_to(NB_DIR)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, nbformat.writes(nb))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path: Path, checkout_on_path: None) -> None:
    if path.stem in NEEDS_TORCH and importlib.util.find_spec("torch") is None:
        pytest.skip(f"{path.name} trains a policy: needs the learn extra (torch)")
    nb = execute_notebook(path)
    outputs = _outputs(nb)
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, errors
    if path.stem == "01_first_model":
        # the figures display as pictures in a fresh kernel (no %matplotlib needed)
        pngs = [o for o in outputs if "image/png" in o.get("data", {})]
        assert len(pngs) >= 2, "timeseries_dashboard / network_snapshot showed no picture"
        text = [o.get("data", {}).get("text/plain", "") for o in outputs]
        assert not any("<Figure size" in str(t) and "image/png" not in o.get("data", {})
                       for t, o in zip(text, outputs, strict=True))
    _save(nb, path)


@pytest.mark.slow
def test_a_failing_cell_fails_the_run(tmp_path: Path, checkout_on_path: None) -> None:
    nbformat = pytest.importorskip("nbformat", reason="the notebooks extra is not installed")
    nbclient = pytest.importorskip("nbclient", reason="the notebooks extra is not installed")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("assert x == 2, 'hand computation differs'"),
        nbformat.v4.new_code_cell("print('never reached')")])
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="hand computation"):
        execute_notebook(path)


def test_notebooks_are_stored_without_outputs() -> None:
    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, \
                    f"{path.name}: strip the outputs before committing"


def test_every_notebook_has_goals_exercises_and_solutions() -> None:
    assert len(COURSE) == 8, [p.name for p in COURSE]
    for path in COURSE:
        nb = json.loads(path.read_text(encoding="utf-8"))
        text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
        assert "Learning goals" in text and "## Exercises" in text, path.name
        solution = NB_DIR / "solutions" / f"{path.stem}_solutions.ipynb"
        assert solution.is_file(), f"{path.name} has no {solution.name}"
        assert f"solutions/{solution.name}" in text, f"{path.name} does not point to its solutions"


def test_figures_display_themselves_in_jupyter() -> None:
    from finsim_mesa import FinancialModel
    from finsim_mesa.viz import plots

    model = FinancialModel(n_banks=10, rng=1)
    model.run_for(3)
    figures = [plots.timeseries_dashboard(model), plots.network_snapshot(model),
               plots.risk_dashboard(model), plots.run_figure(model),
               plots.scenario_comparison({"a": model.datacollector.get_model_vars_dataframe()})]
    for fig in figures:
        png = fig._repr_png_()  # what IPython calls to show the value of a cell
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = np.frombuffer(png[16:24], dtype=">u4")
        assert width > 200 and height > 100
