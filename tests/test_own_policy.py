"""Bring your own policy (spec §8): a function over PettingZoo observations, evaluated by the
protocol of §6 (``reciprocity.own_policy``, ``reciprocity evaluate --policy``).

The independent sources: the strategy tables of ``disc+L6`` (a hand-written discriminator must
score exactly what its tables score), and for signals that depend on the observer's own
reputation, the core played round by round with the focal slot's assessment row set from its
reputation before every round.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

from reciprocity.cli import main
from reciprocity.curves import claim_map, curve_points, curve_table
from reciprocity.envs import Scenario, get_scenario, parse_strategy
from reciprocity.envs.config import strategy_tables
from reciprocity.envs.core import BatchedGame, sample_round_noise
from reciprocity.envs.paired_games import play_focal_tables
from reciprocity.evaluation import Protocol, evaluate_tables, reference
from reciprocity.own_policy import (
    evaluate_policy,
    load_policy,
    policy_tables,
    record_from_evaluations,
)
from reciprocity.runfolder import write_json

torch.set_num_threads(1)
FAST = {"search_envs": 4, "confirm_envs": 16, "rounds": 20, "burn_in": 10}
DISC = parse_strategy("disc+L6")  # cooperate with Good recipients, assess by stern judging

POLICIES = textwrap.dedent("""
    import itertools

    import numpy as np

    def disc_sj(obs):
        # act phase: cooperate iff the recipient is Good; assess phase: stern judging
        phase, donor, action, recipient, own = np.asarray(obs).T
        return np.where(phase == 0, recipient, action == recipient).astype(float)

    not_callable = 3

    def wrong_shape(obs):
        return np.zeros((len(obs), 2))

    def with_nan(obs):
        out = disc_sj(obs)
        out[-1] = np.nan
        return out

    def out_of_range(obs):
        return 2 * disc_sj(obs)

    _calls = itertools.count()

    def sampled(obs):
        return np.full(len(obs), next(_calls) % 2)

    def raises(obs):
        raise RuntimeError("boom\\n  and more")

    def words(obs):
        return ["yes"] * len(obs)
