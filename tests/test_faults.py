"""Fault injection: kill -9 at random moments, Ctrl-C, write failures, crafted checkpoints.

The training command runs in a subprocess (as a user runs it) and is killed while it trains,
checkpoints or writes its results. Afterwards every JSON file on disk must parse, progress.csv
must hold whole rows, and ``--resume`` must end exactly where an uninterrupted run ends
(metrics and learning curve, bit for bit). Write failures (``ulimit -f``, a read-only folder)
must leave the previous results intact; a damaged or crafted checkpoint must be refused without
running anything from it.
"""

from __future__ import annotations

import copy
import csv
import ctypes
import json
import os
import pickle
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reciprocity.cli import main
from reciprocity.runfolder import load_checkpoint, save_checkpoint, write_json
from reciprocity.train import TrainConfig, train

torch.set_num_threads(1)

#: Tiny runs with a checkpoint after every update, so that kills land in checkpoint writes too;
#: the last one spends most of its training time in a warm-up (60 of 80 updates) and the rest
#: together and evaluating, so that kills land on both sides of it.
RUNS = {
    "rg": ["--algo", "rg", "--scenario", "L6-v0", "--rounds", "60", "--set",
           "rounds_per_update=5", "--set", "horizon=20"],
    "ppo": ["--algo", "ppo", "--scenario", "L6-v0", "--rounds", "240", "--set",
            "rounds_per_update=10"],
    "reinforce": ["--algo", "reinforce", "--scenario", "L6-v0", "--rounds", "300", "--set",
                  "rounds_per_update=10"],
    "rg-warmup": ["--algo", "rg", "--scenario", "many-learners-audit-v0", "--rounds", "400",
                  "--warmup", "300", "--set", "rounds_per_update=5", "--set", "horizon=25"],
}
COMMON = ["--num-envs", "4", "--eval-envs", "8", "--checkpoint-every", "1", "--quiet"]


