"""Tests of the sample-based baselines (REINFORCE, PPO).

Returns-to-go, GAE and the clipped surrogate are checked against values worked out by hand on
tiny sequences; the learners are checked by learning the known optimum of ``all-cooperators``
(background ALLC never punish, so defecting is optimal in every context), by independence of the
batched learners, and by checkpoint round trips.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from reciprocity.agents.rollout import Rollout, collect
from reciprocity.baselines import PPO, PPOConfig, Reinforce, ReinforceConfig
from reciprocity.baselines.ppo import clipped_surrogate, gae
from reciprocity.baselines.reinforce import (
    discounted_returns,
    interleave,
    round_discounts,
    round_ends,
)
from reciprocity.envs import EnvConfig, get_scenario
from reciprocity.envs.vector import VectorGame, observations

ALLC = get_scenario("all-cooperators-v0").env_config
OWN_GOOD = [2, 3]  # action contexts 2 x + y with x = own reputation = Good


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train(learner, env_config, num_seeds, num_games, num_updates, seed=0):
    """The loop of every learner: collect with the current policy, update. Returns the last
    rollout and the metrics of every update."""
    game = VectorGame(env_config, num_seeds * num_games, seed)
    game.reset()
    rng = np.random.default_rng(seed)
    history = []
    for _ in range(num_updates):
        rollout = collect(game, learner.policy, learner.config.rounds_per_update, rng, num_seeds)
        history.append(learner.update(rollout))
    return rollout, history


def hand_rollout(rewards, last_round, *, num_agents=2, reputation_after=None):
    """A rollout of one learner (S = F = B = 1) with the given rewards per round.

    The learner (slot 0) always cooperates in action context 3 and signals Good in context 7.
    """
    T = len(rewards)
    shape = (T, 1, 1, 1)
    if reputation_after is None:
        reputation_after = np.ones((T, 1, num_agents), dtype=np.int8)
    public = {
        "recipients": np.tile(np.arange(num_agents)[::-1], (T, 1, 1)),
        "observers": np.tile(np.arange(num_agents)[::-1], (T, 1, 1)),
        "reputation_before": np.ones((T, 1, num_agents), dtype=np.int8),
        "actions": np.ones((T, 1, num_agents), dtype=np.int8),
        "signals": np.ones((T, 1, num_agents), dtype=np.int8),
        "reputation_after": np.asarray(reputation_after, dtype=np.int8),
    }
    return Rollout(
        action_contexts=torch.full(shape, 3, dtype=torch.long),
        actions=torch.ones(shape, dtype=torch.int8),
        signal_contexts=torch.full(shape, 7, dtype=torch.long),
        signals=torch.ones(shape, dtype=torch.int8),
        rewards=torch.tensor(rewards, dtype=torch.float32).reshape(shape),
        own_rep=torch.ones(shape, dtype=torch.int8),
        last_round=torch.tensor(last_round),
        public=public,
    )


# -- (a) returns-to-go and GAE by hand -------------------------------------------------------
# Three rounds with payoffs 1, 2, 4, gamma = lambda = 0.5 per round, and an episode end after
# round 1. Decisions: act0, assess0, act1, assess1 | act2, assess2.
REWARDS = [1.0, 2.0, 4.0]
LAST_ROUND = [False, True, False]


def test_decision_sequence_interleaves_act_and_assess():
    act, assess = torch.tensor([1, 2, 4]), torch.tensor([0, 0, 0])
    assert interleave(act, assess).tolist() == [1, 0, 2, 0, 4, 0]
    assert round_discounts(3, 0.5).tolist() == [1.0, 0.5, 1.0, 0.5, 1.0, 0.5]


def test_decision_sequence_with_several_assess_phases():
    """k = 2 assess phases: act_t, assess_t^1, assess_t^2; gamma only from the last assess
    decision to the next act, and an episode end after the last assess decision."""
    act, assess = torch.tensor([1, 2]), torch.tensor([10, 11, 20, 21])
    assert interleave(act, assess).tolist() == [1, 10, 11, 2, 20, 21]
    assert round_discounts(2, 0.5, assess_phases=2).tolist() == [1, 1, 0.5, 1, 1, 0.5]
    assert round_ends(torch.tensor([False, True]), 2).tolist() == [False] * 5 + [True]
    rewards = interleave(torch.tensor([1.0, 2.0]), torch.zeros(4))
    returns = discounted_returns(rewards, round_discounts(2, 0.5, assess_phases=2),
                                 round_ends(torch.tensor([False, True]), 2))
    # G(act1) = 2 + 0, both assess decisions of round 0: 0.5 * G(act1) = 1, G(act0) = 1 + 1
    assert returns.tolist() == [2.0, 1.0, 1.0, 2.0, 0.0, 0.0]


def test_returns_to_go_by_hand():
    rewards = torch.tensor([1.0, 0.0, 2.0, 0.0, 4.0, 0.0])
    ends = torch.tensor([False, False, False, True, False, False])
    returns = discounted_returns(rewards, round_discounts(3, 0.5), ends)
    # G(assess2) = 0 (rollout ends)        G(act2) = 4 + G(assess2) = 4
    # G(assess1) = 0 (episode ends)        G(act1) = 2 + 0 = 2
    # G(assess0) = 0.5 * G(act1) = 1       G(act0) = 1 + G(assess0) = 2
    assert returns.tolist() == [2.0, 1.0, 2.0, 0.0, 4.0, 0.0]


def test_reinforce_uses_returns_per_round_with_episode_end():
    learner = Reinforce(ReinforceConfig(gamma=0.5, baseline="running_mean"), ALLC, (1, 1))
    metrics = learner.update(hand_rollout(REWARDS, LAST_ROUND, num_agents=10))
    # act-decision returns 2, 2, 4 (see test_returns_to_go_by_hand)
    assert metrics["reinforce/mean_return"] == pytest.approx(8 / 3)


def test_gae_by_hand():
    rewards = torch.tensor([1.0, 0.0, 2.0, 0.0, 4.0, 0.0])
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    # what follows each decision: the next decision's value, or a bootstrap value after the
    # episode end (10) and after the end of the rollout (20)
    next_values = torch.tensor([2.0, 3.0, 4.0, 10.0, 6.0, 20.0])
    ends = torch.tensor([False, False, False, True, False, True])
    adv = gae(rewards, values, next_values, round_discounts(3, 0.5), round_discounts(3, 0.5), ends)
    # deltas: act0 1 + 2 - 1 = 2, assess0 0.5 * 3 - 2 = -0.5, act1 2 + 4 - 3 = 3,
    #         assess1 0.5 * 10 - 4 = 1, act2 4 + 6 - 5 = 5, assess2 0.5 * 20 - 6 = 4
    # A: assess2 4; act2 5 + 4 = 9; assess1 1 (episode end); act1 3 + 1 = 4;
    #    assess0 -0.5 + 0.25 * 4 = 0.5; act0 2 + 0.5 = 2.5
    assert adv.tolist() == pytest.approx([2.5, 0.5, 4.0, 1.0, 9.0, 4.0])


def test_gae_with_lambda_one_and_no_bootstrap_is_returns_minus_values():
    rewards = torch.tensor([1.0, 0.0, 2.0, 0.0, 4.0, 0.0])
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    ends = torch.tensor([False, False, False, True, False, True])
    next_values = torch.cat((values[1:], torch.zeros(1))) * (~ends)
    discounts = round_discounts(3, 0.5)
    adv = gae(rewards, values, next_values, discounts, torch.ones(6), ends)
    returns = discounted_returns(rewards, discounts, ends)
    assert adv.tolist() == pytest.approx((returns - values).tolist())


def test_ppo_bootstraps_with_expected_next_act_value():
    # 4 agents, learner in slot 0 (focal). After round 0 the learner is Bad and 2 of the 3
    # others are Good; after round 1 the learner is Good and 1 of the 3 others is Good.
    env_config = EnvConfig.from_kwargs(population=["focal"] + ["allc+L6"] * 3)
    after = [[[0, 1, 1, 0]], [[1, 0, 1, 0]]]
    rollout = hand_rollout([1.0, 1.0], [False, True], num_agents=4, reputation_after=after)
    learner = PPO(PPOConfig(), env_config, (1, 1))

    def value(x, y):
        obs = torch.as_tensor(observations(np.array([[2 * x + y]]), 0, np.array([[x]])))
        return learner.value(obs).item()

    with torch.no_grad():
        boot = learner._bootstrap_values(rollout).flatten().tolist()
    assert boot[0] == pytest.approx(2 / 3 * value(0, 1) + 1 / 3 * value(0, 0))
    assert boot[1] == pytest.approx(1 / 3 * value(1, 1) + 2 / 3 * value(1, 0))


# -- (b) the clipped surrogate by hand -----------------------------------------------------
def test_clipped_surrogate_by_hand():
    e_half, e_minus_half = 1.6487212707, 0.6065306597  # exp(0.5), exp(-0.5)
    old = torch.zeros(4)
    new = torch.tensor([0.5, -0.5, 0.5, -0.5])
    adv = torch.tensor([1.0, 1.0, -1.0, -2.0])
    loss = clipped_surrogate(new, old, adv, clip_coef=0.2)
    expected = [
        -1.2,                             # ratio 1.65 > 1.2 with A > 0: clipped
        -e_minus_half,                    # ratio 0.61 with A > 0: unclipped (pessimistic)
        e_half,                           # ratio 1.65 with A < 0: unclipped (pessimistic)
        1.6,                              # ratio 0.61 < 0.8 with A = -2: clipped, -0.8 * -2
    ]
    assert loss.tolist() == pytest.approx(expected)
    assert loss.mean().item() == pytest.approx((-1.2 - e_minus_half + e_half + 1.6) / 4)


# -- (c) learning: defect against unconditional cooperators ---------------------------------
LEARNERS = [
    (Reinforce, ReinforceConfig, {}),
    (Reinforce, ReinforceConfig, {"baseline": "running_mean"}),
    (PPO, PPOConfig, {}),
]
#: all-cooperators with three observers per interaction: 1 + 3 decisions per round
ALLC_MAJORITY = EnvConfig.from_kwargs(**{**get_scenario("all-cooperators-v0").config(),
                                         "observers_per_interaction": 3})


@pytest.mark.parametrize(("cls", "config_cls", "overrides", "env_config"), [
    *((*learner, ALLC) for learner in LEARNERS),
    (Reinforce, ReinforceConfig, {}, ALLC_MAJORITY),
    (PPO, PPOConfig, {}, ALLC_MAJORITY),
], ids=["reinforce-learned", "reinforce-running-mean", "ppo", "reinforce-k3", "ppo-k3"])
def test_learns_to_defect_against_all_cooperators(cls, config_cls, overrides, env_config):
    S, B = 2, 16
    config = config_cls(rounds_per_update=25, **overrides)
    learner = cls(config, env_config, (S, 1), seed=0)
    rollout, history = train(learner, env_config, S, B, num_updates=40)
    assert rollout.assess_phases == env_config.params.observers_per_interaction
    p_coop = learner.policy.tables()[0][:, 0]  # (S, 4)
    assert (p_coop[:, OWN_GOOD].mean(-1) < 0.2).all(), p_coop
    # the greedy action rule defects in every context visited in the last rollout
    for s in range(S):
        visited = rollout.action_contexts[:, s].unique()
        assert (p_coop[s, visited] < 0.5).all(), (s, visited, p_coop[s])
    prefix = "ppo" if cls is PPO else "reinforce"
    assert history[-1][f"{prefix}/mean_reward_per_round"] > history[0][
        f"{prefix}/mean_reward_per_round"]


# -- independence of the batched learners -----------------------------------------------------
def _first_seed(rollout: Rollout, num_games: int) -> Rollout:
    fields = {k: getattr(rollout, k)[:, :1] for k in ("action_contexts", "actions",
                                                      "signal_contexts", "signals", "rewards",
                                                      "own_rep")}
    public = {k: v[:, :num_games] for k, v in rollout.public.items()}
    return Rollout(**fields, last_round=rollout.last_round, public=public)


@pytest.mark.parametrize(("cls", "config_cls"), [(Reinforce, ReinforceConfig), (PPO, PPOConfig)])
def test_learners_in_a_batch_are_independent(cls, config_cls):
    S, B = 2, 4
    config = config_cls(rounds_per_update=10)
    batched = cls(config, ALLC, (S, 1), seed=0)
    game = VectorGame(ALLC, S * B, 0)
    game.reset()
    rollout = collect(game, batched.policy, 10, np.random.default_rng(0), S)
    # make seed 1's experience extreme, so any coupling would show in seed 0
    rollout.rewards[:, 1] *= 100.0
    single = cls(config, ALLC, (1, 1), seed=0)
    # the same initial parameters (initialisation draws depend on the batch shape)
    for module in ("policy", "value"):
        state = getattr(batched, module).state_dict()
        getattr(single, module).load_state_dict({k: v[:1] for k, v in state.items()})
    batched.update(rollout)
    single.update(_first_seed(rollout, B))
    for name, value in single.policy.state_dict().items():
        torch.testing.assert_close(batched.policy.state_dict()[name][:1], value)


# -- (d) checkpoint round trip ---------------------------------------------------------------
@pytest.mark.parametrize(("cls", "config_cls", "overrides"), LEARNERS,
                         ids=["reinforce-learned", "reinforce-running-mean", "ppo"])
def test_state_dict_round_trip_gives_identical_updates(cls, config_cls, overrides):
    S, B = 2, 4
    config = config_cls(rounds_per_update=10, **overrides)
    learner = cls(config, ALLC, (S, 1), seed=0)
    train(learner, ALLC, S, B, num_updates=3)
    buffer = io.BytesIO()
    torch.save(learner.state_dict(), buffer)
    buffer.seek(0)
    restored = cls(config, ALLC, (S, 1), seed=123)
    restored.load_state_dict(torch.load(buffer))

    game = VectorGame(ALLC, S * B, 7)
    game.reset()
    rollout = collect(game, learner.policy, 10, np.random.default_rng(7), S)
    for _ in range(2):
        assert learner.update(rollout) == restored.update(rollout)
    for name, value in learner.policy.state_dict().items():
        torch.testing.assert_close(restored.policy.state_dict()[name], value, rtol=0, atol=0)


# -- (e) the mlp policy kind ------------------------------------------------------------------
@pytest.mark.parametrize(("cls", "config_cls"), [(Reinforce, ReinforceConfig), (PPO, PPOConfig)])
def test_mlp_policy_trains(cls, config_cls):
    config = config_cls(rounds_per_update=10, policy="mlp", hidden=8, lr=0.01)
    learner = cls(config, ALLC, (2, 1), seed=0)
    before = {k: v.clone() for k, v in learner.policy.state_dict().items()}
    _, history = train(learner, ALLC, 2, 4, num_updates=3)
    assert all(math.isfinite(v) for m in history for v in m.values())
    changed = [not torch.equal(before[k], v) for k, v in learner.policy.state_dict().items()
               if k in before and v.dtype.is_floating_point]
    assert any(changed)
    assert learner.policy.kind == "mlp"


def test_mlp_policy_reads_the_pettingzoo_observation():
    """The MLP's input for each context is the observation the PettingZoo env gives in it (in
    the assess phase with the observer's own reputation withheld), and its outputs there are the
    network applied to that observation."""
    from reciprocity.agents.policy import ReputationPolicy, context_observations
    from reciprocity.envs import indirect_reciprocity_v0

    table = context_observations().numpy()
    policy = ReputationPolicy((1,), kind="mlp", hidden=8, seed=3)
    env = indirect_reciprocity_v0.parallel_env(population=["focal"] * 3 + ["L6"] * 3,
                                               execution_error=0.3, assessment_error=0.3)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(40):
        for agent, o in obs.items():
            if o[0] == 0:
                ctx, expected = int(2 * o[1] + o[3]), o
                logit = policy.action_logits()[0, ctx]
            else:
                ctx = int(4 * o[1] + 2 * o[3] + o[2])
                expected = np.concatenate([o[:4], [0.0]]).astype(np.float32)
                logit = policy.signal_logits()[0, ctx]
                ctx += 4
            np.testing.assert_array_equal(table[ctx], expected)
            direct = policy.mlp(torch.as_tensor(expected)[None])[0, 0]
            torch.testing.assert_close(logit, direct)
            seen.add((agent, ctx))
        obs, *_ = env.step({a: int(rng.integers(2)) for a in env.agents})
    assert {ctx for _, ctx in seen} == set(range(12))


@pytest.mark.parametrize("algo", ["rg", "ppo", "reinforce"])
def test_every_learner_trains_an_mlp_policy(algo):
    """Among unconditional cooperators defecting is optimal in every context (see (d)); each
    learner finds it with the MLP policy, through the training loop."""
    from reciprocity.train import TrainConfig
    from reciprocity.train import train as train_run

    config = TrainConfig("all-cooperators-v0", algo=algo, seeds=(0,), rounds=200, num_envs=8,
                         eval_envs=32, eval_rounds=50, eval_burn_in=0, checkpoint_every=0,
                         save_checkpoint=False, tensorboard=False,
                         algo_config={"policy": "mlp", "lr": 0.05, "rounds_per_update": 10})
    metrics = train_run(config, progress=False)[0]
    assert metrics["config"]["algo"]["policy"] == "mlp"
    assert max(metrics["policy"]["action"].values()) < 0.1
    p = ALLC.params
    assert metrics["per_interaction_payoff"] > 0.98 * p.benefit * (1 - p.execution_error)


def test_bad_configuration_fails_clearly():
    with pytest.raises(ValueError, match="baseline"):
        ReinforceConfig(baseline="median")
    with pytest.raises(ValueError, match="gamma"):
        PPOConfig(gamma=1.0)
    with pytest.raises(ValueError, match="batch_shape"):
        Reinforce(ReinforceConfig(), ALLC, (3, 1)).update(hand_rollout(REWARDS, LAST_ROUND))
