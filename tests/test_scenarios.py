"""The scenario catalogue of spec §3 and scenarios as data (JSON/YAML files, registration).

Expected parameters are written out here from the spec's numbers; strategies are compared
against the spec's published rule tables (§2), transcribed below independently of the library.
"""

from __future__ import annotations

import importlib
import json
import re
from collections import Counter
from importlib import resources
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import yaml

# --- Spec §2, display order --------------------------------------------------------------------
# Assessment rules: GGC GGD GBC GBD BGC BGD BBC BBD. Action rules: p(G,G) p(G,B) p(B,G) p(B,B).
from spec_tables import LEADING_EIGHT, SECOND_ORDER

import reciprocity
from reciprocity.envs import (
    Scenario,
    get_scenario,
    load_scenario,
    make,
    make_parallel,
    register,
    scenarios,
)

ACTIONS = {"allc": "CCCC", "alld": "DDDD", "disc": "CDCD",
           **{k: "CDC" + pbb for k, (_, pbb) in LEADING_EIGHT.items()}}
ASSESS = {**{k: cols for k, (cols, _) in LEADING_EIGHT.items()},
          **{k: cols * 2 for k, cols in SECOND_ORDER.items()}}


def display(table: np.ndarray, letters: str) -> str:
    """Index-order probabilities (library convention) -> display string, e.g. 'CDCD'."""
    good, bad = letters
    return "".join(good if v == 1 else bad if v == 0 else "?" for v in np.asarray(table)[::-1])


def background(scenario: Scenario) -> Counter:
    """Counter of (action rule, assessment rule) display strings over the background slots."""
    return Counter((display(s.action, "CD"), display(s.assess, "GB"))
                   for s in scenario.env_config.strategies if s is not None)


def rules(action: str, assess: str) -> tuple[str, str]:
    return ACTIONS[action], ASSESS[assess]


BASE = {"benefit": 5, "cost": 1, "execution_error": 0.02, "assessment_error": 0.02,
        "update_probability": 1.0, "n": 10, "focal": 1}
FLAGSHIP = {**BASE, "benefit": 3, "cost": 0.75,
            "background": Counter({rules("L6", "L6"): 6, rules("alld", "L6"): 3})}
EXPECTED = {
    **{f"L{k}-v0": {**BASE, "background": Counter({rules(f"L{k}", f"L{k}"): 9})}
       for k in range(1, 9)},
    "image-scoring-v0": {**BASE, "background": Counter({rules("disc", "image_scoring"): 9})},
    "shunning-v0": {**BASE, "background": Counter({rules("disc", "shunning"): 9})},
    "all-cooperators-v0": {**BASE, "background": Counter({rules("allc", "L6"): 9})},
    "all-defectors-v0": {**BASE, "background": Counter({rules("alld", "L6"): 9})},
    "low-benefit-v0": {**BASE, "benefit": 1.1, "cost": 1,
                       "background": Counter({rules("L6", "L6"): 9})},
    "discriminators-vs-defectors-v0": FLAGSHIP,
    "many-learners-v0": {**BASE, "benefit": 3, "cost": 0.75, "focal": 7,
                         "background": Counter({rules("alld", "L6"): 3})},
    # Harder variants (u = 0.2 and N = 50) of the discriminative scenarios.
    "discriminators-vs-defectors-slow-v0": {**FLAGSHIP, "update_probability": 0.2},
    "discriminators-vs-defectors-large-v0": {
        **FLAGSHIP, "n": 50,
        "background": Counter({rules("L6", "L6"): 33, rules("alld", "L6"): 16})},
    "L6-slow-v0": {**BASE, "update_probability": 0.2,
                   "background": Counter({rules("L6", "L6"): 9})},
    "L6-large-v0": {**BASE, "n": 50, "background": Counter({rules("L6", "L6"): 49})},
    "L3-slow-v0": {**BASE, "update_probability": 0.2,
                   "background": Counter({rules("L3", "L3"): 9})},
    "L3-large-v0": {**BASE, "n": 50, "background": Counter({rules("L3", "L3"): 49})},
}


def test_rule_transcription_sanity():
    """The tables above match the spec's prose: L3 is simple standing, L6 stern judging."""
    assert ASSESS["L3"] == ASSESS["simple_standing"]
    assert ASSESS["L6"] == ASSESS["stern_judging"]
    assert ACTIONS["L6"] == "CDCD" == ACTIONS["disc"]
    assert ACTIONS["L1"] == "CDCC"


# ----------------------------------------------------------------------------------------------
# The catalogue
# ----------------------------------------------------------------------------------------------


