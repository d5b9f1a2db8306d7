"""Versioned checkpoints of trained policies, without pickled code.

A checkpoint is a folder ``<checkpoint_dir>/<model_id>/v<k>/`` holding
``weights.safetensors`` (tensors only) and ``meta.json`` (format version,
dimensions, hyper-parameters, environment parameters, metrics, package
versions, date). ``best``, ``latest`` and the next version number are recorded
in ``<model_id>/index.json``. A missing, truncated, corrupted, non-finite or
incompatible checkpoint is a :class:`CheckpointError` that says which and why.

Crash safety (a process killed at any instruction leaves a store that loads and
accepts new saves, and loses nothing that was saved before):

* a version is written into a hidden temporary folder (``.vK.tmp-XXXX``),
  every file and the folder are fsynced, and the folder is renamed into place;
  ``index.json`` is then replaced atomically (write aside, fsync, rename, fsync
  the folder). A complete version folder whose index entry was lost is adopted
  on reading; an incomplete one, a stray temporary folder or a version the
  index no longer lists is ignored (and temporary leftovers are removed by the
  next writer);
* version numbers never collide: the next one is above every number the index
  has recorded (deleted ones included) and every ``vK`` folder on disk;
* a plain checkpoint folder such as ``best`` or ``final`` is replaced with
  :func:`install_folder`: the new content is written and fsynced beside it,
  then swapped in with one atomic ``renameat2(RENAME_EXCHANGE)`` (Linux), so a
  reader always finds a complete folder. Where the exchange is not available
  the old folder is renamed aside first; a reader that finds the name missing
  in that instant reads the new, complete folder beside it, and the next
  writer finishes the swap;
* writers of one model folder (or of one output folder) take an exclusive
  ``flock`` on it, so two processes never interleave their steps.

Paths are confined: model ids and version names are plain names, and every
folder and file read through a store must resolve (symlinks followed) inside
the store's root.

``FINSIM_CRASH_AT=<point>[:<n>]`` makes the process SIGKILL itself the n-th
time it reaches ``<point>`` (the crash tests use it; see :func:`crash_point`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import logging
import math
import os
import re
import secrets
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from finsim_mesa.errors import FinsimError

__all__ = ["FORMAT_VERSION", "CheckpointError", "ModelCheckpointer", "NoCheckpoint", "check_finite",
           "check_model_id", "crash_point", "install_folder", "load_folder", "locked",
           "write_bytes_atomic", "write_text_atomic"]

FORMAT_VERSION = 1
META, WEIGHTS, INDEX = "meta.json", "weights.safetensors", "index.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_VERSION = re.compile(r"v([1-9][0-9]{0,8})")
_TEMP = re.compile(r"\..+\.(tmp|new|old|deleted)-[0-9a-f]{8}")  # our temporary names
CRASH_ENV = "FINSIM_CRASH_AT"
EXCHANGE_ENV = "FINSIM_RENAME_EXCHANGE"  # "0": use the portable two-rename swap

log = logging.getLogger("finsim_mesa.learning")


class CheckpointError(FinsimError):
    """A checkpoint cannot be written or read (missing, corrupted, incompatible)."""


class NoCheckpoint(CheckpointError):
    """There is no checkpoint at a path (the folder is missing or empty);
    ``reason`` says which."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


# ---------------------------------------------------------------- crash hooks
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
def _token() -> str:
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


def _write_new(path: Path, data: bytes) -> None:
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
    tmp = path.parent / f".{path.name}.tmp-{_token()}"
    try:
        _write_new(tmp, data)
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
        if _TEMP.fullmatch(e.name) and e.name.startswith("." + prefix):
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


# ---------------------------------------------------------------- checks
def check_model_id(model_id: Any) -> str:
    """A model id must be a plain name: letters, digits, ``_ - .``, at most 64
    characters, not starting with ``.``, no ``..`` (checked with fullmatch:
    a trailing newline is refused too)."""
    if not isinstance(model_id, str) or not _NAME.fullmatch(model_id) or ".." in model_id:
        raise CheckpointError(f"model id {model_id!r}: use a plain name of letters, digits, "
                              "'_', '-' or '.' (at most 64 characters, not starting with '.', "
                              "no '..')")
    return model_id


def _version_number(name: Any) -> int | None:
    m = _VERSION.fullmatch(name) if isinstance(name, str) else None
    return int(m.group(1)) if m else None


