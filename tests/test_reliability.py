"""Trustworthy runs: run folders, validation, budgets, seeds, resume, evaluate, the CLI's errors.

Every case of the adversarial review of ``train`` / ``evaluate`` / ``benchmark`` / ``sweep`` is
here as a regression test: the right result, or a one-line ``ValueError`` naming the field.
Fault injection (kill -9, write failures, crafted checkpoints) is in test_faults.py.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from reciprocity.agents.rg import RGConfig
from reciprocity.baselines import PPOConfig, ReinforceConfig
from reciprocity.cli import build_parser, main
from reciprocity.envs import config as env_config_module
from reciprocity.envs import get_scenario, make_parallel
from reciprocity.envs.scenarios import Scenario, load_scenario
from reciprocity.runfolder import (
    atomic_write,
    load_checkpoint,
    open_run,
    read_json,
    write_json,
)
from reciprocity.sweep import SweepGrid, run_sweep
from reciprocity.train import TrainConfig, train

torch.set_num_threads(1)

TINY = {"rounds": 20, "num_envs": 2, "eval_envs": 4}


def tiny_cli(*extra: str) -> list[str]:
    return ["--rounds", "20", "--num-envs", "2", "--eval-envs", "4", "--quiet", *extra]


def read_progress(folder: Path) -> list[dict]:
    with (folder / "progress.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def results(metrics: dict) -> dict:
    """What a run computed (not when or where it ran)."""
    return {k: metrics[k] for k in ("per_interaction_payoff", "per_interaction_payoff_ci95",
                                    "per_agent_payoff", "policies")}


# -- atomic writes and JSON ----------------------------------------------------------------------
def test_a_failed_write_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"payoff": 1.0})
    before = path.read_bytes()

    def half_then_fail(f):
        f.write(b'{"payoff": 2.')
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match=r"cannot write .*metrics.json"):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temporary left


def test_json_refuses_nan_and_inf_naming_the_key(tmp_path):
    path = tmp_path / "x.json"
    with pytest.raises(ValueError, match=r"per_seed\.1 is nan"):
        write_json(path, {"payoff": {"per_seed": [1.0, float("nan")]}})
    with pytest.raises(ValueError, match=r"payoff is inf"):
        write_json(path, {"payoff": np.float64("inf")})
    assert not path.exists()
    # documented undefined quantities are null; NumPy values are plain numbers
    write_json(path, {"reference_performance": float("nan"),
                      "adherence": {"mean": np.float32(0.5), "ci95": float("nan")},
                      "seed": np.int64(3), "table": np.array([0.25, 1.0])})
    assert json.loads(path.read_text()) == {
        "reference_performance": None, "adherence": {"mean": 0.5, "ci95": None},
        "seed": 3, "table": [0.25, 1.0]}


def test_read_json_names_the_file_and_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match=r"no metrics.json in"):
        read_json(tmp_path / "metrics.json", "--run")
    (tmp_path / "metrics.json").write_text('{"scenario": "L6-v0", "per_')
    with pytest.raises(ValueError, match=r"not valid JSON.*truncated"):
        read_json(tmp_path / "metrics.json", "--run")
    (tmp_path / "metrics.json").write_text('{"scenario": "L6-v0"}')
    with pytest.raises(ValueError, match=r"lacks \['policies'\]"):
        read_json(tmp_path / "metrics.json", "--run", required=("scenario", "policies"))


# -- the --out guard -------------------------------------------------------------------------------
def test_out_guard_refuses_another_run_and_clears_only_run_folders(tmp_path):
    out = tmp_path / "run"
    with open_run(out, "train", {"a": 1}) as folder:
        write_json(out / "metrics.json", {})
        folder.complete()
    # the same run again: its old files do not survive
    with open_run(out, "train", {"a": 1}) as folder:
        assert not (out / "metrics.json").exists()
        assert read_json(out / "run.json", "x")["status"] == "running"
        write_json(out / "metrics.json", {})
        folder.complete()
    with pytest.raises(ValueError, match=r"holds a different train run.*--overwrite"):
        open_run(out, "train", {"a": 2})
    assert (out / "metrics.json").exists()
    with open_run(out, "train", {"a": 2}, overwrite=True):
        assert sorted(p.name for p in out.iterdir()) == [".files", ".lock", "run.json"]
    # a folder of somebody's files is never cleared
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="mine"):
            open_run(mine, "train", {"a": 1}, overwrite=overwrite)
    assert (mine / "notes.txt").read_text() == "precious"
    # nor one of this package's file names without a list of files (older versions): refused
    old = tmp_path / "old"
    (old / "seed_0").mkdir(parents=True)
    (old / "summary.json").write_text("{}")
    with pytest.raises(ValueError, match="--overwrite"):
        open_run(old, "train", {"a": 1})
    with pytest.raises(ValueError, match=r"holds summary\.json, which reciprocity did not "
                                         r"write there \(the folder holds no run\)"):
        open_run(old, "train", {"a": 1}, overwrite=True)
    assert (old / "summary.json").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        open_run(tmp_path / "file", "train", {})


def test_one_writer_per_folder_and_unfinished_runs_are_resumed(tmp_path):
    out = tmp_path / "run"
    with open_run(out, "train", {"a": 1}, resumable=True):
        with pytest.raises(ValueError, match="in use by another running process"):
            open_run(out, "train", {"a": 1})
    # not completed (killed): re-running the same configuration must say how to continue
    with pytest.raises(ValueError, match=r"unfinished run.*--resume.*--overwrite"):
        open_run(out, "train", {"a": 1}, resumable=True)
    with pytest.raises(ValueError, match="different run"):
        open_run(out, "train", {"a": 2}, resume=True)
    open_run(out, "train", {"a": 1}, resume=True).close()


def test_reused_out_cannot_leave_stale_results(tmp_path):
    """A single-seed run, then a two-seed run of another scenario in the same folder: refused;
    with --overwrite, nothing of the first run remains, and evaluate reads the second."""
    out, ref = str(tmp_path / "run"), str(tmp_path / "ref")
    assert main(["train", "--scenario", "L6-v0", "--out", out, *tiny_cli()]) == 0
    args = ["train", "--scenario", "all-defectors-v0", "--algo", "reinforce", "--seeds", "4",
            "5", "--eval-rounds", "10", "--out", out, *tiny_cli()]
    assert main(args) == 2
    assert main([*args, "--overwrite"]) == 0
    assert not (Path(out) / "metrics.json").exists()
    assert main(["reference", "--scenario", "all-defectors-v0", "--search-envs", "2",
                 "--confirm-envs", "4", "--rounds", "10", "--out", ref]) == 0
    assert main(["evaluate", "--run", out, "--reference", ref]) == 0
    for seed in (4, 5):
        m = json.loads((Path(out) / f"seed_{seed}" / "metrics.json").read_text())
        assert m["scenario"] == "all-defectors-v0" and "evaluation" in m
    assert "evaluation" in json.loads((Path(out) / "summary.json").read_text())


# -- scenarios: hash, NumPy values, files ----------------------------------------------------------
def test_scenario_hash_is_the_game_not_its_spelling():
    base = get_scenario("L6-v0")
    data = base.to_dict()
    spelled = {**data, "population": ["focal", {"count": 9, "slot": "disc+stern_judging"}],
               "benefit": 5, "description": "another text"}
    assert Scenario.from_dict(spelled).content_hash() == base.content_hash()
    assert Scenario.from_dict({**data, "benefit": 1.5}).content_hash() != base.content_hash()
    assert Scenario.from_dict({**data, "max_rounds": 99}).content_hash() != base.content_hash()


def test_numpy_typed_scenario_trains_and_writes_plain_json(tmp_path):
    data = {**get_scenario("L6-v0").to_dict(), "id": "numpy-v0",
            "benefit": np.float64(5.0), "cost": np.float32(1.0), "max_rounds": np.int64(20),
            "population": ["focal", {"count": np.int64(4), "slot": "L6"}]}
    scenario = Scenario.from_dict(data)
    assert type(scenario.max_rounds) is int and type(scenario.benefit) is float
    metrics = train(TrainConfig(scenario, **TINY), tmp_path, progress=False)[0]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["config"]["scenario"]["max_rounds"] == 20
    assert saved["per_interaction_payoff"] == metrics["per_interaction_payoff"]


def test_unreadable_scenario_files_name_the_file(tmp_path):
    binary = tmp_path / "s.yaml"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(ValueError, match=r"s\.yaml.*not a text file"):
        load_scenario(binary)


# -- validation: every hyper-parameter, every budget ---------------------------------------------
BAD_HYPERPARAMETERS = [
    (RGConfig, "rounds_per_update", 0), (RGConfig, "rounds_per_update", -10),
    (RGConfig, "horizon", 0), (RGConfig, "steps_per_update", 0), (RGConfig, "hidden", 0),
    (RGConfig, "gamma", 1.5), (RGConfig, "gamma", float("nan")), (RGConfig, "lr", "0.1"),
    (RGConfig, "lr", -0.1), (RGConfig, "estimator_prior", 0.0), (RGConfig, "horizon", 2.5),
    (RGConfig, "estimator_decay", 1.5), (RGConfig, "policy", "lstm"), (RGConfig, "horizon", True),
    (PPOConfig, "clip_coef", -1.0), (PPOConfig, "clip_coef", 0.0), (PPOConfig, "gamma", 1.0),
    (PPOConfig, "num_minibatches", 0), (PPOConfig, "num_epochs", 0), (PPOConfig, "lr", "fast"),
    (PPOConfig, "max_grad_norm", 0.0), (PPOConfig, "gae_lambda", 1.1),
    (PPOConfig, "normalize_advantages", 1), (PPOConfig, "value_hidden", 0),
    (PPOConfig, "entropy_coef", -0.1), (PPOConfig, "vf_coef", float("inf")),
    (ReinforceConfig, "rounds_per_update", 0), (ReinforceConfig, "gamma", -0.1),
    (ReinforceConfig, "baseline", "none"), (ReinforceConfig, "baseline_decay", 2.0),
    (ReinforceConfig, "value_lr", "x"), (ReinforceConfig, "hidden", 0),
]


@pytest.mark.parametrize("config_cls,name,value", BAD_HYPERPARAMETERS,
                         ids=[f"{c.__name__}.{n}={v!r}" for c, n, v in BAD_HYPERPARAMETERS])
def test_bad_hyperparameters_are_named(config_cls, name, value):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        config_cls(**{name: value})


def test_boundary_hyperparameters_are_accepted_and_numpy_becomes_plain():
    """Control: the tests above do not pass because everything fails."""
    rg = RGConfig(rounds_per_update=np.int64(1), gamma=1.0, lr=0.0, estimator_decay=1.0)
    assert type(rg.rounds_per_update) is int and rg.gamma == 1.0
    ppo = PPOConfig(gamma=0.0, gae_lambda=1.0, lr=np.float32(0.5), normalize_advantages=False)
    assert type(ppo.lr) is float
    ReinforceConfig(baseline="running_mean", baseline_decay=0.0, gamma=0.0)


@pytest.mark.parametrize("kwargs,needle", [
    ({"rounds": 0}, "rounds"), ({"num_envs": 0}, "num_envs"), ({"eval_envs": 1}, "eval_envs"),
    ({"eval_rounds": -5}, "eval_rounds"), ({"seeds": (0, 0)}, "seeds"), ({"seeds": ()}, "seeds"),
    ({"seeds": (-1,)}, "seeds"), ({"seeds": 3}, "seeds"), ({"rounds": 2.5}, "rounds"),
    ({"device": "bogus"}, "device"), ({"device": "cuda:7"}, "device"),
    ({"checkpoint_every": -1}, "checkpoint_every"), ({"checkpoint_every": "soon"},
                                                      "checkpoint_every"),
    ({"algo_config": {"gamma": 1.5}}, "gamma"), ({"algo_config": {"horizonn": 3}}, "horizonn"),
    ({"init_policy": "disc+L6", "algo_config": {"policy": "mlp"}}, "init_policy"),
    ({"scenario": "nope-v0"}, "unknown id"),
])
def test_bad_train_options_are_named(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        TrainConfig(**{"scenario": "L6-v0", **kwargs})


@pytest.mark.parametrize("algo", ["rg", "ppo", "reinforce"])
def test_the_budget_is_exact_for_every_algorithm(tmp_path, algo):
    """25 rounds with 10 rounds per update: 10 + 10 + 5 (a last, shorter collection)."""
    config = TrainConfig("L6-v0", algo=algo, rounds=25, num_envs=2, eval_envs=4,
                         algo_config={"rounds_per_update": 10})
    assert config.collections() == [10, 10, 5]
    m = train(config, tmp_path, progress=False)[0]
    assert (m["rounds"], m["updates"], m["interactions"]) == (25, 3, 50)
    assert [int(r["rounds"]) for r in read_progress(tmp_path)] == [10, 20, 25]
    # and at the defaults: 25 rounds are 25 rounds whatever rounds_per_update is
    assert sum(TrainConfig("L6-v0", algo=algo, rounds=25).collections()) == 25


def test_ppo_minibatches_of_one_decision_are_refused():
    with pytest.raises(ValueError, match=r"num_minibatches.*minibatches of 1 decision"):
        TrainConfig("L6-v0", algo="ppo", rounds=1, num_envs=1,
                    algo_config={"rounds_per_update": 1, "num_minibatches": 2})


def test_a_diverging_learner_stops_before_anything_non_finite_is_saved(tmp_path, monkeypatch):
    from reciprocity.baselines import PPO

    original, calls = PPO.update, {"n": 0}

    def poisoned(self, rollout):
        out = original(self, rollout)
        calls["n"] += 1
        if calls["n"] == 3:
            with torch.no_grad():
                self.policy.action_table[0, 0, 1] = float("nan")
        return out

    monkeypatch.setattr(PPO, "update", poisoned)
    config = TrainConfig("L6-v0", algo="ppo", rounds=50, num_envs=2, eval_envs=4,
                         checkpoint_every=1, algo_config={"rounds_per_update": 10})
    with pytest.raises(ValueError, match=r"diverged at update 3.*policy of seed\(s\) \[0\]"):
        train(config, tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["update"] == 2
    assert torch.isfinite(state["learner"]["policy"]["action_table"]).all()
    assert not (tmp_path / "metrics.json").exists()
    assert [r["update"] for r in read_progress(tmp_path)] == ["1", "2"]


def test_memory_estimate_refuses_what_cannot_fit(monkeypatch):
    with pytest.raises(ValueError, match=r"population: 1000000000001 slots would need about "
                                         r"\d+\.\d GiB"):
        make_parallel("L6-v0", population=["focal", {"count": 10**12, "slot": "L6"}])
    monkeypatch.setattr(env_config_module, "available_memory", lambda: 64 * 2**20)
    with pytest.raises(ValueError, match=r"^observation: .* 100008 for 100000 focal agents "
                                         r"would need about"):
        make_parallel("L6-v0", population=["focal"] * 100_000, observation="full")
    with pytest.raises(ValueError, match=r"^num_envs: 400000 games .* would need about"):
        TrainConfig("L6-v0", algo="ppo", num_envs=400_000, algo_config={"rounds_per_update": 1})
    make_parallel("L6-v0", observation="full")  # control: a normal environment fits
    with pytest.raises(ValueError, match=r"benefit must be at most 1e\+06"):
        make_parallel("L6-v0", benefit=1e308)


# -- seeds: a seed's run depends on that seed alone ------------------------------------------------
SEED_INDEPENDENCE = textwrap.dedent("""
    import json, sys, torch
    torch.set_num_threads(1)
    from reciprocity.envs.scenarios import Scenario, get_scenario
    from reciprocity.train import TrainConfig, train
    # Bernoulli initial reputations: the per-seed stream draws them too
    data = {**get_scenario("many-learners-v0").to_dict(), "id": "p0-v0",
            "initial_reputation": 0.7}
    scenario = Scenario.from_dict(data)
    out = {}
    for algo, warmup in [(a, w) for a in ("rg", "ppo", "reinforce") for w in (0, 20)]:
        kw = dict(algo=algo, rounds=60, num_envs=3, eval_envs=4, tensorboard=False,
                  save_checkpoint=False, algo_config={"rounds_per_update": 20},
                  warmup=warmup)
        alone = train(TrainConfig(scenario, seeds=(7,), **kw), progress=False)[0]
        inside = train(TrainConfig(scenario, seeds=(2, 7, 11), **kw), progress=False)[1]
        keys = ("per_interaction_payoff", "per_agent_payoff", "policies")
        out[algo + ("+warmup" if warmup else "")] = [{k: m[k] for k in keys}
                                                     for m in (alone, inside)]
    out["capability"] = torch.backends.cpu.get_cpu_capability()
    json.dump(out, sys.stdout)
