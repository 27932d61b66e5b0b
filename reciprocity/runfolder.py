"""Run folders: atomic result files, run identity, the ``--out`` guard and checkpoints.

A run folder is the truth about a run. ``train``, ``benchmark``, ``sweep``, ``reference`` and
``demo`` write into one through this module, and ``evaluate`` adds to one:

* **Manifest.** ``run.json`` says what the folder holds: ``kind`` (``"train"``, ...), the full
  ``config``, its ``identity`` (SHA-256 of kind and config: two runs with the same identity
  compute the same results), ``status`` (``"running"`` until the last result is written, then
  ``"complete"``; ``"interrupted"`` after Ctrl-C and ``"failed"`` after an error that leaves
  the run folder's ``with`` block), the package version and times.
* **Guard** (:func:`open_run`). A folder holding a *different* run is refused unless
  ``overwrite`` (which clears it first) or, for training, ``resume``. A folder holding the same
  run is cleared and run again, except an unfinished training run, which must be resumed or
  overwritten. One process at a time: the folder is locked (``.lock``, an advisory ``flock``
  released when the process ends, even by ``kill -9``).
* **List of files** (``.files``). Every file the package writes in a run folder — through
  :func:`atomic_write` and the writers on top of it, in this process or in a study's worker —
  is listed in the ``.files`` of the run folder that holds it (the nearest one up the path)
  *before* it is created; TensorBoard's event files are listed as a pattern
  (:func:`record_written`). Clearing (:func:`clear_run_folder`) removes exactly the listed files
  of the folder and of the run folders nested in it (a study's runs), and the folders left
  empty by that, after checking that nothing else is there: a file the package did not write —
  a user's notes, a figure, a folder written before run folders kept a list — is never deleted;
  the clearing is refused naming it. A file that existed before the package first wrote it (a
  user's Markdown page whose block is refreshed) is not listed.
* **Atomic writes** (:func:`atomic_write` and the helpers on top of it). Every result file
  (JSON, CSV, PNG, checkpoint) is written to a temporary file in the same folder, flushed,
  ``fsync``-ed and moved over the old one with ``os.replace``: a reader sees the old file or the
  new one, never a part, and a failed write (full disk, ``ulimit -f``, read-only folder) leaves
  the previous version intact. A folder without any write permission bit (``chmod a-w``) is
  read-only for the package even when it runs as root (:func:`check_writable`).
* **JSON** (:func:`write_json`): NumPy numbers are written as plain numbers; NaN and infinity are
  refused with the key that holds them, except for the quantities that are undefined by
  definition in documented cases (:data:`UNDEFINED_KEYS`), which are written as ``null``.
* **Checkpoints** (:func:`save_checkpoint`, :func:`load_checkpoint`) hold tensors and plain data
  only (NumPy arrays are stored as tensors) and load with ``torch.load(weights_only=True)``: a
  crafted checkpoint cannot run code, and a truncated or foreign one is a ``ValueError``.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import errno
import fcntl
import fnmatch
import hashlib
import io
import json
import math
import os
import secrets
import stat
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "UNDEFINED_KEYS",
    "RunFolder",
    "RunInterrupted",
    "WriteError",
    "atomic_write",
    "check_writable",
    "clear_run_folder",
    "identity",
    "load_checkpoint",
    "locked",
    "open_run",
    "read_json",
    "read_manifest",
    "record_written",
    "save_checkpoint",
    "save_figure",
    "to_json_text",
    "write_csv",
    "write_json",
    "write_text",
]

class WriteError(OSError):
    """A result file could not be written (the previous version, if any, is intact)."""

    def __str__(self) -> str:
        return str(self.strerror)


class RunInterrupted(Exception):
    """A run stopped by Ctrl-C (SIGINT) after saving what it needs to continue."""


MANIFEST = "run.json"
LOCK = ".lock"
CHECKPOINT_FORMAT = 1

#: Keys whose values are undefined by definition in documented cases and written as ``null``
#: when NaN: ``reference_performance`` (reference payoff <= 0), ``adherence`` (no decisive
#: context visited), ``ci95`` (an interval over a single seed), and in the benchmark's curve
#: points ``fraction_of_reference`` (no scenario of the group has a positive reference) and
#: ``collapsed`` (no scenario of the group has a context-sensitive reference head). A NaN
#: anywhere else is refused.
UNDEFINED_KEYS = frozenset({"reference_performance", "adherence", "adherence_per_agent", "ci95",
                            "fraction_of_reference", "collapsed"})

#: The list of files the package wrote in a run folder: one JSON object per line after a header
#: line, ``{"file": "<path relative to the folder>"}`` or ``{"glob": "<pattern>"}`` (files written
#: by another library, e.g. TensorBoard's event files). Appended to (``O_APPEND``, so that the
#: workers of a study may add to it at once) before each new file is created.
FILES = ".files"
_FILES_HEADER = {"reciprocity": "files written in this run folder (cleared with it)"}


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


# -- the list of files each run folder's writers create ------------------------------------------
def _files_owner(path: Path) -> Path | None:
    """The run folder that holds ``path``: the nearest folder up from its parent with a list of
    files (None: the path is in no run folder)."""
    for folder in (path.parent, *path.parent.parents):
        if (folder / FILES).is_file():
            return folder
    return None


def record_written(path: str | Path, *, pattern: bool = False) -> None:
    """List ``path`` (a file about to be created, or with ``pattern`` a glob of files another
    library writes, e.g. ``tb/events.out.tfevents.*``) as written by the package in the run
    folder that holds it, so that clearing the folder removes it. Nothing is listed outside run
    folders, nor a file that already exists unlisted (someone else's, which the package only
    rewrites)."""
    path = Path(os.path.abspath(path))
    owner = _files_owner(path)
    if owner is None or (not pattern and (path.exists() or path.is_symlink())):
        return
    entry = {"glob" if pattern else "file": path.relative_to(owner).as_posix()}
    try:
        _write_line(owner / FILES, entry, os.O_WRONLY | os.O_APPEND)
    except OSError as err:
        raise WriteError(err.errno, f"cannot write {path} (cannot list it in "
                                    f"{owner / FILES}: {err.strerror})") from None


def _write_line(path: Path, entry: dict, flags: int) -> None:
    """One JSON line into the list of files, opened with ``flags``, synced before it returns
    (an ``OSError`` is the caller's to name)."""
    fd = os.open(path, flags, 0o666)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _start_file_list(folder: Path) -> None:
    """Create the (empty) list of files of a run folder, unless it has one."""
    path = folder / FILES
    if _read_file_list(folder) is not None:
        return
    try:
        _write_line(path, _FILES_HEADER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    except OSError as err:
        raise ValueError(f"--out {folder}: cannot write in the folder ({err.strerror})") from None
    _sync_folder(folder)


def _read_file_list(folder: Path) -> tuple[set[str], list[str]] | None:
    """The files (relative paths) and patterns listed in a run folder, or None when it has no
    list of this package (an older version's folder, or not a run folder). Lines that are not
    entries, and entries leaving the folder, are ignored."""
    path = folder / FILES
    if not path.is_file() or path.is_symlink():
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        if not lines or json.loads(lines[0]) != _FILES_HEADER:
            return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    files, globs = set(), []
    for line in lines[1:]:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # e.g. a line cut by a crash
        if not isinstance(entry, dict) or len(entry) != 1:
            continue
        (kind, rel), = entry.items()
        if not isinstance(rel, str) or kind not in ("file", "glob") or rel.startswith("/") \
                or ".." in rel.split("/") or not rel:
            continue
        (files.add if kind == "file" else globs.append)(rel)
    return files, globs


def listed_files(folder: str | Path) -> list[str] | None:
    """The files and patterns a run folder lists as written by the package (relative paths,
    sorted), or None when it keeps no list (a folder of an older version, or not a run
    folder)."""
    listed = _read_file_list(Path(folder))
    return None if listed is None else sorted(listed[0] | set(listed[1]))


class _Foreign(Exception):
    """A file in a folder being cleared that the package did not write (``why``: the reason)."""

    def __init__(self, path: Path, why: str):
        self.path, self.why = path, why


def clear_run_folder(out: str | Path, label: str | None = None) -> None:
    """Remove what the package wrote in the run folder ``out``: the files its list names, those
    of the run folders nested in it, their lists, manifests, locks and temporary files, and the
    folders left empty by that (``out`` itself stays). Anything else — a file of the user's, a
    file of a folder written before run folders kept a list — is refused, naming the first one
    (in sorted order), before anything is removed.

    Raises:
        ValueError: naming the file that is not the package's, and what to do.
    """
    out = Path(out)
    label = label or f"--out {out}"
    try:
        remove = _owned(out, [], "none", top=True)
    except _Foreign as err:
        raise ValueError(f"{label} holds {err.path.relative_to(out).as_posix()}, which "
                         f"reciprocity did not write there ({err.why}); move it out of the "
                         "folder, or choose another --out") from None
    emptied: set[Path] = set()
    for path in remove:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as err:
            raise ValueError(f"{label}: cannot clear {path.relative_to(out).as_posix()} "
                             f"({err.strerror})") from None
        emptied.add(path.parent)
    # the folders left empty, deepest first (a folder that was empty before is left alone)
    for folder in sorted({p for f in emptied for p in (f, *f.parents) if out in p.parents},
                         key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            folder.rmdir()  # refused, as it should be, where something remains


def _valid_manifest(folder: Path) -> bool:
    try:
        return read_manifest(folder) is not None
    except ValueError:
        return False


_WHY = {"none": "the folder holds no run",
        "legacy": "the folder was written by an older version of reciprocity, which kept no "
                  "list of its files",
        "listed": "it is not in the folder's list of files"}


def _owned(folder: Path, lists: list[tuple[Path, set[str], list[str]]], state: str, *,
           top: bool = False) -> list[Path]:
    """The files under ``folder`` to remove; raises :class:`_Foreign` at the first one (in
    sorted order) that is not the package's. ``lists``: the lists of the run folders on the way
    down (folder, files, patterns); ``state``: ``"none"`` (no run folder yet), ``"legacy"``
    (in a run folder of an older version) or ``"listed"``."""
    listed = _read_file_list(folder)
    run_folder = listed is not None
    if run_folder:
        lists = [*lists, (folder, *listed)]
        state = "listed"
    elif (folder / MANIFEST).is_file() and _valid_manifest(folder):
        state = "legacy"
    remove = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        name = entry.name
        if entry.is_dir() and not entry.is_symlink():
            remove += _owned(entry, lists, state)
        elif name == LOCK and entry.is_file() and not entry.is_symlink() \
                and entry.stat().st_size == 0:
            if not top:  # the lock of the folder being cleared is held meanwhile
                remove.append(entry)
        elif (_is_temporary(name) or (run_folder and name == FILES)) and entry.is_file() \
                and not entry.is_symlink():
            remove.append(entry)
        elif name == MANIFEST and not entry.is_symlink() and _valid_manifest(folder):
            remove.append(entry)
        elif any(_lists(entry, *found) for found in lists):
            remove.append(entry)
        else:
            raise _Foreign(entry, _WHY[state])
    return remove


def _lists(entry: Path, folder: Path, files: set[str], globs: list[str]) -> bool:
    rel = entry.relative_to(folder).as_posix()
    return rel in files or any(fnmatch.fnmatchcase(rel, g) for g in globs)


# -- atomic writes -----------------------------------------------------------------------------
def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write a file atomically: ``write(f)`` fills a temporary file in the same folder, which
    is flushed, synced to disk and renamed over ``path``. On any failure the temporary file is
    removed and ``path`` keeps its previous content; the error names ``path``. A new file in a
    run folder is first listed as the package's (:func:`record_written`)."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    check_writable(path.parent, path)
    record_written(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise WriteError(err.errno, f"cannot write {path} ({err.strerror or err})") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _sync_folder(path.parent)
    return path


def check_writable(folder: str | Path, target: str | Path | None = None) -> None:
    """Refuse to write in a folder that has no write permission bit at all (``chmod a-w``), as
    the system refuses every user but root: the package treats it as read-only for root too.
    Raises :class:`WriteError` naming ``target`` (default: the folder)."""
    if _read_only_for_root(folder):
        raise WriteError(errno.EACCES, f"cannot write {target or folder} (Permission denied: "
                                       f"{folder} is read-only, for root too)")


def _read_only_for_root(folder: str | Path) -> bool:
    """Running as root (whom the system lets write anywhere), ``folder`` has no write bit."""
    if os.geteuid() != 0:
        return False  # the system enforces the permissions
    try:
        mode = os.stat(folder).st_mode
    except OSError:
        return False  # the write itself reports it
    return stat.S_ISDIR(mode) and not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def _sync_folder(folder: Path) -> None:
    """Make a rename durable (the folder entry), where the platform allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_text(path: str | Path, text: str) -> Path:
    """A text file (UTF-8), atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def to_json_text(obj: Any, where: str = "JSON") -> str:
    """JSON text of ``obj`` (indent 2): NumPy values as plain numbers; NaN/inf refused, except
    under :data:`UNDEFINED_KEYS` where NaN becomes ``null``. ``where`` names the file in errors.
    """
    return json.dumps(_plain(obj, where, (), False), indent=2, allow_nan=False) + "\n"


def write_json(path: str | Path, obj: Any) -> Path:
    """A JSON file (see :func:`to_json_text`), atomically."""
    path = Path(path)
    return write_text(path, to_json_text(obj, str(path)))


def _plain(value: Any, where: str, keys: tuple, undefined_ok: bool) -> Any:
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: key {k!r} at {_path(keys)} is not a string")
            out[k] = _plain(v, where, (*keys, k), undefined_ok or k in UNDEFINED_KEYS)
        return out
    if isinstance(value, list | tuple):
        return [_plain(v, where, (*keys, i), undefined_ok) for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist(), where, keys, undefined_ok)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value) and undefined_ok:
            return None
        raise ValueError(f"{where}: {_path(keys)} is {value} (not a finite number); refusing to "
                         "write it")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise ValueError(f"{where}: {_path(keys)} holds a {type(value).__name__}, which is not "
                     "JSON data")


def _path(keys: tuple) -> str:
    return ".".join(str(k) for k in keys) or "the top level"


def write_csv(path: str | Path, rows: list[dict], fieldnames: Iterable[str] | None = None
              ) -> Path:
    """A CSV file with a header (the first row's keys unless ``fieldnames``), atomically."""
    def write(f):
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=list(fieldnames or (rows[0] if rows else [])))
        writer.writeheader()
        writer.writerows(rows)
        f.write(text.getvalue().encode("utf-8"))
    return atomic_write(path, write)


def save_figure(fig, path: str | Path, **savefig_kwargs) -> Path:
    """A matplotlib figure (format from the suffix), atomically."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    return atomic_write(path, lambda f: fig.savefig(f, format=fmt, **savefig_kwargs))


def read_json(path: str | Path, what: str, required: Iterable[str] = ()) -> Any:
    """A JSON file, or a ValueError naming ``what`` and the file (missing, unreadable,
    truncated, not a mapping while ``required`` keys are expected, or lacking one of them)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what}: no {path.name} in {path.parent}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{what}: {path} is not a text file") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{what}: {path} is not valid JSON ({err}); it may be truncated") \
            from None
    except OSError as err:
        raise ValueError(f"{what}: {path} cannot be read: {err.strerror}") from None
    required = list(required)
    if required:
        if not isinstance(data, Mapping):
            raise ValueError(f"{what}: {path} must hold a JSON object")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"{what}: {path} lacks {missing} (not a file of this kind, or "
                             "written by an older version)")
    return data


