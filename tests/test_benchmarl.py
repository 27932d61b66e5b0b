"""BenchMARL (extra [torchrl]): the reciprocity task under BenchMARL's own experiment runner.

The task's environment and specs are those of TorchRL's PettingZooWrapper on the scenario
(with the global state, which MAPPO's critic and QMIX's mixer read); the example runs IPPO,
MAPPO and IQL through ``Benchmark``'s experiments, and each writes BenchMARL's results.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from reciprocity.envs import Scenario, get_scenario

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from reciprocity.integrations.benchmarl import ReciprocityTask, experiment_config, task

pytestmark = [pytest.mark.torchrl,
              pytest.mark.filterwarnings("ignore:PettingZoo in TorchRL is tested:UserWarning",
                                         "ignore::DeprecationWarning")]
torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP, MANY = "discriminators-vs-defectors-v0", "many-learners-v0"


@pytest.mark.parametrize("scenario", [FLAGSHIP, MANY])
def test_task_describes_the_environment(scenario):
    t = task(scenario, max_rounds=4)
    assert isinstance(t, ReciprocityTask) and t.name == scenario
    env = t.get_env_fun(num_envs=1, continuous_actions=False, seed=0, device="cpu")()
    n_focal = get_scenario(scenario).num_focal
    assert t.group_map(env) == {"agents": [f"agent_{i}" for i in range(n_focal)]}
    assert t.max_steps(env) == 8  # parallel steps: 2 per round
    assert t.state_spec(env)["state"].shape[-1] == 3 + 5 * len(get_scenario(scenario).population)
    assert t.observation_spec(env)["agents", "observation"].shape == (n_focal, 5)
    assert "record_actions" in t.info_spec(env)["agents", "info"].keys()
    assert t.action_mask_spec(env) is None
    assert t.supports_discrete_actions() and not t.supports_continuous_actions()
    rollout = env.rollout(100)
    assert rollout.batch_size == (8,)


def test_task_from_a_scenario_file(tmp_path):
    path = tmp_path / "pair-v0.json"
    path.write_text(json.dumps({"id": "pair-v0", "population": ["focal", "focal", "L6"],
                                "benefit": 2.0, "cost": 1.0, "max_rounds": 3}))
    t = task(path)
    env = t.get_env_fun(num_envs=1, continuous_actions=False, seed=0, device="cpu")()
    assert t.group_map(env) == {"agents": ["agent_0", "agent_1"]}
    assert t.max_steps(env) == 6
    with pytest.raises(ValueError, match="register"):
        task(Scenario.from_dict({"id": "unregistered-v0", "population": ["focal", "L6"],
                                 "benefit": 2.0, "cost": 1.0}))


def test_task_rejects_bad_keywords():
    with pytest.raises(ValueError, match="max_cycles"):
        task(FLAGSHIP, max_cycles=3)
    with pytest.raises(ValueError, match="benfit"):
        task(FLAGSHIP, benfit=2)


def test_recommended_experiment_config_evaluates_stochastically():
    """BenchMARL evaluates greedily by default; the greedy output of an early learner can defect
    everywhere (evaluation returns of 0.0 while the sampled policy earns). The recommended
    config samples, as the collection does."""
    from benchmarl.experiment import ExperimentConfig

    assert ExperimentConfig.get_from_yaml().evaluation_deterministic_actions is True
    config = experiment_config()
    assert isinstance(config, ExperimentConfig)
    assert config.evaluation_deterministic_actions is False
    assert config.render is False and config.loggers == ["csv"]
    changed = experiment_config(max_n_frames=1000, evaluation_deterministic_actions=True)
    assert changed.max_n_frames == 1000 and changed.evaluation_deterministic_actions is True
    with pytest.raises(ValueError, match="max_frames"):
        experiment_config(max_frames=1000)


def test_example_runs_ippo_mappo_iql(tmp_path):
    spec = importlib.util.spec_from_file_location("benchmarl_run",
                                                  ROOT / "examples" / "benchmarl_run.py")
    example = importlib.util.module_from_spec(spec)
    sys.modules["benchmarl_run"] = example
    spec.loader.exec_module(example)
    assert not example.experiment_config(1000, 500, tmp_path).evaluation_deterministic_actions
    assert example.experiment_config(1000, 500, tmp_path,
                                     greedy_evaluation=True).evaluation_deterministic_actions
    results = example.main(["--frames", "1000", "--batch", "500", "--max-rounds", "10",
                            "--out", str(tmp_path)])
    assert set(results) == {"ippo/seed0", "mappo/seed0", "iql/seed0"}
    for r in results.values():
        assert np.isfinite(r["mean_return"])
        folder = Path(r["folder"])
        assert folder.parent == tmp_path
        # BenchMARL's own outputs: the JSON of evaluation results and the CSV logs
        reports = list(folder.glob("*.json"))
        assert reports, f"no JSON report in {folder}"
        json.loads(reports[0].read_text())
        assert list(folder.rglob("*.csv"))


def test_own_policy_from_a_mappo_experiment(tmp_path):
    """The worked example of docs/marl.md: a BenchMARL MAPPO actor (parameters shared by the
    seven learners) as FUNC; evaluate_policy scores exactly what evaluate_tables gives for the
    tables FUNC yields."""
    from benchmarl.algorithms import MappoConfig
    from benchmarl.experiment import Experiment, ExperimentConfig
    from benchmarl.models.mlp import MlpConfig
    from tensordict import TensorDict

    from reciprocity.evaluation import Protocol, evaluate_tables, reference
    from reciprocity.own_policy import evaluate_policy, policy_tables

    config = ExperimentConfig.get_from_yaml()  # one iteration of 500 frames
    config.max_n_frames = 500
    config.on_policy_collected_frames_per_batch = 500
    config.on_policy_n_envs_per_worker = 1
    config.on_policy_minibatch_size = 100
    config.evaluation = False
    config.render = False
    config.loggers = []
    config.checkpoint_at_end = False
    config.save_folder = str(tmp_path)
    experiment = Experiment(task=task(MANY, max_rounds=10),
                            algorithm_config=MappoConfig.get_from_yaml(),
                            model_config=MlpConfig.get_from_yaml(),
                            critic_model_config=MlpConfig.get_from_yaml(), seed=0, config=config)
    experiment.run()
    actor = experiment.group_policies["agents"]
    n_agents = len(experiment.group_map["agents"])

    def mappo_policy(obs):
        rows = torch.as_tensor(obs)[:, None, :].expand(-1, n_agents, -1)
        with torch.no_grad():
            logits = actor(TensorDict({("agents", "observation"): rows},
                                      batch_size=[len(obs)]))["agents", "logits"]
        return torch.softmax(logits[:, 0], dim=-1)[:, 1]

    ref = reference(MANY, confirm_envs=16, rounds=20, burn_in=10)
    result = evaluate_policy(MANY, mappo_policy, reference=ref)
    action, signal = policy_tables(mappo_policy)
    f = get_scenario(MANY).num_focal
    expected = evaluate_tables(get_scenario(MANY).env_config, np.tile(action, (1, f, 1)),
                               np.tile(signal, (1, f) + (1,) * signal.ndim),
                               Protocol(**ref["protocol"]))[0]
    assert result["per_interaction_payoff"] == expected["per_interaction_payoff"]
    assert result["per_agent_payoff"] == expected["per_agent_payoff"]
    assert result["algo"] == "mappo_policy" and result["protocol"] == ref["protocol"]
    assert result["reference"]["kind"] == "ideal_discriminator"
    assert set(result["heads"]) == set(result["policies"]) == \
        {f"agent_{i}" for i in range(f)}
    assert 0 <= result["adherence"] <= 1
    assert np.isfinite(result["reference_performance"])
    # the shared actor gives every learner the same probabilities
    first = result["policies"]["agent_0"]
    assert all(p == first for p in result["policies"].values())
    assert ("signal_by_own_reputation" in first) == (signal.ndim == 2)
