"""Writing user files safely: check the place first, write atomically.

A result file is checked before any work is done (so a long run is never lost
to a bad path at the end) and written to a temporary file beside it, flushed
and renamed into place (and the folder fsynced), so a kill at any moment leaves
either the old file or the new one, never half of one. Writers of one folder
serialise with :func:`locked`.

``FINSIM_CRASH_AT=<point>[:<n>]`` makes the process SIGKILL itself the n-th
time it reaches ``<point>`` (the crash tests use it; see :func:`crash_point`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from finsim_mesa.errors import CheckpointError, ConfigError

__all__ = ["CRASH_ENV", "atomic_write", "check_writable", "crash_point", "fsync_dir",
           "install_files", "locked",
           "remove_strays", "write_bytes_atomic", "write_text_atomic"]

TEMP = re.compile(r"\..+\.(tmp|new|old|deleted)-[0-9a-f]{8}")  # our temporary names
CRASH_ENV = "FINSIM_CRASH_AT"


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
    fsync_dir(path.parent)
    return path


# ---------------------------------------------------------------- crash hooks (tests)
_crash_counts: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Test hook: SIGKILL this process when ``FINSIM_CRASH_AT`` is ``name`` (the
    first time) or ``name:n`` (the n-th time it gets here). Costs one lookup."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _crash_counts[name] = _crash_counts.get(name, 0) + 1
    if _crash_counts[name] >= int(nth or 1):
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


# ---------------------------------------------------------------- atomic files
def token() -> str:
    return secrets.token_hex(4)


def fsync_dir(path: str | Path) -> None:
    """Make a folder's entries (renames, new files) durable (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (must not exist), write ``data``, fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes, point: str = "file") -> None:
    """Replace ``path`` with ``data`` atomically: a hidden temporary file in the
    same folder, fsync, rename over ``path``, fsync the folder. A reader sees
    the old content or the new, never a part; a kill leaves at most a
    ``.<name>.tmp-XXXXXXXX`` file (removed by :func:`remove_strays`)."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp-{token()}"
    try:
        write_new(tmp, data)
        crash_point(f"{point}.tmp_written")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    crash_point(f"{point}.replaced")


def write_text_atomic(path: str | Path, text: str, point: str = "file") -> None:
    """:func:`write_bytes_atomic` for text (UTF-8)."""
    write_bytes_atomic(path, text.encode(), point)


def remove_strays(folder: Path, prefix: str = "") -> None:
    """Remove this module's temporary leftovers (``.<name>.tmp-XXXXXXXX`` etc.)
    in ``folder`` whose name starts with ``.<prefix>``. Only call it while
    holding the folder's writer lock (:func:`locked`)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for e in entries:
        if TEMP.fullmatch(e.name) and e.name.startswith("." + prefix):
            with contextlib.suppress(OSError):
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(e.path)
                else:
                    os.unlink(e.path)


@contextlib.contextmanager
def locked(folder: str | Path, wait: bool = True, what: str = "") -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` (created if needed). With
    ``wait=False`` a held lock is a :class:`CheckpointError`. The lock goes
    with the process, so a killed writer never leaves it behind. (No-op where
    ``fcntl`` does not exist.) Locks are per open: the same process must not
    take one folder's lock twice."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise CheckpointError(f"{folder} is in use by another process{what}; wait for it "
                                  "to finish or choose another folder") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def install_files(dest: Path, files: dict[str, bytes]) -> None:
    """Put ``files`` in the folder ``dest`` as one change: written complete into a
    hidden sibling, then renamed in place of ``dest`` (an old ``dest`` is renamed
    aside first and removed last: a kill between the renames leaves it whole as
    ``.NAME.old-*``): files written together (e.g. weights and their metadata)
    never mix two versions. ``files``: {file name: bytes}."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tag = token()
    new, old = dest.parent / f".{dest.name}.new-{tag}", dest.parent / f".{dest.name}.old-{tag}"
    new.mkdir()
    for name, data in files.items():
        write_new(new / name, data)
    fsync_dir(new)
    if dest.exists():
        os.rename(dest, old)
    os.rename(new, dest)
    fsync_dir(dest.parent)
    shutil.rmtree(old, ignore_errors=True)
