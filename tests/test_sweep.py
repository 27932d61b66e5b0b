"""``reciprocity sweep``: grid files, expansion, the local backend and results.json.

Core tests: no Ray needed (the Ray backend is tested in test_rllib.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from reciprocity.sweep import SweepGrid, add_parser, expand, load_grid, run_sweep

#: The keys of a ``reciprocity benchmark`` results.json record.
BENCHMARK_KEYS = {
    "scenario", "algo", "policy_class", "regime", "group", "seeds", "per_interaction_payoff",
    "episode_payoff", "reference_payoff", "reference_episode_payoff", "reference_kind",
    "full_cooperation_payoff", "reference_performance", "adherence", "heads", "collapsed",
    "reference_heads", "burn_in", "rounds", "interactions_per_seed", "wall_seconds",
    "per_seed",
}

TINY = {
    "scenarios": ["L6-v0", "many-learners-v0"],
    "algos": ["ppo", "rg"],
    "seeds": [0, 1],
    "rounds": 10,
    "num_envs": 2,
    "eval_envs": 8,
    "eval_rounds": 10,
    "search_envs": 2,
    "params": {"ppo": {"lr": [0.01, 0.05], "rounds_per_update": [5]},
               "rg": {"horizon": 4, "rounds_per_update": [5]}},
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The tiny grid, from a YAML file, through the ``sweep`` subcommand (local backend)."""
    root = tmp_path_factory.mktemp("sweep")
    path = root / "grid.yaml"
    path.write_text(yaml.safe_dump(TINY))
    parser = argparse.ArgumentParser(prog="reciprocity")
    add_parser(parser.add_subparsers(dest="command", required=True))
    out = root / "out"
    args = parser.parse_args(["sweep", "--grid", str(path), "--backend", "local",
                              "--out", str(out), "--workers", "2", "--quiet"])
    assert args.func(args) == 0
    return out, json.loads((out / "results.json").read_text())


def test_expand_is_the_cartesian_product():
    grid = SweepGrid.from_dict(TINY)
    jobs = expand(grid)
    assert [(j.scenario, j.algo, j.params) for j in jobs] == [
        (s, "ppo", {"lr": lr, "rounds_per_update": 5}) for s in TINY["scenarios"][:1]
        for lr in (0.01, 0.05)] + [("L6-v0", "rg", {"horizon": 4, "rounds_per_update": 5})] + [
        (s, "ppo", {"lr": lr, "rounds_per_update": 5}) for s in TINY["scenarios"][1:]
        for lr in (0.01, 0.05)] + [
        ("many-learners-v0", "rg", {"horizon": 4, "rounds_per_update": 5})]
    assert len({j.run_dir(Path("out")) for j in jobs}) == 6  # one folder per combination
    # seeds as a count, an algorithm without a grid runs its defaults once
    grid = SweepGrid.from_dict({"scenarios": ["L6-v0"], "algos": ["reinforce"], "seeds": 3})
    assert grid.seeds == (0, 1, 2)
    assert [(j.params, j.tag) for j in expand(grid)] == [({}, "default")]


def test_local_sweep_writes_merged_results(swept):
    out, records = swept
    assert len(records) == 6
    assert [(r["scenario"], r["algo"], r["params"]) for r in records] == [
        (j.scenario_id, j.algo, j.params) for j in expand(SweepGrid.from_dict(TINY))]
    for r in records:
        assert BENCHMARK_KEYS | {"params", "run"} == set(r)
        assert r["seeds"] == [0, 1]
        assert r["rounds"] == 10 and r["interactions_per_seed"] == 20
        assert set(r["per_interaction_payoff"]) == {"mean", "ci95"}
        for key in ("reference_performance", "adherence"):  # bounded: bootstrap intervals
            assert set(r[key]) == {"mean", "low", "high"}
        assert r["regime"] in ("degenerate", "discriminative")
        run = out / r["run"]
        assert json.loads((run / "params.json").read_text()) == r["params"]
        for seed in (0, 1):
            metrics = json.loads((run / f"seed_{seed}" / "metrics.json").read_text())
            assert metrics["config"]["train"]["algo_config"] == r["params"]
            assert metrics["config"]["train"]["seeds"] == [0, 1]  # seeds trained together
            assert "adherence" in metrics["evaluation"]
        assert (run / "progress.csv").is_file()
    kinds = {r["scenario"]: r["reference_kind"] for r in records}
    assert kinds == {"L6-v0": "exhaustive_search", "many-learners-v0": "ideal_discriminator"}
    for s in TINY["scenarios"]:  # each reference computed once, with the grid's settings
        ref = json.loads((out / "references" / f"{s}.json").read_text())
        assert ref["rounds"] == 10
    assert json.loads((out / "references" / "L6-v0.json").read_text())["search"]["games"] == 2
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["backend"] == "local" and meta["workers"] == 2 and meta["jobs"] == 2 + 6
    assert json.loads((out / "grid.json").read_text())["params"]["rg"]["horizon"] == [4]


