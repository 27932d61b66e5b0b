"""Evaluation protocol: reference search, decisive contexts, metrics (spec §6)."""

import json

import numpy as np
import pytest

from reciprocity.cli import main
from reciprocity.envs import get_scenario, parse_strategy
from reciprocity.envs.config import EnvConfig
from reciprocity.envs.norms import ACTION_CONTEXTS, SIGNAL_CONTEXTS
from reciprocity.envs.paired_games import evaluate_focal_tables, play_focal_tables
from reciprocity.evaluation import (
    all_deterministic_policies,
    burn_in_rounds,
    context_visits,
    diagnose_head,
    evaluate_run,
    mean_ci95,
    protocol_for,
    reference,
)

FAST = {"search_envs": 8, "confirm_envs": 64, "rounds": 30, "burn_in": 20}


def test_enumeration_covers_every_deterministic_policy_once():
    actions, signals = all_deterministic_policies()
    joint = np.concatenate([actions, signals], axis=1)
    assert joint.shape == (4096, 12)
    assert len({tuple(row) for row in joint}) == 4096


def test_reference_against_unconditional_cooperators_is_to_defect_everywhere():
    """ALLC background never reacts to reputations, so defecting saves c in every context and
    the focal agent still receives b (1 - e) per round: the closed-form optimum."""
    ref = reference("all-cooperators-v0", **FAST)
    assert ref["regime"] == "degenerate"
    assert all(v == 0 for v in ref["policy"]["action"].values())
    p = get_scenario("all-cooperators-v0").env_config.params
    expected = p.benefit * (1 - p.execution_error)
    assert abs(ref["reference_payoff"] - expected) < max(3 * ref["reference_ci95"], 0.02)
    decisive = [c for c in ref["decisive_contexts"] if c["decisive"]]
    assert {c["head"] for c in decisive} == {"action"}
    for c in decisive:  # flipping to C costs exactly c in the contexts where it happens
        assert c["optimal"] == 0 and c["loss_if_flipped"] > 0


def test_reference_against_defectors_pays_nothing():
    ref = reference("all-defectors-v0", **FAST)
    assert ref["reference_payoff"] == pytest.approx(0.0, abs=1e-12)
    assert ref["regime"] == "degenerate"


def test_reference_in_stern_judging_is_discriminative():
    """Against L6 discriminators the best action rule is the discriminator's: cooperate with
    Good recipients and defect against Bad ones (both contexts decisive)."""
    ref = reference("L6-v0", **FAST)
    assert ref["regime"] == "discriminative"
    assert ref["policy"]["action"]["GG"] == 1 and ref["policy"]["action"]["GB"] == 0
    decisive = {(c["head"], c["context"]) for c in ref["decisive_contexts"] if c["decisive"]}
    assert {("action", "GG"), ("action", "GB")} <= decisive
    assert ref["reference_payoff"] > 3.5


def test_windows_of_one_pass_equal_separate_evaluations():
    """Averages over windows of the same games: the episode window and a window after a burn-in
    are exactly the separate evaluations, and adjacent windows average to their union."""
    cfg = get_scenario("L6-v0").env_config
    rng = np.random.default_rng(3)
    action, signal = rng.random((3, 1, 4)), rng.random((3, 1, 8))
    windows = [(0, 30), (10, 40), (0, 15), (15, 30)]
    played = play_focal_tables(cfg, action, signal, windows, num_envs=8, seed=5)
    assert played.shape == (4, 3, 8, 1)
    np.testing.assert_allclose(played[0], evaluate_focal_tables(
        cfg, action, signal, num_envs=8, rounds=30, seed=5), rtol=0, atol=1e-12)
    np.testing.assert_allclose(played[1], evaluate_focal_tables(
        cfg, action, signal, num_envs=8, rounds=30, burn_in=10, seed=5), rtol=0, atol=1e-12)
    np.testing.assert_allclose((played[2] + played[3]) / 2, played[0], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="windows"):
        play_focal_tables(cfg, action, signal, [(5, 5)], num_envs=2)


