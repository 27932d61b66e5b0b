"""Tianshou (extra [tianshou]): one DQN per focal agent through Tianshou's PettingZooEnv.

The central check: Tianshou credits each agent the entry of ``env.rewards`` on the agent's
own transitions, and every learner's summed reward in Tianshou's buffer equals its payoff from
the core (computed by hand from the public record in the stored infos). The same collection on
PettingZoo's generic parallel-to-AEC conversion fails that check, which shows what the check
catches. Then DQN trains on both scenarios of the brief (through the example).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from reciprocity.envs import get_scenario, make_parallel

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pettingzoo.utils.conversions import parallel_to_aec
    from tianshou.algorithm import DQN, MultiAgentOffPolicyAlgorithm
    from tianshou.algorithm.modelfree.dqn import DiscreteQLearningPolicy
    from tianshou.algorithm.optim import AdamOptimizerFactory
    from tianshou.data import Collector, CollectStats, VectorReplayBuffer
    from tianshou.env import DummyVectorEnv
    from tianshou.env.pettingzoo_env import PettingZooEnv
    from tianshou.utils.net.common import Net
    from tianshou.utils.torch_utils import policy_within_training_step

from reciprocity.integrations.tianshou import (
    DqnConfig,
    agent_returns,
    dqn_algorithm,
    make_env,
    policy_table,
    set_greedy,
    train_dqn,
)

pytestmark = pytest.mark.tianshou
torch.set_num_threads(1)
logging.getLogger("tianshou").setLevel(logging.WARNING)
ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP, MANY = "discriminators-vs-defectors-v0", "many-learners-v0"


def collect(env_fn, episodes: int, seed: int):
    """Collect ``episodes`` episodes with exploring DQN learners; returns (buffer, agents)."""
    env = env_fn()
    algorithm = dqn_algorithm(env, DqnConfig(eps_train=0.5, seed=seed))
    envs = DummyVectorEnv([env_fn])
    envs.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - Tianshou's exploration uses the global RNG
    buffer = VectorReplayBuffer(10_000, 1)
    collector = Collector[CollectStats](algorithm, envs, buffer, exploration_noise=True)
    collector.reset()
    collector.collect(n_episode=episodes)
    return buffer, list(env.agents)


def payoffs_from_stored_infos(buffer, agents, cost, benefit) -> dict[str, float]:
    """Each agent's payoff over the collected rounds, by hand from the public record: every
    transition that ends a round stores that round's record in its info."""
    batch = buffer[np.arange(len(buffer))]
    info = batch.info
    rounds = np.asarray(info["round"])
    ends = np.flatnonzero(np.diff(rounds, prepend=0) > 0)
    slots = [int(a.split("_")[1]) for a in agents]
    total = dict.fromkeys(agents, 0.0)
    for i in ends:
        recipients = np.asarray(info["record_recipients"][i])
        actions = np.asarray(info["record_actions"][i])
        giver = np.argsort(recipients)  # giver[s]: the donor whose recipient is s
        for agent, s in zip(agents, slots, strict=True):
            total[agent] += -cost * actions[s] + benefit * actions[giver[s]]
    return total, len(ends)


@pytest.mark.parametrize("scenario", [FLAGSHIP, MANY])
def test_every_learner_is_credited_its_payoff_from_the_core(scenario):
    s = get_scenario(scenario)
    rounds, episodes = 6, 3
    buffer, agents = collect(lambda: make_env(scenario, max_rounds=rounds), episodes, seed=2)
    assert len(buffer) == episodes * rounds * 2 * len(agents)
    credited = agent_returns(buffer, agents)
    payoff, n_rounds = payoffs_from_stored_infos(buffer, agents, s.cost, s.benefit)
    assert n_rounds == episodes * rounds
    assert credited == pytest.approx(payoff)
    assert any(p != 0 for p in payoff.values())


