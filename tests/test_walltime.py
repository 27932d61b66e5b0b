"""Wall time to the reference (reciprocity.walltime): the first snapshot that reaches the fraction,
timed without the evaluations, against an independent search of a run's per-update snapshots."""

import itertools
import math

import pytest
import torch

from reciprocity.evaluation import reference
from reciprocity.train import TrainConfig, train
from reciprocity.walltime import WallTimeConfig, summarise, time_to_reference

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def l6_reference():
    return reference("L6-v0", search_envs=8, confirm_envs=32, rounds=40)


def config(ref, **algo_config):
    return TrainConfig("L6-v0", algo="rg", seeds=(3,), rounds=200, num_envs=8,
                       eval_envs=ref["protocol"]["num_envs"], eval_rounds=ref["rounds"],
                       eval_burn_in=ref["burn_in"],
                       algo_config={"rounds_per_update": 10, **algo_config},
                       checkpoint_every=0, save_checkpoint=False, tensorboard=False)


@pytest.mark.parametrize("screen_envs, checks", [(8, 4), (32, 20)])
def test_the_first_reach_is_the_first_snapshot_at_the_fraction(l6_reference, screen_envs,
                                                                checks):
    """Whatever the screen, the reported reach is the first per-update snapshot whose long-run
    payoff (on the reference's games) reaches 95% of the reference: the same run trained by
    train() with every update snapshotted and evaluated says so independently."""
    ref = l6_reference
    result = time_to_reference(config(ref), ref, 0.95, screen_envs, checks)
    cfg = config(ref)
    every_update = tuple(itertools.accumulate(cfg.collections()))
    metrics = train(TrainConfig(**{**{f: getattr(cfg, f) for f in (
        "scenario", "algo", "seeds", "rounds", "num_envs", "eval_envs", "eval_rounds",
        "eval_burn_in", "algo_config", "checkpoint_every", "save_checkpoint", "tensorboard")},
        "eval_budgets": every_update}), progress=False)[0]
    target = 0.95 * ref["reference_payoff"]
    first = next((e["rounds"] for e in metrics["budgets"]
                  if e["per_interaction_payoff"] >= target), None)
    assert first is not None and result["rounds"] == first
    assert result["interactions"] == first * 8
    assert 0 < result["seconds"] <= result["total_seconds"]


def test_a_learner_that_never_gets_there_is_not_reached(l6_reference):
    ref = l6_reference
    result = time_to_reference(config(ref, lr=0.0), ref, 0.95, 8, 5)  # never moves from 0.5
    assert result["rounds"] is None and result["seconds"] is None
    assert result["total_seconds"] > 0


def test_medians_count_runs_not_reached_as_longest():
    cfg = WallTimeConfig(budgets=(100, 200))
    runs = [  # rg reaches in 2 of 3 runs within 200 rounds, 1 of 3 within 100
        {"algo": "rg", "budgets": [100, 200], "rounds": 50, "seconds": 1.0,
         "interactions": 800},
        {"algo": "rg", "budgets": [100, 200], "rounds": 150, "seconds": 3.0,
         "interactions": 2400},
        {"algo": "rg", "budgets": [100, 200], "rounds": None, "seconds": None,
         "interactions": None},
        {"algo": "ppo", "budgets": [200], "rounds": 100, "seconds": 6.0, "interactions": 1600},
        {"algo": "ppo", "budgets": [200], "rounds": 200, "seconds": 9.0, "interactions": 3200},
        {"algo": "ppo", "budgets": [200], "rounds": 120, "seconds": 7.0, "interactions": 1920},
        {"algo": "ppo", "budgets": [100], "rounds": None, "seconds": None,
         "interactions": None},
    ]
    summary = summarise(cfg, runs)
    assert summary["rg"]["100"] == {"reached": 1, "runs": 3, "median_seconds": None,
                                    "median_interactions": None, "seconds_over_rg": None,
                                    "interactions_over_rg": None}
    assert summary["rg"]["200"]["reached"] == 2 and summary["rg"]["200"]["median_seconds"] == 3.0
    assert summary["ppo"]["200"]["median_seconds"] == 7.0
    assert math.isclose(summary["ppo"]["200"]["seconds_over_rg"], 7.0 / 3.0)
    assert summary["ppo"]["100"]["reached"] == 0 and summary["ppo"]["100"]["runs"] == 1


def test_bad_configurations_are_named():
    for kwargs, needle in (({"algos": ("dqn",)}, "unknown algorithm"),
                           ({"fraction": 0.0}, "walltime.fraction"),
                           ({"seeds": 0}, "walltime.seeds"),
                           ({"checks": 0}, "walltime.checks")):
        with pytest.raises(ValueError, match=needle):
            WallTimeConfig(**kwargs)
