"""TorchRL (extra [torchrl]): the environments through TorchRL's own PettingZooWrapper.

TorchRL's ``check_env_specs`` on every scenario (parallel with the global state) and in AEC
mode; what TorchRL reads (rewards, infos, state) against the public record, hand-computed
payoffs and the environment's documented state layout; the MAPPO loop learns to discriminate
on the flagship; the example runs on both scenarios of the brief.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from reciprocity.envs import get_scenario, scenarios

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from torchrl.envs.utils import check_env_specs

from reciprocity.integrations.torchrl import (
    GROUP,
    MappoConfig,
    make_env,
    mappo_modules,
    policy_table,
    train_mappo,
)

pytestmark = [pytest.mark.torchrl,
              pytest.mark.filterwarnings("ignore:PettingZoo in TorchRL is tested:UserWarning")]
torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP, MANY = "discriminators-vs-defectors-v0", "many-learners-v0"


@pytest.mark.parametrize("api", ["parallel", "aec"])
@pytest.mark.parametrize("scenario", scenarios())
def test_check_env_specs_with_state(scenario, api):
    env = make_env(scenario, api=api, max_rounds=3, seed=0)
    check_env_specs(env, seed=0)
    config = get_scenario(scenario).env_config
    phases, n = 1 + config.params.observers_per_interaction, config.num_agents
    assert env.observation_spec["state"].shape[-1] == phases + 1 + 5 * n


@pytest.mark.parametrize("scenario", [FLAGSHIP, MANY])
@pytest.mark.parametrize("api", ["parallel", "aec"])
def test_check_env_specs_without_state(scenario, api):
    env = make_env(scenario, api=api, return_state=False, max_rounds=3, seed=0)
    check_env_specs(env, seed=0)
    assert "state" not in env.observation_spec.keys()


def payoffs_from_info(info, slots, cost, benefit) -> np.ndarray:
    """Each focal agent's payoff of the round in ``info``'s record, (F,): -c a_s + b a_giver."""
    recipients = info["record_recipients"][0].long().numpy()
    actions = info["record_actions"][0].numpy()
    giver = np.argsort(recipients)  # giver[s] = the donor whose recipient is s
    return np.array([-cost * actions[s] + benefit * actions[giver[s]] for s in slots])


@pytest.mark.parametrize("scenario", [FLAGSHIP, MANY])
def test_parallel_rollout_rewards_infos_and_state(scenario):
    """What TorchRL collects is the game: act-step rewards are the payoffs of the record that
    the following assess step publishes; assess steps pay 0; the root state is the documented
    layout of the environment's state."""
    s = get_scenario(scenario)
    rounds = 6
    env = make_env(scenario, max_rounds=rounds, seed=3, initial_reputation=0.5)
    td = env.rollout(2 * rounds + 5, break_when_any_done=True)
    assert td.batch_size == (2 * rounds,)
    slots = [int(a.split("_")[1]) for a in env.group_map[GROUP]]
    n = len(s.population)
    rewards = td["next", GROUP, "reward"][..., 0].numpy()
    checked = 0
    for t in range(rounds):
        act, assess = 2 * t, 2 * t + 1
        info = td["next", GROUP, "info"][assess]
        assert float(info["round"][0]) == t + 1
        np.testing.assert_allclose(rewards[act], payoffs_from_info(info, slots, s.cost,
                                                                   s.benefit), atol=1e-5)
        np.testing.assert_array_equal(rewards[assess], 0.0)
        checked += int(np.any(rewards[act] != 0))
        for step in (act, assess):
            state = td["state"][step].numpy()
            phase, blocks = state[:2], state[3:].reshape(5, n)
            np.testing.assert_array_equal(phase, np.eye(2)[step % 2])
            assert state[2] == pytest.approx(t / rounds)
            # reputation block = the record's reputations before the round
            np.testing.assert_array_equal(blocks[0], info["record_reputation_before"][0])
        np.testing.assert_array_equal(td["state"][assess].numpy()[3:].reshape(5, n)[3],
                                      info["record_actions"][0])
    assert checked >= 3  # not all zero: the comparison had something to compare
    assert bool(td["next", "truncated"][-1])