# -- run identity and the --out guard ------------------------------------------------------------
def identity(kind: str, config: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a run's kind and configuration (canonical JSON)."""
    text = json.dumps({"kind": kind, "config": _plain(config, kind, (), False)},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class RunFolder:
    """An output folder opened by :func:`open_run` (locked until :meth:`close`)."""

    def __init__(self, path: Path, kind: str, config: Mapping[str, Any], lock_fd: int,
                 resumed: bool):
        self.path = path
        self.kind = kind
        self.config = dict(config)
        self.identity = identity(kind, config)
        self.resumed = resumed
        self.previous_status: str | None = None  # of the run resumed (e.g. "complete")
        self._lock_fd = lock_fd
        self.started = _now()
        self.status: str | None = None  # the status run.json was last written with

    def write_manifest(self, status: str) -> None:
        from . import __version__

        self.status = status

        write_json(self.path / MANIFEST, {
            "kind": self.kind, "identity": self.identity, "status": status,
            "reciprocity_version": __version__, "started": self.started,
            "updated": _now(), "config": self.config,
            # a copy of .files as of this update (.files itself is kept current)
            "files": listed_files(self.path) or []})

    def complete(self) -> None:
        """Mark the run complete (after its last result file is written)."""
        self.write_manifest("complete")

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # a run that stops on an error or Ctrl-C says so instead of staying "running"
        if exc_type is not None and self.status == "running":
            with contextlib.suppress(Exception):  # never mask the error itself
                self.write_manifest("interrupted" if issubclass(exc_type, KeyboardInterrupt)
                                    else "failed")
        self.close()


@contextlib.contextmanager
def locked(folder: str | Path):
    """Hold a run folder's lock while adding to it (e.g. ``evaluate``): refused while another
    process writes the folder."""
    folder = Path(folder)
    try:
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise ValueError(f"{folder}: cannot write in the folder ({err.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ValueError(f"{folder} is in use by another running process; wait for it") \
                from None
        yield folder
    finally:
        os.close(fd)


def read_manifest(folder: str | Path) -> dict | None:
    """The ``run.json`` of a folder, or None when it has none."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    return read_json(path, f"run folder {folder}", required=("kind", "identity", "status"))


def open_run(out: str | Path, kind: str, config: Mapping[str, Any], *, overwrite: bool = False,
             resume: bool = False, resumable: bool = False) -> RunFolder:
    """Open ``out`` for a run of ``kind`` with ``config`` (see the module docstring).

    Args:
        out: the output folder (created if missing).
        kind: ``"train"``, ``"benchmark"``, ``"sweep"``, ``"reference"``, ``"demo"``.
        config: everything that determines the run's results (JSON data).
        overwrite: clear a folder that holds another run.
        resume: continue the run the folder holds (same identity required).
        resumable: an unfinished run of this kind can be resumed (train): re-running it
            without ``resume`` or ``overwrite`` is refused instead of starting again.
    Raises:
        ValueError: naming the folder and what to do instead.
    """
    out = Path(out)
    label = f"--out {out}"
    if out.exists() and not out.is_dir():
        raise ValueError(f"{label} is a file, not a folder")
    existing = out if out.is_dir() else next(p for p in out.parents if p.is_dir())
    if _read_only_for_root(existing):
        raise ValueError(f"{label}: cannot create or write the folder ({existing} is read-only, "
                         "for root too)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        new_lock = not (out / LOCK).exists()  # removed again if the folder is refused
        lock_fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise ValueError(f"{label}: cannot create or write the folder ({err.strerror})") \
            from None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(lock_fd)
        if err.errno in (errno.EAGAIN, errno.EACCES):
            raise ValueError(f"{label} is in use by another running process; wait for it or "
                             "choose another folder") from None
        raise ValueError(f"{label}: cannot lock the folder ({err.strerror})") from None
    try:
        if not os.access(out, os.W_OK) or _read_only_for_root(out):
            raise ValueError(f"{label}: the folder is not writable")
        folder = RunFolder(out, kind, config, lock_fd, resumed=resume)
        _guard(folder, overwrite=overwrite, resume=resume, resumable=resumable)
        if folder.previous_status != "complete" or not resume:
            _start_file_list(out)
            folder.write_manifest("running")
    except BaseException:
        if new_lock:  # leave a refused folder as it was
            with contextlib.suppress(OSError):
                (out / LOCK).unlink()
        os.close(lock_fd)
        raise
    return folder


def _guard(folder: RunFolder, *, overwrite: bool, resume: bool, resumable: bool) -> None:
    out, label = folder.path, f"--out {folder.path}"
    for entry in out.iterdir():  # temporary files of writers killed mid-write
        if _is_temporary(entry.name):
            with contextlib.suppress(OSError):
                entry.unlink()
    entries = sorted(p.name for p in out.iterdir() if p.name != LOCK)
    manifest = read_manifest(out) if MANIFEST in entries else None
    same = manifest is not None and manifest["kind"] == folder.kind \
        and manifest["identity"] == folder.identity
    if resume:
        if manifest is None:
            raise ValueError(f"--resume {out}: the folder holds no run (no {MANIFEST})")
        if not same:
            raise ValueError(f"--resume {out}: the folder holds a different run "
                             f"({manifest['kind']}, identity {manifest['identity'][:12]}...)")
        folder.started = manifest.get("started", folder.started)
        folder.previous_status = manifest["status"]
        return
    if not entries:
        return
    if same and not overwrite:
        if manifest["status"] != "complete" and resumable:
            raise ValueError(f"{label} holds an unfinished run of this configuration: continue "
                             f"it with --resume {out}, or start it again with --overwrite")
        clear_run_folder(out, label)  # the same run again: no old file outlives it
        return
    if not overwrite:
        what = (f"a different {manifest['kind']} run" if manifest is not None
                else "files that are not from this run")
        raise ValueError(f"{label} holds {what}; choose another folder, or pass --overwrite to "
                         "replace it")
    clear_run_folder(out, label)


# -- checkpoints -------------------------------------------------------------------------------
def _encode(value: Any) -> Any:
    """NumPy arrays -> {"__ndarray__": tensor}; NumPy scalars -> Python numbers."""
    import torch

    if isinstance(value, Mapping):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_encode(v) for v in value)
    if isinstance(value, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(value).copy())}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, Mapping):
        if set(value) == {"__ndarray__"}:
            return value["__ndarray__"].numpy()
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_decode(v) for v in value)
    return value


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Save tensors and plain data (NumPy arrays allowed) atomically, loadable with
    :func:`load_checkpoint`."""
    import torch

    data = {"format": CHECKPOINT_FORMAT, "state": _encode(state)}
    return atomic_write(path, lambda f: torch.save(data, f))


def load_checkpoint(path: str | Path, required: Iterable[str] = ()) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True`` (no code
    runs while loading). Anything else — missing, empty, truncated, garbage, from another
    program, or a pickle that would run code — is a ValueError naming the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint: {path} does not exist")
    try:
        with warnings.catch_warnings():  # e.g. about the pickle protocol of a foreign file
            warnings.simplefilter("ignore")
            data = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # UnpicklingError, RuntimeError (bad zip), EOFError, ...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"checkpoint {path} cannot be loaded safely ({reason[:200]}); it is "
                         "damaged or not a checkpoint of this package") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT \
            or not isinstance(data.get("state"), dict):
        raise ValueError(f"checkpoint {path} is not a checkpoint of this package (format "
                         f"{CHECKPOINT_FORMAT})")
    state = _decode(data["state"])
    missing = [k for k in required if k not in state]
    if missing:
        raise ValueError(f"checkpoint {path} lacks {missing}")
    return state
