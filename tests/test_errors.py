"""Bad configuration fails at construction with a ValueError naming the field; a bad action fails
with a ValueError naming the agent (spec §4).

Every constructor path is exercised: ``parallel_env``, ``env`` (AEC), ``make`` and
``make_parallel`` overrides, and ``simulate``.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from reciprocity.envs import indirect_reciprocity_v0 as ir
from reciprocity.envs import make, make_parallel, simulate

# (label, keyword overrides, text the message must contain)
BAD_CONFIGS = [
    ("unknown norm", {"population": ["focal", "L6", "L9"]}, "population[2]"),
    ("unknown rule in pair", {"population": ["focal", "L6", "L6", "disc+nonsense"]},
     "population[3]"),
    ("unknown action rule in dict",
     {"population": ["focal", {"action": "sometimes", "assess": "L6"}]}, "population[1]"),
    ("action rule only", {"population": ["focal", "L6", "alld"]}, "population[2]"),
    ("rule list out of range",
     {"population": ["focal", "L6", {"action": [1, 0, 1, 1.5], "assess": "L6"}]},
     "population[2].action"),
    ("rule list wrong length",
     {"population": ["focal", {"action": "disc", "assess": [1, 0, 1]}]}, "population[1].assess"),
    ("strategy dict extra key",
     {"population": ["focal", {"action": "disc", "assess": "L6", "colour": "red"}]},
     "population[1]"),
    ("not a strategy", {"population": ["focal", 42]}, "population[1]"),
    ("one slot", {"population": ["focal"]}, "population"),
    ("no slot", {"population": []}, "population"),
    ("population string", {"population": "L6"}, "population"),
    ("bad count", {"population": ["focal", {"count": 0, "slot": "L6"}]}, "population[1].count"),
    ("execution_error = 1", {"execution_error": 1.0}, "execution_error"),
    ("execution_error < 0", {"execution_error": -0.1}, "execution_error"),
    ("assessment_error > 0.5", {"assessment_error": 0.6}, "assessment_error"),
    ("update_probability > 1", {"update_probability": 1.5}, "update_probability"),
    ("update_probability < 0", {"update_probability": -0.01}, "update_probability"),
    ("initial_reputation > 1", {"initial_reputation": 1.2}, "initial_reputation"),
    ("initial_reputation word", {"initial_reputation": "meh"}, "initial_reputation"),
    ("initial_reputation bool", {"initial_reputation": True}, "initial_reputation"),
    ("benefit = 0", {"benefit": 0.0}, "benefit"),
    ("benefit < 0", {"benefit": -1}, "benefit"),
    ("benefit string", {"benefit": "5"}, "benefit"),
    ("cost < 0", {"cost": -0.5}, "cost"),
    ("benefit inf", {"benefit": math.inf}, "benefit"),
    *[(f"{name} NaN", {name: math.nan}, name) for name in
      ("benefit", "cost", "execution_error", "assessment_error", "update_probability",
       "initial_reputation")],
]
ENV_ONLY_BAD_CONFIGS = [
    ("no focal slot", {"population": ["L6", "L6", "alld+L6"]}, "population"),
    ("max_rounds = 0", {"max_rounds": 0}, "max_rounds"),
    ("max_rounds < 0", {"max_rounds": -3}, "max_rounds"),
    ("max_rounds float", {"max_rounds": 10.5}, "max_rounds"),
    ("max_rounds float integral", {"max_rounds": 10.0}, "max_rounds"),
    ("max_rounds bool", {"max_rounds": True}, "max_rounds"),
    ("max_rounds string", {"max_rounds": "10"}, "max_rounds"),
    ("max_rounds NaN", {"max_rounds": math.nan}, "max_rounds"),
    ("render_mode", {"render_mode": "window"}, "render_mode"),
    ("max_cycles = 0", {"max_cycles": 0}, "max_cycles"),
    ("max_cycles < 0", {"max_cycles": -4}, "max_cycles"),
    ("max_cycles float", {"max_cycles": 8.0}, "max_cycles"),
    ("max_cycles string", {"max_cycles": "8"}, "max_cycles"),
    ("max_cycles bool", {"max_cycles": True}, "max_cycles"),
    ("max_cycles odd", {"max_cycles": 7}, "max_cycles"),
    ("max_cycles and max_rounds disagree", {"max_cycles": 8, "max_rounds": 5}, "max_cycles"),
    ("observation", {"observation": "partial"}, "observation"),
]


def _constructors():
    def parallel(**kw):
        return ir.parallel_env(**kw)

    def aec(**kw):
        return ir.env(**kw)

    def raw(**kw):
        return ir.raw_env(**kw)

    def make_aec(**kw):
        return make("discriminators-vs-defectors-v0", **kw)

    def make_par(**kw):
        return make_parallel("L6-v0", **kw)

    return {"parallel_env": parallel, "env": aec, "raw_env": raw, "make": make_aec,
            "make_parallel": make_par}


CONSTRUCTORS = _constructors()


def assert_value_error_naming(fn, needle, **kw):
    with pytest.raises(ValueError) as info:
        fn(**kw)
    assert needle in str(info.value), f"message {str(info.value)!r} does not name {needle!r}"
    return str(info.value)


@pytest.mark.parametrize("ctor", sorted(CONSTRUCTORS))
@pytest.mark.parametrize("label,kwargs,needle", BAD_CONFIGS + ENV_ONLY_BAD_CONFIGS,
                         ids=[c[0] for c in BAD_CONFIGS + ENV_ONLY_BAD_CONFIGS])
def test_bad_configuration_fails_at_construction(ctor, label, kwargs, needle):
    assert_value_error_naming(CONSTRUCTORS[ctor], needle, **kwargs)


@pytest.mark.parametrize("ctor", sorted(CONSTRUCTORS))
def test_valid_configurations_construct(ctor):
    """Control: the boundary values of every range are accepted, so the tests above are not
    passing because everything fails."""
    ok = {"population": ["focal", {"count": 2, "slot": "L6"}, "alld+L6",
                         {"action": [1, 0, 0.5, 0], "assess": "stern_judging"}],
          "benefit": 1e-9, "cost": 0, "execution_error": 0.0, "assessment_error": 0.5,
          "update_probability": 0.0, "initial_reputation": 1.0, "max_rounds": 1,
          "render_mode": "rgb_array", "observation": "full"}
    env = CONSTRUCTORS[ctor](**ok)
    assert env.possible_agents == ["agent_0"]
    for extra in ({"update_probability": 1}, {"initial_reputation": "good"},
                  {"initial_reputation": 0}, {"max_rounds": np.int64(5)},
                  {"execution_error": 0.999}, {"render_mode": "ansi"}, {"render_mode": None},
                  {"render_mode": "human"}, {"observation": "local"},
                  {"max_cycles": 2}, {"max_cycles": np.int64(2)}):
        CONSTRUCTORS[ctor](**{**ok, **extra})


def test_unknown_norm_message_is_helpful():
    msg = assert_value_error_naming(ir.parallel_env, "population[2]",
                                    population=["focal", "L6", "L9"])
    assert "L9" in msg


def test_unknown_field_in_population_index_counts_expanded_slots():
    # population[1] is the first slot of the repeated entry; the unknown norm is at slot 3.
    assert_value_error_naming(ir.parallel_env, "population[3]",
                              population=["focal", {"count": 2, "slot": "L6"}, "L0"])


@pytest.mark.parametrize("ctor", sorted(CONSTRUCTORS))
def test_unknown_keyword_is_a_value_error(ctor):
    assert_value_error_naming(CONSTRUCTORS[ctor], "benfit", benfit=5.0)


def test_unknown_scenario_id():
    assert_value_error_naming(make, "L9-v0", scenario="L9-v0")
    assert_value_error_naming(make_parallel, "scenario", scenario="nonexistent-v3")


# ----------------------------------------------------------------------------------------------
# simulate
# ----------------------------------------------------------------------------------------------

SIM_OK = {"benefit": 5.0, "cost": 1.0, "execution_error": 0.02, "assessment_error": 0.02}


def run_simulate(population=("L6", "L6", "alld+L6"), rounds=3, **kw):
    return simulate(list(population) if isinstance(population, tuple) else population, rounds,
                    **{**SIM_OK, **kw}, seed=0)


def _scripted(kw):
    """Replace 'focal' slots by scripted ones (simulate takes scripted populations only)."""
    if "population" in kw and isinstance(kw["population"], list):
        return {**kw, "population": ["L6" if s == "focal" else s for s in kw["population"]]}
    return kw


@pytest.mark.parametrize("label,kwargs,needle", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_simulate_bad_configuration(label, kwargs, needle):
    kwargs = _scripted(kwargs)
    if label == "one slot":
        kwargs = {"population": ["L6"]}
    assert_value_error_naming(run_simulate, needle, **kwargs)


@pytest.mark.parametrize("kwargs,needle", [
    ({"population": ["focal", "L6", "L6"]}, "population"),
    ({"rounds": 0}, "rounds"),
    ({"rounds": 2.5}, "rounds"),
    ({"rounds": True}, "rounds"),
    ({"num_envs": 0}, "num_envs"),
    ({"num_envs": 1.5}, "num_envs"),
])
def test_simulate_bad_arguments(kwargs, needle):
    assert_value_error_naming(run_simulate, needle, **kwargs)


def test_simulate_accepts_a_valid_population():
    result = run_simulate(rounds=4, num_envs=2)
    assert result.good_fraction.shape == (4,)
    assert result.cooperation_rate.shape == (4,)
    assert result.payoffs.shape == (3,)


def test_simulate_unknown_keyword_is_a_value_error():
    assert_value_error_naming(run_simulate, "benfit", benfit=5.0)


# ----------------------------------------------------------------------------------------------
# Actions outside the space
# ----------------------------------------------------------------------------------------------

# Outside Discrete(2) in the sense of Discrete.contains (floats, strings, None, sequences).
BAD_ACTIONS = [2, -1, 0.5, 1.0, "C", None, np.array([0, 1]), np.float64(1.0), [1], np.int64(2)]
BAD_ACTION_IDS = ["2", "-1", "0.5", "1.0", "C", "None", "array2", "float64", "list", "int64_2"]
GOOD_ACTIONS = [0, 1, np.int64(1), np.int8(0), np.array(1)]


@pytest.mark.parametrize("bad", BAD_ACTIONS, ids=BAD_ACTION_IDS)
@pytest.mark.parametrize("phase", [0, 1])
def test_parallel_bad_action_names_the_agent(bad, phase):
    env = make_parallel("many-learners-v0")
    env.reset(seed=0)
    if phase:
        env.step(dict.fromkeys(env.agents, 1))
    actions = dict.fromkeys(env.agents, 1)
    actions["agent_4"] = bad
    with pytest.raises(ValueError, match=r"agent_4\b") as info:
        env.step(actions)
    assert not re.search(r"agent_[0-35-9]\b", str(info.value))
    # Nothing happened: a valid step still plays the pending phase.
    obs, *_ = env.step(dict.fromkeys(env.agents, 1))
    assert all(o[0] == 1 - phase for o in obs.values())


@pytest.mark.parametrize("good", GOOD_ACTIONS, ids=[repr(g) for g in GOOD_ACTIONS])
def test_parallel_valid_action_types(good):
    env = make_parallel("many-learners-v0")
    env.reset(seed=0)
    actions = dict.fromkeys(env.agents, 1)
    actions["agent_4"] = good
    obs, *_ = env.step(actions)
    assert obs["agent_4"][0] == 1


def test_parallel_missing_agent():
    env = make_parallel("many-learners-v0")
    env.reset(seed=0)
    actions = dict.fromkeys(env.agents, 1)
    del actions["agent_6"]
    with pytest.raises(ValueError, match=r"agent_6\b"):
        env.step(actions)


@pytest.mark.parametrize("key", ["agent_7", "agent_99", "agent0", "learner"])
def test_parallel_unknown_agent_key(key):
    env = make_parallel("many-learners-v0")
    env.reset(seed=0)
    actions = {**dict.fromkeys(env.agents, 1), key: 1}
    with pytest.raises(ValueError, match=re.escape(repr(key))):
        env.step(actions)


@pytest.mark.parametrize("bad", BAD_ACTIONS, ids=BAD_ACTION_IDS)
def test_aec_bad_action_right_away(bad):
    env = make("L6-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"agent_0\b"):
        env.step(bad)
    env.step(1)  # the environment is still usable


@pytest.mark.parametrize("bad", [2, -1, 0.5, "C", None], ids=["2", "-1", "0.5", "C", "None"])
def test_aec_bad_action_mid_cycle_names_the_agent(bad):
    env = make("many-learners-v0")
    env.reset(seed=0)
    for _ in range(7 + 3):  # one whole cycle (act phase) and three agents of the assess phase
        env.step(1)
    assert env.agent_selection == "agent_3"
    with pytest.raises(ValueError, match=r"agent_3\b"):
        env.step(bad)


def test_aec_step_none_is_only_for_finished_agents():
    env = make("L6-v0", max_rounds=1)
    env.reset(seed=0)
    env.step(1)
    env.step(1)
    _, _, _, trunc, _ = env.last()
    assert trunc
    env.step(None)  # the legal way to remove a truncated agent
    assert env.agents == []