""")


def disc_sj(obs):
    phase, _, action, recipient, _ = np.asarray(obs).T
    return np.where(phase == 0, recipient, action == recipient).astype(float)


@pytest.fixture(scope="module")
def l6_reference(tmp_path_factory):
    """A small reference of L6-v0 (folder, dict)."""
    folder = tmp_path_factory.mktemp("l6-ref")
    ref = reference("L6-v0", **FAST)
    write_json(folder / "reference.json", ref)
    return folder, json.loads((folder / "reference.json").read_text())


@pytest.fixture
def policy_file(tmp_path):
    path = tmp_path / "mypolicies.py"
    path.write_text(POLICIES)
    return path


def tables_payoff(scenario: str, action, signal, ref: dict) -> float:
    """What evaluate_tables gives for every focal slot following the same tables."""
    cfg = get_scenario(scenario).env_config
    f = cfg.focal_slots.size
    signal = np.asarray(signal, dtype=np.float64)
    return evaluate_tables(cfg, np.tile(np.asarray(action, float), (1, f, 1)),
                           np.tile(signal, (1, f) + (1,) * signal.ndim),
                           Protocol(**ref["protocol"]))[0]["per_interaction_payoff"]


# -- the tables of a function ------------------------------------------------------------------
def test_tables_of_a_discriminator_are_its_strategy_tables():
    action, signal = policy_tables(disc_sj)
    np.testing.assert_array_equal(action, DISC.action)
    np.testing.assert_array_equal(signal, DISC.assess)
    assert signal.shape == (8,)  # no dependence on the observer's own reputation


def test_probabilities_lists_and_torch_tensors_are_accepted():
    def soft(obs):  # torch, (n, 1), probabilities
        return torch.as_tensor(0.8 * disc_sj(obs) + 0.1, dtype=torch.float32)[:, None]

    action, signal = policy_tables(soft)
    np.testing.assert_allclose(action, 0.8 * DISC.action + 0.1, atol=1e-7)
    np.testing.assert_allclose(signal, 0.8 * DISC.assess + 0.1, atol=1e-7)
    action, signal = policy_tables(lambda obs: [int(v) for v in disc_sj(obs)])
    np.testing.assert_array_equal(action, DISC.action)
    action, _ = policy_tables(lambda obs: torch.as_tensor(disc_sj(obs)).bool())
    np.testing.assert_array_equal(action, DISC.action)


def test_signals_by_own_reputation_give_two_rows():
    def good_only_when_good(obs):
        return np.where(obs[:, 0] == 1, disc_sj(obs) * obs[:, 4], disc_sj(obs))

    action, signal = policy_tables(good_only_when_good)
    np.testing.assert_array_equal(action, DISC.action)
    assert signal.shape == (2, 8)
    np.testing.assert_array_equal(signal[0], np.zeros(8))  # own Bad
    np.testing.assert_array_equal(signal[1], DISC.assess)  # own Good


def test_the_observations_are_those_of_the_environment():
    """Every context's observation, as the parallel env emits it (float32, [phase, donor_rep,
    action, recipient_rep, own_rep])."""
    seen = []

    def record(obs):
        seen.append(obs)
        return np.zeros(len(obs))

    policy_tables(record)
    act, assess = seen[0], seen[2]
    assert act.dtype == np.float32 and act.shape == (4, 5) and assess.shape == (16, 5)
    for k, (x, y) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):  # index 2x + y
        assert act[k].tolist() == [0, x, 0, y, x]
    for own in (0, 1):
        for k in range(8):
            x, y, a = k >> 2, (k >> 1) & 1, k & 1  # index 4x + 2y + a
            assert assess[8 * own + k].tolist() == [1, x, a, y, own]


# -- the command --------------------------------------------------------------------------------
def test_command_scores_a_discriminator_as_its_strategy_tables(tmp_path, policy_file,
                                                               l6_reference, capsys):
    ref_dir, ref = l6_reference
    out = tmp_path / "eval"
    assert main(["evaluate", "--scenario", "L6-v0", "--policy", f"{policy_file}:disc_sj",
                 "--reference", str(ref_dir), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "evaluation.json").read_text())
    expected = tables_payoff("L6-v0", DISC.action, DISC.assess, ref)
    assert result["per_interaction_payoff"] == expected
    assert result["scenario"] == "L6-v0"
    assert result["scenario_hash"] == get_scenario("L6-v0").content_hash()
    assert result["policy"] == f"{policy_file}:disc_sj" and result["algo"] == "disc_sj"
    assert result["protocol"] == ref["protocol"]  # paired with the reference's games
    assert result["reference_payoff"] == ref["reference_payoff"]
    assert result["reference_performance"] == pytest.approx(expected / ref["reference_payoff"])
    assert 0 <= result["adherence"] <= 1
    assert result["heads"]["agent_0"]["action"]["diagnosis"] == "context-sensitive"
    assert result["policies"]["agent_0"]["action"] == {"GG": 1.0, "GB": 0.0, "BG": 1.0,
                                                        "BB": 0.0}
    assert "signal_by_own_reputation" not in result["policies"]["agent_0"]
    assert result["reference"]["kind"] == "exhaustive_search"
    for key in ("per_interaction_payoff_ci95", "episode_payoff", "episode_payoff_ci95"):
        assert np.isfinite(result[key])
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert "L6-v0 disc_sj agent_0: payoff" in printed and "adherence" in printed
    assert "heads: action context-sensitive" in printed


def test_module_locator_and_python_api(tmp_path, policy_file, l6_reference, monkeypatch):
    _, ref = l6_reference
    monkeypatch.syspath_prepend(str(policy_file.parent))
    assert load_policy("mypolicies:disc_sj")(np.zeros((2, 5), np.float32)).shape == (2,)
    by_module = evaluate_policy("L6-v0", "mypolicies:disc_sj", reference=ref)
    by_function = evaluate_policy("L6-v0", disc_sj, reference=ref)
    assert by_module["per_interaction_payoff"] == by_function["per_interaction_payoff"] == \
        tables_payoff("L6-v0", DISC.action, DISC.assess, ref)
    assert by_module["policy"] == "mypolicies:disc_sj"
    assert by_function["policy"].endswith("disc_sj")


def test_reference_computed_when_not_given(tmp_path):
    """Without a reference the protocol's own one is computed, on the evaluation games: among
    defectors nothing is received and the optimum is never to give (payoff 0); the
    discriminator pays c whenever it meets a defector that is still Good."""
    result = evaluate_policy("all-defectors-v0", disc_sj, eval_envs=4, eval_rounds=5)
    assert result["reference"]["protocol"] == result["protocol"]
    assert result["protocol"]["num_envs"] == 4 and result["protocol"]["window"] == 5
    assert result["reference_payoff"] == pytest.approx(0.0, abs=1e-12)
    assert result["per_interaction_payoff"] < 0
    assert np.isnan(result["reference_performance"])  # a ratio to 0 means nothing


def test_probabilities_score_as_their_tables(l6_reference):
    _, ref = l6_reference

    def soft(obs):
        return torch.as_tensor(0.7 * disc_sj(obs) + 0.2)

    result = evaluate_policy("L6-v0", soft, reference=ref)
    assert result["per_interaction_payoff"] == tables_payoff(
        "L6-v0", 0.7 * DISC.action + 0.2, 0.7 * DISC.assess + 0.2, ref)
    assert result["algo"] == "soft"


# -- signals that depend on the observer's own reputation ---------------------------------------
def play_with_reputation_rows(cfg, action, signal, rounds, num_envs, seed):
    """Independent player: per-game tables on the core, each focal slot's assessment row set
    from its reputation before every round; the draws of play_focal_tables' games."""
    focal, n = cfg.focal_slots, cfg.num_agents
    background_action, background_assess = strategy_tables(cfg.strategies)
    background_action[focal] = action
    action_rows = np.broadcast_to(background_action, (num_envs, n, 4)).copy()
    assess_rows = np.broadcast_to(background_assess, (num_envs, n, 8)).copy()
    rng = np.random.default_rng(seed)
    game = BatchedGame(cfg.params, action_rows, assess_rows, batch=num_envs)
    game.reputation = BatchedGame(cfg.params, background_action, background_assess,
                                  batch=num_envs, seed=rng).reputation
    total = np.zeros((num_envs, focal.size))
    for _ in range(rounds):
        noise = sample_round_noise(rng, num_envs, n, **cfg.params.noise_options())
        for j, slot in enumerate(focal):
            game.assess_table[:, slot] = signal[j][game.reputation[:, slot]]
        total += game.play_round(noise).payoffs[:, focal]
    return total / rounds