def cli(*args: str, **kwargs) -> subprocess.Popen:
    """The ``reciprocity`` command in a new process (torch threads: 1, as the machine is shared)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "reciprocity.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def train_args(run: str, out: Path) -> list[str]:
    return ["train", *RUNS[run], *COMMON, "--out", str(out)]


def outcome(folder: Path) -> tuple[dict, list[dict]]:
    """What a finished run computed: its metrics (without wall time and run times) and curve."""
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics = {k: metrics[k] for k in ("per_interaction_payoff", "per_interaction_payoff_ci95",
                                       "per_agent_payoff", "policies", "rounds", "updates")}
    with (folder / "progress.csv").open(newline="") as f:
        return metrics, list(csv.DictReader(f))


_REFERENCES: dict[str, tuple] = {}


def uninterrupted(run: str, root: Path) -> tuple[tuple, float]:
    """The uninterrupted run of ``run`` (computed once per session) and its wall time."""
    if run not in _REFERENCES:
        folder = root / f"reference-{run}"
        start = time.perf_counter()
        code, _, err = finish(cli(*train_args(run, folder)))
        assert code == 0, err
        _REFERENCES[run] = (outcome(folder), time.perf_counter() - start)
    return _REFERENCES[run]


def check_readable(folder: Path) -> None:
    """Whatever a kill left: every JSON parses, every progress.csv row is whole, the checkpoint
    loads."""
    for path in folder.rglob("*.json"):
        json.loads(path.read_text())
    if (folder / "progress.csv").exists():
        with (folder / "progress.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows and all(None not in r and all(v != "" for v in r.values()) for r in rows)
    if (folder / "checkpoint.pt").exists():
        load_checkpoint(folder / "checkpoint.pt")


def kill_and_resume(run: str, root: Path, kills: int) -> list[int]:
    """Returns the update each resumed run continued from."""
    expected, seconds = uninterrupted(run, root)
    delays = random.Random(f"kill-9 {run}")
    resumed = []
    for k in range(kills):
        folder = root / f"{run}-{k}"
        process = cli(*train_args(run, folder))
        time.sleep(delays.uniform(0.2, 1.05) * seconds)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        if folder.exists():
            check_readable(folder)
        # continue: from the checkpoint, or again from the start if the kill came before it
        if (folder / "checkpoint.pt").exists():
            resumed.append(load_checkpoint(folder / "checkpoint.pt")["update"])
            code, _, err = finish(cli("train", "--resume", str(folder), "--quiet"))
        else:
            code, _, err = finish(cli(*train_args(run, folder), "--overwrite"))
        assert code == 0, (k, err)
        assert outcome(folder) == expected, (run, k)
    assert len(resumed) >= kills // 2  # most kills landed while training, after a checkpoint
    return resumed


@pytest.mark.slow
@pytest.mark.parametrize("run", list(RUNS))
def test_kill_9_at_random_moments_then_resume_is_exact(tmp_path_factory, run):
    resumed = kill_and_resume(run, tmp_path_factory.mktemp("kill9"), kills=10)
    if run == "rg-warmup":  # kills landed during the warm-up (60 updates) and after it
        assert min(resumed) < 60 <= max(resumed), resumed


def test_ctrl_c_checkpoints_and_stops_with_one_line(tmp_path_factory):
    root = tmp_path_factory.mktemp("ctrl-c")
    expected, _ = uninterrupted("ppo", root)
    folder = root / "run"
    process = cli(*train_args("ppo", folder))
    deadline = time.monotonic() + 120
    while not (folder / "progress.csv").exists():  # training has begun
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    code, _, err = finish(process)
    assert code == 130, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("interrupted after update ") and f"--resume {folder}" in err
    done = load_checkpoint(folder / "checkpoint.pt")["update"]
    assert f"after update {done} of 24" in err
    assert json.loads((folder / "run.json").read_text())["status"] == "interrupted"
    code, _, err = finish(cli("train", "--resume", str(folder), "--quiet"))
    assert code == 0, err
    assert outcome(folder) == expected


# -- write failures --------------------------------------------------------------------------------
def _small_run(folder: Path) -> None:
    """A finished single-seed run (in this process) and a matching cheap reference."""
    train(TrainConfig("L6-v0", rounds=20, num_envs=2, eval_envs=4, eval_rounds=10,
                      checkpoint_every=1, tensorboard=False), folder / "run", progress=False)
    assert main(["reference", "--scenario", "L6-v0", "--search-envs", "2", "--confirm-envs",
                 "4", "--rounds", "10", "--out", str(folder / "ref")]) == 0


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))  # ulimit -f 2


def test_file_size_limit_leaves_previous_results_intact(tmp_path, stop_training):
    """``ulimit -f 2`` (the same failure as a full disk): evaluate and resume fail with one line,
    every earlier file keeps its bytes and no temporary file is left behind; once the disk has
    room again, the resume ends as an uninterrupted run does."""
    _small_run(tmp_path)
    run = tmp_path / "run"
    before = _snapshot(run)
    code, _, err = finish(cli("evaluate", "--run", str(run), "--reference",
                              str(tmp_path / "ref"), preexec_fn=_limit_file_size))
    assert code == 2 and err.startswith("error: cannot write") and err.count("\n") == 1, err
    assert "metrics.json (File too large)" in err
    assert _snapshot(run) == before
    # a run stopped after its first update, resumed while the disk is full
    config = TrainConfig("L6-v0", rounds=30, num_envs=2, eval_envs=4, checkpoint_every=1,
                         tensorboard=False)
    with stop_training(2), pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "stopped", progress=False)
    stopped = tmp_path / "stopped"
    before = _snapshot(stopped)
    code, _, err = finish(cli("train", "--resume", str(stopped), "--quiet",
                              preexec_fn=_limit_file_size))
    assert code == 2 and "cannot write" in err and err.count("\n") == 1, err
    after = _snapshot(stopped)
    after.pop("run.json"), before.pop("run.json")  # the manifest is small and may be rewritten
    assert after == before
    assert main(["train", "--resume", str(stopped), "--quiet"]) == 0
    full = train(config, tmp_path / "full", progress=False)[0]
    resumed = json.loads((stopped / "metrics.json").read_text())
    assert resumed["policies"] == full["policies"]
    assert (stopped / "progress.csv").read_text() == (tmp_path / "full" / "progress.csv") \
        .read_text()


def _drop_root_file_permissions():
    """As root, give up for good the capabilities that bypass file permissions
    (CAP_DAC_OVERRIDE = 1, CAP_DAC_READ_SEARCH = 2), so that a read-only folder is read-only for
    the command too: drop them from the bounding set (which the exec'd program's capabilities
    are computed from) and from the inheritable set."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop = 24
    for cap in (1, 2):
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
    header = ctypes.create_string_buffer(struct.pack("Ii", 0x20080522, 0))  # version 3
    data = ctypes.create_string_buffer(24)
    if libc.capget(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    words = list(struct.unpack("6I", data.raw))
    keep = ~((1 << 1) | (1 << 2)) & 0xFFFFFFFF
    words[0:3] = [w & keep for w in words[0:3]]  # effective, permitted, inheritable (caps 0-31)
    if libc.capset(header, ctypes.create_string_buffer(struct.pack("6I", *words))) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def test_read_only_folder_leaves_previous_results_intact(tmp_path):
    _small_run(tmp_path)
    run = tmp_path / "run"
    before = _snapshot(run)
    run.chmod(0o555)
    try:
        code, _, err = finish(cli("evaluate", "--run", str(run), "--reference",
                                  str(tmp_path / "ref"), preexec_fn=_drop_root_file_permissions))
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
        assert "Permission denied" in err or "not writable" in err
        code, _, err = finish(cli("train", "--scenario", "L6-v0", "--out", str(run / "new"),
                                  preexec_fn=_drop_root_file_permissions))
        assert code == 2 and "cannot create or write" in err, err
    finally:
        run.chmod(0o755)
    assert _snapshot(run) == before


def test_read_only_folder_is_read_only_for_root_too(tmp_path):
    """Issue 19: run as root (who may write anywhere), read-only run folders were written anyway.
    A folder without any write permission bit (chmod a-w) is read-only for the package whoever
    runs it: the same one-line refusals as for any other user, nothing changed."""
    _small_run(tmp_path)
    run = tmp_path / "run"
    before = _snapshot(run)
    run.chmod(0o555)
    try:
        code, _, err = finish(cli("evaluate", "--run", str(run), "--reference",
                                  str(tmp_path / "ref")))  # capabilities kept
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"error: cannot write {run / 'metrics.json'} (Permission denied")
        code, _, err = finish(cli("train", "--scenario", "L6-v0", "--out", str(run / "new")))
        assert code == 2 and "cannot create or write the folder" in err, err
        code, _, err = finish(cli("train", "--resume", str(run)))
        assert code == 2 and "is read-only, for root too" in err and err.count("\n") == 1, err
        with pytest.raises(OSError, match=r"cannot write .*metrics\.json \(Permission denied"):
            write_json(run / "metrics.json", {})
    finally:
        run.chmod(0o755)
    assert _snapshot(run) == before and not (run / "new").exists()
    # a read-only file in a writable folder is replaced, as the system allows any user
    (run / "metrics.json").chmod(0o444)
    write_json(run / "metrics.json", {"rewritten": True})
    assert json.loads((run / "metrics.json").read_text()) == {"rewritten": True}


