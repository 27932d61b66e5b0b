"""The training loop and the ``reciprocity train`` command: schema, logs, resume."""

import csv
import json

import numpy as np
import pytest
import torch

from reciprocity.cli import main
from reciprocity.envs.norms import ACTION_CONTEXTS, SIGNAL_CONTEXTS
from reciprocity.runfolder import load_checkpoint
from reciprocity.train import TrainConfig, train

torch.set_num_threads(1)

ALGOS = ["rg", "ppo", "reinforce"]


def check_schema(metrics: dict, focal_agents: list[str]):
    assert isinstance(metrics["per_interaction_payoff"], float)
    assert list(metrics["policy"]["action"]) == list(ACTION_CONTEXTS)
    assert list(metrics["policy"]["signal"]) == list(SIGNAL_CONTEXTS)
    assert sorted(metrics["policies"]) == sorted(focal_agents)
    for pol in metrics["policies"].values():
        values = list(pol["action"].values()) + list(pol["signal"].values())
        assert all(0.0 <= v <= 1.0 for v in values)
    assert metrics["policy"] == metrics["policies"][focal_agents[0]]
    for key in ("rounds", "wall_seconds", "config"):
        assert key in metrics
    assert metrics["wall_seconds"] > 0


@pytest.mark.parametrize("algo", ALGOS)
def test_cli_train_writes_metrics_csv_tensorboard_checkpoint(tmp_path, algo):
    out = tmp_path / algo
    code = main(["train", "--scenario", "L6-v0", "--algo", algo, "--seed", "3", "--rounds",
                 "100", "--num-envs", "4", "--out", str(out), "--quiet"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    check_schema(metrics, ["agent_0"])
    assert metrics["algo"] == algo and metrics["seed"] == 3
    assert metrics["rounds"] == 100
    with (out / "progress.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 1 and "train_reward_per_round" in rows[0]
    assert int(rows[-1]["rounds"]) == metrics["rounds"]
    assert (out / "checkpoint.pt").is_file()
    assert any((out / "tb").iterdir())


def test_multi_learner_metrics_cover_every_focal_agent(tmp_path):
    metrics = train(TrainConfig("many-learners-v0", algo="rg", seeds=(0,), rounds=30,
                                num_envs=2, eval_envs=4), tmp_path, progress=False)
    check_schema(metrics[0], [f"agent_{i}" for i in range(7)])
    assert len(metrics[0]["per_agent_payoff"]) == 7


def test_cli_train_reports_stages_learners_and_learning_curve(tmp_path, capsys, monkeypatch):
    """Several learners with a warm-up: the progress bar names the stage (warm-up, then
    together), the summary has one line per learner with both heads, and the run folder holds
    the learning-curve figure (a line per seed, the warm-up shaded up to its end)."""
    from figure_checks import captured_figures, clipped, overlapping

    from reciprocity import report

    out = tmp_path / "run"
    with captured_figures(monkeypatch, report) as figures:
        assert main(["train", "--scenario", "many-learners-v0", "--seeds", "0", "1", "--rounds",
                     "40", "--warmup", "20", "--num-envs", "2", "--eval-envs", "4",
                     "--eval-rounds", "5", "--set", "rounds_per_update=10", "--out",
                     str(out)]) == 0
    (fig,) = figures
    assert clipped(fig) == [] and overlapping(fig) == []
    ax = fig.axes[0]
    assert {"seed 0", "seed 1"} <= {line.get_label() for line in ax.lines}
    (warmup,) = [p for p in ax.patches if p.get_label().startswith("warm-up")]
    assert warmup.get_x() + warmup.get_width() == 20  # shaded up to the warm-up's last round
    printed = capsys.readouterr()
    assert "rg many-learners-v0 warm-up (updates 1-2 of 4, alone)" in printed.err
    assert "rg many-learners-v0 together" in printed.err
    lines = printed.out.splitlines()
    header = next(line for line in lines if line.startswith("seed learner"))
    assert header.split()[3:] == list(ACTION_CONTEXTS) + list(SIGNAL_CONTEXTS)
    for seed in (0, 1):
        metrics = json.loads((out / f"seed_{seed}" / "metrics.json").read_text())
        for agent, policy in metrics["policies"].items():
            line = next(line for line in lines if line.split()[:2] == [str(seed), agent])
            tables = [*policy["action"].values(), *policy["signal"].values()]
            assert [float(v) for v in line.split()[3:]] == [round(v, 2) for v in tables]
            assert float(line.split()[2]) == round(metrics["per_agent_payoff"][agent], 3)
    assert sum(line.split()[1:2] == ["agent_6"] for line in lines) == 2
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_several_seeds_are_independent_runs(tmp_path):
    metrics = train(TrainConfig("L6-v0", seeds=(0, 1, 2), rounds=20, num_envs=2, eval_envs=4),
                    tmp_path, progress=False)
    assert [m["seed"] for m in metrics] == [0, 1, 2]
    assert (tmp_path / "summary.json").is_file()
    for s in (0, 1, 2):
        assert (tmp_path / f"seed_{s}" / "metrics.json").is_file()


@pytest.mark.parametrize("algo", ALGOS)
def test_resume_after_interruption_continues_from_checkpoint(tmp_path, algo, stop_training):
    """A run killed after a checkpoint and resumed ends exactly where an uninterrupted run
    ends (same policies, same evaluation), and its progress.csv has every update once."""
    config = TrainConfig("L6-v0", algo=algo, seeds=(5,), rounds=120, num_envs=4, eval_envs=4,
                         checkpoint_every=3, algo_config={"rounds_per_update": 10})
    reference = train(config, tmp_path / "full", progress=False)[0]

    # stopped after the checkpoint at update 6, before update 9
    with stop_training(8), pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "killed", progress=False)
    state = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    assert state["update"] == 6
    code = main(["train", "--resume", str(tmp_path / "killed"), "--quiet"])
    assert code == 0
    resumed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert resumed["policies"] == reference["policies"]
    assert resumed["per_interaction_payoff"] == reference["per_interaction_payoff"]
    with (tmp_path / "killed" / "progress.csv").open() as f:
        updates = [int(r["update"]) for r in csv.DictReader(f)]
    num_updates = reference["rounds"] // reference["config"]["algo"]["rounds_per_update"]
    assert updates == list(range(1, num_updates + 1))


def test_bad_train_arguments_are_reported(tmp_path, capsys):
    assert main(["train", "--scenario", "nope-v0", "--out", str(tmp_path)]) == 2
    assert "unknown id" in capsys.readouterr().err
    assert main(["train", "--scenario", "L6-v0", "--out", str(tmp_path), "--set",
                 "horizonn=3"]) == 2
    assert "horizonn" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "missing")]) == 2
    with pytest.raises(ValueError, match="rounds"):
        TrainConfig("L6-v0", rounds=0)
    with pytest.raises(ValueError, match="algo"):
        TrainConfig("L6-v0", algo="dqn")