@pytest.mark.parametrize("scenario", ["L6-v0", "many-learners-v0",
                                      "many-learners-majority-v0", "many-learners-audit-v0"])
def test_tables_by_own_reputation_against_the_core_round_by_round(scenario):
    cfg = get_scenario(scenario).env_config
    f = cfg.focal_slots.size
    rng = np.random.default_rng(7)
    action, signal = rng.random((f, 4)), rng.random((f, 2, 8))
    played = play_focal_tables(cfg, action[None], signal[None], [(0, 12)], num_envs=6,
                               seed=3)[0, 0]
    expected = play_with_reputation_rows(cfg, action, signal, 12, num_envs=6, seed=3)
    np.testing.assert_allclose(played, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scenario", ["L6-v0", "many-learners-majority-v0",
                                      "many-learners-audit-v0"])
def test_equal_rows_give_exactly_the_plain_tables(scenario):
    cfg = get_scenario(scenario).env_config
    f = cfg.focal_slots.size
    rng = np.random.default_rng(1)
    action, signal = rng.random((3, f, 4)), rng.random((3, f, 8))
    windows = [(4, 14), (0, 10)]
    plain = play_focal_tables(cfg, action, signal, windows, num_envs=5, seed=2)
    by_own = play_focal_tables(cfg, action, np.stack([signal, signal], axis=2), windows,
                               num_envs=5, seed=2)
    np.testing.assert_array_equal(plain, by_own)


