"""Evaluation protocol: reference search, decisive contexts, metrics (spec §6)."""

import json

import numpy as np
import pytest

from reciprocity.cli import main
from reciprocity.envs import get_scenario, parse_strategy
from reciprocity.envs.norms import ACTION_CONTEXTS, SIGNAL_CONTEXTS
from reciprocity.evaluation import (
    all_deterministic_policies,
    context_visits,
    evaluate_run,
    mean_ci95,
    reference,
)

FAST = {"search_envs": 8, "confirm_envs": 64, "rounds": 30}


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
    cfg = get_scenario("L6-v0").env_config
    from reciprocity.envs.config import EnvConfig

    cfg = EnvConfig.from_kwargs(population=list(get_scenario("L6-v0").population), benefit=5.0,
                                cost=1.0, execution_error=0.0, assessment_error=0.0)
    l6 = parse_strategy("L6")
    a, s = context_visits(cfg, l6.action[None], l6.assess[None], num_envs=8, rounds=20)
    assert a[0, 3] == pytest.approx(1.0)   # GG
    assert s[0, 7] == pytest.approx(1.0)   # GGC
    assert a.sum() == pytest.approx(1.0) and s.sum() == pytest.approx(1.0)


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