def test_catalogue_ids():
    ids = scenarios()
    assert ids == sorted(ids) and all(isinstance(i, str) for i in ids)
    assert len(ids) >= 14
    assert all(i.endswith("-v0") for i in ids)
    assert set(EXPECTED) <= set(ids), set(EXPECTED) - set(ids)
    assert reciprocity.scenarios() == ids


@pytest.mark.parametrize("sid", sorted(EXPECTED))
def test_catalogue_parameters(sid):
    want = EXPECTED[sid]
    s = get_scenario(sid)
    assert s.id == sid
    assert s.benefit == pytest.approx(want["benefit"])
    assert s.cost == pytest.approx(want["cost"])
    assert s.execution_error == pytest.approx(want["execution_error"])
    assert s.assessment_error == pytest.approx(want["assessment_error"])
    assert s.update_probability == pytest.approx(want["update_probability"])
    assert s.initial_reputation == "good"
    assert isinstance(s.max_rounds, int) and s.max_rounds >= 1
    assert len(s.population) == want["n"]
    assert s.num_focal == want["focal"]
    assert background(s) == want["background"]
    assert isinstance(s.description, str) and s.description
    # The environment built from the id carries the same institution.
    env = make_parallel(sid)
    p = env.config.params
    assert (p.num_agents, p.benefit, p.cost) == (want["n"], want["benefit"], want["cost"])
    assert (p.execution_error, p.assessment_error, p.update_probability) == (
        want["execution_error"], want["assessment_error"], want["update_probability"])
    assert len(env.possible_agents) == want["focal"]
    assert env.max_rounds == s.max_rounds


def test_flagship_full_cooperation_payoff():
    s = get_scenario("discriminators-vs-defectors-v0")
    assert s.benefit - s.cost == pytest.approx(2.25)


def test_harder_variants_exist_for_discriminative_scenarios():
    """Every discriminative base scenario used as a hard case has u = 0.2 and N = 50 twins
    with the same background rules."""
    flag = get_scenario("discriminators-vs-defectors-v0")
    slow = [sid for sid in scenarios() if get_scenario(sid).update_probability == 0.2]
    large = [sid for sid in scenarios() if len(get_scenario(sid).population) == 50]
    assert any(background(get_scenario(sid)) == background(flag) for sid in slow)
    assert any(set(background(get_scenario(sid))) == set(background(flag)) for sid in large)


def test_catalogue_files_match_registry():
    folder = resources.files("reciprocity.envs").joinpath("catalogue")
    files = [e for e in folder.iterdir() if e.name.endswith(".json")]
    assert len(files) >= 14
    for entry in files:
        loaded = load_scenario(Path(str(entry)))
        assert entry.name == f"{loaded.id}.json"
        assert loaded == get_scenario(loaded.id)


@pytest.mark.parametrize("sid", scenarios())
def test_to_dict_round_trip(sid, tmp_path):
    s = get_scenario(sid)
    d = s.to_dict()
    assert Scenario.from_dict(d) == s
    assert Scenario.from_dict(json.loads(json.dumps(d))) == s
    path = tmp_path / f"{sid}.yaml"
    path.write_text(yaml.safe_dump(d))
    again = load_scenario(path)
    assert again == s and again.config() == s.config()


def test_to_dict_round_trip_with_probability_tables():
    s = Scenario.from_dict({
        "id": "tables-v0", "description": "custom rules",
        "population": ["focal", {"action": [1, 0, 0.5, 0.25],
                                 "assess": [1, 0, 0, 1, 1, 0, 0, 0.75]},
                       {"count": 2, "slot": "alld+image_scoring"}],
        "benefit": 2.5, "cost": 0.5, "execution_error": 0.1, "assessment_error": 0.05,
        "update_probability": 0.7, "max_rounds": 9, "initial_reputation": 0.4})
    assert len(s.population) == 4
    back = Scenario.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s
    strat = back.env_config.strategies[1]
    np.testing.assert_array_equal(strat.action, [0.25, 0.5, 0, 1])  # index order
    assert back.to_dict()["initial_reputation"] == 0.4


# ----------------------------------------------------------------------------------------------
# Scenario files
# ----------------------------------------------------------------------------------------------

