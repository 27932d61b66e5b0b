"""RG with a Kantian start (rg-kant): its model, its gradient, its schedule, and that it is RG
where there is nobody to mirror."""

import dataclasses
import math

import pytest
import torch

from reciprocity.agents.rg import ReciprocityGradient, RGConfig
from reciprocity.agents.rg_kant import KantianRG, RGKantConfig
from reciprocity.envs import get_scenario, scenarios
from reciprocity.learners import get_algorithm
from reciprocity.train import train
from reciprocity.train_config import TrainConfig

torch.set_num_threads(1)

SCENARIO = "many-learners-audit-v0"


def _inputs(scenario, seeds=2, games=3, seed=0, dtype=torch.float64):
    """Start reputations (S, B, N), estimator tables (S, N, 4) / (S, N, 8) and own tables
    (S, F, 4) / (S, F, 8), random but fixed, away from 0 and 1."""
    ec = get_scenario(scenario).env_config
    n, f = ec.num_agents, ec.focal_slots.size
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return (torch.rand(*shape, generator=g, dtype=dtype) * 0.8 + 0.1)

    return (torch.rand(seeds, games, n, generator=g, dtype=dtype), rand(seeds, n, 4),
            rand(seeds, n, 8), rand(seeds, f, 4), rand(seeds, f, 8))


def _learners(scenario, seeds=2, **options):
    ec = get_scenario(scenario).env_config
    shape = (seeds, ec.focal_slots.size)
    config = RGKantConfig(horizon=8, world_model="oracle", **options)
    kant = KantianRG(config, ec, shape)
    # plain RG with rg-kant's own RG hyper-parameters (rg-kant's defaults differ from RG's)
    same = {f.name: getattr(config, f.name) for f in dataclasses.fields(RGConfig)}
    rg = ReciprocityGradient(RGConfig(**same), ec, shape)
    return kant, rg


def _mirrored_value(rg, start, est_action, est_signal, own_action, own_signal, f, alpha):
    """The independent reference: learner f's value in plain RG's model whose estimator tables
    have every learner's row set to (1 - alpha) E + alpha P_f."""
    slots = rg.focal_slots
    tables = []
    for est, own in ((est_action, own_action), (est_signal, own_signal)):
        edited = est.clone()
        edited[:, slots] = (1 - alpha) * est[:, slots] + alpha * own[:, f, None]
        tables.append(edited)
    return rg.objective(start, *tables, own_action, own_signal)[:, f]


@pytest.mark.parametrize("alpha_rounds", [(1.0, 0), (0.25, 650), (0.0, 700)])
def test_the_model_mirrors_the_learner_s_policy_with_weight_alpha(alpha_rounds):
    alpha, played = alpha_rounds
    kant, rg = _learners(SCENARIO, kantian_rounds=500, anneal_rounds=200)
    kant.rounds_played = played
    assert kant.alpha() == alpha
    start, est_a, est_s, own_a, own_s = _inputs(SCENARIO)
    value = kant.objective(start, est_a, est_s, own_a, own_s)
    for f in range(own_a.shape[1]):
        torch.testing.assert_close(
            value[:, f], _mirrored_value(rg, start, est_a, est_s, own_a, own_s, f, alpha))


def test_the_kantian_gradient_equals_finite_differences():
    """d V_f / d P_f with P_f in the learner's own row and, mirrored, in every other learner's
    row: against central differences of the independent reference."""
    kant, rg = _learners(SCENARIO)
    start, est_a, est_s, own_a, own_s = _inputs(SCENARIO, seeds=1)
    own_a.requires_grad_()
    own_s.requires_grad_()
    grads = torch.autograd.grad(kant.objective(start, est_a, est_s, own_a, own_s).sum(),
                                (own_a, own_s))
    h = 1e-6
    for head, (own, grad) in enumerate(zip((own_a, own_s), grads, strict=True)):
        for f, k in ((0, 0), (3, 1), (6, 3)) if head == 0 else ((1, 2), (5, 7)):
            values = []
            for sign in (1, -1):
                moved = own.detach().clone()
                moved[0, f, k] += sign * h
                tables = (moved, own_s.detach()) if head == 0 else (own_a.detach(), moved)
                values.append(_mirrored_value(rg, start, est_a, est_s, *tables, f, 1.0))
            fd = ((values[0] - values[1]) / (2 * h)).item()
            assert math.isclose(grad[0, f, k].item(), fd, rel_tol=1e-5, abs_tol=1e-9)
    # the mirrored rows carry gradient: the Kantian gradient is not RG's
    rg_grad = torch.autograd.grad(rg.objective(start, est_a, est_s, own_a, own_s).sum(),
                                  own_a)[0]
    assert (grads[0] - rg_grad).abs().max() > 1e-3


