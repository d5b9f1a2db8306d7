"""Checkpoint folders: writing one, swapping it in atomically, reading it back
checked (the mechanics behind :mod:`finsim_mesa.learning.checkpoint`; see its
docstring for the crash-safety guarantees)."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from finsim_mesa.errors import CheckpointError, NoCheckpoint
from finsim_mesa.files import TEMP, crash_point, fsync_dir, locked, remove_strays, write_new
from finsim_mesa.files import token as new_token

__all__ = ["FORMAT_VERSION", "INDEX", "META", "WEIGHTS", "check_finite", "confine",
           "install_folder", "load_folder", "looks_complete", "meta_bytes", "repair_folder",
           "weight_bytes", "write_folder"]

FORMAT_VERSION = 1
META, WEIGHTS, INDEX = "meta.json", "weights.safetensors", "index.json"
EXCHANGE_ENV = "FINSIM_RENAME_EXCHANGE"  # "0": use the portable two-rename swap

log = logging.getLogger("finsim_mesa.learning")


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


# ---------------------------------------------------------------- folders
def weight_bytes(weights: dict[str, torch.Tensor]) -> bytes:
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor)
                                                for v in weights.values()):
        raise CheckpointError("weights must be a dict of tensors")
    tensors = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
    check_finite(tensors, "refusing to save")
    return save_safetensors(tensors)


def meta_bytes(meta: dict[str, Any]) -> bytes:
    try:
        return json.dumps(meta, indent=2).encode()  # inf allowed (promotion_reward)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint metadata is not plain JSON: {err}") from None


def write_folder(folder: Path, files: dict[str, bytes], point: str) -> None:
    """Create ``folder`` and write ``files`` into it, fsyncing each and the folder."""
    os.mkdir(folder, 0o777)
    for i, (name, data) in enumerate(files.items()):
        if i:
            crash_point(f"{point}.partial")
        write_new(folder / name, data)
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


def looks_complete(folder: Path) -> bool:
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
            if n.startswith(head) and TEMP.fullmatch(n):
                into[n[len(head):]] = dest.parent / n
    return new, old


def _interrupted_swap(dest: Path) -> Path | None:
    """Where ``dest``'s content is when a two-rename swap was interrupted after
    the old folder went aside: the new folder (complete: it is only swapped in
    once written and fsynced), else the old one."""
    new, old = _swap_siblings(dest)
    for token in sorted(old):
        if token in new and looks_complete(new[token]):
            return new[token]
    for token in sorted(old):
        if looks_complete(old[token]):
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
        token = new_token()
        new = dest.parent / f".{dest.name}.new-{token}"
        write_folder(new, files, "swap")
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
