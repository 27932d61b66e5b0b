"""RG without crutches (spec §8): its model's numbers learned from what a participant sees, and
its ascent with a network policy (targets in probability space)."""

import numpy as np
import pytest
import torch

from reciprocity.agents.model import unroll
from reciprocity.agents.policy import ReputationPolicy
from reciprocity.agents.rg import TARGET_MARGIN, ReciprocityGradient, RGConfig
from reciprocity.agents.rollout import collect
from reciprocity.agents.world import (
    LearnedWorld,
    ModelNumbers,
    OracleWorld,
    make_world,
)
from reciprocity.envs import get_scenario
from reciprocity.envs.vector import VectorGame
from reciprocity.train import TrainConfig, train

torch.set_num_threads(1)


def long_record(scenario: str, updates: int, rounds: int = 10, games: int = 32, seeds: int = 2):
    """A learned world fed ``updates`` rollouts of a uniform policy (every probability 0.5)."""
    env = get_scenario(scenario).env_config
    focal = env.focal_slots.size
    game = VectorGame(env, games, seed=7)
    game.reset()
    policy = ReputationPolicy((seeds, focal))
    world = LearnedWorld(env, (seeds, focal))
    rng = np.random.default_rng(7)
    for _ in range(updates):
        world.update(collect(game, policy, rounds, rng, seeds))
    return env, world


@pytest.mark.parametrize("scenario", ["L6-slow-v0", "many-learners-audit-v0",
                                      "many-learners-majority-v0", "low-benefit-v0"])
def test_estimates_converge_to_the_true_numbers_within_their_uncertainty(scenario):
    env, world = long_record(scenario, updates=60)
    p = env.params
    estimates = world.estimates()
    truth = {"benefit": p.benefit, "cost": p.cost, "execution_error": p.execution_error,
             "assessment_error": p.assessment_error,
             "update_probability": p.update_probability, "signal_audit": p.signal_audit}
    for name, value in truth.items():
        mean, sd = estimates[name]
        # (payoffs are recorded in float32: "exact" is to float32 precision)
        assert np.all(np.abs(mean - value) <= 4 * sd + 1e-6 * value), (name, mean, sd, value)
        if name in ("benefit", "cost"):  # exact from payoffs
            assert np.all(sd == 0) and np.allclose(mean, value, rtol=1e-6, atol=0)
        elif name != "signal_audit" or p.signal_audit > 0:
            assert np.all(sd < 0.01)  # the record is long: the uncertainty is small
    assert world.observers == p.observers_per_interaction
    deviation, sd = estimates["matching"]  # recipients are uniform: chance deviations only
    assert np.all(deviation < 5 * sd)


def test_a_learner_nobody_helps_still_learns_what_giving_costs():
    """all-defectors-v0: nobody ever gives to the learner, so b cannot be told from its payoffs
    — but c can, from its own donations (before, both stayed at the prior b = 1, c = 0 and the
    learned model took giving for free: -0.488 per round in the world study)."""
    env, world = long_record("all-defectors-v0", updates=5)
    (b, b_sd), (c, c_sd) = world.estimates()["benefit"], world.estimates()["cost"]
    assert np.all(c_sd == 0) and np.allclose(c, env.params.cost, rtol=1e-6, atol=0)
    assert np.all(b == 1.0) and np.all(b_sd == 1.0)  # the prior, said to be one


def test_uncertainty_shrinks_and_early_estimates_are_honest():
    _, short = long_record("L6-slow-v0", updates=2)
    _, long = long_record("L6-slow-v0", updates=40)
    for name in ("execution_error", "assessment_error", "update_probability"):
        assert np.all(long.estimates()[name][1] < short.estimates()[name][1])
    fresh = LearnedWorld(get_scenario("L6-v0").env_config, (1, 1))
    est = fresh.estimates()
    assert est["benefit"][0].item() == 1.0 and est["benefit"][1].item() == 1.0  # the prior
    assert est["execution_error"][0].item() == 0.5  # Beta(1, 1) before any evidence