""")


def test_a_seed_gives_the_same_numbers_alone_and_among_other_seeds():
    """Bit for bit, for every algorithm, with seven learners per seed, with and without a
    warm-up, as run by the ``reciprocity`` command (torch's portable CPU kernels: see
    docs/reliability.md)."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    done = subprocess.run([sys.executable, "-c", SEED_INDEPENDENCE], env=env, text=True,
                          capture_output=True, timeout=600, check=True)
    out = json.loads(done.stdout)
    assert out.pop("capability") == "DEFAULT"
    for algo, (alone, inside) in out.items():
        assert alone == inside, algo
    # control: the learners learned something seed-specific, so equality is not trivial
    assert out["ppo"][0]["policies"] != out["reinforce"][0]["policies"]
    assert out["rg+warmup"][0]["policies"] != out["rg"][0]["policies"]


@pytest.mark.parametrize("algo", ["rg", "ppo", "reinforce"])
def test_each_seed_has_its_own_streams(tmp_path, algo):
    """With learning switched off (lr = 0) a seed's rewards depend only on its random streams
    (games and decisions): adding seeds to the list leaves its learning curve as it was, in any
    process (no floating-point question involved)."""
    kw = {**TINY, "algo": algo, "algo_config": {"lr": 0.0, "rounds_per_update": 5}}
    train(TrainConfig("L6-v0", seeds=(0,), **kw), tmp_path / "a", progress=False)
    train(TrainConfig("L6-v0", seeds=(3, 0, 1), **kw), tmp_path / "b", progress=False)
    alone = [r["train_reward_per_round"] for r in read_progress(tmp_path / "a")]
    inside = [r["train_reward_per_round"] for r in read_progress(tmp_path / "b")
              if r["seed"] == "0"]
    other = [r["train_reward_per_round"] for r in read_progress(tmp_path / "b")
             if r["seed"] == "3"]
    assert alone == inside and len(alone) == 4
    assert other != alone  # control: another seed plays other games