CUSTOM = {
    "id": "my-custom-v0",
    "description": "two learners among discriminators and defectors",
    "population": [{"count": 2, "slot": "focal"}, "L6", {"action": "disc", "assess": "L3"},
                   {"count": 2, "slot": "alld+L6"}],
    "benefit": 4,
    "cost": 0.5,
    "execution_error": 0.05,
    "assessment_error": 0.1,
    "update_probability": 0.5,
    "max_rounds": 7,
    "initial_reputation": 0.8,
}
CUSTOM_YAML = """\
# a scenario written by hand
id: my-custom-v0
description: two learners among discriminators and defectors
population:
  - {count: 2, slot: focal}
  - L6
  - action: disc
    assess: L3
  - count: 2
    slot: alld+L6
benefit: 4
cost: 0.5
execution_error: 0.05
assessment_error: 0.1
update_probability: 0.5
max_rounds: 7
initial_reputation: 0.8
"""


def check_custom(s: Scenario):
    assert s.id == "my-custom-v0"
    assert len(s.population) == 6 and s.num_focal == 2
    assert (s.benefit, s.cost, s.execution_error, s.assessment_error) == (4, 0.5, 0.05, 0.1)
    assert (s.update_probability, s.max_rounds, s.initial_reputation) == (0.5, 7, 0.8)
    assert background(s) == Counter({rules("L6", "L6"): 1, rules("disc", "L3"): 1,
                                     rules("alld", "L6"): 2})


@pytest.fixture
def scenario_files(tmp_path):
    js = tmp_path / "custom.json"
    js.write_text(json.dumps(CUSTOM))
    ym = tmp_path / "custom.yaml"
    ym.write_text(CUSTOM_YAML)
    yml = tmp_path / "custom.yml"
    yml.write_text(CUSTOM_YAML)
    return js, ym, yml


def test_load_json_and_yaml(scenario_files):
    js, ym, yml = scenario_files
    a, b, c = load_scenario(js), load_scenario(str(ym)), load_scenario(yml)
    for s in (a, b, c):
        check_custom(s)
    assert a == b == c


@pytest.mark.parametrize("kind", [0, 1, 2], ids=["json", "yaml", "yml"])
@pytest.mark.parametrize("as_str", [False, True], ids=["Path", "str"])
def test_make_by_path(scenario_files, kind, as_str):
    path = scenario_files[kind]
    path = str(path) if as_str else path
    par = make_parallel(path)
    assert par.possible_agents == ["agent_0", "agent_1"]
    assert par.config.params.benefit == 4 and par.max_rounds == 7
    par.reset(seed=0)
    steps = 0
    while par.agents:
        _, _, _, truncs, _ = par.step(dict.fromkeys(par.agents, 1))
        steps += 1
    assert all(truncs.values()) and steps == 14
    # overrides win over the file
    par = make_parallel(path, max_rounds=2, benefit=9.0)
    assert par.max_rounds == 2 and par.config.params.benefit == 9.0
    aec = make(path, cost=0.0)
    aec.reset(seed=0)
    assert aec.possible_agents == ["agent_0", "agent_1"]
    assert aec.agent_selection == "agent_0"


@pytest.fixture
def clean_registry():
    """Undo registrations made by a test (scenario registry and Gymnasium registry)."""
    module = importlib.import_module("reciprocity.envs.scenarios")
    saved = dict(module._REGISTRY)
    gym_saved = set(gymnasium.registry)
    yield module
    module._REGISTRY.clear()
    module._REGISTRY.update(saved)
    for key in set(gymnasium.registry) - gym_saved:
        del gymnasium.registry[key]


def test_register_new_scenario(clean_registry, scenario_files):
    single = {**CUSTOM, "id": "my-single-v0",
              "population": ["focal", {"count": 4, "slot": "L6"}]}
    s = register(single)
    assert isinstance(s, Scenario) and "my-single-v0" in scenarios()
    assert get_scenario("my-single-v0") == s
    env = make_parallel("my-single-v0")
    assert env.possible_agents == ["agent_0"] and env.config.params.benefit == 4
    # single-focal: also a Gymnasium id
    genv = gymnasium.make("reciprocity/my-single-v0")
    obs, _ = genv.reset(seed=0)
    assert obs.shape == (5,)
    # multi-focal from a file: registered, not a Gymnasium id
    multi = register(load_scenario(scenario_files[0]))
    assert multi.id in scenarios()
    assert "reciprocity/my-custom-v0" not in gymnasium.registry
    assert make("my-custom-v0").possible_agents == ["agent_0", "agent_1"]


def test_register_duplicate_id(clean_registry):
    first = {**CUSTOM, "id": "dup-v0", "population": ["focal", "L6", "L6"]}
    register(first)
    with pytest.raises(ValueError, match="id") as info:
        register({**first, "benefit": 9})
    assert "dup-v0" in str(info.value)
    assert get_scenario("dup-v0").benefit == 4  # unchanged
    register({**first, "benefit": 9}, overwrite=True)
    assert get_scenario("dup-v0").benefit == 9
    assert make_parallel("dup-v0").config.params.benefit == 9
    # a catalogue id cannot be silently replaced either
    with pytest.raises(ValueError, match="L6-v0"):
        register({**get_scenario("L6-v0").to_dict(), "benefit": 1.0})