def confine(path: Path, root: Path) -> Path:
    """``path`` resolved (symlinks followed); a :class:`CheckpointError` naming
    it if it lies outside ``root``."""
    real, base = Path(path).resolve(), Path(root).resolve()
    if real != base and base not in real.parents:
        raise CheckpointError(f"{path} resolves to {real}, outside the model store {base}; "
                              "refusing to read it (symlinks and '..' must stay inside)")
    return real


def check_finite(tensors: dict[str, torch.Tensor], where: str) -> None:
    """A :class:`CheckpointError` naming the tensors with NaN or infinite values."""
    bad = [k for k, t in tensors.items()
           if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all())]
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise CheckpointError(f"{where}: non-finite weights (NaN or inf) in "
                              f"{', '.join(bad[:5])}{more}; the policy diverged and cannot act")


def _finite_metric(metric: Any) -> float | None:
    if metric is None:
        return None
    if isinstance(metric, bool) or not isinstance(metric, int | float) or not math.isfinite(
            metric):
        raise CheckpointError(f"metric {metric!r}: give a finite number or None")
    return float(metric)


# ---------------------------------------------------------------- folders
def _weight_bytes(weights: dict[str, torch.Tensor]) -> bytes:
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor)
                                                for v in weights.values()):
        raise CheckpointError("weights must be a dict of tensors")
    tensors = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
    check_finite(tensors, "refusing to save")
    return save_safetensors(tensors)


def _meta_bytes(meta: dict[str, Any]) -> bytes:
    try:
        return json.dumps(meta, indent=2).encode()  # inf allowed (promotion_reward)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint metadata is not plain JSON: {err}") from None


def _write_folder(folder: Path, files: dict[str, bytes], point: str) -> None:
    """Create ``folder`` and write ``files`` into it, fsyncing each and the folder."""
    os.mkdir(folder, 0o777)
    for i, (name, data) in enumerate(files.items()):
        if i:
            crash_point(f"{point}.partial")
        _write_new(folder / name, data)
    fsync_dir(folder)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False
    where unsupported."""
    if os.environ.get(EXCHANGE_ENV) == "0":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _looks_complete(folder: Path) -> bool:
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and (folder / WEIGHTS).is_file()


def _swap_siblings(dest: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """(new, old) temporary siblings of ``dest`` by token."""
    new: dict[str, Path] = {}
    old: dict[str, Path] = {}
    try:
        names = os.listdir(dest.parent)
    except OSError:
        return new, old
    for n in names:
        for kind, into in (("new", new), ("old", old)):
            head = f".{dest.name}.{kind}-"
            if n.startswith(head) and _TEMP.fullmatch(n):
                into[n[len(head):]] = dest.parent / n
    return new, old


def _interrupted_swap(dest: Path) -> Path | None:
    """Where ``dest``'s content is when a two-rename swap was interrupted after
    the old folder went aside: the new folder (complete: it is only swapped in
    once written and fsynced), else the old one."""
    new, old = _swap_siblings(dest)
    for token in sorted(old):
        if token in new and _looks_complete(new[token]):
            return new[token]
    for token in sorted(old):
        if _looks_complete(old[token]):
            return old[token]
    return None


def repair_folder(dest: str | Path) -> None:
    """Finish an interrupted :func:`install_folder` of ``dest`` and remove its
    leftovers. Call it while holding the parent's writer lock."""
    dest = Path(dest)
    if not dest.exists() and not dest.is_symlink():
        found = _interrupted_swap(dest)
        if found is not None:
            os.rename(found, dest)
            fsync_dir(dest.parent)
            log.warning("finished an interrupted replacement of %s", dest)
    remove_strays(dest.parent, dest.name + ".")