def rg_inputs(scenario: str, config: RGConfig, seeds: int = 2):
    env = get_scenario(scenario).env_config
    learner = ReciprocityGradient(config, env, (seeds, env.focal_slots.size), seed=0)
    game = VectorGame(env, seeds * 4, seed=1)
    game.reset()
    rollout = collect(game, learner.policy, 10, np.random.default_rng(1), seeds)
    learner.world.update(rollout)
    learner.estimators.update(rollout.public)
    est_action, est_signal = learner.estimators.tensors()
    last = rollout.public["reputation_after"][-1]
    start = torch.as_tensor(last.reshape(seeds, -1, last.shape[-1]), dtype=torch.float32)
    return env, learner, start, est_action, est_signal


@pytest.mark.parametrize("scenario", ["L6-slow-v0", "many-learners-audit-v0"])
def test_the_oracle_world_is_today_s_objective_bit_for_bit(scenario):
    """RG's objective with the oracle world is the model unrolled with the scenario's numbers,
    exactly as before the world model existed."""
    env, learner, start, est_action, est_signal = rg_inputs(scenario,
                                                            RGConfig(world_model="oracle"))
    assert isinstance(learner.world, OracleWorld)
    p = env.params
    from reciprocity.agents.model import learner_tables

    action, signal = learner_tables(learner.policy.action_probs(), learner.policy.signal_probs(),
                                    est_action[:, None], est_signal[:, None], learner.slot_mask,
                                    execution_error=p.execution_error,
                                    assessment_error=p.assessment_error)
    value = unroll(start[:, None], action[:, :, None], signal[:, :, None],
                   horizon=learner.config.horizon, gamma=learner.config.gamma, benefit=p.benefit,
                   cost=p.cost, update_probability=p.update_probability,
                   observers_per_interaction=p.observers_per_interaction,
                   signal_audit=p.signal_audit, audit_norm=learner.audit_norm)
    expected = learner.own_entry(value).mean(dim=-1)
    assert torch.equal(learner.objective(start, est_action, est_signal), expected)


class _TrueAsTensors(OracleWorld):
    """The true numbers, but as per-learner tensors (the learned world's form)."""

    def __init__(self, env_config, shape):
        super().__init__(env_config)
        n = self._numbers

        def t(v):
            return torch.full(shape, float(v))

        self._numbers = ModelNumbers(t(n.benefit), t(n.cost), t(n.execution_error),
                                     t(n.assessment_error), t(n.update_probability),
                                     t(n.signal_audit) if n.audited else 0.0,
                                     n.observers_per_interaction, n.audited)


@pytest.mark.parametrize("scenario", ["L6-slow-v0", "many-learners-audit-v0"])
def test_per_learner_numbers_equal_to_the_truth_give_the_oracle_s_value_and_gradient(scenario):
    env, learner, start, est_action, est_signal = rg_inputs(scenario,
                                                            RGConfig(world_model="oracle"))
    oracle = learner.objective(start, est_action, est_signal)
    oracle_grad = torch.autograd.grad(oracle.sum(), learner.policy.action_table)[0]
    learner.world = _TrueAsTensors(env, learner.policy.batch_shape)
    tensors = learner.objective(start, est_action, est_signal)
    grad = torch.autograd.grad(tensors.sum(), learner.policy.action_table)[0]
    torch.testing.assert_close(tensors, oracle, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, oracle_grad, rtol=1e-4, atol=1e-6)


