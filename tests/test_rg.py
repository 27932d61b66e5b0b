"""The reciprocity-gradient learner: model, gradient, estimators, learning."""

import numpy as np
import pytest
import torch

from reciprocity.agents.estimators import PublicEstimators
from reciprocity.agents.model import learner_tables, round_step, unroll
from reciprocity.agents.rg import ReciprocityGradient, RGConfig
from reciprocity.envs import get_scenario, parse_strategy
from reciprocity.envs.config import EnvConfig, strategy_tables
from reciprocity.envs.core import BatchedGame
from reciprocity.envs.norms import from_display_order

torch.set_num_threads(1)


def _random_tables(rng, n):
    return rng.uniform(0.05, 0.95, (n, 4)), rng.uniform(0.05, 0.95, (n, 8))


def test_one_round_matches_monte_carlo_of_the_core():
    """From known (binary) reputations one model round is exact in expectation: compare with
    the core's average over many sampled rounds (independent reference)."""
    rng = np.random.default_rng(0)
    n, games = 6, 200_000
    action, assess = _random_tables(rng, n)
    params = EnvConfig.from_kwargs(population=["L6"] * n, benefit=3.0, cost=1.0,
                                   execution_error=0.1, assessment_error=0.05,
                                   update_probability=0.7).params
    game = BatchedGame(params, action, assess, batch=games, seed=1)
    start = np.array([1, 0, 1, 1, 0, 1], dtype=np.int8)
    game.reputation = np.tile(start, (games, 1))
    record = game.play_round()
    # the model works with executed / published probabilities
    executed = torch.tensor(action * (1 - 0.1))
    published = torch.tensor(0.05 + 0.9 * assess)
    p_next, payoff = round_step(torch.tensor(start, dtype=torch.float64), executed, published,
                                benefit=3.0, cost=1.0, update_probability=0.7)
    mc_payoff = record.payoffs.mean(axis=0)
    mc_rep = record.reputation_after.mean(axis=0)
    se_payoff = record.payoffs.std(axis=0) / np.sqrt(games)
    se_rep = record.reputation_after.std(axis=0) / np.sqrt(games)
    np.testing.assert_array_less(np.abs(payoff.numpy() - mc_payoff), 5 * se_payoff + 1e-9)
    np.testing.assert_array_less(np.abs(p_next.numpy() - mc_rep), 5 * se_rep + 1e-9)


def test_model_fixed_point_matches_closed_form_for_stern_judging():
    """A homogeneous L6 population in the model converges to the spec's closed form
    g = (1 - mu) / (1 + e (1 - 2 mu)) (the model is the mean-field limit)."""
    e, mu, n = 0.04, 0.03, 400
    s = parse_strategy("L6")
    action = torch.tensor(s.action * (1 - e)).expand(n, 4)
    signal = torch.tensor(mu + (1 - 2 * mu) * s.assess).expand(n, 8)
    p = torch.ones(n, dtype=torch.float64)
    for _ in range(200):
        p, _ = round_step(p, action, signal, benefit=5.0, cost=1.0, update_probability=1.0)
    expected = (1 - mu) / (1 + e * (1 - 2 * mu))
    assert abs(p.mean().item() - expected) < 1e-3


@pytest.mark.parametrize("tail", [0, 2])
def test_reciprocity_gradient_equals_finite_differences(tail):
    """backward() through the unrolled model (estimators held fixed) equals central finite
    differences of the same objective, for both heads, in float64 (with and without the tail
    that values the rounds after the horizon)."""
    env_config = get_scenario("discriminators-vs-defectors-v0").env_config
    rg = ReciprocityGradient(RGConfig(horizon=6, gamma=0.9, tail_rounds=tail,
                                      world_model="oracle"), env_config, (1, 1))
    rng = np.random.default_rng(3)
    n = env_config.num_agents
    est_a, est_s = (torch.tensor(t[None]) for t in _random_tables(rng, n))
    start = torch.tensor(rng.integers(0, 2, (1, 3, n)), dtype=torch.float64)
    own_a = torch.tensor(rng.uniform(0.1, 0.9, (1, 1, 4)), requires_grad=True)
    own_s = torch.tensor(rng.uniform(0.1, 0.9, (1, 1, 8)), requires_grad=True)
    value = rg.objective(start, est_a, est_s, own_a, own_s).sum()
    value.backward()
    eps = 1e-6
    for param, grad in ((own_a, own_a.grad), (own_s, own_s.grad)):
        for k in range(param.shape[-1]):
            with torch.no_grad():
                plus, minus = param.clone(), param.clone()
                plus[..., k] += eps
                minus[..., k] -= eps
                args = (own_a, own_s)
                f_plus = rg.objective(start, est_a, est_s,
                                      *(plus if a is param else a for a in args)).sum()
                f_minus = rg.objective(start, est_a, est_s,
                                       *(minus if a is param else a for a in args)).sum()
            fd = (f_plus - f_minus).item() / (2 * eps)
            assert grad[..., k].item() == pytest.approx(fd, rel=1e-5, abs=1e-8)
    # the signal head matters through indirect paths only: its gradient must not vanish
    assert own_s.grad.abs().max() > 1e-4


