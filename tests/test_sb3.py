"""Stable-Baselines3 integration (``reciprocity.integrations.sb3``, ``examples/sb3_ppo.py``).

Needs the ``[sb3]`` extra; skipped without it. Run with ``pytest -m sb3``.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import warnings
from pathlib import Path

import pytest

pytest.importorskip("stable_baselines3")

import gymnasium
import numpy as np
import torch
from gymnasium.spaces import Box, Discrete
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env

import reciprocity  # noqa: F401  (registers the reciprocity/ Gymnasium namespace)
from reciprocity.envs import (
    ACTION_CONTEXTS,
    SIGNAL_CONTEXTS,
    make_parallel,
    parse_strategy,
)
from reciprocity.envs.gymnasium_env import SingleFocalEnv
from reciprocity.integrations import sb3 as rsb3

pytestmark = pytest.mark.sb3

ROOT = Path(__file__).resolve().parents[1]
MANY = "many-learners-v0"  # 7 focal agents
LOSSES = ("train/loss", "train/value_loss", "train/policy_gradient_loss", "train/entropy_loss")


@pytest.fixture(autouse=True)
def one_thread():
    """Keep torch to one thread (small models; the machine may be shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def assert_policy_schema(table):
    assert set(table) == {"action", "signal"}
    assert list(table["action"]) == list(ACTION_CONTEXTS)
    assert list(table["signal"]) == list(SIGNAL_CONTEXTS)
    for head in table.values():
        for p in head.values():
            assert isinstance(p, float)
            assert 0.0 <= p <= 1.0


def assert_trained(model, total_timesteps):
    assert model.num_timesteps >= total_timesteps
    assert model._n_updates > 0
    for key in LOSSES:
        assert math.isfinite(model.logger.name_to_value[key]), key
    assert len(model.ep_info_buffer) > 0  # episodes completed and were monitored


# -- the SuperSuit vector environment -------------------------------------------------------------

def test_make_vec_env_shapes_and_episodes():
    venv = rsb3.make_vec_env(MANY, num_vec_envs=2, max_rounds=3)
    assert venv.num_envs == 2 * 7
    assert venv.observation_space == Box(0.0, 1.0, (5,), np.float32)
    assert venv.action_space == Discrete(2)
    obs = venv.reset()
    assert obs.shape == (14, 5) and obs.dtype == np.float32
    assert (obs[:, 0] == 0).all()  # act phase first
    for step in range(6):  # 3 rounds = 6 steps, then automatic reset
        obs, rewards, dones, infos = venv.step(np.ones(venv.num_envs, dtype=np.int64))
        assert obs.shape == (14, 5) and rewards.shape == (14,) and dones.shape == (14,)
        assert len(infos) == 14
        if step % 2 == 1:
            assert (rewards == 0).all()  # assess steps earn nothing
        assert dones.all() == (step == 5)
    assert "terminal_observation" in infos[0] and "episode" in infos[0]  # VecMonitor
    assert infos[0]["episode"]["l"] == 6
    assert (obs[:, 0] == 0).all()  # the new episode starts with an act step
    venv.close()


def test_make_vec_env_seeding():
    """SuperSuit's SB3 wrapper cannot be seeded; make_vec_env's can (PPO(seed=...) relies on it)."""
    def rollout(seed):
        venv = rsb3.make_vec_env(MANY, num_vec_envs=2, max_rounds=5, monitor=False)
        venv.seed(seed)
        first = venv.reset()
        rewards = [venv.step(np.ones(venv.num_envs, dtype=np.int64))[1] for _ in range(8)]
        return first, np.array(rewards)

    (o1, r1), (o2, r2), (_, r3) = rollout(7), rollout(7), rollout(8)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(r1, r2)
    assert not np.array_equal(r1, r3)
    assert not np.array_equal(r1[:, :7], r1[:, 7:])  # the two copies get different seeds


def test_make_vec_env_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_vec_envs"):
        rsb3.make_vec_env(MANY, num_vec_envs=0)
    with pytest.raises(ValueError, match="benefit"):
        rsb3.make_vec_env(MANY, benefit=-1.0)


def test_make_vec_env_marks_truncation_the_sb3_way():
    """Every episode ends by the time limit: at its last step every entry has
    ``TimeLimit.truncated`` True and its last observation in ``terminal_observation`` (SB3's
    DummyVecEnv convention); on the other steps ``TimeLimit.truncated`` is False."""
    venv = rsb3.make_vec_env(MANY, num_vec_envs=2, max_rounds=2, monitor=False)
    venv.seed(0)
    venv.reset()
    last_obs = None
    for step in range(8):  # two episodes of 4 steps
        obs, _, dones, infos = venv.step(np.ones(venv.num_envs, dtype=np.int64))
        end = step % 4 == 3
        assert dones.tolist() == [end] * venv.num_envs
        assert [info["TimeLimit.truncated"] for info in infos] == [end] * venv.num_envs
        if end:
            terminal = np.stack([info["terminal_observation"] for info in infos])
            assert terminal.shape == (14, 5) and terminal.dtype == np.float32
            assert (terminal[:, 0] == 0).all()  # the act observation of the round to come
            assert (obs[:, 0] == 0).all()  # the returned one is the new episode's first
            last_obs = terminal
        else:
            assert "terminal_observation" not in infos[0]
    assert last_obs is not None
    venv.close()


class _RawRewards:
    """What the env returned at each step, before SB3 adds anything (an SB3 callback)."""

    def __new__(cls):
        from stable_baselines3.common.callbacks import BaseCallback

        class Keep(BaseCallback):
            def __init__(self):
                super().__init__()
                self.rewards, self.infos = [], []

            def _on_step(self):
                self.rewards.append(np.array(self.locals["rewards"], copy=True))
                self.infos.append(self.locals["infos"])
                return True

        return Keep()


def collect_one_rollout(venv, n_steps, gamma, seed=None):
    """One SB3 PPO rollout of ``n_steps``; returns (model, raw rewards, infos)."""
    model = PPO("MlpPolicy", venv, n_steps=n_steps, batch_size=n_steps * venv.num_envs,
                gamma=gamma, seed=seed, device="cpu")
    keep = _RawRewards()
    _, callback = model._setup_learn(total_timesteps=n_steps * venv.num_envs, callback=keep)
    callback.on_training_start(locals(), globals())
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, n_steps)
    return model, np.array(keep.rewards), keep.infos