def install_folder(files: dict[str, bytes] | str | Path, dest: str | Path,
                   lock: bool = True) -> Path:
    """Replace the folder ``dest`` with a folder holding ``files`` ({name:
    bytes}, or the files of a folder to copy) so that ``dest`` is at every
    instant either the complete old folder or the complete new one.

    ``lock=False`` when the caller already holds ``dest.parent``'s lock."""
    dest = Path(dest)
    if not isinstance(files, dict):
        src = Path(files)
        files = {p.name: p.read_bytes() for p in sorted(src.iterdir()) if p.is_file()}
    ctx = locked(dest.parent) if lock else contextlib.nullcontext()
    with ctx:
        if dest.exists() and not dest.is_dir():
            raise CheckpointError(f"{dest} exists and is not a folder; move it away")
        repair_folder(dest)
        token = _token()
        new = dest.parent / f".{dest.name}.new-{token}"
        _write_folder(new, files, "swap")
        crash_point("swap.new_complete")
        if not dest.exists():
            os.rename(new, dest)
        elif _exchange(new, dest):
            crash_point("swap.exchanged")  # dest: new content; `new`: the old one
            old = dest.parent / f".{dest.name}.old-{token}"
            os.rename(new, old)
            shutil.rmtree(old, ignore_errors=True)
        else:
            old = dest.parent / f".{dest.name}.old-{token}"
            os.rename(dest, old)
            crash_point("swap.old_aside")
            os.rename(new, dest)
            fsync_dir(dest.parent)
            crash_point("swap.new_in")
            shutil.rmtree(old, ignore_errors=True)
        fsync_dir(dest.parent)
    return dest


# ---------------------------------------------------------------- reading
def _read_dir_files(folder: Path) -> tuple[bytes, bytes]:
    """(meta bytes, weights bytes) read through one open of the folder, so a
    concurrent swap cannot mix an old file with a new one."""
    if os.open not in os.supports_dir_fd:  # pragma: no cover - e.g. Windows
        return (folder / META).read_bytes(), (folder / WEIGHTS).read_bytes()
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        out = []
        for name in (META, WEIGHTS):
            fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
            with os.fdopen(fd, "rb") as f:
                out.append(f.read())
        return out[0], out[1]
    finally:
        os.close(dir_fd)


