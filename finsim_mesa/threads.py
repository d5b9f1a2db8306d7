"""One BLAS / OpenMP / torch thread per process while several processes run.

Several processes that each start a BLAS thread per core oversubscribe the
cores: two sweep processes × two OpenBLAS threads on two cores ran slower than
one process (issue 15). :func:`single_threaded` pins the thread pools for the
duration of a ``with`` block and puts them back after:

* the OpenBLAS libraries bundled with the installed NumPy and SciPy wheels
  (through their ``openblas_set_num_threads``; forked workers inherit the
  setting, and the elementwise and sparse work of a step never needed more);
* the environment variables ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
  ``MKL_NUM_THREADS``, which spawned workers read before importing NumPy
  (``mesa.batch_run`` starts its pool by spawn: ``mesa.batchrunner`` forces
  that start method);
* torch's intra-op threads, when torch is already imported.

Dask workers are pinned by Dask itself (``distributed.nanny.pre-spawn-environ``
sets the same variables). The model's products of arrays are elementwise,
sparse (single-threaded in SciPy) or matrix-vector products whose OpenBLAS
kernels split the rows, not the sums, across threads; the sweep tests compare
one process (unpinned), two processes (pinned) and Dask row for row.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["blas_threads", "single_threaded"]

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_OPENBLAS_API = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
                 ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
                 ("openblas_set_num_threads", "openblas_get_num_threads"))


def _openblas_controls() -> list[tuple[Any, Any]]:
    """(setter, getter) of each OpenBLAS bundled with the installed NumPy and
    SciPy wheels (already loaded by the import, so opening them again is free)."""
    out = []
    for package in ("numpy", "scipy"):
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            continue
        folder = Path(spec.origin).parent.parent / f"{package}.libs"
        for path in sorted(folder.glob("lib*openblas*.so*")):
            try:
                lib = ctypes.CDLL(str(path))
            except OSError:  # pragma: no cover - a wheel we cannot open
                continue
            for set_name, get_name in _OPENBLAS_API:
                if hasattr(lib, set_name) and hasattr(lib, get_name):
                    out.append((getattr(lib, set_name), getattr(lib, get_name)))
                    break
    return out


def blas_threads() -> list[int]:
    """Current thread count of each bundled OpenBLAS (NumPy's, SciPy's); empty
    where the wheels bring none (e.g. a NumPy built against MKL or Accelerate)."""
    return [int(get()) for _, get in _openblas_controls()]


@contextmanager
def single_threaded() -> Iterator[None]:
    """Inside the block this process and the worker processes it starts use one
    BLAS / OpenMP / torch thread each; everything is put back on exit."""
    saved_env = {k: os.environ.get(k) for k in THREAD_VARS}
    controls = [(setter, int(get())) for setter, get in _openblas_controls()]
    torch = sys.modules.get("torch")
    torch_threads = torch.get_num_threads() if torch is not None else None
    os.environ.update(dict.fromkeys(THREAD_VARS, "1"))
    for setter, _ in controls:
        setter(ctypes.c_int(1))
    if torch is not None:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for setter, threads in controls:
            setter(ctypes.c_int(threads))
        if torch is not None:
            torch.set_num_threads(torch_threads)