@pytest.mark.parametrize("change, field", [
    ({"scenarios": None}, "scenarios"),
    ({"scenarios": "L6-v0"}, "scenarios"),
    ({"scenarios": ["no-such-scenario-v0"]}, "scenarios"),
    ({"scenarios": ["L6-v0", "L6-v0"]}, "scenarios"),
    ({"algos": None}, "algos"),
    ({"algos": ["dqn"]}, "algos"),
    ({"seeds": [0, 0]}, "seeds"),
    ({"seeds": [-1]}, "seeds"),
    ({"seeds": []}, "seeds"),
    ({"rounds": 0}, "rounds"),
    ({"num_envs": "many"}, "num_envs"),
    ({"eval_envs": 1.5}, "eval_envs"),
    ({"search_envs": True}, "search_envs"),
    ({"rounds_total": 5}, "rounds_total"),
    ({"params": ["lr"]}, "params"),
    ({"params": {"reinforce": {"lr": [0.1]}}}, "params"),
    ({"params": {"ppo": [0.1]}}, "params.ppo"),
    ({"params": {"ppo": {"learning_rate": [0.1]}}}, "learning_rate"),
    ({"params": {"ppo": {"lr": []}}}, "params.ppo.lr"),
    ({"params": {"ppo": {"lr": ["fast"]}}}, "params.ppo.lr"),
    ({"params": {"rg": {"horizon": [2.5]}}}, "params.rg.horizon"),
])
def test_malformed_grids_are_rejected_naming_the_field(tmp_path, change, field):
    data = {**TINY, **change}
    data = {k: v for k, v in data.items() if v is not None}
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=field.replace(".", r"\.")) as err:
        load_grid(path)
    assert "grid file" in str(err.value)


def test_bad_grid_files_and_arguments(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_grid(tmp_path / "missing.yaml")
    (tmp_path / "grid.txt").write_text("{}")
    with pytest.raises(ValueError, match=r"\.yaml"):
        load_grid(tmp_path / "grid.txt")
    (tmp_path / "bad.yaml").write_text("scenarios: [L6-v0\nalgos: rg")
    with pytest.raises(ValueError, match="could not be parsed"):
        load_grid(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- L6-v0\n")
    with pytest.raises(ValueError, match="mapping"):
        load_grid(tmp_path / "list.yaml")
    with pytest.raises(ValueError, match="backend"):
        run_sweep(TINY, tmp_path / "out", backend="dask")
    with pytest.raises(ValueError, match="workers"):
        run_sweep(TINY, tmp_path / "out", workers=0)


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="Ray is installed")
def test_without_ray_the_errors_name_the_extra(tmp_path):
    from reciprocity.integrations import rllib

    with pytest.raises(ImportError, match=r"\[ray\]"):
        rllib.register_env("L6-v0")
    with pytest.raises(ImportError, match=r"\[ray\]"):
        rllib.ppo_config("L6-v0")
    with pytest.raises(ImportError, match=r"\[ray\]"):
        run_sweep(TINY, tmp_path / "out", backend="ray")
    assert not (tmp_path / "out").exists()  # fails before doing anything
