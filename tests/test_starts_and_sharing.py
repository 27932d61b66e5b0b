"""Where learners start (``--init`` with ``--init-mix``: the basin map's starts) and parameter
sharing (``share_policy``: one policy for all learners of a game, each its own loss)."""

import numpy as np
import pytest
import torch

from reciprocity.agents.rg import ReciprocityGradient, RGConfig
from reciprocity.cli import main
from reciprocity.envs import get_scenario, parse_strategy
from reciprocity.train import start_tables, train
from reciprocity.train_config import TrainConfig

torch.set_num_threads(1)
SMALL = dict(seeds=(0, 1), rounds=20, num_envs=2, eval_envs=4, eval_rounds=10, eval_burn_in=0)


@pytest.mark.parametrize("mix", [0.0, 0.3, 1.0])
def test_a_mixed_start_is_the_uniform_policy_moved_towards_the_strategy(mix):
    """lr = 0 keeps the start: the trained tables are 0.5 + mix (clip(P, 0.05, 0.95) - 0.5)."""
    m = train(TrainConfig("many-learners-v0", algo="rg", init_policy="disc+L6", init_mix=mix,
                          algo_config={"lr": 0.0}, **SMALL), progress=False)
    disc = parse_strategy("disc+L6")
    action = 0.5 + mix * (np.clip(disc.action, 0.05, 0.95) - 0.5)
    signal = 0.5 + mix * (np.clip(disc.assess, 0.05, 0.95) - 0.5)
    def index(name):  # "GB" -> 2 x + y, "GBC" -> 4 x + 2 y + a
        bits = [c in "GC" for c in name]
        return sum(b << (len(bits) - 1 - k) for k, b in enumerate(bits))

    for seed in m:
        for policy in seed["policies"].values():
            for head, table in (("action", action), ("signal", signal)):
                for name, p in policy[head].items():
                    assert p == pytest.approx(table[index(name)], abs=1e-6), (head, name)
    assert [t.tolist() for t in start_tables(disc, mix)] == [action.tolist(), signal.tolist()] \
        or mix == 1.0


def test_bad_starts_are_named(tmp_path, capsys):
    with pytest.raises(ValueError, match="init_mix must lie in"):
        TrainConfig("many-learners-v0", init_policy="disc+L6", init_mix=1.5)
    with pytest.raises(ValueError, match="init_mix mixes the uniform policy with init_policy"):
        TrainConfig("many-learners-v0", init_mix=0.5)
    assert main(["train", "--scenario", "many-learners-v0", "--init-mix", "nan", "--init",
                 "disc+L6", "--out", str(tmp_path / "run")]) != 0
    assert "init_mix must be a finite number" in capsys.readouterr().err


def test_a_shared_policy_gets_the_sum_of_the_learners_own_gradients():
    """RG's objective: the shared parameters' gradient equals the sum over learners of each
    learner's gradient of its own payoff, computed with separate policies equal to it."""
    ec = get_scenario("many-learners-v0").env_config
    shape = (2, ec.focal_slots.size)
    shared = ReciprocityGradient(RGConfig(share_policy=True), ec, shape)
    separate = ReciprocityGradient(RGConfig(), ec, shape)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        shared.policy.action_table.copy_(torch.randn(2, 1, 4, generator=g))
        shared.policy.signal_table.copy_(torch.randn(2, 1, 8, generator=g))
        separate.policy.action_table.copy_(shared.policy.action_table.expand(*shape, 4))
        separate.policy.signal_table.copy_(shared.policy.signal_table.expand(*shape, 8))
    n = ec.num_agents
    est_action = torch.rand(2, n, 4, generator=g) * 0.8 + 0.1
    est_signal = torch.rand(2, n, 8, generator=g) * 0.8 + 0.1
    start = torch.rand(2, 3, n, generator=g)
    for learner in (shared, separate):
        learner.objective(start, est_action, est_signal).sum().backward()
    assert shared.policy.action_table.shape == (2, 1, 4)
    torch.testing.assert_close(shared.policy.action_table.grad,
                               separate.policy.action_table.grad.sum(dim=1, keepdim=True))
    torch.testing.assert_close(shared.policy.signal_table.grad,
                               separate.policy.signal_table.grad.sum(dim=1, keepdim=True))
    # and the learners' own gradients differ: sharing is not one learner copied
    assert not torch.allclose(separate.policy.action_table.grad[:, 0],
                              separate.policy.action_table.grad[:, 1])


@pytest.mark.parametrize("algo", ["rg", "ppo", "reinforce", "rg-la"])
@pytest.mark.parametrize("policy", ["tabular", "mlp"])
def test_every_learner_can_share_one_policy(algo, policy):
    m = train(TrainConfig("many-learners-v0", algo=algo,
                          algo_config={"share_policy": True, "policy": policy}, **SMALL),
              progress=False)
    for seed in m:
        tables = list(seed["policies"].values())
        assert len(tables) == 7 and all(t == tables[0] for t in tables)
    assert m[0]["policies"] != m[1]["policies"]   # seeds stay apart


def test_a_shared_policy_and_a_warm_up_are_refused_by_name():
    with pytest.raises(ValueError, match=r"^share_policy: a warm-up trains every learner alone"):
        TrainConfig("many-learners-v0", warmup=10, rounds=20,
                    algo_config={"share_policy": True})