def test_overwrite_single_with_multi_focal_unregisters_gymnasium_id(clean_registry):
    register({**CUSTOM, "id": "switch-v0", "population": ["focal", "L6", "L6"]})
    assert "reciprocity/switch-v0" in gymnasium.registry
    register({**CUSTOM, "id": "switch-v0"}, overwrite=True)  # two focal slots
    assert "reciprocity/switch-v0" not in gymnasium.registry


def test_num_focal_agrees_with_the_environment():
    s = Scenario.from_dict({"id": "ws-v0", "population": [" focal ", "L6", "L6"],
                            "benefit": 2, "cost": 1})
    assert s.num_focal == len(s.env_config.focal_slots) == 1


def test_get_scenario_accepts_scenario_objects():
    s = get_scenario("L6-v0")
    assert get_scenario(s) is s
    assert make_parallel(s, max_rounds=3).max_rounds == 3


# ----------------------------------------------------------------------------------------------
# Malformed files
# ----------------------------------------------------------------------------------------------

VALID = {"id": "ok-v0", "population": ["focal", "L6", "L6"], "benefit": 3, "cost": 1}

MALFORMED = [
    # (name, file suffix, file text, text the message must contain besides the file name)
    ("bad json", ".json", '{"id": "x-v0", "population": [', "pars"),
    ("bad yaml", ".yaml", "id: x-v0\npopulation: [focal, L6\nbenefit: 3\n", "pars"),
    ("missing benefit", ".json", json.dumps({k: v for k, v in VALID.items() if k != "benefit"}),
     "benefit"),
    ("missing population", ".yaml",
     yaml.safe_dump({k: v for k, v in VALID.items() if k != "population"}), "population"),
    ("missing id", ".json", json.dumps({k: v for k, v in VALID.items() if k != "id"}), "id"),
    ("unknown field", ".json", json.dumps({**VALID, "colour": "red"}), "colour"),
    ("unknown field yaml", ".yml", yaml.safe_dump({**VALID, "render_mode": "ansi"}),
     "render_mode"),
    ("bad id no version", ".json", json.dumps({**VALID, "id": "myscenario"}), "id"),
    ("bad id space", ".json", json.dumps({**VALID, "id": "my scenario-v0"}), "id"),
    ("bad id number", ".yaml", yaml.safe_dump({**VALID, "id": 7}), "id"),
    ("top-level list", ".json", json.dumps([VALID]), "mapping"),
    ("top-level scalar", ".yaml", "just some text\n", "mapping"),
    ("empty yaml", ".yaml", "", "mapping"),
    ("count zero", ".json",
     json.dumps({**VALID, "population": ["focal", {"count": 0, "slot": "L6"}]}),
     "population[1].count"),
    ("count string", ".yaml",
     yaml.safe_dump({**VALID, "population": ["focal", {"count": "3", "slot": "L6"}]}),
     "population[1].count"),
    ("count float", ".json",
     json.dumps({**VALID, "population": ["focal", {"count": 2.5, "slot": "L6"}]}),
     "population[1].count"),
    ("count bool", ".json",
     json.dumps({**VALID, "population": ["focal", {"count": True, "slot": "L6"}]}),
     "population[1].count"),
    ("count without slot", ".json",
     json.dumps({**VALID, "population": ["focal", {"count": 2}]}), "population[1]"),
    ("count extra key", ".json",
     json.dumps({**VALID, "population": ["focal", {"count": 2, "slot": "L6", "n": 1}]}),
     "population[1]"),
    ("unknown norm", ".json", json.dumps({**VALID, "population": ["focal", "L6", "L42"]}),
     "population[2]"),
    ("benefit zero", ".json", json.dumps({**VALID, "benefit": 0}), "benefit"),
    ("cost negative", ".yaml", yaml.safe_dump({**VALID, "cost": -1}), "cost"),
    ("nan error", ".yaml", "id: ok-v0\npopulation: [focal, L6]\nbenefit: 3\ncost: 1\n"
     "execution_error: .nan\n", "execution_error"),
    ("probability too large", ".json", json.dumps({**VALID, "update_probability": 2}),
     "update_probability"),
    ("bad initial reputation", ".json", json.dumps({**VALID, "initial_reputation": "meh"}),
     "initial_reputation"),
    ("bad max_rounds", ".json", json.dumps({**VALID, "max_rounds": 0}), "max_rounds"),
    ("description not text", ".json", json.dumps({**VALID, "description": 3}), "description"),
    ("population not a list", ".json", json.dumps({**VALID, "population": "L6"}), "population"),
    ("one slot", ".json", json.dumps({**VALID, "population": ["focal"]}), "population"),
]