def test_ppo_bootstraps_at_time_limits():
    """SB3 PPO's rollout buffer holds, at a truncated step, the env's reward plus gamma times
    the value of the terminal observation (collect_rollouts' time-limit bootstrap); at other
    steps the env's reward. SuperSuit's own SB3 route reports a plain done, so there the
    buffer keeps the bare reward and the episode's value is cut off."""
    gamma, n_steps = 0.9, 6  # episodes of 4 steps: one truncation at step 3
    venv = rsb3.make_vec_env(MANY, num_vec_envs=1, max_rounds=2, monitor=False)
    model, raw, infos = collect_one_rollout(venv, n_steps, gamma, seed=0)
    buffer = model.rollout_buffer.rewards  # (n_steps, num_envs)
    terminal = np.stack([info["terminal_observation"] for info in infos[3]])
    with torch.no_grad():
        value = model.policy.predict_values(model.policy.obs_to_tensor(terminal)[0])
    value = value.numpy().reshape(-1)
    assert np.any(value != 0)  # (an all-zero observation has value 0 at initialisation)
    np.testing.assert_allclose(buffer[3], raw[3] + gamma * value, rtol=1e-5, atol=1e-6)
    others = [0, 1, 2, 4, 5]
    np.testing.assert_allclose(buffer[others], raw[others], rtol=1e-6)
    venv.close()

    import supersuit as ss  # control: the plain SuperSuit route (no seed: it cannot take one)

    plain = ss.pettingzoo_env_to_vec_env_v1(make_parallel(MANY, max_rounds=2))
    plain = ss.concat_vec_envs_v1(plain, 1, num_cpus=0, base_class="stable_baselines3")
    model, raw, infos = collect_one_rollout(plain, n_steps, gamma)
    assert "TimeLimit.truncated" not in infos[3][0] and "terminal_observation" in infos[3][0]
    np.testing.assert_allclose(model.rollout_buffer.rewards, raw, rtol=1e-6)
    plain.close()