def _small(**changes) -> EnvConfig:
    """A small stern-judging population (the burn-in model runs every deterministic policy)."""
    return EnvConfig.from_kwargs(**{"population": ["focal", "L6", "L6", "alld+L6"],
                                    "max_rounds": 20, **changes})


def test_burn_in_is_zero_when_reputations_never_change():
    """With u = 0 no reputation ever changes: every window average is already stationary."""
    assert burn_in_rounds(_small(update_probability=0.0))["burn_in"] == 0


def test_burn_in_grows_as_reputation_updates_slow_down():
    burn_in = [burn_in_rounds(_small(update_probability=u)) for u in (1.0, 0.5, 0.1)]
    assert all(b["unsettled"] == 0 and b["policies"] == 4096 for b in burn_in)
    assert burn_in[0]["burn_in"] < burn_in[1]["burn_in"] < burn_in[2]["burn_in"]
    assert burn_in[0]["tolerance"] == pytest.approx(1e-3 * 5.0)  # a fraction of b = 5


@pytest.mark.parametrize("scenario, policy, episode_differs", [
    ("shunning-v0", "disc+shunning", True),
    pytest.param("discriminators-vs-defectors-slow-v0", "L6", False, marks=pytest.mark.slow),
])
def test_payoff_after_the_burn_in_is_stationary_on_the_core(scenario, policy, episode_differs):
    """The burn-in comes from the mean-field model; on the core (paired games) the window after
    it agrees with a later window, while under shunning the first episode from all-Good is far
    from the long run (everyone drifts to Bad: 1.76 per round in the episode, 1.33 later)."""
    cfg = get_scenario(scenario).env_config
    b, w = burn_in_rounds(cfg)["burn_in"], cfg.max_rounds
    s = parse_strategy(policy)
    episode, long_run, later = play_focal_tables(
        cfg, s.action[None, None], s.assess[None, None], [(0, w), (b, b + w),
                                                          (b + 2 * w, b + 3 * w)],
        num_envs=128, seed=1)[:, 0, :, 0]
    drift, drift_half = mean_ci95(long_run - later)
    assert abs(drift) < drift_half
    gap, gap_half = mean_ci95(episode - long_run)
    assert (gap > 3 * gap_half) is episode_differs


@pytest.mark.slow
def test_shunning_reference_long_run_and_episode():
    """The long-run optimum of shunning is below its episode figure (2.928 from all-Good, the
    value an independent simulator confirmed for the episode protocol); both are reported."""
    ref = reference("shunning-v0")
    assert ref["episode_payoff"] == pytest.approx(2.928, abs=0.01)
    assert ref["reference_payoff"] == pytest.approx(2.854, abs=max(0.02, ref["reference_ci95"]))
    assert ref["burn_in"] == ref["burn_in_model"]["burn_in"] > 0
    assert ref["protocol"] == protocol_for(get_scenario("shunning-v0").env_config).to_dict()


def test_learners_are_evaluated_on_the_reference_games():
    """Pairing by common random numbers: a learner whose tables are the optimal policy, evaluated
    by the reference's protocol (games, seed, burn-in, window), earns exactly the reference's
    long-run and episode payoffs."""
    from reciprocity.evaluation import Protocol, evaluate_tables

    ref = reference("L6-v0", **FAST)
    cfg = get_scenario("L6-v0").env_config
    table = {h: np.array([ref["policy"][h][k] for k in keys])[::-1]
             for h, keys in (("action", ACTION_CONTEXTS), ("signal", SIGNAL_CONTEXTS))}
    (learner,) = evaluate_tables(cfg, table["action"][None, None], table["signal"][None, None],
                                 Protocol(**ref["protocol"]))
    assert learner["per_interaction_payoff"] == pytest.approx(ref["reference_payoff"], abs=1e-12)
    assert learner["episode_payoff"] == pytest.approx(ref["episode_payoff"], abs=1e-12)
    assert learner["protocol"] == ref["protocol"]