def test_learners_can_start_from_a_strategy():
    from reciprocity.agents.policy import ReputationPolicy
    from reciprocity.envs import parse_strategy

    policy = ReputationPolicy((2, 3))
    disc = parse_strategy("disc+L6")
    policy.set_tables(disc.action, disc.assess, confidence=0.9)
    action, signal = policy.tables()
    expected_a = torch.tensor(np.clip(disc.action, 0.1, 0.9), dtype=torch.float32)
    expected_s = torch.tensor(np.clip(disc.assess, 0.1, 0.9), dtype=torch.float32)
    assert torch.allclose(action, expected_a.expand(2, 3, 4), atol=1e-6)
    assert torch.allclose(signal, expected_s.expand(2, 3, 8), atol=1e-6)
    with pytest.raises(ValueError, match="tabular"):
        ReputationPolicy((1,), kind="mlp").set_tables(disc.action, disc.assess)
    with pytest.raises(ValueError, match="init_policy"):
        TrainConfig("L6-v0", init_policy="nonsense")
    # a run started from the discriminator, with a learning rate of 0, evaluates as one
    metrics = train(TrainConfig("L6-v0", seeds=(0,), rounds=10, num_envs=2, eval_envs=8,
                                init_policy="disc+L6", algo_config={"lr": 0.0}), progress=False)
    assert metrics[0]["policy"]["action"]["GG"] == pytest.approx(0.95, abs=1e-6)
    assert metrics[0]["policy"]["action"]["GB"] == pytest.approx(0.05, abs=1e-6)