def test_make_vec_env_worker_processes_seed_every_copy():
    """With worker processes (num_cpus=2) PPO(seed=...) works, every copy gets its own seed
    (seed + copy, as with one process: the same trajectories) and reset infos are per entry."""
    def rollout(num_cpus):
        venv = rsb3.make_vec_env(MANY, num_vec_envs=4, num_cpus=num_cpus, max_rounds=3,
                                 monitor=False)
        venv.seed(5)
        first = venv.reset()
        assert len(venv.reset_infos) == venv.num_envs == 28
        steps = [venv.step(np.ones(venv.num_envs, dtype=np.int64)) for _ in range(6)]
        venv.close()
        return first, np.array([s[1] for s in steps]), steps[-1][3]

    (o1, r1, _), (o2, r2, i2) = rollout(0), rollout(2)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(r1, r2)
    copies = [r1[:, 7 * c:7 * (c + 1)] for c in range(4)]
    assert all(not np.array_equal(copies[a], copies[b]) for a in range(4) for b in range(a))
    assert all(info["TimeLimit.truncated"] for info in i2)


def test_missing_sb3_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)
    with pytest.raises(ImportError, match=r"\[sb3\]"):
        rsb3.make_vec_env(MANY)


# -- the policy read-out --------------------------------------------------------------------------

def test_context_observations_match_the_environment():
    """Every observation the env produces is the context observation of its context."""
    act, assess = rsb3.context_observations()
    assert act.shape == (4, 5) and assess.shape == (2, 8, 5)
    env = make_parallel(MANY, max_rounds=30)
    observations, _ = env.reset(seed=1)
    rng = np.random.default_rng(1)
    seen = set()
    while env.agents:
        for o in observations.values():
            phase, x, a, y, own = (int(v) for v in o)
            if phase == 0:
                k = ACTION_CONTEXTS.index("GB"[1 - x] + "GB"[1 - y])
                np.testing.assert_array_equal(o, act[k])
            else:
                k = SIGNAL_CONTEXTS.index("GB"[1 - x] + "GB"[1 - y] + "CD"[1 - a])
                np.testing.assert_array_equal(o, assess[own, k])
            seen.add((phase, k))
        observations, *_ = env.step({ag: int(rng.integers(2)) for ag in env.agents})
    assert len(seen) >= 8  # the check saw contexts of both phases
    np.testing.assert_array_equal(rsb3.context_observations(own_reputation=1)[1][0], assess[1])
    with pytest.raises(ValueError, match="own_reputation"):
        rsb3.context_observations(own_reputation=2)


class _Discriminator:
    """A stand-in 'model' without an action distribution (like DQN): DISC + stern judging."""

    observation_space = Box(0.0, 1.0, (5,), np.float32)
    policy = object()

    def predict(self, obs, deterministic=False):
        obs = np.asarray(obs)
        out = np.where(obs[:, 0] == 0, obs[:, 3], obs[:, 2] == obs[:, 3])
        return out.astype(np.int64), None


def test_policy_table_reads_a_known_policy():
    table = rsb3.policy_table(_Discriminator())
    assert_policy_schema(table)
    expected = parse_strategy({"action": "disc", "assess": "stern_judging"}).to_spec()
    assert list(table["action"].values()) == expected["action"]
    assert list(table["signal"].values()) == expected["assess"]
    result = rsb3.evaluate_payoff(_Discriminator(), "L6-v0", episodes=2, max_rounds=20)
    assert result["payoff"] > 3.0  # the ideal policy among L6 agents: close to b - c = 4


def test_policy_table_rejects_full_observation():
    model = PPO("MlpPolicy", gymnasium.make("reciprocity/L6-v0", observation="full"),
                n_steps=64, device="cpu")
    with pytest.raises(ValueError, match="local observation"):
        rsb3.policy_table(model)


# -- training -------------------------------------------------------------------------------------

def test_ppo_parameter_sharing_through_supersuit():
    venv = rsb3.make_vec_env(MANY, num_vec_envs=2, max_rounds=10)
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=224, n_epochs=2, seed=0,
                device="cpu")
    before = rsb3.policy_table(model)
    model.learn(total_timesteps=3000)
    assert_trained(model, 3000)
    assert model.num_timesteps % venv.num_envs == 0
    table = rsb3.policy_table(model)
    assert_policy_schema(table)
    assert table != before  # the shared policy changed
    greedy = rsb3.policy_table(model, greedy=True)
    assert_policy_schema(greedy)
    assert set(greedy["action"].values()) | set(greedy["signal"].values()) <= {0.0, 1.0}
    result = rsb3.evaluate_payoff(model, MANY, episodes=1, max_rounds=10)
    assert set(result["per_agent"]) == {f"agent_{i}" for i in range(7)}
    assert all(math.isfinite(v) for v in result["per_agent"].values())
    venv.close()