def test_multi_learner_reference_is_the_ideal_discriminator():
    ref = reference("many-learners-v0", confirm_envs=32, rounds=30)
    assert ref["kind"] == "ideal_discriminator"
    assert ref["norm"] == "L6"
    assert ref["policy"]["action"] == {"GG": 1.0, "GB": 0.0, "BG": 1.0, "BB": 0.0}
    l6 = parse_strategy("L6").assess[::-1]
    assert list(ref["policy"]["signal"].values()) == list(map(float, l6))
    assert ref["full_cooperation_payoff"] == pytest.approx(2.25)
    assert 0 < ref["reference_payoff"] < 2.25


def test_context_visits_follow_the_reputation_mix():
    """With everyone Good and no errors, the only action context is GG and the only signal
    contexts are GG with the donor's action."""
    cfg = EnvConfig.from_kwargs(population=list(get_scenario("L6-v0").population), benefit=5.0,
                                cost=1.0, execution_error=0.0, assessment_error=0.0)
    l6 = parse_strategy("L6")
    a, s = context_visits(cfg, l6.action[None], l6.assess[None], num_envs=8, rounds=20)
    assert a[0, 3] == pytest.approx(1.0)   # GG
    assert s[0, 7] == pytest.approx(1.0)   # GGC
    assert a.sum() == pytest.approx(1.0) and s.sum() == pytest.approx(1.0)
    # an ALLD focal agent turns Bad after its first donation: after a burn-in its own
    # reputation is Bad in every round, so only the contexts BG (action) are visited
    alld = parse_strategy("alld+L6")
    a, _ = context_visits(cfg, alld.action[None], alld.assess[None], num_envs=8, rounds=20,
                          burn_in=1)
    assert a[0, 1] == pytest.approx(1.0)   # BG: own Bad, recipient Good


# decisive GG, GB; visited GG, GB, BG (index order: BB = 0, BG = 1, GB = 2, GG = 3)
DECISIVE = np.array([False, False, True, True])
VISITED = np.array([False, True, True, True])


@pytest.mark.parametrize("probs, expected", [
    ([0.5, 0.9, 0.1, 0.9], ("context-sensitive", None)),   # the discriminator
    ([0.5, 0.5, 0.3, 0.7], ("context-sensitive", None)),   # exactly 0.2 from 0.5 counts
    ([0.5, 0.9, 0.35, 0.9], ("undecided", None)),          # GB not decided
    ([0.5, 0.75, 0.8, 0.95], ("constant", 1)),             # always C where it plays
    ([0.9, 0.05, 0.1, 0.2], ("constant", 0)),              # always D (BB unvisited)
    ([0.5, 0.8, 0.6, 0.9], ("undecided", None)),           # drifting near 0.5
    ([0.5, 0.1, 0.9, 0.9], ("undecided", None)),   # decided, but conditional only outside
    #                                                  the decisive contexts: neither definition
])
def test_head_diagnosis_follows_the_spec_definitions(probs, expected):
    diagnosis = diagnose_head(probs, DECISIVE, VISITED)
    assert (diagnosis["diagnosis"], diagnosis["side"]) == expected


def test_head_diagnosis_without_decisive_contexts_is_never_context_sensitive():
    none = np.zeros(4, dtype=bool)
    assert diagnose_head([0.1, 0.9, 0.1, 0.9], none, VISITED)["diagnosis"] == "undecided"
    assert diagnose_head([0.1, 0.1, 0.1, 0.1], none, none) == {"diagnosis": "constant",
                                                              "side": 0}


def test_mean_ci95_matches_hand_computation():
    mean, half = mean_ci95([1.0, 2.0, 3.0, 4.0, 5.0])
    # sd = sqrt(2.5), t_{0.975,4} = 2.776
    assert mean == 3.0
    assert half == pytest.approx(2.776 * np.sqrt(2.5) / np.sqrt(5))
    assert np.isnan(mean_ci95([1.0])[1])