def test_signal_gradient_flows_through_third_party_reputations():
    """My signal changes only others' reputations; with H = 1 it cannot reach my payoff, with
    H >= 2 it must (signal -> third party's reputation -> my next-round costs/receipts)."""
    env_config = get_scenario("L6-v0").env_config
    n = env_config.num_agents
    s6 = parse_strategy("L6")
    est_a = torch.tensor(s6.action * 0.98).expand(1, n, 4)
    est_s = torch.tensor(0.02 + 0.96 * s6.assess).expand(1, n, 8)
    start = torch.ones(1, 1, n, dtype=torch.float64)
    grads = {}
    for horizon in (1, 2):
        rg = ReciprocityGradient(RGConfig(horizon=horizon, world_model="oracle"), env_config,
                                 (1, 1))
        own_a = torch.tensor(s6.action).view(1, 1, 4).clone().requires_grad_(True)
        own_s = torch.full((1, 1, 8), 0.5, dtype=torch.float64, requires_grad=True)
        rg.objective(start, est_a, est_s, own_a, own_s).sum().backward()
        grads[horizon] = 0.0 if own_s.grad is None else own_s.grad.abs().max().item()
    assert grads[1] == 0.0
    assert grads[2] > 1e-4


def test_learner_tables_apply_errors_to_own_policy_only():
    own_a = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    own_s = torch.tensor([[1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]])
    est_a = torch.full((3, 4), 0.3)
    est_s = torch.full((3, 8), 0.6)
    mask = torch.tensor([[0.0, 1.0, 0.0]])
    a, s = learner_tables(own_a, own_s, est_a, est_s, mask, execution_error=0.1,
                          assessment_error=0.2)
    assert torch.allclose(a[0, 1], torch.tensor([0.9, 0.0, 0.9, 0.0]))
    assert torch.allclose(s[0, 1], torch.tensor([0.8, 0.2, 0.2, 0.8, 0.8, 0.2, 0.2, 0.8]))
    assert torch.allclose(a[0, [0, 2]], est_a[[0, 2]])  # estimators are not re-noised
    assert torch.allclose(s[0, [0, 2]], est_s[[0, 2]])


