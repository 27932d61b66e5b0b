"""The warm-up (spec §7): each learner first trains alone among scripted stand-ins for the other
learners, then all train together from their warmed-up policies.

The references are independent of the warm-up code: the warm-up game is typed out by hand from
the spec's wording and the published tables, and each learner's warm-up is compared with an
ordinary single-learner training run of that hand-made scenario.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch
from spec_tables import LEADING_EIGHT, SECOND_ORDER

from reciprocity.cli import main
from reciprocity.envs import get_scenario
from reciprocity.envs.scenarios import Scenario
from reciprocity.runfolder import load_checkpoint
from reciprocity.train import (
    TrainConfig,
    train,
    warmup_config,
    warmup_opponent,
    warmup_seed,
)

torch.set_num_threads(1)

ALGOS = ["rg", "ppo", "reinforce"]
DISC = [1.0, 0.0, 1.0, 0.0]  # p = y over the action contexts GG GB BG BB (display order)


def verdicts(letters: str) -> list[float]:
    return [1.0 if c == "G" else 0.0 for c in letters]


def second_order(letters: str) -> list[float]:
    """A second-order rule ("C vs G", "D vs G", "C vs B", "D vs B") over the 8 signal contexts
    GGC GGD GBC GBD BGC BGD BBC BBD (the donor's reputation does not matter)."""
    return verdicts(letters * 2)


def tiny(scenario: str = "many-learners-audit-v0", **kw) -> TrainConfig:
    options = dict(seeds=(0, 3), rounds=40, num_envs=2, eval_envs=4, eval_rounds=5,
                   eval_burn_in=0, warmup=20, tensorboard=False,
                   algo_config={"rounds_per_update": 10})
    return TrainConfig(scenario, **{**options, **kw})


def read_progress(folder) -> list[dict]:
    with (folder / "progress.csv").open(newline="") as f:
        return list(csv.DictReader(f))


# -- the warm-up game ------------------------------------------------------------------------------
@pytest.mark.parametrize("scenario,norm", [
    ("many-learners-audit-v0", verdicts(LEADING_EIGHT["L6"][0])),    # the audit norm
    ("many-learners-majority-v0", verdicts(LEADING_EIGHT["L6"][0])),  # the background's (alld+L6)
])
def test_the_default_stand_in_is_the_ideal_discriminator(scenario, norm):
    spec = warmup_opponent(get_scenario(scenario).env_config).to_spec()
    assert spec == {"action": DISC, "assess": norm}


def test_under_an_audit_the_stand_in_assesses_by_the_audit_norm_not_the_background_s():
    data = {**get_scenario("many-learners-audit-v0").to_dict(), "id": "audit-is-v0",
            "audit_norm": "image_scoring"}
    spec = warmup_opponent(Scenario.from_dict(data).env_config).to_spec()
    assert spec == {"action": DISC, "assess": second_order(SECOND_ORDER["image_scoring"])}
    # a named stand-in replaces the default
    assert warmup_opponent(Scenario.from_dict(data).env_config, "allc+L3").to_spec() == {
        "action": [1.0] * 4, "assess": verdicts(LEADING_EIGHT["L3"][0])}


def test_the_warmup_game_keeps_one_learner_and_the_institution():
    scenario = get_scenario("many-learners-audit-v0")
    config = warmup_config(scenario.env_config, warmup_opponent(scenario.env_config))
    assert config.focal_slots.tolist() == [0]
    specs = [s.to_spec() for s in config.strategies[1:]]
    stand_in = {"action": DISC, "assess": verdicts(LEADING_EIGHT["L6"][0])}
    defector = {"action": [0.0] * 4, "assess": verdicts(LEADING_EIGHT["L6"][0])}
    assert specs == [stand_in] * 6 + [defector] * 3
    assert config.params == scenario.env_config.params  # audit v = 0.3 by L6, b, c, e, mu, u
    assert config.max_rounds == scenario.max_rounds


def copy_scenario(source: str, stand_in: str) -> Scenario:
    """The warm-up game typed out by hand: the scenario's first learner slot stays focal, every
    other learner slot plays ``stand_in``."""
    data = get_scenario(source).to_dict()
    population = ["focal" if i == 0 else stand_in if slot == "focal" else slot
                  for i, slot in enumerate(data["population"])]
    return Scenario.from_dict({**data, "id": "warmup-copy-v0", "population": population})


def policy_tensors(state: dict) -> dict:
    return {k: v for k, v in state["learner"]["policy"].items() if k != "observations"}


@pytest.mark.parametrize("algo,init", [("rg", None), ("ppo", None), ("reinforce", None),
                                       ("rg", "allc+L6")])
def test_each_learner_warms_up_as_a_single_learner_run_of_its_own(tmp_path, stop_training,
                                                                  algo, init):
    """Learner j of seed s ends the warm-up with exactly the policy a single-learner run of the
    hand-made warm-up game trains with seed warmup_seed(s, j), from the same start; all
    learners then start training together from those policies (the checkpoint at the end of
    the warm-up holds them)."""
    config = tiny(algo=algo, checkpoint_every=1, init_policy=init)
    with stop_training(config.warmup_updates() + 1), pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run", progress=False)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["update"] == config.warmup_updates() == 2 and "warmup" not in state
    together = policy_tensors(state)

    seeds = tuple(warmup_seed(s, j) for s in config.seeds for j in range(7))
    assert len(set(seeds)) == 14
    alone = TrainConfig(copy_scenario("many-learners-audit-v0", "disc+L6"), algo=algo,
                        seeds=seeds, rounds=config.warmup, num_envs=2, eval_envs=2,
                        eval_rounds=1, eval_burn_in=0, tensorboard=False, init_policy=init,
                        algo_config={"rounds_per_update": 10})
    train(alone, tmp_path / "alone", progress=False)
    expected = policy_tensors(load_checkpoint(tmp_path / "alone" / "checkpoint.pt"))
    assert together.keys() == expected.keys()
    for name, value in together.items():
        assert value.shape[:2] == (2, 7)
        assert torch.equal(value.reshape(expected[name].shape), expected[name]), name
    # control: each learner learned from games of its own (learners of one seed differ)
    assert not torch.equal(together["action_table"][0, 0], together["action_table"][0, 1])


@pytest.mark.parametrize("lr,moved", [(0.0, False), (0.05, True)])
def test_warmup_with_an_mlp_policy_carries_the_network(tmp_path, stop_training, lr, moved):
    """MLP policies: every batched parameter of each learner's network goes into the warm-up and
    back to the same learner (with lr = 0 it comes back unchanged, with lr > 0 it has moved)."""
    from reciprocity.baselines import PPO, PPOConfig

    mlp = {"rounds_per_update": 10, "policy": "mlp", "hidden": 4, "lr": lr}
    config = tiny(algo="ppo", checkpoint_every=1, algo_config=mlp)
    with stop_training(3), pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run", progress=False)
    warmed = policy_tensors(load_checkpoint(tmp_path / "run" / "checkpoint.pt"))
    initial = PPO(PPOConfig(**mlp), config.scenario_data.env_config, (2, 7),
                  seed=config.seeds).policy.state_dict()
    assert set(warmed) == {"mlp.w1", "mlp.b1", "mlp.w2", "mlp.b2"}
    for name, value in warmed.items():
        assert value.shape == initial[name].shape
        assert torch.equal(value, initial[name]) != moved, name


# -- the budget and the records --------------------------------------------------------------------
@pytest.mark.parametrize("algo", ALGOS)
def test_the_warmup_is_part_of_the_budget(tmp_path, algo):
    """25 warm-up rounds of 60 with 10 rounds per update: 10 + 10 + 5 alone, 10 + 10 + 10 + 5
    together; every learner has played 60 rounds in each of its games."""
    config = tiny(algo=algo, rounds=60, warmup=25)
    assert config.collections() == [10, 10, 5, 10, 10, 10, 5]
    assert config.warmup_updates() == 3
    metrics = train(config, tmp_path, progress=False)
    rows = read_progress(tmp_path)
    assert [int(r["rounds"]) for r in rows if r["seed"] == "0"] == [10, 20, 25, 35, 45, 55, 60]
    assert [r["stage"] for r in rows if r["seed"] == "0"] == ["warmup"] * 3 + ["together"] * 4
    for m in metrics:
        assert (m["rounds"], m["interactions"], m["updates"]) == (60, 120, 7)
        assert m["warmup"] == {"rounds": 25, "updates": 3, "strategy": {
            "action": DISC, "assess": verdicts(LEADING_EIGHT["L6"][0])}}
        assert m["config"]["train"]["warmup"] == 25


def test_the_warmup_is_part_of_the_run_s_identity(tmp_path, capsys):
    plain = tiny(warmup=0)
    assert "warmup" not in plain.identity_config()  # runs without one keep their identity
    warm = tiny()
    assert warm.identity_config()["warmup"] == 20
    assert warm.identity_config()["warmup_strategy"]["action"] == DISC
    other = tiny(warmup_strategy="allc+L6")
    assert other.identity_config() != warm.identity_config()
    # the same stand-in spelled differently is the same run
    assert tiny(warmup_strategy={"action": "disc", "assess": "stern_judging"}) \
        .identity_config() == warm.identity_config()
    out = str(tmp_path / "run")
    args = ["train", "--scenario", "many-learners-audit-v0", "--rounds", "20", "--num-envs", "2",
            "--eval-envs", "4", "--eval-rounds", "5", "--set", "rounds_per_update=5", "--quiet"]
    assert main([*args, "--warmup", "10", "--out", out]) == 0
    capsys.readouterr()
    for extra, needle in ((["--warmup", "5"], "--warmup 5 contradicts the run's warmup 10"),
                          (["--warmup-strategy", "allc+L6"], "--warmup-strategy allc+L6 "
                                                             "contradicts")):
        assert main(["train", "--resume", out, *extra]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
    # agreeing options are accepted
    assert main(["train", "--resume", out, "--warmup", "10", "--warmup-strategy", "disc+L6",
                 "--quiet"]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["warmup"]["rounds"] == 10


# -- resume across the warm-up boundary ------------------------------------------------------------
@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("stop,saved", [(2, 1), (4, 3), (5, 4)],
                         ids=["during-warmup", "at-the-boundary", "after-warmup"])
def test_resume_across_the_warmup_boundary_is_exact(tmp_path, stop_training, algo, stop, saved):
    """Stopped during the warm-up, right at its end or after it, and resumed: the run ends
    exactly as an uninterrupted one (policies, evaluation, learning curve)."""
    config = tiny(algo=algo, rounds=60, warmup=30, checkpoint_every=1)
    assert config.warmup_updates() == 3
    full = train(config, tmp_path / "full", progress=False)
    with stop_training(stop), pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "killed", progress=False)
    state = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    assert state["update"] == saved
    assert ("warmup" in state) == (saved < 3)
    assert main(["train", "--resume", str(tmp_path / "killed"), "--quiet"]) == 0
    for m in full:
        resumed = json.loads((tmp_path / "killed" / f"seed_{m['seed']}" / "metrics.json")
                             .read_text())
        for key in ("policies", "per_interaction_payoff", "per_agent_payoff", "warmup"):
            assert resumed[key] == m[key], key
    assert read_progress(tmp_path / "killed") == read_progress(tmp_path / "full")


# -- bad values --------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,needle", [
    ({"warmup": -1}, r"^warmup must be"),
    ({"warmup": 2.5}, r"^warmup must be"),
    ({"warmup": True}, r"^warmup must be"),
    ({"warmup": 40}, r"^warmup: 40 rounds leave none of rounds=40 for training together"),
    ({"warmup": 20, "scenario": "L6-v0"},
     r"^warmup: scenario 'L6-v0' has a single learner"),
    ({"warmup": 0, "warmup_strategy": "disc+L6"}, r"^warmup_strategy .* needs warmup > 0"),
    ({"warmup_strategy": "nonsense"}, r"^warmup_strategy: unknown strategy 'nonsense'"),
    ({"warmup_strategy": "focal"}, r"^warmup_strategy: unknown strategy 'focal'"),
    ({"warmup_strategy": {"action": "disc"}}, r"^warmup_strategy: a strategy dict needs"),
    ({"eval_budgets": (10, 40)}, r"^eval_budgets \[10\] fall within the warm-up of 20 rounds"),
])
def test_bad_warmup_values_are_named(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        tiny(**kwargs)


def test_the_default_stand_in_needs_a_norm_to_assess_by():
    two_learners = Scenario.from_dict({"id": "two-v0", "population": ["focal", "focal"],
                                       "benefit": 3, "cost": 1})
    with pytest.raises(ValueError, match=r"^warmup_strategy: the default .* name a strategy"):
        tiny(two_learners)
    tiny(two_learners, warmup_strategy="disc+L6")  # control: named, it is accepted


def test_cli_warmup_mistakes_are_one_line_errors(tmp_path, capsys):
    run = ["train", "--scenario", "many-learners-v0", "--rounds", "40", "--out",
           str(tmp_path / "run")]
    for argv, needle in (
            (["--warmup", "40"], "error: warmup: 40 rounds leave none of rounds=40"),
            (["--warmup", "10", "--warmup-strategy", "disc+XX"],
             "error: warmup_strategy.assess: unknown assessment rule 'XX'")):
        assert main([*run, *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith(needle) and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()  # refused before the folder is touched
    with pytest.raises(SystemExit) as info:
        main([*run, "--warmup", "-3"])
    assert info.value.code == 2
    assert "argument --warmup: expected a number of rounds (an integer >= 0), got '-3'" in \
        capsys.readouterr().err