def test_parallel_to_aec_conversion_would_credit_zeros():
    """Control: PettingZoo's generic conversion sets all payoffs on the last agent's step, so
    Tianshou credits the other learners nothing; the check above would catch it."""
    s = get_scenario(MANY)

    def converted():
        return PettingZooEnv(parallel_to_aec(make_parallel(MANY, max_rounds=6)))

    buffer, agents = collect(converted, 2, seed=2)
    credited = agent_returns(buffer, agents)
    payoff, _ = payoffs_from_stored_infos(buffer, agents, s.cost, s.benefit)
    assert all(credited[a] == 0 for a in agents[:-1])
    assert credited != pytest.approx(payoff)


def recipe_algorithm(env, eps_training=0.1, eps_inference=0.05):
    """Tianshou's own PettingZoo recipe (test/pettingzoo/tic_tac_toe.py in Tianshou 2.0): one
    DQN per agent with a 3-step return over buffer rows and a test epsilon for inference."""
    learners = [DQN(policy=DiscreteQLearningPolicy(
                        model=Net(state_shape=env.observation_space.shape,
                                  action_shape=env.action_space.n, hidden_sizes=[32, 32]),
                        action_space=env.action_space, eps_training=eps_training,
                        eps_inference=eps_inference),
                    optim=AdamOptimizerFactory(lr=1e-4), n_step_return_horizon=3, gamma=0.9,
                    target_update_freq=320)
                for _ in env.agents]
    return MultiAgentOffPolicyAlgorithm(algorithms=learners, env=env)


def bootstrap_agents(algorithm, buffer, agents):
    """Run Tianshou's own target computation (the multi-agent dispatch, then each DQN's n-step
    return) on every row of ``buffer``, recording which rows each learner bootstraps from.

    Returns ``{agent: (rows, bootstrap_rows, agent_of_bootstrap_observation)}``: the agent whose
    observation is ``obs_next`` of the row that Tianshou evaluates the target Q-network on.
    """
    seen = {}
    for agent in agents:
        dqn = algorithm.get_algorithm(agent)

        def target_q(buf, indices, agent=agent, original=dqn._target_q):
            seen[agent] = (indices, np.asarray(buf[indices].obs_next.agent_id))
            return original(buf, indices)

        dqn._target_q = target_q
    batch, indices = buffer.sample(0)  # every row
    algorithm._preprocess_batch(batch, buffer, indices)
    ids = np.asarray(batch.obs.agent_id)
    return {a: (indices[ids == a], *seen[a]) for a in agents}


def test_bootstrap_observation_is_the_learners_own_with_the_helper_only():
    """In the AEC buffer a row's ``obs_next`` is the observation of the next agent to move. With
    Tianshou's recipe (3-step returns over rows) every learner of many-learners-v0 evaluates its
    target Q on another agent's observation; with dqn_algorithm (``own_moves * F`` rows) on its
    own, except where an n-step window is cut at the episode's end (documented: it then
    bootstraps from the first agent's final observation)."""
    rounds = 12  # 24 own moves per episode, windows of 6 own moves
    buffer, agents = collect(lambda: make_env(MANY, max_rounds=rounds), 2, seed=1)
    f = len(agents)
    env = make_env(MANY, max_rounds=rounds)
    recipe = bootstrap_agents(recipe_algorithm(env), buffer, agents)
    helper = bootstrap_agents(dqn_algorithm(env, DqnConfig()), buffer, agents)
    n = DqnConfig().own_moves * f
    for agent in agents:
        rows, boot, whose = recipe[agent]
        whole = boot == rows + 2  # 3 rows on, unless the episode ends first
        assert whole.mean() > 0.9
        assert not np.any(whose[whole] == agent)  # the agent 3 places later moved there
        rows, boot, whose = helper[agent]
        whole = boot == rows + n - 1
        assert whole.sum() == 2 * (18 + (agent == agents[0]))  # 2 episodes
        assert np.all(whose[whole] == agent)
        for cut in (helper[agent], recipe[agent]):  # windows cut at the episode's last row
            rows, boot, whose = cut
            ends = buffer.truncated[boot]
            assert np.all(whose[ends] == agents[0])  # bootstrapped (truncated, not terminal)
            assert not np.any(buffer.terminated[boot])


