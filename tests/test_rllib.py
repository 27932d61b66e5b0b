"""RLlib integration (``reciprocity.integrations.rllib``, ``examples/rllib_ppo.py``) and the Ray
backend of ``reciprocity sweep``.

Needs the ``[ray]`` extra (a separate environment: Ray pins gymnasium 1.2.x); skipped without
it. Run with ``pytest -m ray``. One small local Ray instance (2 CPUs, no dashboard) serves the
whole module and is shut down at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.rllib")

import ray
from gymnasium.spaces import Box, Discrete
from ray.tune.registry import ENV_CREATOR, _global_registry

from reciprocity.integrations.rllib import env_name, ppo_config, register_env
from reciprocity.sweep import add_parser, run_sweep

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]
LEARNER_STATS = ("policy_loss", "vf_loss", "entropy", "total_loss")


def test_register_env_makes_the_parallel_env(local_ray):
    name = register_env("many-learners-v0", max_rounds=2)
    assert name == env_name("many-learners-v0") == "reciprocity-rllib/many-learners-v0"
    env = _global_registry.get(ENV_CREATOR, name)({})
    agents = [f"agent_{i}" for i in range(7)]
    assert sorted(env.possible_agents) == agents
    assert env.observation_space["agent_0"] == Box(0, 1, (5,), np.float32)
    assert env.action_space["agent_0"] == Discrete(2)
    obs, _ = env.reset(seed=0)
    assert set(obs) == set(agents)
    for step in range(4):  # 2 rounds = 4 phases
        obs, rew, term, trunc, _ = env.step(dict.fromkeys(agents, 1))
        assert not term["__all__"]
        assert trunc["__all__"] == (step == 3)
        if step % 2:  # payoffs arrive on the act step; assess steps pay 0
            assert set(rew.values()) == {0.0}
    # env_config (RLlib's config.environment(env_config=...)) overrides the registered keywords
    env = _global_registry.get(ENV_CREATOR, name)({"max_rounds": 1})
    env.reset(seed=0)
    env.step(dict.fromkeys(agents, 1))
    assert env.step(dict.fromkeys(agents, 1))[3]["__all__"]
    # a custom name, and a bad keyword fails at registration (not inside a Ray worker)
    assert register_env("L6-v0", name="my-l6", benefit=3.0) == "my-l6"
    with pytest.raises(ValueError, match="benefit"):
        register_env("L6-v0", benefit=-1.0)
    with pytest.raises(ValueError, match="max_round"):
        register_env("L6-v0", max_round=3)


def test_ppo_config_policies_and_overrides():
    per_agent = ppo_config("many-learners-v0", max_rounds=5, lr=0.01)
    assert set(per_agent.policies) == {f"agent_{i}" for i in range(7)}
    assert per_agent.policy_mapping_fn("agent_3", None) == "agent_3"
    assert per_agent.lr == 0.01 and per_agent.env_config == {"max_rounds": 5}
    assert per_agent.enable_rl_module_and_learner and per_agent.enable_env_runner_and_connector_v2
    shared = ppo_config("many-learners-v0", shared_policy=True)
    assert set(shared.policies) == {"shared"}
    assert shared.policy_mapping_fn("agent_5", None) == "shared"
    with pytest.raises(ValueError, match="not_a_ppo_option"):
        ppo_config("L6-v0", not_a_ppo_option=1)


def test_ppo_trains_one_iteration_on_many_learners(local_ray, capsys):
    """examples/rllib_ppo.py (ppo_config + register_env) for 1 iteration: finite stats."""
    spec = importlib.util.spec_from_file_location("rllib_ppo", ROOT / "examples" / "rllib_ppo.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main(["--scenario", "many-learners-v0", "--iterations", "1",
                            "--max-rounds", "5", "--train-batch-size", "100"])
    assert len(results) == 1
    learners = results[0]["learners"]
    for i in range(7):
        stats = learners[f"agent_{i}"]
        for key in LEARNER_STATS:
            assert math.isfinite(float(stats[key])), (i, key, stats[key])
    runners = results[0]["env_runners"]
    assert runners["num_episodes"] >= 1
    assert math.isfinite(float(runners["episode_return_mean"]))
    out = capsys.readouterr().out
    assert "iteration 1: episode return mean" in out
    assert "action P(C): GG" in out and "signal P(G): GGC" in out
    assert ray.is_initialized()  # the example leaves a caller's Ray instance running


def test_sweep_ray_backend_matches_local(local_ray, tmp_path):
    grid = {"scenarios": ["many-learners-v0"], "algos": ["ppo"], "seeds": [0, 1],
            "rounds": 10, "num_envs": 2, "eval_envs": 8, "eval_rounds": 10,
            "params": {"ppo": {"lr": [0.01, 0.05], "rounds_per_update": [5]}}}
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(grid))
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["sweep", "--grid", str(path), "--backend", "ray",
                              "--out", str(tmp_path / "ray"), "--quiet"])
    assert args.func(args) == 0
    assert ray.is_initialized()  # used the running instance and left it alone
    by_ray = json.loads((tmp_path / "ray" / "results.json").read_text())
    assert [r["params"] for r in by_ray] == [{"lr": 0.01, "rounds_per_update": 5},
                                             {"lr": 0.05, "rounds_per_update": 5}]
    assert json.loads((tmp_path / "ray" / "sweep.json").read_text())["backend"] == "ray"
    by_local = run_sweep(grid, tmp_path / "local", backend="local", workers=1, progress=False)
    for a, b in zip(by_ray, by_local, strict=True):
        a.pop("wall_seconds"), b.pop("wall_seconds")
        assert a == b  # same seeds, same results, whichever backend