def test_signalling_good_only_when_good_lies_between_its_two_rows():
    """Seven learners judge everyone: stern judging keeps cooperation up, marking everyone Bad
    ruins it; judging by stern judging only while one is Good oneself lies in between (nearer
    stern judging, since learners are mostly Good), and evaluate_policy plays it as such."""
    scenario = "many-learners-v0"
    ref = reference(scenario, confirm_envs=32, rounds=30, burn_in=20)

    def policy(own_good, own_bad):
        def func(obs):
            judge = np.where(obs[:, 4] == 1, own_good(obs), own_bad(obs))
            return np.where(obs[:, 0] == 0, obs[:, 3], judge)
        return func

    def stern(obs):
        return (obs[:, 2] == obs[:, 3]).astype(float)

    def bad(obs):
        return np.zeros(len(obs))

    payoff = {name: evaluate_policy(scenario, policy(*rows), reference=ref)
              for name, rows in {"stern": (stern, stern), "bad": (bad, bad),
                                 "mixed": (stern, bad)}.items()}
    assert payoff["bad"]["per_interaction_payoff"] + 0.3 < \
        payoff["mixed"]["per_interaction_payoff"] < payoff["stern"]["per_interaction_payoff"]
    mixed = payoff["mixed"]
    assert np.shape(mixed["tables"]["signal"]) == (2, 8)
    for agent in mixed["policies"].values():  # the own-Good row, and both rows beside it
        rows = agent["signal_by_own_reputation"]
        assert agent["signal"] == rows["G"] == payoff["stern"]["policies"]["agent_0"]["signal"]
        assert set(rows["B"].values()) == {0.0}
    assert mixed["per_interaction_payoff"] == tables_payoff(
        scenario, DISC.action, np.stack([np.zeros(8), DISC.assess]), ref)
    assert "signal_by_own_reputation" not in payoff["stern"]["policies"]["agent_0"]