# -- resume ----------------------------------------------------------------------------------------
def test_resume_uses_the_run_s_own_scenario_from_any_directory(tmp_path, monkeypatch,
                                                              stop_training):
    """The scenario file is edited, then deleted, and the resume runs from another directory:
    the run continues its own game and ends as an uninterrupted run does."""
    scenario_file = tmp_path / "s.yaml"
    scenario_file.write_text("id: mine-v0\npopulation: [focal, {count: 5, slot: L6}]\n"
                             "benefit: 5\ncost: 1\nmax_rounds: 20\n")
    monkeypatch.chdir(tmp_path)
    args = ["train", "--config", "s.yaml", "--algo", "ppo", "--set", "rounds_per_update=5",
            "--checkpoint-every", "1", *tiny_cli()]
    assert main([*args, "--out", "full"]) == 0
    with stop_training(3):
        assert main([*args, "--out", "killed"]) == 130
    scenario_file.write_text(scenario_file.read_text().replace("benefit: 5", "benefit: 1.2"))
    assert main(["train", "--resume", "killed", "--config", "s.yaml"]) == 2  # edited file
    scenario_file.unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", "--resume", "../killed", "--quiet"]) == 0
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    resumed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert results(resumed) == results(full)
    assert resumed["config"]["scenario"]["benefit"] == 5
    assert read_progress(tmp_path / "killed") == read_progress(tmp_path / "full")