def test_alpha_schedule_and_its_state_survive_a_checkpoint():
    kant, _ = _learners(SCENARIO, kantian_rounds=20, anneal_rounds=40)
    schedule = {0: 1.0, 19: 1.0, 20: 1.0, 30: 0.75, 50: 0.25, 60: 0.0, 1000: 0.0}
    for played, alpha in schedule.items():
        kant.rounds_played = played
        assert kant.alpha() == pytest.approx(alpha)
    kant.rounds_played = 30
    other, _ = _learners(SCENARIO, kantian_rounds=20, anneal_rounds=40)
    other.load_state_dict(kant.state_dict())
    assert other.rounds_played == 30
    kant.rounds_played, kant.config.anneal_rounds = 20, 0
    assert kant.alpha() == 0.0  # no anneal: straight to plain RG
    for bad in ({"kantian_rounds": -1}, {"anneal_rounds": -5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RGKantConfig(**bad)


def test_training_counts_the_rounds_and_reports_alpha(tmp_path):
    result = train(TrainConfig(scenario="many-learners-v0", algo="rg-kant", seeds=(0,),
                               rounds=40, num_envs=2, eval_envs=4, eval_rounds=10,
                               eval_burn_in=0, algo_config={"kantian_rounds": 20,
                                                            "anneal_rounds": 10,
                                                            "rounds_per_update": 10}),
                   out=tmp_path / "run", progress=False)
    assert result[0]["algo"] == "rg-kant"
    progress = (tmp_path / "run" / "progress.csv").read_text().splitlines()
    column = progress[0].split(",").index("rg-kant/alpha")
    assert [float(line.split(",")[column]) for line in progress[1:]] == [1.0, 1.0, 1.0, 0.0]


SINGLE = [s for s in scenarios() if get_scenario(s).num_focal == 1]


@pytest.mark.parametrize("scenario", SINGLE)
def test_rg_kant_trains_to_rg_s_tables_on_single_learner_scenarios(scenario):
    """Nobody to mirror: the same run with rg-kant and rg (with the same RG hyper-parameters:
    rg-kant's defaults differ from RG's) ends at the same tables, bit for bit."""
    small = dict(scenario=scenario, seeds=(0, 1), rounds=40, num_envs=2, eval_envs=4,
                 eval_rounds=10, eval_burn_in=0,
                 algo_config={"rounds_per_update": 5, "steps_per_update": 3})
    results = [train(TrainConfig(algo=algo, **small), progress=False)
               for algo in ("rg", "rg-kant")]
    for rg, kant in zip(*results, strict=True):
        assert kant["policies"] == rg["policies"]
        assert kant["per_interaction_payoff"] == rg["per_interaction_payoff"]


def test_rg_kant_is_declared_and_runs_its_defaults_where_untuned():
    from reciprocity.institutions import tuned_params

    algorithm = get_algorithm("rg-kant")
    assert algorithm.learner is KantianRG and not algorithm.sample_based
    assert algorithm.search_space("tabular") == get_algorithm("rg").search_space("tabular")
    # a tuning of rg only: rg-kant keeps its defaults (rg-la takes rg's selection)
    tuning = {"selected": {"rg": {"tabular": {"1000": 0}}},
              "candidates": {"rg": {"tabular": [{"params": {"lr": 1.0}}]}}}
    assert tuned_params(tuning, algorithm, 1000) == {}
    assert tuned_params(tuning, get_algorithm("rg-la"), 1000) == {"lr": 1.0}


@pytest.mark.slow
def test_rg_kant_finds_the_honest_discriminators_from_scratch_under_the_audit():
    """Issue 17's target, by the CLI's defaults (``reciprocity train --scenario
    many-learners-audit-v0 --algo rg-kant --rounds 1000 --seeds 0 1 2 3 4``): from the uniform
    start, no warm-up, at least 4 of 5 seeds end at >= 95% of the ideal discriminators' payoff
    (the reference, measured on its own games) with every learner cooperating with Good and
    defecting against Bad by the institutions study's labels."""
    from reciprocity.evaluation import reference
    from reciprocity.institutions import SCRATCH_TARGET, discriminates
    from reciprocity.records import build_record

    metrics = train(TrainConfig(scenario=SCENARIO, algo="rg-kant", seeds=(0, 1, 2, 3, 4),
                                rounds=1000), progress=False)
    record = build_record(SCENARIO, "rg-kant", metrics, reference(SCENARIO, cache=True))
    met = [s["reference_performance"] >= SCRATCH_TARGET and discriminates(s)
           for s in record["per_seed"]]
    assert sum(met) >= 4, [(s["reference_performance"], discriminates(s))
                           for s in record["per_seed"]]
