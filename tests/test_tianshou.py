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
    from tianshou.data import Collector, CollectStats, VectorReplayBuffer
    from tianshou.env import DummyVectorEnv
    from tianshou.env.pettingzoo_env import PettingZooEnv

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