def test_targets_step_in_probability_space_and_match_finite_differences():
    """The target ascent's loss has gradient P - T with respect to a head's logits,
    T = clip(P + step dV/dP), and dV/dP is the objective's derivative in the tables (checked by
    central finite differences in float64)."""
    config = RGConfig(policy="mlp", target_step=0.5)
    _, learner, start, est_action, est_signal = rg_inputs("L6-v0", config, seeds=1)
    learner.policy.double()
    start, est_action, est_signal = start.double(), est_action.double(), est_signal.double()
    _, action_target, signal_target = learner.target_tables(start, est_action, est_signal)
    logits = learner.policy.action_logits().detach().requires_grad_()
    p = torch.sigmoid(logits)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, action_target,
                                                                reduction="sum")
    (grad,) = torch.autograd.grad(loss, logits)
    torch.testing.assert_close(grad, p.detach() - action_target)
    # dV/dP by finite differences on the action table
    action, signal = learner.policy.action_probs().detach(), learner.policy.signal_probs().detach()
    h = 1e-6
    for c in range(4):
        up, down = action.clone(), action.clone()
        up[..., c] += h
        down[..., c] -= h
        fd = (learner.objective(start, est_action, est_signal, up, signal)
              - learner.objective(start, est_action, est_signal, down, signal)) / (2 * h)
        expected = (action[..., c] + 0.5 * fd).clamp(TARGET_MARGIN, 1 - TARGET_MARGIN)
        torch.testing.assert_close(action_target[..., c], expected, rtol=1e-6, atol=1e-7)
    assert torch.all((signal_target >= TARGET_MARGIN) & (signal_target <= 1 - TARGET_MARGIN))


def test_ascent_defaults_keep_tabular_rg_and_move_the_network_by_targets():
    assert not RGConfig().uses_targets and RGConfig(policy="mlp").uses_targets
    assert not RGConfig(policy="mlp", ascent="logits").uses_targets
    assert RGConfig(ascent="targets").uses_targets
    with pytest.raises(ValueError, match="ascent must be one of"):
        RGConfig(ascent="natural")
    with pytest.raises(ValueError, match="target_step"):
        RGConfig(target_step=0.0)


def test_misspecified_worlds_and_bad_world_options_are_named():
    env = get_scenario("L6-v0").env_config
    world = make_world("oracle", env, (1, 1), {"execution_error": 2.0, "assessment_error": 0.5})
    n = world.numbers()
    assert n.execution_error == pytest.approx(0.04) and n.assessment_error == pytest.approx(0.01)
    for kwargs, needle in (({"world_model": "psychic"}, "world_model must be one of"),
                           ({"world_factors": {"benefit_x": 2}}, "unknown number"),
                           ({"world_factors": {"cost": -1.0}}, "world_factors.cost"),
                           ({"world_model": "learned", "world_factors": {"cost": 2.0}},
                            "misspecify the oracle"),
                           ({"others_norm": "L99"}, "others_norm"),
                           # the default world is learned: a misspecification names the oracle
                           ({"world_factors": {"cost": 2.0}}, "misspecify the oracle"),
                           ({"others_norm": "L3"}, "misspecifies the oracle")):
        with pytest.raises(ValueError, match=needle):
            RGConfig(**kwargs)


def test_a_learned_world_trains_writes_its_estimates_and_resumes(tmp_path, stop_training):
    config = TrainConfig("L6-slow-v0", algo="rg", seeds=(0, 1), rounds=60, num_envs=8,
                         eval_envs=8, eval_rounds=20, eval_burn_in=0, checkpoint_every=1,
                         algo_config={"world_model": "learned", "rounds_per_update": 10})
    whole = train(config, tmp_path / "whole", progress=False)
    for m in whole:
        world = m["learner"]["world_model"]
        assert world["benefit"]["estimate"] == [5.0] and world["cost"]["uncertainty"] == [0.0]
        assert abs(world["update_probability"]["estimate"][0] - 0.2) < 0.1
    import csv

    with (tmp_path / "whole" / "progress.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {"world/update_probability", "world/update_probability_sd"} <= set(rows[0])
    # progress.csv holds each seed's own values (not the seeds' mean)
    last = {r["seed"]: r for r in rows if int(r["update"]) == 6}
    assert last["0"]["rg/model_value"] != last["1"]["rg/model_value"]
    with stop_training(3), pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "stopped", progress=False)
    resumed = train(config, tmp_path / "stopped", resume=True, progress=False)
    for a, b in zip(whole, resumed, strict=True):
        assert a["learner"] == b["learner"] and a["policies"] == b["policies"]