def _policy(action, signal):
    return {"action": dict(zip(ACTION_CONTEXTS, action, strict=True)),
            "signal": dict(zip(SIGNAL_CONTEXTS, signal, strict=True))}


def test_metrics_against_hand_computed_values():
    """Adherence weights decisive contexts by visits; the non-decisive one is ignored."""
    contexts = [
        # head, context, index, optimal, decisive, visit share
        ("action", "GG", 3, 1, True, 0.30),
        ("action", "GB", 2, 0, True, 0.15),
        ("action", "BG", 1, 1, True, 0.05),
        ("action", "BB", 0, 0, False, 0.00),
        ("signal", "GGC", 7, 0, True, 0.20),
    ]
    ref = {"scenario": "L6-v0", "reference_payoff": 4.0, "policy": None,
           "decisive_contexts": [
               {"head": h, "context": c, "index": i, "optimal": o, "decisive": d,
                "visit_share": v} for h, c, i, o, d, v in contexts]}
    # greedy: GG=C (right), GB=C (wrong), BG=C (right), GGC=Bad (right)
    learner = _policy([0.9, 0.7, 0.8, 0.3], [0.2, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    metrics = {"scenario": "L6-v0", "per_interaction_payoff": 3.0,
               "policies": {"agent_0": learner}, "policy": learner}
    result = evaluate_run(metrics, ref)
    assert result["reference_performance"] == pytest.approx(0.75)
    assert result["adherence"] == pytest.approx((0.30 + 0.05 + 0.20) / (0.30 + 0.15 + 0.05
                                                                        + 0.20))
    # visited action contexts GG, GB, BG: outputs 0.9, 0.7, 0.8 span 0.2 -> not constant;
    # visited signal contexts: only GGC -> a single output spans 0 -> constant
    assert result["constant_output"]["agent_0"] == {"action": False, "signal": True}
    # visited action contexts GG, GB, BG at 0.9, 0.7, 0.8: always C where it plays, although the
    # decisive GB should be D; the only visited signal context GGC at 0.2: always Bad
    assert result["heads"]["agent_0"] == {"action": {"diagnosis": "constant", "side": 1},
                                          "signal": {"diagnosis": "constant", "side": 0}}
    flat = _policy([0.95, 0.9, 0.92, 0.1], [0.5] * 8)
    metrics["policies"] = {"agent_0": flat}
    assert evaluate_run(metrics, ref)["constant_output"]["agent_0"]["action"] is True
    with pytest.raises(ValueError, match="reference is for"):
        evaluate_run({**metrics, "scenario": "L5-v0"}, ref)


def test_reference_and_evaluate_commands(tmp_path):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    assert main(["reference", "--scenario", "all-cooperators-v0", "--search-envs", "4",
                 "--confirm-envs", "32", "--out", str(ref_dir)]) == 0
    ref = json.loads((ref_dir / "reference.json").read_text())
    assert ref["regime"] == "degenerate"
    assert main(["train", "--scenario", "all-cooperators-v0", "--rounds", "100", "--num-envs",
                 "8", "--out", str(run_dir), "--quiet"]) == 0
    assert main(["evaluate", "--run", str(run_dir), "--reference", str(ref_dir)]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.9 < metrics["evaluation"]["reference_performance"] <= 1.05
    assert metrics["evaluation"]["adherence"] == pytest.approx(1.0)
    # the file itself, as the flagship and the benchmark write it (references/<scenario>.json)
    refs = tmp_path / "bench" / "references"
    refs.mkdir(parents=True)
    (ref_dir / "reference.json").rename(refs / "all-cooperators-v0.json")
    assert main(["evaluate", "--run", str(run_dir), "--reference",
                 str(refs / "all-cooperators-v0.json")]) == 0
    again = json.loads((run_dir / "metrics.json").read_text())["evaluation"]
    assert again == metrics["evaluation"]