# -- damaged and crafted checkpoints ------------------------------------------------------------
class _RunsCode:
    """Unpickling this calls os.system: what a crafted checkpoint would do."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _damaged_checkpoints(folder: Path) -> dict[str, bytes]:
    train(TrainConfig("L6-v0", rounds=10, num_envs=2, eval_envs=4), folder / "good",
          progress=False)
    good = (folder / "good" / "checkpoint.pt").read_bytes()
    marker = folder / "code-ran"
    crafted = folder / "crafted.pt"
    torch.save({"format": 1, "state": {"update": _RunsCode(f"touch {marker}")}}, crafted)
    plain_pickle = pickle.dumps(_RunsCode(f"touch {marker}"))
    foreign = folder / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    partial = folder / "partial.pt"
    save_checkpoint(partial, {"update": 3})
    return {"crafted": crafted.read_bytes(), "pickle": plain_pickle, "empty": b"",
            "truncated": good[: len(good) // 2], "garbage": os.urandom(4096),
            "foreign": foreign.read_bytes(), "partial": partial.read_bytes()}


def test_damaged_or_crafted_checkpoints_are_refused_without_running_code(tmp_path, capsys):
    checkpoints = _damaged_checkpoints(tmp_path)
    for name, data in checkpoints.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "checkpoint.pt").write_bytes(data)
        with pytest.raises(ValueError, match=r"checkpoint\.pt"):
            load_checkpoint(folder / "checkpoint.pt",
                            required=("identity", "learner", "game", "update"))
        assert main(["train", "--resume", str(folder)]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "checkpoint" in err, err
    assert not (tmp_path / "code-ran").exists()
    # control: the crafted pickle does run code when loaded without weights_only
    torch.load(tmp_path / "crafted" / "checkpoint.pt", weights_only=False)
    assert (tmp_path / "code-ran").exists()


#: Checkpoints that load safely (tensors and plain data) but hold what no run of this package
#: wrote: each gave "unexpected AttributeError/KeyError/TypeError/RuntimeError" (exit 1), or ran
#: on silently (an update count beyond the run's).
HOSTILE = [
    (("train_config",), None), (("train_config",), [1, 2]), (("train_config", "seeds"), None),
    (("train_config", "rounds"), torch.zeros(2, 2, dtype=torch.int64)),
    (("scenario",), 7), (("scenario", "population"), "x"),
    (("update",), 1.5), (("update",), 99), (("update",), torch.zeros(3)),
    (("learner",), None), (("learner", "policy"), {}), (("learner", "estimators"), "x"),
    (("learner", "optimizer", "state", 0), []),
    (("learner", "optimizer", "state", 0), torch.zeros(3)),
    (("game", "noise", "signal_u"), torch.zeros(2, 2)), (("game", "noise", "observers"), None),
    (("game", "core_rng", "state", "state"), "x"), (("game", "reputation"), [1, 2]),
    (("rngs",), [None]), (("progress",), [{"update": [1]}]), (("snapshots",), "x"),
    (("wall_seconds",), "x"),
]


def test_hostile_checkpoints_are_one_line_errors(tmp_path, capsys, stop_training):
    """A checkpoint is data: whatever it holds that does not fit the run is a ValueError naming
    the checkpoint (one line, exit 2), before the run continues."""
    base = tmp_path / "base"
    with stop_training(2), pytest.raises(KeyboardInterrupt):
        train(TrainConfig("L6-v0", rounds=30, num_envs=2, eval_envs=4, checkpoint_every=1,
                          tensorboard=False), base, progress=False)
    state = load_checkpoint(base / "checkpoint.pt")
    for k, (where, value) in enumerate(HOSTILE):
        hostile = copy.deepcopy(state)
        inner = hostile
        for key in where[:-1]:
            inner = inner[key]
        inner[where[-1]] = copy.deepcopy(value)
        folder = tmp_path / f"hostile-{k}"
        shutil.copytree(base, folder)
        save_checkpoint(folder / "checkpoint.pt", hostile)
        assert main(["train", "--resume", str(folder), "--quiet"]) == 2, where
        err = capsys.readouterr().err
        assert err.startswith(f"error: checkpoint {folder / 'checkpoint.pt'}") and \
            err.count("\n") == 1 and "unexpected" not in err, (where, err)
    # control: the checkpoint as saved resumes
    assert main(["train", "--resume", str(base), "--quiet"]) == 0