@pytest.mark.parametrize("extra,needle", [
    (["--algo", "ppo"], "--algo ppo contradicts the run's rg"),
    (["--rounds", "40"], "--rounds 40 contradicts the run's rounds 20"),
    (["--seed", "9"], "--seed 9 contradicts the run's seeds 0"),
    (["--seeds", "0", "1"], "--seeds 0 1 contradicts"),
    (["--set", "horizon=7"], "--set horizon=7 contradicts the run's horizon=50"),
    (["--scenario", "L5-v0"], "--scenario L5-v0 contradicts the run's scenario L6-v0"),
    (["--overwrite"], "--overwrite would clear it"),
])
def test_resume_refuses_contradicting_options(tmp_path, capsys, extra, needle):
    out = str(tmp_path / "run")
    assert main(["train", "--scenario", "L6-v0", "--out", out, *tiny_cli()]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", out, *extra]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    # agreeing options are accepted
    assert main(["train", "--resume", out, "--algo", "rg", "--rounds", "20", "--seed", "0",
                 "--set", "horizon=50", "--scenario", "L6-v0", "--quiet"]) == 0


def test_a_finished_run_resumes_to_nothing_and_a_stopped_one_is_marked(tmp_path, capsys,
                                                                       stop_training):
    """Issue 19: --resume on a finished run reopened it (status running, checkpoint rewritten,
    evaluation re-run); a stop by Ctrl-C left run.json "running"."""
    out = tmp_path / "run"
    assert main(["train", "--scenario", "L6-v0", "--out", str(out), *tiny_cli()]) == 0
    before = {p.relative_to(out): (p.read_bytes(), p.stat().st_mtime_ns)
              for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "the run is already complete, nothing to resume" in printed
    assert "seed 0: per-interaction payoff" in printed  # its stored results
    assert {p.relative_to(out): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in out.rglob("*") if p.is_file()} == before  # nothing rewritten
    # without a checkpoint: said as clearly
    bare = tmp_path / "bare"
    train(TrainConfig("L6-v0", save_checkpoint=False, tensorboard=False, **TINY), bare,
          progress=False)
    assert main(["train", "--resume", str(bare)]) == 2
    assert "the run is already complete (it kept no checkpoint); nothing to resume" in \
        capsys.readouterr().err
    # a stop is recorded as such, is not mistaken for a finished run, and is resumed
    stopped = tmp_path / "stopped"
    with stop_training(2), pytest.raises(KeyboardInterrupt):
        train(TrainConfig("L6-v0", checkpoint_every=1, **TINY), stopped, progress=False)
    assert read_json(stopped / "run.json", "x")["status"] == "interrupted"
    assert main(["evaluate", "--run", str(stopped)]) == 2
    assert "not finished (status interrupted)" in capsys.readouterr().err
    assert main(["train", "--scenario", "L6-v0", "--out", str(stopped), *tiny_cli()]) == 2
    assert "unfinished run of this configuration: continue it with --resume" in \
        capsys.readouterr().err
    assert main(["train", "--resume", str(stopped), "--quiet"]) == 0
    assert read_json(stopped / "run.json", "x")["status"] == "complete"
    assert "already complete" not in capsys.readouterr().out


def test_default_cadence_gives_every_algorithm_several_checkpoints():
    """At the default budget (2000 rounds): ten evenly spaced checkpoints plus the last, for
    RG (200 updates), PPO (40) and REINFORCE (20)."""
    from reciprocity.train import DEFAULT_CHECKPOINTS

    for algo in ("rg", "ppo", "reinforce"):
        updates = len(TrainConfig("L6-v0", algo=algo).collections())
        every = -(-updates // DEFAULT_CHECKPOINTS)
        assert len(range(every, updates, every)) + 1 >= 10, algo


# -- evaluate --------------------------------------------------------------------------------------
def test_evaluate_refuses_another_game_under_the_same_id(tmp_path, capsys):
    """A file named L6-v0 with b = 1.5 is not scored against the catalogue's L6-v0."""
    fake = tmp_path / "fake.json"
    fake.write_text(json.dumps({**get_scenario("L6-v0").to_dict(), "benefit": 1.5}))
    run, ref = str(tmp_path / "run"), str(tmp_path / "ref")
    assert main(["train", "--config", str(fake), "--out", run, *tiny_cli()]) == 0
    assert main(["reference", "--scenario", "L6-v0", "--search-envs", "2", "--confirm-envs",
                 "4", "--out", ref]) == 0
    assert main(["evaluate", "--run", run, "--reference", ref]) == 2
    assert "same id, different contents" in capsys.readouterr().err
    assert "evaluation" not in json.loads((Path(run) / "metrics.json").read_text())


def test_evaluate_refuses_another_protocol_and_unfinished_runs(tmp_path, capsys):
    run, ref = str(tmp_path / "run"), str(tmp_path / "ref")
    assert main(["train", "--scenario", "L6-v0", "--out", run, "--eval-rounds", "30",
                 *tiny_cli()]) == 0
    assert main(["reference", "--scenario", "L6-v0", "--search-envs", "2", "--confirm-envs",
                 "4", "--rounds", "20", "--out", ref]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--run", run, "--reference", ref]) == 2
    assert "not comparable" in capsys.readouterr().err
    # the default reference uses the run's own protocol, paired with its games
    assert main(["evaluate", "--run", run]) == 0
    manifest = Path(run) / "run.json"
    manifest.write_text(manifest.read_text().replace('"complete"', '"running"'))
    assert main(["evaluate", "--run", run]) == 2
    assert "not finished" in capsys.readouterr().err


def test_reference_has_no_nan_and_needs_learners(tmp_path, capsys):
    assert main(["reference", "--scenario", "L6-v0", "--confirm-envs", "1", "--out",
                 str(tmp_path / "r")]) == 2
    scripted = tmp_path / "scripted.json"
    scripted.write_text(json.dumps({"id": "scripted-v0", "population": ["L6", "L6", "alld+L6"],
                                    "benefit": 5, "cost": 1}))
    assert main(["reference", "--config", str(scripted), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "confirm-envs must be at least 2" in err and "no focal slot" in err
    assert not (tmp_path / "r").exists()


# -- sweep and benchmark ---------------------------------------------------------------------------
SWEEP = {"scenarios": ["L6-v0"], "algos": ["rg"], "seeds": [0], "rounds": 10, "num_envs": 2,
         "eval_envs": 4, "eval_rounds": 10, "search_envs": 2,
         "params": {"rg": {"horizon": [3], "rounds_per_update": [5]}}}


def test_sweep_refuses_duplicates_and_a_folder_of_another_run(tmp_path):
    with pytest.raises(ValueError, match=r"params\.rg\.horizon must hold distinct values"):
        SweepGrid.from_dict({**SWEEP, "params": {"rg": {"horizon": [3, 3]}}})
    with pytest.raises(ValueError, match=r"grid: L6-v0 rg .*gamma must lie in"):
        run_sweep({**SWEEP, "params": {"rg": {"gamma": [1.5]}}}, tmp_path / "bad",
                  workers=1, progress=False)
    assert not (tmp_path / "bad").exists()
    out = tmp_path / "sweep"
    run_sweep(SWEEP, out, workers=1, progress=False)
    more = {**SWEEP, "params": {"rg": {"horizon": [4], "rounds_per_update": [5]}}}
    with pytest.raises(ValueError, match="--overwrite"):
        run_sweep(more, out, workers=1, progress=False)
    records = run_sweep(more, out, workers=1, progress=False, overwrite=True)
    # nothing of the first sweep is left to be read as current
    assert [p.name for p in (out / "runs" / "L6-v0" / "rg").iterdir()] == \
        ["horizon=4,rounds_per_update=5"]
    assert json.loads((out / "results.json").read_text())[0]["params"] == records[0]["params"]


def test_benchmark_refuses_a_folder_of_another_run_before_running(tmp_path):
    """A benchmark re-run with more seeds into the folder of an earlier one would mix their
    figures and records: refused at once, before any training."""
    from reciprocity.benchmark import BenchmarkConfig, run_benchmark

    out = tmp_path / "results"
    with open_run(out, "benchmark", {"seeds": 1}) as folder:
        (out / "results.json").write_text("[]")
        folder.complete()
    cfg = BenchmarkConfig(scenarios=("L6-v0",), algos=("rg",), policies=("tabular",), seeds=3,
                          budgets=(10,), main_budget=10, tuning=None, num_envs=2, eval_envs=4,
                          search_envs=2, confirm_envs=4)
    with pytest.raises(ValueError, match="holds a different benchmark run"):
        run_benchmark(cfg, out, progress=False)
    assert (out / "results.json").read_text() == "[]"


# -- the command line ------------------------------------------------------------------------------
def _subcommand_parsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return parser, sub.choices


def test_every_option_has_help_and_a_default_and_no_markup():
    parser, commands = _subcommand_parsers()
    for name, p in [("", parser), *commands.items()]:
        text = p.format_help()
        for markup in ("``", ":class:", ":func:", ":mod:", "::"):
            assert markup not in text, (name, markup)
        for action in p._actions:
            if not action.option_strings or action.help == "show this help message and exit":
                continue
            shown = p._get_formatter()._expand_help(action) if action.help else ""
            assert shown, (name, action.option_strings)
            assert "default" in shown or "required" in shown, (name, action.option_strings,
                                                                shown)
            # stated once: "(default ..." or "default: ..." (e.g. --init's uniform 0.5)
            assert len(re.findall(r"\(default\b|\bdefault:", shown)) == 1 \
                or "required" in shown, (name, action.option_strings, shown)


@pytest.mark.parametrize("argv,needle", [
    (["train", "--scenario", "L6-v0", "--out", "{tmp}/x", "--set", "rounds_per_update=0"],
     "rounds_per_update must be at least 1"),
    (["train", "--scenario", "L6-v0", "--out", "{tmp}/x", "--set", "horizon=0"], "horizon"),
    (["train", "--scenario", "L6-v0", "--out", "{tmp}/x", "--set", "lr=abc"],
     "lr must be a number, got 'abc'"),
    (["train", "--scenario", "L6-v0", "--out", "{tmp}/x", "--device", "cuda"], "device"),
    (["train", "--scenario", "L6-v0", "--out", "{tmp}/x", "--device", "bogus"], "device"),
    (["train", "--scenario", "L6-v0", "--out", "{tmp}/file"], "is a file"),
    (["train", "--resume", "{tmp}/file"], "no such folder"),
    (["train", "--resume", "{tmp}/garbage"], "cannot be loaded safely"),
    (["train", "--config", "{tmp}/binary.yaml", "--out", "{tmp}/x"], "not a text file"),
    (["evaluate", "--run", "{tmp}/truncated"], "not valid JSON"),
    (["evaluate", "--run", "{tmp}/nokeys"], "lacks"),
    (["train", "--scenario", "L6-v0"], "needs --out"),
    (["train", "--scenario", "L6-v0", "--out", "{tmp}/x", "--seed", "3", "--seeds", "1", "2"],
     "--seed 3 and --seeds 1 2: give one of them"),
    (["train", "--config", "{tmp}/broken.yaml", "--out", "{tmp}/x"],
     "broken.yaml' could not be parsed: line 3, column 8: expected ',' or ']', but got ':' "
     "(while parsing a flow sequence)"),
])
def test_user_mistakes_are_one_line_errors(tmp_path, capsys, argv, needle):
    (tmp_path / "file").write_text("")
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)))
    (tmp_path / "broken.yaml").write_text("id: x\npopulation: [focal, L6\nbenefit: 3\n")
    (tmp_path / "truncated").mkdir()
    (tmp_path / "truncated" / "metrics.json").write_text('{"scenario": "L6')
    (tmp_path / "nokeys").mkdir()
    (tmp_path / "nokeys" / "metrics.json").write_text('{"scenario": "L6-v0"}')
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, err
    assert "Traceback" not in err
    with pytest.raises(ValueError, match=re.escape(needle)):  # --debug shows the error itself
        main(["--debug", *argv])
    assert not (tmp_path / "x").exists()  # refused before the output folder is touched


HUGE = str(10**21)


@pytest.mark.parametrize("argv,needle", [
    (["train", "--scenario", "L6-v0", "--eval-envs", HUGE], "eval_envs: 1 x " + HUGE),
    (["train", "--scenario", "L6-v0", "--eval-rounds", HUGE],
     "eval_rounds: the burn-in model over windows of " + HUGE),
    (["train", "--scenario", "L6-v0", "--eval-rounds", "100000"],
     "eval_rounds: the burn-in model over windows of 100000 rounds"),
    (["train", "--scenario", "L6-v0", "--rounds", HUGE], "rounds: the progress of"),
    (["train", "--config", "{tmp}/long.json"], "max_rounds (the scenario's; or give "
                                               "eval_rounds): the burn-in model"),
    (["train", "--config", "{tmp}/long.json", "--eval-rounds", "100"],
     "max_rounds (the scenario's): training and evaluating would play about 2.6e+15 "
     "agent-rounds"),
    (["reference", "--scenario", "L6-v0", "--rounds", HUGE], "--rounds: the burn-in model"),
    (["reference", "--scenario", "L6-v0", "--search-envs", HUGE], "--search-envs: 4096 x"),
    (["reference", "--scenario", "L6-v0", "--confirm-envs", HUGE], "--confirm-envs: 13 x"),
    (["reference", "--config", "{tmp}/long.json", "--rounds", "100"],
     "max_rounds (the scenario's): the reference would play about"),
    (["attribute", "--scenario", "L6-v0", "--policy", "disc+L6", "--horizon", HUGE],
     "horizon: RG's model unroll of " + HUGE),
    (["attribute", "--scenario", "L6-v0", "--policy", "disc+L6", "--horizon", "100000"],
     "horizon: the attribution would play about"),
    (["attribute", "--scenario", "L6-v0", "--policy", "disc+L6", "--rounds", HUGE],
     "rounds: a record of " + HUGE),
    (["attribute", "--scenario", "L6-v0", "--policy", "disc+L6", "--games", HUGE],
     "games: a record of 100 rounds x " + HUGE),
    (["attribute", "--scenario", "L6-v0", "--policy", "disc+L6", "--gamma", "nan"],
     "gamma must be a finite number, got nan"),
    (["flagship", "--seeds", HUGE], "seeds: runs of " + HUGE + " seeds"),
    (["flagship", "--rounds", HUGE], "rounds: runs of 2 seeds"),
    (["flagship", "--workers", HUGE], "workers must be at most 1024"),
    (["benchmark", "--quick", "--seeds", HUGE], "seeds: runs of " + HUGE + " seeds"),
    (["benchmark", "--quick", "--workers", HUGE], "workers must be at most 1024"),
    (["evaluate", "--scenario", "L6-v0", "--policy", "{tmp}/pol.py:disc", "--eval-envs", HUGE],
     "--eval-envs: 13 x " + HUGE),
    (["evaluate", "--scenario", "L6-v0", "--policy", "{tmp}/pol.py:disc", "--eval-rounds",
      HUGE], "--eval-rounds: the burn-in model over windows of " + HUGE),
])
def test_sizes_that_cannot_fit_or_finish_are_refused_at_once(tmp_path, capsys, argv, needle):
    """Issue 19: these hung, failed after training ("Maximum allowed dimension exceeded") or
    gave "unexpected OverflowError". Each is one line naming the option, before any work (no
    output folder, within seconds)."""
    scenario = {**get_scenario("L6-v0").to_dict(), "id": "long-v0", "max_rounds": 10**12}
    (tmp_path / "long.json").write_text(json.dumps(scenario))
    (tmp_path / "pol.py").write_text("def disc(obs):\n    return (obs[:, 3] > 0.5) * 1\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in [*argv, "--out", "{tmp}/x", "--quiet"]]
    if argv[0] == "reference":
        argv.remove("--quiet")
    monkeypatch = pytest.MonkeyPatch()  # a machine with 16 GiB available, as the needles assume
    monkeypatch.setattr(env_config_module, "available_memory", lambda: 16 * 2**30)
    try:
        assert main(argv) == 2
    finally:
        monkeypatch.undo()
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "x").exists()


def test_the_memory_estimate_covers_evaluation_and_the_reference_search(monkeypatch):
    """The evaluation after training (every seed and snapshot on eval_envs games, burn-in
    included) and the reference's 4096 candidates x search games count in the estimate."""
    from reciprocity.evaluation import check_reference_size

    monkeypatch.setattr(env_config_module, "available_memory", lambda: 6 * 2**30)
    # the burn-in model keeps every policy's payoff for 4 windows: 80000 rounds x 4096 policies
    with pytest.raises(ValueError, match=r"^eval_rounds: the burn-in model over windows of "
                                         r"20000 rounds"):
        TrainConfig("L6-v0", eval_rounds=20_000)
    TrainConfig("L6-v0", eval_rounds=20_000, eval_burn_in=50)  # a given burn-in: no model
    with pytest.raises(ValueError, match=r"^eval_envs: 12 x 20000000 evaluation games"):
        TrainConfig("L6-v0", seeds=(0, 1, 2), eval_budgets=(1000, 1500, 2000),
                    eval_envs=20_000_000)
    with pytest.raises(ValueError, match=r"^search_envs: 4096 x 100000 evaluation games"):
        check_reference_size("L6-v0", search_envs=100_000)
    check_reference_size("L6-v0")  # the defaults fit
    with pytest.raises(ValueError, match=r"^burn_in: the reference would play about 1\.3e\+14"):
        check_reference_size("L6-v0", burn_in=10**8)


@pytest.mark.parametrize("argv", [["demo", "--rounds", "0"],
                                  ["reference", "--scenario", "L6-v0", "--search-envs", "0",
                                   "--out", "x"],
                                  ["train", "--seed", "-1", "--scenario", "L6-v0"]])
def test_bad_counts_are_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "error: argument" in capsys.readouterr().err