@pytest.mark.parametrize("name,suffix,text,needle", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_file(tmp_path, name, suffix, text, needle):
    path = tmp_path / f"scenario{suffix}"
    path.write_text(text)
    for loader in (load_scenario, make, make_parallel):
        with pytest.raises(ValueError) as info:
            loader(path)
        msg = str(info.value)
        assert str(path) in msg, f"{loader.__name__}: file not named in {msg!r}"
        assert needle in msg, f"{loader.__name__}: {needle!r} not named in {msg!r}"


def test_valid_file_control(tmp_path):
    """Control for the malformed cases: the unmodified mapping loads from JSON and YAML."""
    (tmp_path / "a.json").write_text(json.dumps(VALID))
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(VALID))
    assert load_scenario(tmp_path / "a.json") == load_scenario(tmp_path / "a.yaml")
    assert load_scenario(tmp_path / "a.json").num_focal == 1


def test_unsupported_suffix_and_missing_file(tmp_path):
    path = tmp_path / "scenario.txt"
    path.write_text(json.dumps(VALID))
    with pytest.raises(ValueError, match=r"scenario\.txt"):
        load_scenario(path)
    missing = tmp_path / "nope.json"
    for loader in (load_scenario, make, make_parallel):
        with pytest.raises(ValueError, match=r"nope\.json"):
            loader(missing)


def test_registry_is_restored_after_registration_tests():
    """Runs last (file order): nothing the registration tests registered leaks."""
    for sid in ("my-single-v0", "my-custom-v0", "dup-v0", "switch-v0"):
        assert sid not in scenarios()
        assert f"reciprocity/{sid}" not in gymnasium.registry
    assert get_scenario("L6-v0").benefit == 5


def test_scenario_with_strategy_objects_serialises_to_json():
    from reciprocity.envs import Scenario, parse_strategy

    strategy = parse_strategy("alld+L6")
    scenario = Scenario.from_dict({"id": "objects-v0", "population": ["focal", strategy, "L6"],
                                   "benefit": 2.0, "cost": 1.0})
    data = json.loads(json.dumps(scenario.to_dict()))
    again = Scenario.from_dict(data)
    np.testing.assert_array_equal(again.env_config.strategies[1].action, strategy.action)
    np.testing.assert_array_equal(again.env_config.strategies[1].assess, strategy.assess)


def test_play_scenario_fills_the_focal_slots_with_the_strategy():
    """L6-v0's focal learner playing L6 itself is a population of ten L6 agents: the same game
    as simulate() of that population (same draws), with the public record of game 0 kept."""
    from reciprocity.envs import play_scenario, simulate

    scenario = get_scenario("L6-v0")
    played = play_scenario("L6-v0", "L6", 30, num_envs=4, seed=3, keep_records=True)
    whole = simulate(["L6"] * 10, 30, benefit=scenario.benefit, cost=scenario.cost,
                     execution_error=scenario.execution_error,
                     assessment_error=scenario.assessment_error, num_envs=4, seed=3)
    np.testing.assert_array_equal(played.payoffs, whole.payoffs)
    np.testing.assert_array_equal(played.good_fraction, whole.good_fraction)
    assert whole.records is None and len(played.records) == 30
    assert played.records[-1]["reputation_after"].tolist() == \
        played.final_reputation[0].tolist()
    with pytest.raises(ValueError, match="rounds must be a positive integer"):
        play_scenario("L6-v0", "L6", 0)


@pytest.mark.parametrize("columns", ["300", "100", "70"])
def test_scenarios_command_fits_the_terminal(columns, monkeypatch, capsys):
    """``reciprocity scenarios`` wraps to the terminal's width, at most 100 columns, and every
    scenario's description is there in full."""
    from reciprocity.cli import main

    monkeypatch.setenv("COLUMNS", columns)
    assert main(["scenarios"]) == 0
    printed = capsys.readouterr().out
    assert max(map(len, printed.splitlines())) <= min(100, int(columns))
    blocks = re.split(r"\n(?=\S)", printed.strip())  # one per scenario: its id starts a line
    assert [b.split()[0] for b in blocks] == scenarios()
    for block in blocks:
        sid, words = block.split()[0], block.split()[3:]
        assert " ".join(words) == " ".join(get_scenario(sid).description.split())

