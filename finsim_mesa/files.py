"""Writing user files safely: check the place first, write atomically.

A result file is checked before any work is done (so a long run is never lost
to a bad path at the end) and written to a temporary file beside it, flushed
and renamed into place, so a kill at any moment leaves either the old file or
the new one, never half of one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from finsim_mesa.errors import ConfigError

__all__ = ["atomic_write", "check_writable"]


def check_writable(path: str | Path, what: str) -> Path:
    """Make sure ``path`` can be written (creating its folder), before any work.

    Raises:
        ConfigError: naming ``what`` (e.g. "--out") and why it cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; give a file name")
    blocker = next((a for a in path.parents if a.exists() and not a.is_dir()), None)
    if blocker is not None:
        raise ConfigError(f"{what} {path}: {blocker} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{what} {path}: cannot create its folder ({err.strerror})") \
            from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{what} {path}: not writable")
    return path


def atomic_write(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, flush it to disk
    and rename it to ``path`` (atomic on POSIX). Returns ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