def test_per_agent_policies_collect_with_the_inference_epsilon():
    """Tianshou 2.0's trainer marks only the multi-agent policy as in a training step, so each
    learner of the recipe collects with ``eps_inference``: with eps_training=1 (act at random)
    and eps_inference=0 it collects only greedy actions. dqn_algorithm sets eps_inference to
    eps_train while training, so its learners explore."""
    env_fn = lambda: make_env(FLAGSHIP, max_rounds=40)  # noqa: E731

    def collected_vs_greedy(algorithm):
        envs = DummyVectorEnv([env_fn])
        envs.seed(0)
        np.random.seed(0)  # noqa: NPY002 - Tianshou's exploration uses the global RNG
        buffer = VectorReplayBuffer(1000, 1)
        collector = Collector[CollectStats](algorithm, envs, buffer, exploration_noise=True)
        collector.reset()
        with policy_within_training_step(algorithm.policy):  # as the trainer collects
            assert not algorithm.get_algorithm("agent_0").policy.is_within_training_step
            collector.collect(n_episode=1)
        batch = buffer[np.arange(len(buffer))]
        net = algorithm.get_algorithm("agent_0").policy.model
        with torch.no_grad():
            q, _ = net(torch.as_tensor(np.asarray(batch.obs.obs), dtype=torch.float32))
        return float(np.mean(np.asarray(batch.act) == q.argmax(dim=1).numpy()))

    torch.manual_seed(0)
    assert collected_vs_greedy(recipe_algorithm(env_fn(), 1.0, 0.0)) == 1.0  # never explored
    torch.manual_seed(0)
    helper = dqn_algorithm(env_fn(), DqnConfig(eps_train=1.0))
    assert 0.3 < collected_vs_greedy(helper) < 0.7  # uniformly random actions


def test_infos_fit_the_replay_buffer():
    """Flat numeric infos become buffer columns of fixed shape (no None, no nesting)."""
    buffer, _ = collect(lambda: make_env(MANY, max_rounds=3), 1, seed=0)
    info = buffer[np.arange(len(buffer))].info
    n = len(get_scenario(MANY).population)
    assert np.asarray(info["reputation"]).shape == (len(buffer), n)
    assert np.asarray(info["record_signals"]).shape == (len(buffer), n)
    assert np.asarray(info["phase"]).shape == (len(buffer),)


def test_train_dqn_and_read_the_policy():
    out = train_dqn(FLAGSHIP, DqnConfig(epochs=1, epoch_steps=300, test_episodes=1),
                    max_rounds=5)
    assert out["agents"] == ["agent_0"]
    assert np.isfinite(out["test_returns"]["agent_0"])
    table = policy_table(out["algorithm"], "agent_0")
    assert set(table["action"].values()) <= {0.0, 1.0}
    assert set(table["signal"].values()) <= {0.0, 0.5, 1.0}  # averaged over own reputation
    with pytest.raises(ValueError, match="agent"):
        policy_table(out["algorithm"], "agent_9")
    set_greedy(out["algorithm"], 0.0)
    assert out["algorithm"].get_algorithm("agent_0").policy.eps_inference == 0.0


def test_example_trains_dqn_on_both_scenarios():
    spec = importlib.util.spec_from_file_location("tianshou_dqn",
                                                  ROOT / "examples" / "tianshou_dqn.py")
    example = importlib.util.module_from_spec(spec)
    sys.modules["tianshou_dqn"] = example
    spec.loader.exec_module(example)
    results = example.main(["--epochs", "1", "--epoch-steps", "400", "--max-rounds", "5"])
    assert set(results) == {FLAGSHIP, MANY}
    assert len(results[MANY]["payoff"]) == 7
    assert all(np.isfinite(p) for r in results.values() for p in r["payoff"].values())
