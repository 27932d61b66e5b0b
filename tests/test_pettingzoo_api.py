"""The PettingZoo, Gymnasium and SuperSuit interfaces of spec §4.

PettingZoo's own test functions run on the base environment and on every registered scenario;
the rest checks the contract that those functions do not: spaces, agent names, the observation
layout in each phase against the public record, rewards, truncation, infos, rendering, the
Gymnasium registration of single-focal scenarios, and SuperSuit vectorisation.
"""

from __future__ import annotations

import functools
import pickle
import types
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.spaces import Box, Discrete
from gymnasium.utils.env_checker import check_env, data_equivalence

import reciprocity
from reciprocity.envs import get_scenario, make, make_parallel, scenarios
from reciprocity.envs import indirect_reciprocity_v0 as ir
from reciprocity.envs.config import DEFAULTS

with warnings.catch_warnings():
    # pettingzoo.test imports its example environments through a deprecated loader.
    warnings.simplefilter("ignore", DeprecationWarning)
    from pettingzoo.test import (
        api_test,
        max_cycles_test,
        parallel_api_test,
        parallel_seed_test,
        render_test,
        seed_test,
        state_test,
    )

SCENARIOS = scenarios()
SINGLE_FOCAL = [s for s in SCENARIOS if get_scenario(s).num_focal == 1]
MULTI_FOCAL = [s for s in SCENARIOS if get_scenario(s).num_focal > 1]
PUBLIC_FIELDS = {"recipients", "observers", "reputation_before", "actions", "signals",
                 "reputation_after", "verdicts", "audits", "flags"}
ALL_ZEROS = "ignore:Observation numpy array is all zeros:UserWarning"

# A small mixed population: focal slots 0 and 3, discriminators and defectors, so that both
# reputations occur.
MIXED = ["focal", "L6", "alld+L6", "focal", "L6", "alld+L6", "disc+image_scoring"]


def test_catalogue_has_single_and_multi_focal_scenarios():
    assert "many-learners-v0" in MULTI_FOCAL
    assert "L6-v0" in SINGLE_FOCAL
    assert len(SINGLE_FOCAL) >= 13


# ----------------------------------------------------------------------------------------------
# PettingZoo's own tests
# ----------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings(ALL_ZEROS)
@pytest.mark.parametrize("observation", ["local", "full"])
def test_base_env_api(observation):
    api_test(ir.env(observation=observation), num_cycles=60)
    parallel_api_test(ir.parallel_env(observation=observation), num_cycles=60)


@pytest.mark.filterwarnings(ALL_ZEROS)
@pytest.mark.parametrize("observation", ["local", "full"])
def test_base_env_seed(observation):
    seed_test(lambda: ir.env(observation=observation), num_cycles=60)
    parallel_seed_test(lambda: ir.parallel_env(observation=observation), num_cycles=60)


@pytest.mark.filterwarnings(ALL_ZEROS)
@pytest.mark.parametrize("population", [["focal", "focal"], ["L6", "focal"], MIXED],
                         ids=["two-focal", "two-mixed", "mixed"])
def test_small_populations_api(population):
    """N = 2 is legal (spec §1): the only matching is the swap."""
    api_test(ir.env(population=population, max_rounds=10), num_cycles=30)
    parallel_api_test(ir.parallel_env(population=population, max_rounds=10), num_cycles=30)
    seed_test(lambda: ir.env(population=population, max_rounds=10), num_cycles=30)


def test_two_agents_observe_each_other():
    env = ir.parallel_env(population=["focal", "focal"], execution_error=0.0,
                          assessment_error=0.0)
    env.reset(seed=0)
    obs, rewards, *_ = env.step({"agent_0": 1, "agent_1": 0})
    assert rewards == {"agent_0": -1.0, "agent_1": 5.0}
    # Each observes the other's donation, made to itself.
    np.testing.assert_array_equal(obs["agent_0"], [1, 1, 0, 1, 1])
    np.testing.assert_array_equal(obs["agent_1"], [1, 1, 1, 1, 1])
    _, _, _, _, infos = env.step({"agent_0": 0, "agent_1": 1})
    record = env.public_record()
    assert record["recipients"].tolist() == [1, 0] == record["observers"].tolist()
    assert infos["agent_0"]["reputation"].tolist() == [1, 0]


