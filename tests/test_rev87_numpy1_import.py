"""finsim_mesa imports (and steps the same) where NumPy has no ``numpy._core``.

pyproject.toml asks for numpy>=1.24; NumPy 1.x has no ``numpy._core`` (it is
``numpy.core`` there), which every module reaches through a guard (a
``try: from numpy._core.umath import ...`` with ``np.clip``'s fallback, or
``getattr(np, "_core", None)``). bbdd469 added ``np._core.umath.clip`` to
observation.py's first line of names, unguarded: the package's import failed with
an AttributeError there before the guard below it could run.

NumPy 1.x is emulated in a child process: third-party modules imported first,
then the attribute ``numpy._core`` deleted and ``numpy._core.umath`` replaced in
sys.modules by a copy without ``clip`` (so the guard takes ``np.clip``). The child
then runs a layer-on model (2 exchanges, 2 CCPs) and prints its observations'
bytes (the infrastructure columns among them), which must equal this process's (the ufunc path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import sys, types
import numpy
import scipy.sparse, scipy.sparse.linalg, pandas, networkx, mesa  # noqa: E401,F401
real = sys.modules["numpy._core.umath"]
stub = types.ModuleType("numpy._core.umath")
stub.__dict__.update({k: v for k, v in real.__dict__.items() if k != "clip"})
sys.modules["numpy._core.umath"] = stub
del numpy._core
import finsim_mesa.observation as o
assert o._clip is numpy.clip, o._clip
sys.path.insert(0, sys.argv[1])
import test_rev87_numpy1_import as t
print(t.run().hex())
"""


def run() -> bytes:
    from finsim_mesa import FinancialModel
    from finsim_mesa.observation import observe

    m = FinancialModel(n_banks=25, rng=11, scenario="systemic", n_exchanges=2, n_ccps=2)
    out = []
    for _ in range(6):
        m.step()
        out.append(np.ascontiguousarray(observe(m)).tobytes())
    return b"".join(out)


def test_imports_and_steps_without_numpy_core() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", CHILD, str(Path(__file__).parent)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert bytes.fromhex(done.stdout.strip().splitlines()[-1]) == run()