def load_folder(folder: str | Path, root: str | Path | None = None
                ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read one checkpoint folder (weights.safetensors + meta.json), checking it.

    With ``root``, the folder and its files must resolve inside ``root``."""
    folder = Path(folder)
    for attempt in range(3):
        where = folder
        if not folder.exists() and not folder.is_symlink():
            where = _interrupted_swap(folder) or folder  # a swap caught mid-way
            if where is folder:
                raise NoCheckpoint(f"there is no checkpoint at {folder}: the folder does "
                                   "not exist", "the folder does not exist")
        if root is not None:
            confine(where, root)
            for name in (META, WEIGHTS):
                if (where / name).is_symlink():
                    confine(where / name, root)
        if not where.is_dir():
            raise CheckpointError(f"{folder} is not a checkpoint folder (it is a file)")
        missing = [n for n in (META, WEIGHTS) if not (where / n).exists()]
        if len(missing) == 2:
            raise NoCheckpoint(f"there is no checkpoint in {folder}: it has neither {META} "
                               f"nor {WEIGHTS}", f"the folder has neither {META} nor {WEIGHTS}")
        if missing:
            raise CheckpointError(f"checkpoint {folder} is incomplete: {missing[0]} is missing")
        try:
            meta_bytes, weight_bytes = _read_dir_files(where)
        except FileNotFoundError:
            if attempt < 2:
                continue  # replaced while we read it: read the new one
            raise CheckpointError(f"checkpoint {folder} changed while it was read; try "
                                  "again") from None
        except OSError as err:
            raise CheckpointError(f"checkpoint {folder} cannot be read: {err}") from None
        break
    meta_path, weights_path = folder / META, folder / WEIGHTS
    try:
        meta = json.loads(meta_bytes)
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{meta_path} is corrupted: {err}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path} is corrupted: it must be a JSON object, got a "
                              f"{type(meta).__name__}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{folder}: checkpoint format {meta.get('format_version')!r} "
                              f"is not supported (this version reads {FORMAT_VERSION})")
    try:
        weights = load_safetensors(weight_bytes)
    except Exception as err:  # safetensors raises several types for damaged files
        raise CheckpointError(f"{weights_path} is truncated or corrupted: {err}") from None
    check_finite(weights, str(weights_path))
    return weights, meta


# ---------------------------------------------------------------- the store
def _is_model_dir(path: str) -> bool:
    """A folder with an index.json or a version folder."""
    if os.path.exists(os.path.join(path, INDEX)):
        return True
    try:
        return any(_version_number(n) is not None for n in os.listdir(path))
    except OSError:
        return False


def _empty_index() -> dict[str, Any]:
    return {"versions": [], "best": None, "latest": None, "best_metric": None, "next": 1}


class ModelCheckpointer:
    """Saves and loads versioned checkpoints under ``checkpoint_dir``."""

    def __init__(self, checkpoint_dir: str | Path) -> None:
        self.root = Path(checkpoint_dir)

    # ------------------------------------------------------------ paths
    def _model_dir(self, model_id: str) -> Path:
        check_model_id(model_id)
        folder = self.root / model_id
        if folder.exists() or folder.is_symlink():
            confine(folder, self.root)
        return folder

    def _version_dir(self, model_id: str, version: str) -> Path:
        if _version_number(version) is None:
            raise CheckpointError(f"model {model_id!r}: version {version!r} is not a version "
                                  "name (v1, v2, ...)")
        folder = self._model_dir(model_id) / version
        if folder.exists() or folder.is_symlink():
            confine(folder, self.root)
        return folder

    # ------------------------------------------------------------ the index
    def _read_index_file(self, model_id: str) -> dict[str, Any]:
        path = self._model_dir(model_id) / INDEX
        if not path.exists():
            return _empty_index()
        if path.is_symlink():
            confine(path, self.root)
        try:
            index = json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{path} is corrupted: {err}") from None
        except OSError as err:
            raise CheckpointError(f"{path} cannot be read: {err}") from None
        return self._validated(index, path)

    @staticmethod
    def _validated(index: Any, path: Path) -> dict[str, Any]:
        def bad(what: str) -> CheckpointError:
            return CheckpointError(f"{path} is damaged: {what} (the version folders beside it "
                                   "are kept; restore or delete the index)")

        if not isinstance(index, dict):
            raise bad(f"it must be a JSON object, got a {type(index).__name__}")
        for key in ("versions", "best", "latest"):
            if key not in index:
                raise bad(f"the key {key!r} is missing")
        versions = index["versions"]
        if not isinstance(versions, list):
            raise bad(f"'versions' must be a list, got {versions!r}")
        for v in versions:
            if _version_number(v) is None:
                raise bad(f"'versions' lists {v!r}, which is not a version name (v1, v2, ...)")
        if len(set(versions)) != len(versions):
            raise bad("'versions' lists a version twice")
        for key in ("best", "latest"):
            if index[key] is not None and index[key] not in versions:
                raise bad(f"{key!r} is {index[key]!r}, which is not one of the versions")
        metric = index.get("best_metric")
        if metric is not None and (isinstance(metric, bool)
                                   or not isinstance(metric, int | float)):
            raise bad(f"'best_metric' must be a number or null, got {metric!r}")
        nxt = index.get("next")
        if nxt is not None and (isinstance(nxt, bool) or not isinstance(nxt, int) or nxt < 1):
            raise bad(f"'next' must be a positive integer, got {nxt!r}")
        highest = max((_version_number(v) or 0 for v in versions), default=0)
        return {"versions": list(versions), "best": index["best"], "latest": index["latest"],
                "best_metric": metric, "next": max(nxt or 1, highest + 1)}

    def _index(self, model_id: str) -> dict[str, Any]:
        """The index with complete version folders its last update missed
        (a save killed between the rename and the index write) adopted."""
        index = self._read_index_file(model_id)
        folder = self.root / model_id
        if not folder.is_dir():
            return index
        orphans = sorted((n, e) for e in os.scandir(folder)
                         if (n := _version_number(e.name)) is not None
                         and n >= index["next"] and e.name not in index["versions"])
        for n, e in orphans:
            path = Path(e.path)
            if e.is_symlink() or not _looks_complete(path):
                continue  # incomplete (or not ours): ignored, its number skipped
            try:
                metric = json.loads((path / META).read_text()).get("metric")
                metric = _finite_metric(metric)
            except (OSError, ValueError, CheckpointError):
                metric = None
            self._record(index, e.name, metric)
            index["next"] = n + 1
            log.warning("adopted %s: a complete version its index did not list", path)
        return index

    @staticmethod
    def _record(index: dict[str, Any], version: str, metric: float | None) -> None:
        index["versions"].append(version)
        index["latest"] = version
        if metric is not None and (index["best_metric"] is None or metric > index["best_metric"]):
            index["best"], index["best_metric"] = version, metric
        if index["best"] is None:
            index["best"] = version

    def _write_index(self, model_id: str, index: dict[str, Any]) -> None:
        write_text_atomic(self._model_dir(model_id) / INDEX, json.dumps(index, indent=2),
                          point="index")

    @contextlib.contextmanager
    def writing(self, model_id: str) -> Iterator[Path]:
        """Hold the model folder's writer lock (and clear leftovers of killed writers)."""
        folder = self._model_dir(model_id)
        with locked(folder):
            remove_strays(folder)
            yield folder

    def _next_number(self, folder: Path, index: dict[str, Any]) -> int:
        on_disk = [n for e in os.scandir(folder) if (n := _version_number(e.name)) is not None]
        return max([index["next"] - 1, *on_disk]) + 1

    # ------------------------------------------------------------ API
    def save_checkpoint(self, model_id: str, weights: dict[str, torch.Tensor],
                        meta: dict[str, Any], metric: float | None = None) -> str:
        """Write a new version; it becomes ``latest`` and, if ``metric`` is the
        highest so far, ``best``. Returns the version name (``v1``, ``v2``, ...)."""
        check_model_id(model_id)
        metric = _finite_metric(metric)
        import numpy

        import finsim_mesa

        full_meta = {"format_version": FORMAT_VERSION, "model_id": model_id,
                     "version": None, "metric": metric,
                     "created": dt.datetime.now(dt.UTC).isoformat(),
                     "packages": {"finsim_mesa": finsim_mesa.__version__,
                                  "torch": torch.__version__, "numpy": numpy.__version__},
                     **meta}
        weight_bytes = _weight_bytes(weights)  # bad weights or metadata: refused before
        _meta_bytes(full_meta)                 # anything is written
        with self.writing(model_id) as folder:
            index = self._index(model_id)
            if not (folder / INDEX).exists():  # the folder is known as a model from now on
                self._write_index(model_id, index)
            number = self._next_number(folder, index)
            version = full_meta["version"] = f"v{number}"
            meta_bytes = _meta_bytes(full_meta)
            tmp = folder / f".{version}.tmp-{_token()}"
            try:
                _write_folder(tmp, {WEIGHTS: weight_bytes, META: meta_bytes}, "save")
                crash_point("save.folder_written")
                os.rename(tmp, folder / version)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            fsync_dir(folder)
            crash_point("save.renamed")
            self._record(index, version, metric)
            index["next"] = number + 1
            self._write_index(model_id, index)
        return version

    def list_checkpoints(self, model_id: str | None = None) -> list[dict[str, Any]]:
        """Every saved version (of one model or all) with its metadata.

        A version whose metadata cannot be read is listed as ``{"model_id",
        "version", "error"}`` (and, listing all models, a model whose index is
        damaged as ``{"model_id", "version": None, "error"}``) instead of
        failing the whole listing."""
        return [e for e, _ in self._scan(model_id)]

    def _scan(self, model_id: str | None) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        if model_id is not None:
            ids = [model_id]
        elif self.root.is_dir():
            ids = sorted(e.name for e in os.scandir(self.root)
                         if not e.name.startswith(".") and _is_model_dir(e.path))
        else:
            ids = []
        out: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        for mid in ids:
            try:
                index = self._index(mid)
            except CheckpointError as err:
                if model_id is not None:
                    raise
                log.warning("%s", err)
                out.append(({"model_id": mid, "version": None, "error": str(err)}, None))
                continue
            for v in index["versions"]:
                try:
                    meta_path = self._version_dir(mid, v) / META
                    meta = json.loads(meta_path.read_bytes())
                    if not isinstance(meta, dict):
                        raise ValueError(f"it must be a JSON object, got a "
                                         f"{type(meta).__name__}")
                except (OSError, ValueError, UnicodeDecodeError, CheckpointError) as err:
                    msg = str(err) if isinstance(err, CheckpointError) else (
                        f"{self.root / mid / v / META} cannot be read: {err}")
                    log.warning("%s", msg)
                    out.append(({"model_id": mid, "version": v, "error": msg}, index))
                    continue
                out.append((meta | {"model_id": mid, "version": v}, index))
        return out

    def load_checkpoint(self, model_id: str, version: str = "best"
                        ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(weights, metadata) of ``version`` (``best``, ``latest`` or ``vK``)."""
        index = self._index(model_id)
        if not index["versions"]:
            raise CheckpointError(f"no checkpoints for model {model_id!r} in {self.root}")
        name = index.get(version) if version in ("best", "latest") else version
        if name not in index["versions"]:
            raise CheckpointError(f"model {model_id!r} has no version {version!r}; saved: "
                                  f"{', '.join(index['versions'])}")
        return load_folder(self._version_dir(model_id, name), root=self.root)