# -- mistakes -----------------------------------------------------------------------------------
@pytest.mark.parametrize("target,needle", [
    ("{file}:not_callable", "is not a function (it is of type int)"),
    ("{file}:wrong_shape", "returned shape (4, 2)"),
    ("{file}:with_nan", "returned nan (not a finite number) for the observation [0, 1, 0, 1, 1]"),
    ("{file}:out_of_range", "returned 2.0 (outside [0, 1])"),
    ("{file}:sampled", "is not deterministic: return probabilities, not sampled actions"),
    ("{file}:raises", "RuntimeError: boom and more"),
    ("{file}:words", "expected numbers"),
    ("{file}:nothing", "has no 'nothing'"),
    ("{tmp}/missing.py:disc_sj", "no such file"),
    ("no_such_module_here:f", "cannot import module"),
])
def test_bad_policies_are_one_line_errors(tmp_path, policy_file, l6_reference, capsys, target,
                                          needle):
    ref_dir, _ = l6_reference
    out = tmp_path / "eval"
    argv = ["evaluate", "--scenario", "L6-v0", "--policy",
            target.format(file=policy_file, tmp=tmp_path), "--reference", str(ref_dir),
            "--out", str(out), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, err
    assert not out.exists()  # refused before the output folder is touched
    with pytest.raises(ValueError):  # --debug shows the error itself
        main(["--debug", *argv])


@pytest.mark.parametrize("argv,needle", [
    (["--policy", "{file}:disc_sj", "--out", "{tmp}/o"], "--policy needs --scenario"),
    (["--scenario", "L6-v0", "--out", "{tmp}/o"], "--scenario needs --policy"),
    (["--scenario", "L6-v0", "--policy", "{file}:disc_sj"], "--policy needs --out"),
    ([], "evaluate needs --run DIR, or --scenario ID with --policy"),
    (["--run", "{tmp}", "--scenario", "L6-v0", "--policy", "{file}:disc_sj", "--out", "{tmp}/o"],
     "give one of them"),
    (["--run", "{tmp}", "--eval-envs", "8"], "--eval-envs is for --policy"),
    (["--scenario", "L6-v0", "--policy", "{file}:disc_sj", "--out", "{tmp}/o",
      "--reference", "{tmp}/nothere"], "no such file or folder"),
    (["--scenario", "L3-v0", "--policy", "{file}:disc_sj", "--out", "{tmp}/o",
      "--reference", "{ref}"], "reference is for 'L6-v0'"),
    (["--scenario", "L6-v0", "--policy", "{file}:disc_sj", "--out", "{tmp}/o",
      "--reference", "{ref}", "--eval-rounds", "50"], "long-run window is 20 rounds"),
    (["--scenario", "L6-v0", "--policy", "{file}:disc_sj", "--out", "{tmp}/o",
      "--eval-envs", "1"], "at least 2"),
])
def test_option_mistakes_are_one_line_errors(tmp_path, policy_file, l6_reference, capsys, argv,
                                             needle):
    ref_dir, _ = l6_reference
    argv = ["evaluate", *(a.format(file=policy_file, tmp=tmp_path, ref=ref_dir) for a in argv)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "o").exists()


def test_python_api_mistakes(l6_reference):
    _, ref = l6_reference
    with pytest.raises(ValueError, match="not a function"):
        policy_tables(3)
    with pytest.raises(ValueError, match="not a function"):
        evaluate_policy("L6-v0", 3, reference=ref)
    with pytest.raises(ValueError, match="eval_envs must be an integer >= 2"):
        evaluate_policy("L6-v0", disc_sj, eval_envs=1, reference=ref)
    scripted = Scenario.from_dict({"id": "scripted-v0", "population": ["L6", "L6"],
                                   "benefit": 2.0, "cost": 1.0})
    with pytest.raises(ValueError, match="no focal slot"):
        evaluate_policy(scripted, disc_sj)
    with pytest.raises(ValueError, match="lacks"):
        evaluate_policy("L6-v0", disc_sj, reference={"scenario": "L6-v0"})


# -- results records ----------------------------------------------------------------------------
def test_record_from_evaluations_goes_into_the_curves_and_the_claim_map(l6_reference, tmp_path):
    _, ref = l6_reference

    def soft(obs):
        return 0.9 * disc_sj(obs) + 0.05

    evaluations = [evaluate_policy("L6-v0", f, reference=ref) for f in (disc_sj, soft)]
    for k, e in enumerate(evaluations):  # as read back from evaluation.json files
        write_json(tmp_path / f"e{k}.json", e)
    evaluations = [json.loads((tmp_path / f"e{k}.json").read_text()) for k in range(2)]
    before = json.dumps(evaluations)
    record = record_from_evaluations(evaluations, ref, name="my-ppo")
    assert json.dumps(evaluations) == before  # not modified
    assert record["algo"] == "my-ppo" and record["policy_class"] == "own"
    assert record["budget"] is None and record["seeds"] == [0, 1]
    assert record["scenario"] == "L6-v0" and record["group"] == "discriminative"
    assert record["per_interaction_payoff"]["mean"] == pytest.approx(
        np.mean([e["per_interaction_payoff"] for e in evaluations]))
    assert [s["per_interaction_payoff"] for s in record["per_seed"]] == \
        [e["per_interaction_payoff"] for e in evaluations]
    write_json(tmp_path / "results.json", {"records": [record]})  # JSON-able
    points = curve_points([record])
    assert len(points) == 1 and points[0]["algo"] == "my-ppo"
    assert points[0]["policy_class"] == "own"
    assert "discriminative" in claim_map(points)
    budgeted = record_from_evaluations(evaluations, ref, name="my-ppo", budget=400,
                                       interactions=6400, wall_seconds=12.5)
    point = curve_points([budgeted])[0]
    assert (point["budget"], point["interactions_per_seed"], point["wall_seconds"]) == \
        (400, 6400, 12.5)
    assert "| discriminative | 400 | own |" in claim_map([point])
    assert "my-ppo" in curve_table([point], "discriminative")


def test_record_refuses_mixed_scenarios_and_empty_lists(l6_reference):
    _, ref = l6_reference
    e = evaluate_policy("L6-v0", disc_sj, reference=ref)
    with pytest.raises(ValueError, match="at least one"):
        record_from_evaluations([], ref, name="x")
    with pytest.raises(ValueError, match="one record is one scenario"):
        record_from_evaluations([e, {**e, "scenario": "L3-v0"}], ref, name="x")
    with pytest.raises(ValueError, match="lacks"):
        record_from_evaluations([{"scenario": "L6-v0"}], ref, name="x")


def test_evaluation_is_a_run_folder(tmp_path, policy_file, l6_reference, capsys):
    """A folder holding another evaluation is refused unless --overwrite."""
    ref_dir, _ = l6_reference
    out = tmp_path / "eval"
    argv = ["evaluate", "--scenario", "L6-v0", "--policy", f"{policy_file}:disc_sj",
            "--reference", str(ref_dir), "--out", str(out), "--quiet"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--eval-envs", "8"]) == 2
    assert "different" in capsys.readouterr().err
    assert main([*argv, "--eval-envs", "8", "--overwrite"]) == 0
    assert json.loads((out / "evaluation.json").read_text())["protocol"]["num_envs"] == 8