@pytest.mark.parametrize("scenario", [FLAGSHIP, MANY])
def test_aec_mode_credits_each_agent_its_payoff(scenario):
    """TorchRL's AEC mode reads env.rewards after every single move: summed over an episode,
    each agent's reward is its payoff from the public record."""
    s = get_scenario(scenario)
    rounds = 5
    env = make_env(scenario, api="aec", max_rounds=rounds, seed=1)
    agents = env.group_map[GROUP]
    td = env.rollout(10_000, break_when_any_done=True)
    assert td.batch_size == (2 * rounds * len(agents),)
    credited = td["next", GROUP, "reward"][..., 0].sum(0).numpy()
    # the acting agent of each step is the one the mask marks
    mask = td[GROUP, "mask"].numpy()
    assert (mask.sum(1) == 1).all()
    slots = [int(a.split("_")[1]) for a in agents]
    expected = np.zeros(len(agents))
    round_ends = np.flatnonzero(np.diff(td["next", GROUP, "info", "round"][:, 0].numpy(),
                                        prepend=0) > 0)
    assert len(round_ends) == rounds
    for step in round_ends:
        expected += payoffs_from_info(td["next", GROUP, "info"][step], slots, s.cost, s.benefit)
    np.testing.assert_allclose(credited, expected, atol=1e-4)
    assert np.any(expected != 0)


@pytest.mark.parametrize("api", ["parallel", "aec"])
@pytest.mark.parametrize("scenario", [MANY, "many-learners-majority-v0"])
def test_record_infos_off_through_the_wrapper(scenario, api):
    """``record_infos=False``: TorchRL's specs pass with ``("agents", "info", "phase")`` as the
    only info entry, and the rollout (observations, rewards, state, dones) is the default one."""
    kwargs = {"api": api, "max_rounds": 3, "seed": 4}
    slim, full = make_env(scenario, record_infos=False, **kwargs), make_env(scenario, **kwargs)
    check_env_specs(slim, seed=0)
    info_keys = set(slim.observation_spec[GROUP, "info"].keys())
    assert info_keys == {"phase"}
    assert {"phase", "round", "reputation", "record_actions"} <= \
        set(full.observation_spec[GROUP, "info"].keys())
    slim.set_seed(4)
    full.set_seed(4)
    action_key = (GROUP, "action")
    ones = torch.ones(slim.full_action_spec[action_key].shape, dtype=torch.int64)

    def policy(td):
        return td.set(action_key, ones)

    a = slim.rollout(100, policy, break_when_any_done=True)
    b = full.rollout(100, policy, break_when_any_done=True)
    assert a.batch_size == b.batch_size and a.batch_size[0] >= 6  # 3 rounds or more
    for key in [(GROUP, "observation"), ("next", GROUP, "reward"), ("next", "truncated"),
                ("next", GROUP, "info", "phase"), "state"]:
        torch.testing.assert_close(a[key], b[key])
    phases = a["next", GROUP, "info", "phase"]
    assert set(phases.unique().tolist()) == \
        set(range(1 + get_scenario(scenario).observers_per_interaction))


def test_mappo_modules_and_policy_table():
    env = make_env(MANY, max_rounds=3, seed=0)
    policy, critic = mappo_modules(env, hidden=8)
    td = critic(policy(env.reset()))
    assert td[GROUP, "action"].shape == (7,)
    assert td[GROUP, "state_value"].shape == (7, 1)
    table = policy_table(policy, agent=6)
    assert set(table["action"]) == {"GG", "GB", "BG", "BB"} and len(table["signal"]) == 8
    assert all(0.0 < p < 1.0 for head in table.values() for p in head.values())
    with pytest.raises(ValueError, match="agent"):
        policy_table(policy, agent=7)
    with pytest.raises(ValueError, match="return_state"):
        mappo_modules(make_env(MANY, max_rounds=3, return_state=False))


def test_mappo_learns_to_discriminate_on_the_flagship():
    """Against stern judges and defectors, cooperating with Good recipients and defecting
    against Bad ones is rewarded; from an undecided start (all P(C) near 0.5) a few thousand
    frames of MAPPO with the state critic already separate the two."""
    out = train_mappo(FLAGSHIP, MappoConfig(iterations=10, seed=0), max_rounds=50)
    table = policy_table(out["policy"])["action"]
    assert len(out["history"]) == 10
    assert all(np.isfinite(h["loss_critic"]) for h in out["history"])
    to_good = (table["GG"] + table["BG"]) / 2
    to_bad = (table["GB"] + table["BB"]) / 2
    assert to_good - to_bad > 0.3, table


def test_ippo_critic_reads_only_local_observations():
    """Without the state (return_state=False) the IPPO critic trains from observations."""
    out = train_mappo(MANY, MappoConfig(iterations=1, frames_per_batch=100, minibatch_size=50,
                                        centralised_critic=False), max_rounds=10)
    critic = out["critic"]
    assert critic.in_keys == [(GROUP, "observation")]
    assert np.isfinite(out["history"][0]["loss_critic"])


def _load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_example_trains_mappo_on_both_scenarios():
    example = _load_example("torchrl_mappo")
    results = example.main(["--iterations", "2", "--frames-per-batch", "200"])
    assert set(results) == {FLAGSHIP, MANY}
    for r in results.values():
        assert len(r["history"]) == 2 and np.isfinite(r["history"][-1]["payoff"])

