"""Run folders: atomic result files, run identity, the ``--out`` guard and checkpoints.

A run folder is the truth about a run. ``train``, ``benchmark``, ``sweep``, ``reference`` and
``demo`` write into one through this module, and ``evaluate`` adds to one:

* **Manifest.** ``run.json`` says what the folder holds: ``kind`` (``"train"``, ...), the full
  ``config``, its ``identity`` (SHA-256 of kind and config: two runs with the same identity
  compute the same results), ``status`` (``"running"`` until the last result is written, then
  ``"complete"``), the package version and times.
* **Guard** (:func:`open_run`). A folder holding a *different* run is refused unless
  ``overwrite`` (which clears it first) or, for training, ``resume``. A folder holding the same
  run is cleared and run again, except an unfinished training run, which must be resumed or
  overwritten. Clearing only touches folders whose every entry is a file this package writes,
  so a mistyped ``--out`` never deletes someone's data. One process at a time: the folder is
  locked (``.lock``, an advisory ``flock`` released when the process ends, even by ``kill -9``).
* **Atomic writes** (:func:`atomic_write` and the helpers on top of it). Every result file
  (JSON, CSV, PNG, checkpoint) is written to a temporary file in the same folder, flushed,
  ``fsync``-ed and moved over the old one with ``os.replace``: a reader sees the old file or the
  new one, never a part, and a failed write (full disk, ``ulimit -f``, read-only folder) leaves
  the previous version intact.
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
import hashlib
import io
import json
import math
import os
import secrets
import shutil
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
    "identity",
    "load_checkpoint",
    "locked",
    "open_run",
    "read_json",
    "read_manifest",
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

#: Names this package writes in run folders; a folder holding only these may be cleared.
OUTPUT_NAMES = frozenset({
    MANIFEST, LOCK, "metrics.json", "summary.json", "progress.csv", "checkpoint.pt", "tb",
    "results.json", "benchmark.json", "grid.json", "sweep.json", "references", "runs",
    "params.json", "reference.json", "demo.json", "demo.png", "tuning", "tuning.json",
    "institutions",
})


def _is_output(name: str) -> bool:
    return (name in OUTPUT_NAMES or name.startswith("seed_") or name.endswith(".png")
            or _is_temporary(name))


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


# -- atomic writes -----------------------------------------------------------------------------
def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write a file atomically: ``write(f)`` fills a temporary file in the same folder, which
    is flushed, synced to disk and renamed over ``path``. On any failure the temporary file is
    removed and ``path`` keeps its previous content; the error names ``path``."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
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
        self._lock_fd = lock_fd
        self.started = _now()

    def write_manifest(self, status: str) -> None:
        from . import __version__

        write_json(self.path / MANIFEST, {
            "kind": self.kind, "identity": self.identity, "status": status,
            "reciprocity_version": __version__, "started": self.started,
            "updated": _now(), "config": self.config})

    def complete(self) -> None:
        """Mark the run complete (after its last result file is written)."""
        self.write_manifest("complete")

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc) -> None:
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
    try:
        out.mkdir(parents=True, exist_ok=True)
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
        folder = RunFolder(out, kind, config, lock_fd, resumed=resume)
        _guard(folder, overwrite=overwrite, resume=resume, resumable=resumable)
        if not os.access(out, os.W_OK):
            raise ValueError(f"{label}: the folder is not writable")
        folder.write_manifest("running")
    except BaseException:
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
        return
    if not entries:
        return
    if same and not overwrite:
        if manifest["status"] != "complete" and resumable:
            raise ValueError(f"{label} holds an unfinished run of this configuration: continue "
                             f"it with --resume {out}, or start it again with --overwrite")
        _clear(out)  # the same run again: its old files must not outlive it
        return
    if not overwrite:
        what = (f"a different {manifest['kind']} run" if manifest is not None
                else "files that are not from this run")
        raise ValueError(f"{label} holds {what}; choose another folder, or pass --overwrite to "
                         "replace it")
    foreign = [name for name in entries if not _is_output(name)]
    if manifest is None and foreign:
        raise ValueError(f"{label} holds files this package did not write ({foreign[:3]}); "
                         "--overwrite only clears run folders: choose another folder")
    _clear(out)


def _clear(out: Path) -> None:
    for entry in out.iterdir():
        if entry.name == LOCK:
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as err:
            raise ValueError(f"--out {out}: cannot clear {entry.name} ({err.strerror})") \
                from None


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