def test_unroll_cost_is_linear_in_horizon(monkeypatch):
    """The unroll performs exactly one model round per round, and its reverse pass one reverse
    round per round (no path enumeration): the fused rounds without an audit, the generic round
    with one."""
    import reciprocity.agents.model as model

    calls = {}

    def counting(name):
        original = getattr(model, name)

        def count(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return original(*args, **kwargs)
        monkeypatch.setattr(model, name, count)

    for name in ("advance", "fused_round", "fused_round_backward"):
        counting(name)
    p0 = torch.ones(2, 7)
    a = torch.full((7, 4), 0.5, requires_grad=True)
    s = torch.full((7, 8), 0.5, requires_grad=True)
    rules = {"horizon": 13, "gamma": 0.9, "benefit": 2.0, "cost": 1.0, "update_probability": 1.0}
    unroll(p0, a, s, **rules).sum().backward()
    assert calls == {"fused_round": 13, "fused_round_backward": 13}
    calls.clear()
    unroll(p0, a, s, signal_audit=0.5, audit_norm=torch.ones(8), **rules).sum().backward()
    assert calls == {"advance": 13}


@pytest.mark.parametrize("k, u, n, tail", [(1, 1.0, 10, 0), (1, 0.3, 5, 0), (3, 0.7, 9, 0),
                                           (1, 1.0, 2, 0), (1, 0.3, 5, 2), (3, 0.7, 9, 3)])
def test_fused_unroll_is_the_round_by_round_model(k, u, n, tail):
    """The fused unroll (bilinear forms, reverse pass written by hand) computes the value of the
    round-by-round model (:func:`advance`, checked against the core above) and its gradient with
    respect to every table and the start reputations, in float64, with the RG batch layout
    (start (S, 1, B, N), tables (S, F, 1, N, K))."""
    from itertools import repeat

    from reciprocity.agents.model import discount_weights, payoffs_by_round, prepare

    rng = np.random.default_rng(k * 100 + n)
    action = torch.tensor(rng.uniform(0, 1, (2, 3, 1, n, 4)), requires_grad=True)
    signal = torch.tensor(rng.uniform(0, 1, (2, 3, 1, n, 8)), requires_grad=True)
    p0 = torch.tensor(rng.uniform(0, 1, (2, 1, 4, n)), requires_grad=True)
    cotangent = torch.tensor(rng.normal(size=(2, 3, 4, n)))
    rules = {"benefit": 3.0, "cost": 1.0, "update_probability": u}
    weights, norm = discount_weights(7, 0.9, tail)
    assert len(weights) == 7 + tail
    tables = prepare(action, signal, observers_per_interaction=k)
    reference = sum(w / norm * x for w, x in
                    zip(weights, payoffs_by_round(p0, repeat(tables, 7 + tail), **rules),
                        strict=True))
    fused = unroll(p0, action, signal, horizon=7, gamma=0.9, observers_per_interaction=k,
                   tail=tail, **rules)
    torch.testing.assert_close(fused, reference, rtol=0, atol=1e-12)
    for got, want in zip(torch.autograd.grad((fused * cotangent).sum(), (action, signal, p0)),
                         torch.autograd.grad((reference * cotangent).sum(), (action, signal, p0)),
                         strict=True):
        assert want.abs().max() > 1e-3  # every input matters
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(unroll(p0, action, signal, horizon=7, gamma=0.9,
                                          observers_per_interaction=k, tail=tail, **rules),
                                   reference)


def test_tail_weights_are_those_of_the_rounds_after_the_horizon():
    """With a tail of K rounds the weights are gamma^t within the horizon and together
    gamma^H / (1 - gamma) after it: the weights of the infinite discounted series."""
    from reciprocity.agents.model import discount_weights

    for horizon, gamma, tail in ((1, 0.5, 1), (10, 0.99, 2), (25, 0.9, 4)):
        weights, norm = discount_weights(horizon, gamma, tail)
        assert weights[:horizon] == discount_weights(horizon, gamma)[0]
        assert len(weights) == horizon + tail and len(set(weights[horizon:])) == 1
        after = sum(gamma ** t for t in range(horizon, 20_000))
        assert sum(weights[horizon:]) == pytest.approx(after, rel=1e-9)
        assert norm == pytest.approx(1 / (1 - gamma), rel=1e-9)
    with pytest.raises(ValueError, match="gamma"):
        discount_weights(10, 1.0, 2)
    for bad in ({"tail_rounds": 2, "gamma": 1.0}, {"tail_rounds": -1}, {"tail_rounds": 1.5}):
        with pytest.raises(ValueError, match="tail_rounds"):
            RGConfig(**bad)


def _one_learner_world(scenario, seed=0):
    """(executed-action and published-signal tables (N, 4) / (N, 8) with a random stochastic
    learner row as leaves, the learner's slot, the scenario's parameters)."""
    env_config = get_scenario(scenario).env_config
    params, n = env_config.params, env_config.num_agents
    e, mu = params.execution_error, params.assessment_error
    action, assess = strategy_tables(env_config.strategies)
    g = torch.Generator().manual_seed(seed)
    own_a = (torch.rand(4, generator=g, dtype=torch.float64) * 0.6 + 0.2).requires_grad_()
    own_s = (torch.rand(8, generator=g, dtype=torch.float64) * 0.6 + 0.2).requires_grad_()
    slot = int(env_config.focal_slots[0])
    mask = torch.zeros(n, 1, dtype=torch.float64)
    mask[slot] = 1
    tables = (torch.tensor(action * (1 - e)) * (1 - mask) + own_a * (1 - e) * mask,
              torch.tensor(mu + (1 - 2 * mu) * assess) * (1 - mask) +
              (mu + (1 - 2 * mu) * own_s) * mask)
    return tables, (own_a, own_s), slot, params


@pytest.mark.parametrize("scenario, horizon, atol", [("low-benefit-v0", 25, 1e-12),
                                                    ("L6-slow-v0", 100, 1e-6)])
def test_a_tail_values_the_rounds_after_the_horizon(scenario, horizon, atol):
    """Where the reputations settle by the horizon (every background agent stern-judging, with
    errors; one learner with a random stochastic policy), H rounds and a tail of 2 give the
    discounted payoff of the whole game — the same model unrolled for 700 rounds, gamma^700 ~
    3e-16 — value and gradient; H rounds alone are off by far more (u = 1 settles at once, u =
    0.2 slowly)."""
    (action, signal), leaves, slot, params = _one_learner_world(scenario)
    rules = dict(gamma=0.95, benefit=params.benefit, cost=params.cost,
                 update_probability=params.update_probability)
    p0 = torch.ones(action.shape[0], dtype=torch.float64)

    def value_and_gradient(horizon, tail):
        value = unroll(p0, action, signal, horizon=horizon, tail=tail, **rules)[slot]
        return value.item(), torch.cat(torch.autograd.grad(value, leaves, retain_graph=True))

    whole, whole_grad = value_and_gradient(700, 0)
    tailed, tailed_grad = value_and_gradient(horizon, 2)
    cut, cut_grad = value_and_gradient(horizon, 0)
    assert tailed == pytest.approx(whole, rel=0, abs=atol)
    torch.testing.assert_close(tailed_grad, whole_grad, rtol=0, atol=10 * atol)
    assert abs(cut - whole) > 1e-4 and (cut_grad - whole_grad).abs().max() > 1e-4


def test_with_a_tail_the_model_s_optimum_is_the_long_run_one_at_a_short_horizon():
    """low-benefit-v0 (b = 1.1, c = 1): over all 4096 deterministic policies of the learner, the
    model's best action rule at H = 25 is to defect always (its last rounds pay for cooperation
    whose reputation comes after the horizon), while the same model over 1000 rounds and H = 25
    with a tail both choose the discriminator's rule (the reference optimum's, in
    docs/results.md)."""
    import itertools

    env_config = get_scenario("low-benefit-v0").env_config
    params, n = env_config.params, env_config.num_agents
    e, mu = params.execution_error, params.assessment_error
    action, assess = strategy_tables(env_config.strategies)
    rules = list(itertools.product((0.0, 1.0), repeat=4))
    verdicts = list(itertools.product((0.0, 1.0), repeat=8))
    own_a = torch.tensor(rules, dtype=torch.float64).repeat_interleave(len(verdicts), 0)
    own_s = torch.tensor(verdicts, dtype=torch.float64).repeat(len(rules), 1)
    slot = int(env_config.focal_slots[0])
    a = torch.tensor(action * (1 - e)).repeat(len(own_a), 1, 1)
    s = torch.tensor(mu + (1 - 2 * mu) * assess).repeat(len(own_a), 1, 1)
    a[:, slot], s[:, slot] = own_a * (1 - e), mu + (1 - 2 * mu) * own_s
    p0 = torch.ones(len(own_a), n, dtype=torch.float64)
    kw = dict(gamma=0.99, benefit=params.benefit, cost=params.cost, update_probability=1.0)

    def best_rule(horizon, tail):
        with torch.no_grad():
            value = unroll(p0, a, s, horizon=horizon, tail=tail, **kw)[:, slot]
        return own_a[int(value.argmax())].tolist()

    discriminate = [0.0, 1.0, 0.0, 1.0]  # cooperate with Good recipients (context 2 x + y)
    assert best_rule(1000, 0) == discriminate
    assert best_rule(25, 0) == [0.0] * 4
    assert best_rule(25, 2) == discriminate


def test_estimators_recover_scripted_rules_from_public_record():
    """Fitted on public records only, the estimators recover each scripted agent's observed
    behaviour: executed C = p(x, y)(1 - e), published Good = mu + (1 - 2 mu) d(x, y, a), in every
    context with enough data (tolerance: 4 binomial standard errors + the prior's pull)."""
    e, mu = 0.05, 0.03
    population = ["L6"] * 4 + ["alld+L6"] * 2 + ["disc+image_scoring"] * 2 + ["L3"] * 2
    config = EnvConfig.from_kwargs(population=population, benefit=2.0, cost=1.0,
                                   execution_error=e, assessment_error=mu,
                                   initial_reputation=0.5)
    action, assess = strategy_tables(config.strategies)
    games, rounds = 64, 150
    game = BatchedGame(config.params, action, assess, batch=games, seed=7)
    est = PublicEstimators(num_seeds=2, num_agents=len(population), prior=2.0)
    records = [game.play_round() for _ in range(rounds)]
    est.update({k: np.stack([getattr(r, k) for r in records]) for k in records[0].PUBLIC_FIELDS})
    for table, trials, truth in (
            (est.action_probs(), est.action_trials, action * (1 - e)),
            (est.signal_probs(), est.signal_trials, mu + (1 - 2 * mu) * assess)):
        checked = 0
        for s in range(2):
            for j in range(len(population)):
                for k in range(table.shape[-1]):
                    n = trials[s, j, k]
                    if n < 100:
                        continue
                    t = truth[j, k]
                    tol = 4 * np.sqrt(max(t * (1 - t), 0.01) / n) + 2.0 / n
                    assert abs(table[s, j, k] - t) < tol, (s, j, k, table[s, j, k], t, n)
                    checked += 1
        assert checked >= 30


def test_estimators_tell_agents_apart():
    """Pooling must not merge agents: ALLC and ALLD slots get opposite action estimates."""
    config = EnvConfig.from_kwargs(population=["allc+L6", "alld+L6", "L6", "L6"], benefit=2.0,
                                   cost=1.0, execution_error=0.0, assessment_error=0.0)
    action, assess = strategy_tables(config.strategies)
    game = BatchedGame(config.params, action, assess, batch=32, seed=0)
    records = [game.play_round() for _ in range(50)]
    est = PublicEstimators(1, 4)
    est.update({k: np.stack([getattr(r, k) for r in records]) for k in records[0].PUBLIC_FIELDS})
    seen = est.action_trials[0] > 20
    assert np.all(est.action_probs()[0, 0][seen[0]] > 0.95)
    assert np.all(est.action_probs()[0, 1][seen[1]] < 0.05)


def test_rg_learns_stern_judging_discrimination():
    """On the L6 catalogue scenario RG's action rule becomes discriminating
    (P(C|GG) > 0.9, P(C|GB) < 0.1) within a small budget. Starting from P = 0.5 everywhere,
    this fails if the gradient has the wrong sign or does not reach the action head."""
    from reciprocity.train import TrainConfig, train

    metrics = train(TrainConfig("L6-v0", algo="rg", seeds=(0, 1), rounds=200, num_envs=16,
                                eval_envs=16), progress=False)
    for m in metrics:
        action = m["policy"]["action"]
        assert action["GG"] > 0.9, action
        assert action["GB"] < 0.1, action
    # and it is paid for it: close to the discriminator's payoff
    assert min(m["per_interaction_payoff"] for m in metrics) > 3.5


def test_rg_config_is_validated_through_estimators():
    with pytest.raises(ValueError, match="estimator_decay"):
        ReciprocityGradient(RGConfig(estimator_decay=0.0),
                            get_scenario("L6-v0").env_config, (1, 1))


def test_display_order_helper_matches_rule_tables():
    # DISC in display order GG GB BG BB is C D C D
    assert np.array_equal(from_display_order([1, 0, 1, 0]), parse_strategy("disc+L6").action)


def test_the_tail_is_part_of_a_run_s_identity_only_when_there_is_one():
    """A field added after runs were made (``tail_rounds``) leaves their identity as it was at
    its default, so they still resume; any other value makes another run."""
    from reciprocity.train_config import TrainConfig

    def identity(**algo_config):
        return TrainConfig(scenario="L6-v0", algo="rg", rounds=10,
                           algo_config=algo_config).identity_config()

    plain = identity()
    assert "tail_rounds" not in plain["algo_config"]
    assert identity(tail_rounds=0) == plain
    tailed = identity(tail_rounds=2)
    assert tailed["algo_config"]["tail_rounds"] == 2 and tailed != plain
    for algo in ("rg-la", "rg-kant"):  # RG's variants inherit the field and the rule
        config = TrainConfig(scenario="many-learners-v0", algo=algo, rounds=10)
        assert "tail_rounds" not in config.identity_config()["algo_config"]