@pytest.mark.filterwarnings(ALL_ZEROS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_api(scenario):
    api_test(make(scenario, max_rounds=12), num_cycles=30)
    parallel_api_test(make_parallel(scenario, max_rounds=12), num_cycles=30)
    api_test(make(scenario, max_rounds=12, observation="full"), num_cycles=30)
    parallel_api_test(make_parallel(scenario, max_rounds=12, observation="full"), num_cycles=30)


@pytest.mark.filterwarnings(ALL_ZEROS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_seed(scenario):
    seed_test(lambda: make(scenario, max_rounds=12), num_cycles=30)
    parallel_seed_test(lambda: make_parallel(scenario, max_rounds=12), num_cycles=30)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_state(scenario):
    state_test(make(scenario, max_rounds=12), make_parallel(scenario, max_rounds=12),
               num_cycles=30)
    state_test(make(scenario, max_rounds=12, observation="full"),
               make_parallel(scenario, max_rounds=12, observation="full"), num_cycles=30)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_render(scenario, capsys):
    render_test(functools.partial(make, scenario, max_rounds=12))
    assert "round" in capsys.readouterr().out  # "human" printed the ANSI picture


def scenario_module(scenario) -> types.SimpleNamespace:
    """A scenario as PettingZoo's max_cycles_test expects an environment module."""
    return types.SimpleNamespace(env=functools.partial(make, scenario),
                                 parallel_env=functools.partial(make_parallel, scenario))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_max_cycles(scenario):
    max_cycles_test(scenario_module(scenario))


def test_base_env_state_render_max_cycles(capsys):
    state_test(ir.env(), ir.parallel_env(), num_cycles=60)
    render_test(ir.env)
    assert "round" in capsys.readouterr().out
    max_cycles_test(ir)


@pytest.mark.slow
@pytest.mark.filterwarnings(ALL_ZEROS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_api_full_episodes(scenario):
    """Default episode lengths, PettingZoo's default numbers of cycles."""
    api_test(make(scenario), num_cycles=1000)
    parallel_api_test(make_parallel(scenario), num_cycles=1000)
    seed_test(lambda: make(scenario), num_cycles=500)
    parallel_seed_test(lambda: make_parallel(scenario), num_cycles=500)
    state_test(make(scenario), make_parallel(scenario), num_cycles=1000)


def rollout_actions(env, seed, rounds, policy_seed=0):
    """Parallel rollout with random actions; returns per-step tuples."""
    rng = np.random.default_rng(policy_seed)
    steps = [env.reset(seed=seed)]
    for _ in range(2 * rounds):
        if not env.agents:
            break
        actions = {a: int(rng.integers(2)) for a in env.agents}
        steps.append((actions, *env.step(actions)))
    return steps


@pytest.mark.parametrize("scenario", ["many-learners-v0", "discriminators-vs-defectors-v0"])
def test_parallel_same_seed_same_trajectory_full_episode(scenario):
    """PettingZoo's parallel_seed_test stops after one step; check whole episodes here."""
    a = rollout_actions(make_parallel(scenario, max_rounds=25), seed=5, rounds=25)
    b = rollout_actions(make_parallel(scenario, max_rounds=25), seed=5, rounds=25)
    c = rollout_actions(make_parallel(scenario, max_rounds=25), seed=6, rounds=25)
    assert len(a) == len(b) == 51
    assert data_equivalence(a, b)
    assert not data_equivalence(a, c)


def test_aec_and_parallel_agree():
    """The AEC env is the parallel env seen one agent at a time: same observations, infos and
    states; each agent's act-step payoff is its reward on its own assess step."""
    par = ir.parallel_env(population=MIXED, max_rounds=6, initial_reputation=0.5)
    aec = ir.env(population=MIXED, max_rounds=6, initial_reputation=0.5)
    rng = np.random.default_rng(3)
    obs, infos = par.reset(seed=9)
    aec.reset(seed=9)
    payoffs = dict.fromkeys(par.agents, 0.0)  # the parallel act-step rewards, to be paid
    returns = {"parallel": dict(payoffs), "aec": dict(payoffs)}
    n_steps = 0
    while par.agents:
        actions = {a: int(rng.integers(2)) for a in par.agents}
        np.testing.assert_array_equal(aec.state(), par.state())
        for agent in list(par.agents):
            assert aec.agent_selection == agent
            o, _, term, trunc, info = aec.last()
            np.testing.assert_array_equal(o, obs[agent])
            assert data_equivalence(info, infos[agent])
            assert not term and not trunc
            aec.step(actions[agent])
            # rewards after an agent's step: its own unpaid payoff, nobody else's
            assert aec.rewards[agent] == pytest.approx(payoffs[agent])
            assert all(r == 0.0 for a, r in aec.rewards.items() if a != agent)
            returns["aec"][agent] += aec.rewards[agent]
            payoffs[agent] = 0.0
        obs, rewards, _, _, infos = par.step(actions)
        for agent, reward in rewards.items():
            payoffs[agent] += reward
            returns["parallel"][agent] += reward
        n_steps += 1
    assert n_steps == 12
    assert returns["aec"] == pytest.approx(returns["parallel"])
    assert any(r != 0 for r in returns["aec"].values())
    # After the last round every AEC agent is truncated and is then removed by a None step;
    # last() shows the reward paid on its own last step.
    for agent in aec.agent_iter():
        _, reward, term, trunc, _ = aec.last()
        assert trunc and not term
        assert reward == aec._cumulative_rewards[agent]
        aec.step(None)
    assert aec.agents == []


@pytest.mark.parametrize("scenario", ["many-learners-v0", "discriminators-vs-defectors-v0"])
def test_aec_pays_every_agent_its_payoff_on_its_own_step(scenario):
    """What Tianshou credits: ``env.rewards[agent]`` read right after each of the agent's own
    steps sums to its payoff from the core (read back from the public record)."""
    cfg = get_scenario(scenario).config()
    env = make(scenario, max_rounds=15)
    env.reset(seed=4)
    rng = np.random.default_rng(0)
    credited = dict.fromkeys(env.possible_agents, 0.0)
    payoff = dict.fromkeys(env.possible_agents, 0.0)
    for agent in env.agent_iter():
        *_, term, trunc, info = env.last(observe=False)
        if term or trunc:
            env.step(None)
            continue
        round_index = info["round"]
        env.step(int(rng.integers(2)))
        credited[agent] += env.rewards[agent]
        record = env.public_record()
        if env.agent_selection == env.agents[0] and record is not None \
                and env.infos[env.agents[0]]["round"] == round_index + 1:
            # a round has just ended: every focal agent's payoff from the record
            rec, acts = record["recipients"], record["actions"]
            for a in env.possible_agents:
                s = slot_of(a)
                giver = int(np.flatnonzero(rec == s)[0])
                payoff[a] += -cfg["cost"] * acts[s] + cfg["benefit"] * acts[giver]
    assert credited == pytest.approx(payoff)
    assert sum(payoff.values()) != 0


# ----------------------------------------------------------------------------------------------
# Spaces, names, metadata
# ----------------------------------------------------------------------------------------------


def test_metadata():
    assert ir.parallel_env.metadata["name"] == "indirect_reciprocity_v0"
    assert ir.env().metadata["name"] == "indirect_reciprocity_v0"
    assert set(ir.parallel_env.metadata["render_modes"]) >= {"ansi", "rgb_array"}
    assert callable(ir.raw_env)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_spaces(scenario):
    env = make_parallel(scenario)
    for agent in env.possible_agents:
        assert env.observation_space(agent) == Box(0.0, 1.0, (5,), np.float32)
        assert env.action_space(agent) == Discrete(2)
    aec = make(scenario)
    for agent in aec.possible_agents:
        assert aec.observation_space(agent) == Box(0.0, 1.0, (5,), np.float32)
        assert aec.action_space(agent) == Discrete(2)


def test_full_observation_space():
    env = ir.parallel_env(population=MIXED, observation="full")
    n = len(MIXED)
    assert env.observation_space("agent_0") == Box(0.0, 1.0, (5 + n + 3,), np.float32)


def test_agent_names_are_focal_slots():
    env = ir.parallel_env(population=["L6", "focal", "alld+L6", "focal", "L6", "Focal"])
    assert env.possible_agents == ["agent_1", "agent_3", "agent_5"]
    obs, infos = env.reset(seed=0)
    assert set(obs) == set(infos) == {"agent_1", "agent_3", "agent_5"}
    assert env.agents == env.possible_agents
    aec = make("many-learners-v0")
    assert aec.possible_agents == [f"agent_{i}" for i in range(7)]
    assert make_parallel("discriminators-vs-defectors-v0").possible_agents == ["agent_0"]


# ----------------------------------------------------------------------------------------------
# Observations, rewards, infos against the public record
# ----------------------------------------------------------------------------------------------


def slot_of(agent: str) -> int:
    return int(agent.split("_")[1])


def check_round(act_obs, rewards_act, assess_obs, rewards_assess, record, cfg, full=False):
    """Check one round's observations and rewards against the public record of that round."""
    b, c = cfg["benefit"], cfg["cost"]
    rb = record["reputation_before"]
    rec, observers, actions = record["recipients"], record["observers"], record["actions"]
    n = len(rb)
    for agent, o in act_obs.items():
        s = slot_of(agent)
        np.testing.assert_array_equal(o[:5], [0, rb[s], 0, rb[rec[s]], rb[s]], err_msg=agent)
        giver = int(np.flatnonzero(rec == s)[0])
        assert rewards_act[agent] == pytest.approx(-c * actions[s] + b * actions[giver])
        if full:
            np.testing.assert_array_equal(o[5:5 + n], rb)
            np.testing.assert_allclose(o[5 + n:] * (n - 1), [s, rec[s], s], atol=1e-5)
    for agent, o in assess_obs.items():
        s = slot_of(agent)
        d = int(np.flatnonzero(observers == s)[0])  # the donor this agent observes
        assert d != s
        np.testing.assert_array_equal(o[:5], [1, rb[d], actions[d], rb[rec[d]], rb[s]],
                                      err_msg=agent)
        assert rewards_assess[agent] == 0.0
        if full:
            np.testing.assert_array_equal(o[5:5 + n], rb)
            np.testing.assert_allclose(o[5 + n:] * (n - 1), [d, rec[d], s], atol=1e-5)


@pytest.mark.parametrize("observation", ["local", "full"])
@pytest.mark.parametrize("scenario,overrides", [
    ("many-learners-v0", {}),
    ("discriminators-vs-defectors-v0", {"initial_reputation": 0.5}),
    ("L6-slow-v0", {"initial_reputation": 0.3}),
    (None, {"population": MIXED, "execution_error": 0.3, "assessment_error": 0.3}),
])
def test_observation_layout_and_rewards(scenario, overrides, observation):
    rounds = 15
    if scenario is None:
        cfg = {**DEFAULTS, **overrides}
        env = ir.parallel_env(**overrides, max_rounds=rounds, observation=observation)
    else:
        cfg = {**get_scenario(scenario).config(), **overrides}
        env = make_parallel(scenario, **overrides, max_rounds=rounds, observation=observation)
    rng = np.random.default_rng(1)
    obs, infos = env.reset(seed=123)
    assert env.public_record() is None
    assert all(info["phase"] == 0 and info["round"] == 0 for info in infos.values())
    assert all(np.all(info[f"record_{k}"] == -1) for info in infos.values() for k in PUBLIC_FIELDS)
    seen_values = set()
    for t in range(rounds):
        act_obs = obs
        assert all(o.dtype == np.float32 and o[0] == 0 for o in act_obs.values())
        obs, rewards_act, terms, truncs, infos = env.step(
            {a: int(rng.integers(2)) for a in env.agents})
        assert not any(terms.values()) and not any(truncs.values())
        assert all(info["phase"] == 1 and info["round"] == t for info in infos.values())
        assess_obs = obs
        assert all(o[0] == 1 for o in assess_obs.values())
        obs, rewards_assess, terms, truncs, infos = env.step(
            {a: int(rng.integers(2)) for a in env.agents})
        info = next(iter(infos.values()))
        record = env.public_record()
        assert set(record) == PUBLIC_FIELDS  # intents are private
        for k in PUBLIC_FIELDS:  # the infos carry the same record, flat
            np.testing.assert_array_equal(info[f"record_{k}"], record[k])
        assert all(isinstance(v, np.ndarray) and v.shape == (len(record["actions"]),)
                   for v in record.values())
        assert info["phase"] == 0 and info["round"] == t + 1
        np.testing.assert_array_equal(info["reputation"], record["reputation_after"])
        check_round(act_obs, rewards_act, assess_obs, rewards_assess, record, cfg,
                    full=observation == "full")
        seen_values.update(tuple(o[1:5].tolist()) for o in assess_obs.values())
    assert all(truncs.values()) and env.agents == []
    # The check was not vacuous: several distinct assess observations occurred.
    assert len(seen_values) >= 3


def test_focal_actions_and_signals_reach_the_record():
    """e = mu = 0: the record shows exactly what each focal agent did and said."""
    env = ir.parallel_env(population=MIXED, execution_error=0.0, assessment_error=0.0,
                          max_rounds=20, initial_reputation=0.5)
    rng = np.random.default_rng(4)
    env.reset(seed=2)
    for _ in range(20):
        acts = {a: int(rng.integers(2)) for a in env.agents}
        env.step(acts)
        sigs = {a: int(rng.integers(2)) for a in env.agents}
        env.step(sigs)
        record = env.public_record()
        for agent in acts:
            s = slot_of(agent)
            assert record["actions"][s] == acts[agent]
            d = int(np.flatnonzero(record["observers"] == s)[0])
            assert record["signals"][d] == sigs[agent]
            assert record["reputation_after"][d] == sigs[agent]  # u = 1


def test_rewards_on_act_steps_only_and_sum_over_episode():
    env = make_parallel("all-cooperators-v0", max_rounds=30)
    env.reset(seed=0)
    total = 0.0
    for _ in range(30):
        _, r_act, *_ = env.step({"agent_0": 0})
        _, r_assess, *_ = env.step({"agent_0": 0})
        assert r_assess == {"agent_0": 0.0}
        record = env.public_record()
        giver = int(np.flatnonzero(record["recipients"] == 0)[0])
        assert r_act["agent_0"] == pytest.approx(5.0 * record["actions"][giver])
        total += r_act["agent_0"]
    # ALLC background: the defecting focal agent receives b = 5 unless an execution error hits.
    assert 0.9 * 150 <= total <= 150


@pytest.mark.parametrize("max_rounds", [1, 3, 7])
def test_truncation_after_max_rounds_parallel(max_rounds):
    env = make_parallel("many-learners-v0", max_rounds=max_rounds)
    env.reset(seed=0)
    for step in range(1, 2 * max_rounds + 1):
        assert env.agents == env.possible_agents
        _, _, terms, truncs, infos = env.step(dict.fromkeys(env.agents, 1))
        assert not any(terms.values())
        assert all(truncs.values()) == (step == 2 * max_rounds)
        assert not any(truncs.values()) or step == 2 * max_rounds
    assert env.agents == []
    assert all(info["round"] == max_rounds for info in infos.values())
    with pytest.raises(RuntimeError):
        env.step({})
    # reset starts a new episode
    env.reset(seed=1)
    assert env.agents == env.possible_agents


def test_truncation_after_max_rounds_aec():
    env = make("many-learners-v0", max_rounds=4)
    env.reset(seed=0)
    acted = dict.fromkeys(env.possible_agents, 0)
    for agent in env.agent_iter():
        _, _, term, trunc, _ = env.last()
        assert not term
        if trunc:
            env.step(None)
        else:
            acted[agent] += 1
            env.step(1)
    assert acted == dict.fromkeys(env.possible_agents, 8)


def split_state(state: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """The blocks of ``state()`` by name (documented layout: P phases, progress, 5 blocks of N)."""
    p = len(state) - 1 - 5 * n
    blocks = state[p + 1:].reshape(5, n)
    return {"phase": state[:p], "progress": state[p], **dict(zip(ir.STATE_BLOCKS[2:], blocks,
                                                                  strict=True))}


@pytest.mark.parametrize("scenario", ["many-learners-v0", "discriminators-vs-defectors-v0"])
def test_state_is_the_public_state_of_the_phase(scenario):
    """Each phase's state, checked against the public record of its round."""
    rounds = 8
    env = make_parallel(scenario, max_rounds=rounds, initial_reputation=0.5)
    n = len(get_scenario(scenario).population)
    assert env.state_space == Box(0.0, 1.0, (2 + 1 + 5 * n,), np.float32)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for t in range(rounds):
        act = split_state(env.state(), n)
        env.step({a: int(rng.integers(2)) for a in env.agents})
        assess = split_state(env.state(), n)
        env.step({a: int(rng.integers(2)) for a in env.agents})
        rec = env.public_record()
        before, recipients = rec["reputation_before"], rec["recipients"]
        for phase, st in enumerate((act, assess)):
            np.testing.assert_array_equal(st["phase"], np.eye(2)[phase])
            assert st["progress"] == pytest.approx(t / rounds)
            np.testing.assert_array_equal(st["reputation"], before)
            np.testing.assert_allclose(st["recipient"] * (n - 1), recipients, atol=1e-5)
            np.testing.assert_array_equal(st["recipient_reputation"], before[recipients])
        np.testing.assert_array_equal(act["action"], 0)
        np.testing.assert_array_equal(act["observer"], 0)
        np.testing.assert_array_equal(assess["action"], rec["actions"])
        np.testing.assert_allclose(assess["observer"] * (n - 1), rec["observers"], atol=1e-5)
    assert env.agents == []
    final = split_state(env.state(), n)
    assert final["progress"] == 1.0
    np.testing.assert_array_equal(final["reputation"], env.public_record()["reputation_after"])


@pytest.mark.parametrize("api", [make, make_parallel])
def test_pickled_env_keeps_its_configuration(api):
    """EzPickle: vector-env libraries ship environments to workers by pickling them."""
    env = api("many-learners-v0", max_cycles=8, render_mode="ansi", observation="full")
    copy = pickle.loads(pickle.dumps(env)).unwrapped
    assert (copy.max_rounds, copy.render_mode, copy.observation_mode) == (4, "ansi", "full")
    assert copy.possible_agents == env.possible_agents


def test_state_before_reset_is_a_clear_error():
    with pytest.raises(RuntimeError, match="reset"):
        make_parallel("L6-v0").state()


@pytest.mark.parametrize("api", [make, make_parallel])
def test_max_cycles_is_parallel_steps_per_episode(api):
    """max_cycles = 2 max_rounds; a scenario's max_rounds gives way to max_cycles."""
    assert get_scenario("L6-v0").max_rounds == 100
    env = api("L6-v0", max_cycles=6)
    assert (env.unwrapped.max_rounds, env.unwrapped.max_cycles) == (3, 6)
    env = api("L6-v0", max_cycles=6, max_rounds=3)
    assert (env.unwrapped.max_rounds, env.unwrapped.max_cycles) == (3, 6)
    assert api("L6-v0").unwrapped.max_cycles == 200
    with pytest.raises(ValueError, match=r"max_cycles=6 .* disagrees with max_rounds=4"):
        api("L6-v0", max_cycles=6, max_rounds=4)
    with pytest.raises(ValueError, match="max_cycles must be a multiple of 2"):
        api("L6-v0", max_cycles=5)
    par = make_parallel("L6-v0", max_cycles=6)
    par.reset(seed=0)
    steps = 0
    while par.agents:
        par.step({"agent_0": 1})
        steps += 1
    assert steps == 6


def test_max_cycles_through_gymnasium():
    env = gymnasium.make("reciprocity/L6-v0", max_cycles=4)
    env.reset(seed=0)
    assert [env.step(1)[3] for _ in range(4)] == [False, False, False, True]


INFO_KEYS = {"phase", "round", "reputation", *(f"record_{k}" for k in PUBLIC_FIELDS)}


def tensor_layout(info: dict) -> dict:
    """What a pipeline tensorises: each value as an array, its dtype kind and shape."""
    out = {}
    for key, value in info.items():
        arr = np.asarray(value)
        assert arr.dtype.kind in "iuf", f"{key}: not numeric ({arr.dtype})"
        out[key] = (arr.dtype, arr.shape)
    return out


@pytest.mark.parametrize("api", ["parallel", "aec"])
@pytest.mark.parametrize("scenario", ["many-learners-v0", "discriminators-vs-defectors-v0"])
def test_infos_are_flat_numeric_with_fixed_shapes(scenario, api):
    """TorchRL turns every info value into a tensor spec at reset, Tianshou into a buffer
    column: from reset on, every value is numeric, never None, never nested, and its dtype and
    shape never change."""
    n = len(get_scenario(scenario).population)
    if api == "parallel":
        env = make_parallel(scenario, max_rounds=3)
        _, infos = env.reset(seed=0)
        seen = [infos]
        while env.agents:
            seen.append(env.step(dict.fromkeys(env.agents, 1))[4])
    else:
        env = make(scenario, max_rounds=3)
        env.reset(seed=0)
        seen = []
        for agent in env.agent_iter():
            *_, term, trunc, info = env.last(observe=False)
            seen.append({agent: info})
            env.step(None if term or trunc else 1)
    layout = tensor_layout(next(iter(seen[0].values())))
    assert set(layout) == INFO_KEYS
    assert layout["reputation"][1] == (n,)
    assert all(layout[f"record_{k}"][1] == (n,) for k in PUBLIC_FIELDS)
    for infos in seen:
        for info in infos.values():
            assert tensor_layout(info) == layout
    assert len(seen) > 6


# ----------------------------------------------------------------------------------------------
# Space dicts, the record-infos switch, copies
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", [make, make_parallel])
@pytest.mark.parametrize("scenario", ["many-learners-v0", "discriminators-vs-defectors-v0"])
def test_space_dicts_are_the_spaces_of_the_methods(scenario, api):
    """PettingZoo's own environments (rps: ``self.observation_spaces = {...}``, and
    ``observation_space(agent)`` returns its entry) define the dicts; clients such as skrl read
    them. Through the wrappers of ``env()`` too."""
    env = api(scenario)
    assert list(env.observation_spaces) == list(env.action_spaces) == env.possible_agents
    for agent in env.possible_agents:
        assert env.observation_spaces[agent] is env.observation_space(agent)
        assert env.action_spaces[agent] is env.action_space(agent)
        assert env.observation_spaces[agent] == Box(0.0, 1.0, (5,), np.float32)
        assert env.action_spaces[agent] == Discrete(2)
    if len(env.possible_agents) > 1:  # one object per agent: seeding one leaves the others
        first, second = env.possible_agents[:2]
        assert env.action_spaces[first] is not env.action_spaces[second]
    env.reset(seed=0)
    assert env.observation_spaces[env.possible_agents[0]] is \
        env.observation_space(env.possible_agents[0])


def test_space_dicts_full_observation():
    env = ir.parallel_env(population=MIXED, observation="full")
    n = len(MIXED)
    assert all(space == Box(0.0, 1.0, (5 + n + 3,), np.float32)
               for space in env.observation_spaces.values())


@pytest.mark.parametrize("scenario", ["many-learners-v0", "many-learners-majority-v0"])
def test_record_infos_off_keeps_the_phase_only(scenario):
    """``record_infos=False``: infos are ``{"phase": p}`` from reset on, on both APIs; the
    trajectory and the public record are those of the default env."""
    on = make_parallel(scenario, max_rounds=3)
    off = make_parallel(scenario, max_rounds=3, record_infos=False)
    _, infos = off.reset(seed=4)
    assert all(info == {"phase": 0} for info in infos.values())
    on.reset(seed=4)
    rng = np.random.default_rng(0)
    phases = []
    while off.agents:
        actions = {a: int(rng.integers(2)) for a in off.agents}
        got, want = off.step(actions), on.step(actions)
        for i in range(4):  # observations, rewards, terminations, truncations
            assert data_equivalence(got[i], want[i])
        infos, full = got[4], want[4]
        assert set(infos) == set(full)
        for agent, info in infos.items():
            assert set(info) == {"phase"} and info["phase"] == full[agent]["phase"]
        phases.append(next(iter(infos.values()))["phase"])
        assert data_equivalence(off.public_record(), on.public_record())
        np.testing.assert_array_equal(off.state(), on.state())
    assert len(set(phases)) == 1 + get_scenario(scenario).observers_per_interaction
    aec = make(scenario, max_rounds=2, record_infos=False)
    aec.reset(seed=0)
    for _agent in aec.agent_iter():
        *_, term, trunc, info = aec.last(observe=False)
        assert set(info) == {"phase"}
        aec.step(None if term or trunc else 1)


@pytest.mark.filterwarnings(ALL_ZEROS)
def test_record_infos_off_passes_pettingzoo_tests():
    api_test(make("many-learners-v0", max_rounds=12, record_infos=False), num_cycles=30)
    parallel_api_test(make_parallel("many-learners-v0", max_rounds=12, record_infos=False),
                      num_cycles=30)
    seed_test(lambda: make("L6-v0", max_rounds=12, record_infos=False), num_cycles=30)
    parallel_seed_test(lambda: make_parallel("L6-v0", max_rounds=12, record_infos=False),
                       num_cycles=30)
    state_test(make("L6-v0", max_rounds=12, record_infos=False),
               make_parallel("L6-v0", max_rounds=12, record_infos=False))


def test_record_infos_is_a_shell_option():
    """Accepted wherever render_mode is (constructors, make overrides, Gymnasium), named when
    bad, and not part of the game's configuration."""
    for ctor in (ir.env, ir.raw_env, ir.parallel_env):
        assert ctor(record_infos=False).unwrapped.shell.record_infos is False
        with pytest.raises(ValueError, match="record_infos"):
            ctor(record_infos="no")
    assert "record_infos" in ir.CONSTRUCTOR_KEYWORDS and "record_infos" not in DEFAULTS
    env = gymnasium.make("reciprocity/L6-v0", record_infos=False)
    assert env.reset(seed=0)[1] == {"phase": 0}
    assert make_parallel("L6-v0").shell.record_infos is True  # on by default


COPY_SCENARIOS = ["many-learners-v0", "many-learners-majority-v0", "many-learners-audit-v0",
                  "discriminators-vs-defectors-v0"]


def assert_same_step(a, b):
    for x, y in zip(a, b, strict=True):
        assert data_equivalence(x, y)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("scenario", COPY_SCENARIOS)
def test_parallel_copy_mid_episode_continues_exactly(scenario, how):
    """A copy made mid-episode (in an act and in an assess phase) steps exactly as the original
    from there on: same observations, rewards, truncations, infos, state and record."""
    import copy as copying

    duplicate = copying.deepcopy if how == "deepcopy" else \
        (lambda e: pickle.loads(pickle.dumps(e)))
    env = make_parallel(scenario, max_rounds=6)
    env.reset(seed=11)
    rng = np.random.default_rng(3)
    phases = env.unwrapped.config.phases_per_round
    for copy_at in (3, phases * 2 + 1, phases * 4):  # parallel steps taken before copying
        env.reset(seed=11)
        for _ in range(copy_at):
            env.step({a: int(rng.integers(2)) for a in env.agents})
        twin = duplicate(env)
        np.testing.assert_array_equal(twin.state(), env.state())
        assert twin.agents == env.agents
        while env.agents:
            actions = {a: int(rng.integers(2)) for a in env.agents}
            assert_same_step(twin.step(actions), env.step(actions))
            np.testing.assert_array_equal(twin.state(), env.state())
            assert data_equivalence(twin.public_record(), env.public_record())
        assert twin.agents == []
        with pytest.raises(RuntimeError, match="finished episode"):
            twin.step({})
        # the copy's generator was carried too: the same unseeded next episode
        assert data_equivalence(twin.reset()[0], env.reset()[0])


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("scenario", ["many-learners-v0", "many-learners-majority-v0"])
def test_aec_copy_mid_phase_continues_exactly(scenario, how):
    """AEC, copied between two agents' moves of one phase (some decisions taken, the payoffs
    owed not yet paid), through the order-enforcing wrapper."""
    import copy as copying

    duplicate = copying.deepcopy if how == "deepcopy" else \
        (lambda e: pickle.loads(pickle.dumps(e)))
    env = make(scenario, max_rounds=4)
    env.reset(seed=5)
    rng = np.random.default_rng(1)
    n = len(env.possible_agents)
    for _ in range(n + n // 2):  # the act phase, then half of the first assess phase
        env.step(int(rng.integers(2)))
    twin = duplicate(env)
    assert twin.agent_selection == env.agent_selection
    np.testing.assert_array_equal(twin.unwrapped.state(), env.unwrapped.state())
    for agent, other in zip(env.agent_iter(), twin.agent_iter(), strict=True):
        assert agent == other
        assert_same_step(twin.last(), env.last())
        *_, term, trunc, _ = env.last(observe=False)
        action = None if term or trunc else int(rng.integers(2))
        env.step(action)
        twin.step(action)
    assert env.agents == twin.agents == []


def test_copies_keep_shared_infos_read_only():
    import copy as copying

    env = make_parallel("many-learners-v0", max_rounds=3)
    env.reset(seed=0)
    env.step(dict.fromkeys(env.agents, 1))
    env.step(dict.fromkeys(env.agents, 1))
    for twin in (copying.deepcopy(env), pickle.loads(pickle.dumps(env))):
        _, _, _, _, infos = twin.step(dict.fromkeys(twin.agents, 1))
        for key in ("reputation", "record_actions"):
            assert not infos["agent_0"][key].flags.writeable


def test_copy_before_reset_is_a_new_environment():
    """Before the first reset a copy is the configuration only (EzPickle), with its own entropy:
    SuperSuit ships the env to its vector copies this way."""
    import copy as copying

    env = make_parallel("many-learners-v0", max_rounds=3, record_infos=False)
    twins = [copying.deepcopy(env), pickle.loads(pickle.dumps(env))]
    for twin in twins:
        assert twin.shell is not env.shell and twin.shell.record_infos is False
        with pytest.raises(RuntimeError, match="reset"):
            twin.state()
    for e in (*twins, env):
        e.reset()  # unseeded: each draws from its own entropy
    assert len({e.state().tobytes() for e in (*twins, env)}) > 1


def test_gymnasium_env_copy_mid_episode():
    import copy as copying

    env = gymnasium.make("reciprocity/discriminators-vs-defectors-v0", max_rounds=5).unwrapped
    env.reset(seed=2)
    env.step(1)
    twin = copying.deepcopy(env)
    for action in (0, 1, 1, 0, 1, 1, 0, 1):
        assert_same_step(twin.step(action), env.step(action))


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------


def is_red(px):
    r, g, b = (int(v) for v in px)
    return r > g + 100 and r > b + 100


def is_green(px):
    r, g, b = (int(v) for v in px)
    return g > r + 50 and g > b + 40


def stern_signal(o) -> int:
    """Stern judging from an assess observation: Good iff (C and recipient Good) or (D and Bad)."""
    return int(o[2] == o[3])


def two_reputation_env(render_mode):
    """One round after which slots 3 and 4 (ALLD) are Bad and 0..2 Good, exactly."""
    env = ir.parallel_env(population=["focal", "L6", "L6", "alld+L6", "alld+L6"],
                          execution_error=0.0, assessment_error=0.0, render_mode=render_mode)
    env.reset(seed=0)
    obs, *_ = env.step({"agent_0": 1})  # the focal agent cooperates with a Good recipient
    _, _, _, _, infos = env.step({"agent_0": stern_signal(obs["agent_0"])})
    assert infos["agent_0"]["reputation"].tolist() == [1, 1, 1, 0, 0]
    return env


def test_render_rgb_array_colours_reflect_reputations():
    env = two_reputation_env("rgb_array")
    img = env.render()
    assert isinstance(img, np.ndarray) and img.dtype == np.uint8
    assert img.ndim == 3 and img.shape[2] == 3
    n = 5
    assert img.shape[0] % n == 0
    h = img.shape[0] // n
    rows = [img[i * h:(i + 1) * h].reshape(-1, 3) for i in range(n)]
    for i in (3, 4):  # Bad agents: red cells
        assert any(is_red(px) for px in rows[i]), f"no red in the row of Bad agent {i}"
    for i in (0, 1, 2):  # Good all along: green, and never red
        assert any(is_green(px) for px in rows[i]), f"no green in the row of Good agent {i}"
        assert not any(is_red(px) for px in rows[i]), f"red in the row of Good agent {i}"


def test_render_rgb_array_after_reset_and_all_bad():
    env = ir.parallel_env(population=["focal", "L6", "L6"], initial_reputation="bad",
                          render_mode="rgb_array")
    env.reset(seed=0)
    img = env.render()
    assert img.dtype == np.uint8 and img.shape[2] == 3
    flat = img.reshape(-1, 3)
    assert any(is_red(px) for px in flat) and not any(is_green(px) for px in flat)


def test_render_ansi():
    env = two_reputation_env("ansi")
    text = env.render()
    assert isinstance(text, str) and text
    assert "alld+L6" in text and "L6" in text
    before = text
    env.step({"agent_0": 1})
    env.step({"agent_0": 1})
    assert env.render() != before


def test_render_human_prints_the_ansi_picture(capsys):
    text = two_reputation_env("ansi").render()
    human = two_reputation_env("human")
    assert human.render() is None
    assert capsys.readouterr().out == text + "\n"


def test_render_mode_none_returns_nothing():
    env = ir.parallel_env()
    env.reset(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert env.render() is None


# ----------------------------------------------------------------------------------------------
# Gymnasium
# ----------------------------------------------------------------------------------------------


def test_reciprocity_import_registers_gymnasium_ids():
    assert reciprocity.make is make
    for s in SINGLE_FOCAL:
        assert f"reciprocity/{s}" in gymnasium.registry, s
    for s in MULTI_FOCAL:
        assert f"reciprocity/{s}" not in gymnasium.registry, s
        with pytest.raises(gymnasium.error.Error):
            gymnasium.make(f"reciprocity/{s}")


@pytest.mark.filterwarnings("ignore::UserWarning:gymnasium.*")
@pytest.mark.parametrize("scenario", SINGLE_FOCAL)
def test_gymnasium_make_and_check_env(scenario):
    env = gymnasium.make(f"reciprocity/{scenario}")
    obs, info = env.reset(seed=0)
    assert env.observation_space == Box(0.0, 1.0, (5,), np.float32)
    assert env.action_space == Discrete(2)
    assert obs in env.observation_space and info["phase"] == 0
    obs, reward, terminated, truncated, info = env.step(1)
    assert obs[0] == 1 and not terminated and not truncated and isinstance(reward, float)
    check_env(env.unwrapped)


def test_gymnasium_truncation_and_overrides():
    env = gymnasium.make("reciprocity/discriminators-vs-defectors-v0", max_rounds=3)
    env.reset(seed=0)
    flags = [env.step(1)[3] for _ in range(6)]
    assert flags == [False] * 5 + [True]


def test_gymnasium_make_with_render_mode_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gymnasium.make("reciprocity/L6-v0", render_mode="rgb_array")
    env.reset(seed=0)
    assert env.render().dtype == np.uint8


# ----------------------------------------------------------------------------------------------
# SuperSuit
# ----------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_supersuit_vector_env():
    supersuit = pytest.importorskip("supersuit")
    env = make_parallel("many-learners-v0", max_rounds=5)
    vec = supersuit.pettingzoo_env_to_vec_env_v1(env)
    vec = supersuit.concat_vec_envs_v1(vec, num_vec_envs=2, num_cpus=0, base_class="gymnasium")
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (14, 5)
    assert np.all(obs[:, 0] == 0)
    for step in range(12):
        obs, rewards, terms, truncs, _ = vec.step(np.ones(14, dtype=np.int64))
        assert obs.shape == (14, 5) and rewards.shape == (14,)
        assert terms.shape == truncs.shape == (14,)
        if step % 2 == 0:  # act step: everybody cooperates, so rewards are b - c minus errors
            assert np.all(np.isin(rewards, [3.0 - 0.75, 3.0, -0.75, 0.0]))
            assert np.all(obs[:, 0] == 1)
        else:
            assert np.all(rewards == 0.0)
        assert np.all(truncs == (step == 9))