def test_ppo_gymnasium_single_focal():
    env = gymnasium.make("reciprocity/L6-v0", max_rounds=10)
    model = PPO("MlpPolicy", env, n_steps=256, batch_size=64, n_epochs=2, seed=0, device="cpu")
    model.learn(total_timesteps=2048)
    assert_trained(model, 2048)
    assert_policy_schema(rsb3.policy_table(model))
    assert_policy_schema(rsb3.policy_table(model, own_reputation=0))
    result = rsb3.evaluate_payoff(model, "L6-v0", episodes=1, max_rounds=10)
    assert list(result["per_agent"]) == ["agent_0"] and math.isfinite(result["payoff"])
    env.close()


@pytest.mark.parametrize("make", [
    lambda: gymnasium.make("reciprocity/L6-v0"),
    lambda: SingleFocalEnv("discriminators-vs-defectors-v0", observation="full"),
], ids=["gymnasium.make-L6", "SingleFocalEnv-full"])
def test_sb3_check_env(make):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SB3's checker reports problems as warnings
        check_env(make(), warn=True)


def test_example_runs(capsys):
    spec = importlib.util.spec_from_file_location("sb3_ppo", ROOT / "examples" / "sb3_ppo.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.main(["--timesteps", "1000", "--max-rounds", "5", "--num-vec-envs", "1",
                  "--single-envs", "2", "--n-steps", "32"])
    out = capsys.readouterr().out
    assert "(a) many-learners-v0" in out and "(b) gymnasium.make('reciprocity/L6-v0')" in out
    assert out.count("action P(C): GG") == 2 and out.count("evaluation: mean reward") == 2


# -- a trained model evaluated by the protocol (docs/marl.md, "Evaluate a policy trained
# elsewhere") ------------------------------------------------------------------------------------
def test_own_policy_from_a_ppo_model():
    """The worked example: PPO's action probabilities as FUNC; evaluate_policy scores exactly
    what evaluate_tables gives for the tables FUNC yields, which are the model's own."""
    from reciprocity.envs import get_scenario
    from reciprocity.evaluation import Protocol, evaluate_tables, reference
    from reciprocity.own_policy import evaluate_policy, policy_tables

    model = PPO("MlpPolicy", gymnasium.make("reciprocity/L6-v0", max_rounds=20), n_steps=128,
                batch_size=64, n_epochs=2, seed=0, device="cpu")
    model.learn(total_timesteps=256)

    def ppo_policy(obs):
        with torch.no_grad():
            obs_t, _ = model.policy.obs_to_tensor(obs)
            return model.policy.get_distribution(obs_t).distribution.probs[:, 1]

    ref = reference("L6-v0", search_envs=4, confirm_envs=16, rounds=20, burn_in=10)
    result = evaluate_policy("L6-v0", ppo_policy, reference=ref)
    action, signal = policy_tables(ppo_policy)
    expected = evaluate_tables(get_scenario("L6-v0").env_config, action[None, None],
                               signal[None, None], Protocol(**ref["protocol"]))[0]
    assert result["per_interaction_payoff"] == expected["per_interaction_payoff"]
    assert result["episode_payoff"] == expected["episode_payoff"]
    assert result["algo"] == "ppo_policy" and result["protocol"] == ref["protocol"]
    assert result["reference_payoff"] == ref["reference_payoff"]
    assert result["reference_performance"] == pytest.approx(
        expected["per_interaction_payoff"] / ref["reference_payoff"])
    assert 0 <= result["adherence"] <= 1 and set(result["heads"]) == {"agent_0"}
    policy = result["policies"]["agent_0"]
    own_good = rsb3.policy_table(model, own_reputation=1)  # the model's probabilities
    assert policy["action"] == pytest.approx(own_good["action"])
    assert policy["signal"] == pytest.approx(own_good["signal"])
    if signal.ndim == 2:  # an MLP sees its own reputation in the assess observation
        own_bad = rsb3.policy_table(model, own_reputation=0)["signal"]
        assert policy["signal_by_own_reputation"]["B"] == pytest.approx(own_bad)
