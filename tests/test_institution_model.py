"""The mean-field model (agents/model.py) and the reciprocity gradient under the institutions of
spec §7, against independent references: Monte-Carlo of the core (one round from given
reputations, and many rounds), closed forms, a fixed-point calculation, finite differences.

Fixed point of a scripted population under an institution (derived here; also in docs/envs.md).
Everyone follows one norm d (action rule p) and the audit judges by the same norm. A published
signal then contradicts the audit only through the assessment error, so an observer is flagged
with probability v mu per observed interaction, independently of everything else, and with k
observed interactions per round it is flagged with probability Phi = 1 - (1 - v mu)^k. The k
observers of an interaction see the same context; the majority verdict errs when most of their
k independent flips happen, with probability mu_k = sum_{m > k/2} C(k, m) mu^m (1 - mu)^(k - m).
In a large population the stationary fraction of Good g therefore solves

    g = (1 - Phi) [(1 - u) g + u F_k(g)],
    F_k(g) = sum_{x,y} w(x) w(y) [mu_k + (1 - 2 mu_k) q(x, y)]   (spec §2 with mu -> mu_k),

and for stern judging  g = (1 - Phi) u (1 - mu_k) / (1 - (1 - Phi)(1 - u)
+ (1 - Phi) u e (1 - 2 mu_k)). Without audit (Phi = 0) u drops out (spec §2); with an audit it
does not: a reputation that outlives many rounds is exposed to more audits before it is renewed.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from test_dynamics import F, cooperation, rules_of

from reciprocity.agents.model import learner_tables, round_step
from reciprocity.agents.rg import ReciprocityGradient, RGConfig
from reciprocity.envs import BatchedGame, EnvConfig, GameParams, get_scenario, simulate
from reciprocity.envs.config import strategy_tables

torch.set_num_threads(1)

SCRIPTED = ["L6", "L6", "alld+L6", "disc+image_scoring", "L1", "allc+shunning", "L3", "L8"]


def observed_tables(action, assess, params):
    """Executed-C and published-Good tables of the core's agents (what the model reads)."""
    return (torch.tensor(action * (1 - params.execution_error)),
            torch.tensor(params.assessment_error + (1 - 2 * params.assessment_error) * assess))


def model_round(p, action, signal, params):
    return round_step(p, action, signal, benefit=params.benefit, cost=params.cost,
                      update_probability=params.update_probability,
                      observers_per_interaction=params.observers_per_interaction,
                      signal_audit=params.signal_audit,
                      audit_norm=torch.tensor(params.audit_table))


# ----------------------------------------------------------------------------------------------
# One round from given reputations
# ----------------------------------------------------------------------------------------------

INSTITUTIONS = [
    dict(observers_per_interaction=1, signal_audit=0.6, update_probability=0.7),
    dict(observers_per_interaction=3, signal_audit=0.0, update_probability=1.0),
    dict(observers_per_interaction=3, signal_audit=0.6, update_probability=0.0),
    dict(observers_per_interaction=3, signal_audit=0.6, update_probability=0.7),
]
#: sampling k = 3 panels for 30 000 games takes ~3 s: one such case runs by default
ONE_ROUND_CASES = [
    pytest.param(tables, institution,
                 id="{}-k{observers_per_interaction}-v{signal_audit}-u{update_probability}".format(
                     tables, **institution),
                 marks=[] if institution["observers_per_interaction"] == 1
                 or (tables, institution) == ("learner", INSTITUTIONS[3]) else pytest.mark.slow)
    for institution in INSTITUTIONS for tables in ("scripted", "learner")
]


@pytest.mark.parametrize("tables, institution", ONE_ROUND_CASES)
def test_one_round_matches_monte_carlo_of_the_core(tables, institution):
    """From known (0/1) reputations, one model round against the core's average over many
    sampled rounds (N = 8). Payoffs, verdicts (majority of k) and, with k = 1, the flag
    probabilities are exact in expectation: tolerance 5 standard errors. Two approximations of
    the model get an allowance on top, where they apply:

    * an agent's flag and its own update are treated as independent; both depend on the
      matching (its recipient and the recipients of the donors it watches are distinct), a
      dependence of order v / N: allowance 0.01 (measured 0.007);
    * with k > 1 the k interactions an agent watches are treated as independent draws, but their
      donors and their recipients are distinct: of order C(k, 2) v^2 q (1 - q) / (N - 1) for an
      observer whose contradiction depends on the recipient's reputation (q: share of Good),
      0.04 here: allowance 0.03 (measured 0.021).
    """
    n = len(SCRIPTED)
    params = GameParams(n, 3.0, 1.0, execution_error=0.1, assessment_error=0.05,
                        audit_norm="L6", **institution)
    rng = np.random.default_rng(0)
    if tables == "scripted":
        action, assess = strategy_tables(EnvConfig.from_kwargs(population=SCRIPTED).strategies)
        executed, published = observed_tables(action, assess, params)
    else:
        # one learner (slot 2, a stochastic policy) modelled through learner_tables, the other
        # rows being exact estimators (observed behaviour) of stochastic agents
        action, assess = rng.uniform(0.05, 0.95, (n, 4)), rng.uniform(0.05, 0.95, (n, 8))
        est_a, est_s = observed_tables(action, assess, params)
        mask = torch.zeros(n, dtype=torch.float64)
        mask[2] = 1.0
        executed, published = learner_tables(
            torch.tensor(action[2]), torch.tensor(assess[2]), est_a, est_s, mask,
            execution_error=params.execution_error, assessment_error=params.assessment_error)
    k = params.observers_per_interaction
    games = 100_000 if k == 1 else 30_000
    game = BatchedGame(params, action, assess, batch=games, seed=1)
    start = np.array([1, 0, 1, 1, 0, 1, 1, 0], dtype=np.int8)
    game.reputation = np.tile(start, (games, 1))
    record = game.play_round()
    p_next, payoff = model_round(torch.tensor(start, dtype=torch.float64), executed, published,
                                 params)
    audited = params.signal_audit > 0
    allowance = 0.03 if audited and k > 1 else 0.01 if audited else 0.0
    for model, sample in ((payoff.numpy(), record.payoffs),
                          (p_next.numpy(), record.reputation_after)):
        se = sample.std(axis=0) / math.sqrt(games)
        np.testing.assert_array_less(np.abs(model - sample.mean(axis=0)),
                                     5 * se + allowance + 1e-9)
    if params.update_probability == 1.0 and params.signal_audit == 0.0:
        # the verdicts themselves (majority of k), exact
        se = record.verdicts.std(axis=0) / math.sqrt(games)
        np.testing.assert_array_less(np.abs(p_next.numpy() - record.verdicts.mean(axis=0)),
                                     5 * se + 1e-9)


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("audit", [0.3, 1.0])
def test_honest_observers_are_flagged_at_rate_v_mu(k, audit):
    """Norm-followers audited by their own norm are contradicted only through the assessment
    error: flagged with probability 1 - (1 - v mu)^k per round (u = 0 isolates the flags)."""
    mu, n = 0.05, 12
    params = GameParams(n, 2.0, 1.0, execution_error=0.1, assessment_error=mu,
                        update_probability=0.0, signal_audit=audit, audit_norm="L6",
                        observers_per_interaction=k)
    action, assess = strategy_tables(EnvConfig.from_kwargs(population=["L6"] * n).strategies)
    executed, published = observed_tables(action, assess, params)
    p = torch.tensor(np.r_[np.ones(8), np.zeros(4)])
    p_next, _ = model_round(p, executed, published, params)
    np.testing.assert_allclose(p_next.numpy(), p.numpy() * (1 - audit * mu) ** k, rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# Many rounds: the mean-field model follows the core
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("institution", [
    pytest.param(dict(signal_audit=0.3), id="audit"),
    pytest.param(dict(observers_per_interaction=3), id="majority", marks=pytest.mark.slow),
    pytest.param(dict(signal_audit=0.3, update_probability=0.5), id="audit-u0.5"),
])
def test_many_rounds_follow_the_core(institution):
    """7 ideal discriminators + 3 defectors (many-learners' population) over 25 rounds from all
    Good: the model's Good fraction and payoff per round, by group, against the core's average.
    Tolerance: 5 standard errors of the group mean + a mean-field allowance (reputations are
    treated as independent) of 0.005 on the Good fraction and 0.02 on the payoff per round
    (measured deviations with 20 000 games: below 0.004 and 0.01)."""
    config = EnvConfig.from_kwargs(population=["disc+L6"] * 7 + ["alld+L6"] * 3, benefit=3,
                                   cost=0.75, **institution)
    params = config.params
    action, assess = strategy_tables(config.strategies)
    games = 20_000 if params.observers_per_interaction == 1 else 4_000
    game = BatchedGame(params, action, assess, batch=games, seed=0)
    executed, published = observed_tables(action, assess, params)
    p = torch.ones(10, dtype=torch.float64)
    groups = (slice(0, 7), slice(7, 10))
    for _ in range(25):
        record = game.play_round()
        p, payoff = model_round(p, executed, published, params)
        for group in groups:
            for model, sample, allowance in ((p, record.reputation_after, 0.005),
                                             (payoff, record.payoffs, 0.02)):
                per_game = sample[:, group].mean(axis=1)
                se = per_game.std() / math.sqrt(games)
                assert abs(model[group].mean().item() - per_game.mean()) < 5 * se + allowance


# ----------------------------------------------------------------------------------------------
# Stationary Good fraction under an audit: the fixed point above
# ----------------------------------------------------------------------------------------------


def majority_error(mu: float, k: int) -> float:
    """mu_k: probability that most of k independent flips (each w.p. mu) happen."""
    return sum(math.comb(k, m) * mu**m * (1 - mu) ** (k - m) for m in range(k // 2 + 1, k + 1))


def institution_fixed_point(spec, e, mu, u, audit, k):
    """Iterate g <- (1 - Phi) [(1 - u) g + u F_k(g)] from g = 1 (see the module docstring)."""
    p, d = rules_of(spec)
    phi = 1 - (1 - audit * mu) ** k
    mu_k = majority_error(mu, k)
    g = 1.0
    for _ in range(100_000):
        new = (1 - phi) * ((1 - u) * g + u * F(g, p, d, e, mu_k))   # spec §2's map, mu -> mu_k
        if abs(new - g) < 1e-14:
            return new, cooperation(new, p, e)
        g = new
    raise AssertionError("fixed-point iteration did not converge")


def test_fixed_point_reduces_to_closed_forms():
    e, mu = 0.05, 0.05
    for u, audit, k in [(1.0, 0.0, 1), (0.3, 0.0, 1), (1.0, 1.0, 1), (0.5, 1.0, 3)]:
        phi, mu_k = 1 - (1 - audit * mu) ** k, majority_error(mu, k)
        closed = (1 - phi) * u * (1 - mu_k) / (1 - (1 - phi) * (1 - u)
                                               + (1 - phi) * u * e * (1 - 2 * mu_k))
        assert institution_fixed_point("L6", e, mu, u, audit, k)[0] == pytest.approx(closed)
    # without audit, spec §2's stern-judging closed form and no dependence on u
    assert institution_fixed_point("L6", e, mu, 0.3, 0.0, 1)[0] == pytest.approx(
        (1 - mu) / (1 + e * (1 - 2 * mu)))


CASES = [  # (norm, u, audit v, k)
    ("L6", 1.0, 1.0, 1),
    ("L6", 0.5, 1.0, 1),
    ("L6", 1.0, 0.5, 3),
    ("L1", 1.0, 1.0, 1),
    ("L8", 0.5, 0.5, 1),
    ("disc+image_scoring", 1.0, 1.0, 3),
]


@pytest.mark.parametrize("spec, u, audit, k", [
    pytest.param(*case, marks=pytest.mark.slow) if case[3] > 1 else case for case in CASES])
def test_stationary_good_fraction_under_audit(spec, u, audit, k):
    """simulate (N = 200, 8 independent runs, 150 rounds after a burn-in of 50) against the fixed
    point; tolerance 5 standard errors over the runs + 0.003 (the O(1/N) finite-N bias measured
    for spec §2 is at most 0.056 / N). The audit must move the Good fraction by much more."""
    e, mu, n = 0.05, 0.05, 200
    expected, coop = institution_fixed_point(spec, e, mu, u, audit, k)
    plain, _ = institution_fixed_point(spec, e, mu, u, 0.0, k)
    runs = []
    for seed in range(8):
        result = simulate([spec] * n, 200, benefit=2, cost=1, execution_error=e,
                          assessment_error=mu, update_probability=u, num_envs=1, seed=seed,
                          signal_audit=audit, audit_norm=spec.split("+")[-1],
                          observers_per_interaction=k)
        runs.append((result.good_fraction[50:].mean(), result.cooperation_rate[50:].mean()))
    runs = np.array(runs)
    se = runs.std(axis=0, ddof=1) / math.sqrt(len(runs))
    tolerance = 5 * se + 0.003
    assert abs(runs[:, 0].mean() - expected) < tolerance[0]
    assert abs(runs[:, 1].mean() - coop) < tolerance[1]
    assert abs(expected - plain) > 2 * tolerance[0]  # the test can tell audit from no audit


def test_with_audit_u_changes_the_fixed_point():
    """The same audited L6 population at u = 1 and u = 0.5: two different stationary Good
    fractions (0.866 and 0.826 here), each as predicted; without audit they coincide."""
    e = mu = 0.05
    at_1, at_half = (institution_fixed_point("L6", e, mu, u, 1.0, 1)[0] for u in (1.0, 0.5))
    assert at_1 - at_half > 0.03
    plain = [institution_fixed_point("L6", e, mu, u, 0.0, 1)[0] for u in (1.0, 0.5)]
    assert plain[0] == pytest.approx(plain[1])


@pytest.mark.parametrize("spec, u, audit, k", CASES)
def test_model_fixed_point_is_the_reference(spec, u, audit, k):
    """A large homogeneous population in the model converges to the same fixed point (the model
    is the mean-field limit; its flag and majority terms reduce to Phi and mu_k there)."""
    e, mu, n = 0.05, 0.05, 400
    params = GameParams(n, 2.0, 1.0, execution_error=e, assessment_error=mu,
                        update_probability=u, signal_audit=audit,
                        audit_norm=spec.split("+")[-1], observers_per_interaction=k)
    action, assess = strategy_tables(EnvConfig.from_kwargs(population=[spec] * n).strategies)
    executed, published = observed_tables(action, assess, params)
    p = torch.ones(n, dtype=torch.float64)
    for _ in range(400):
        p, _ = model_round(p, executed, published, params)
    expected, _ = institution_fixed_point(spec, e, mu, u, audit, k)
    assert abs(p.mean().item() - expected) < 2e-3


# ----------------------------------------------------------------------------------------------
# The reciprocity gradient through the institutions
# ----------------------------------------------------------------------------------------------


def _rg(scenario: str, **overrides):
    config = get_scenario(scenario).env_config
    if overrides:
        config = EnvConfig.from_kwargs(**{**get_scenario(scenario).config(), **overrides})
    return config, ReciprocityGradient(RGConfig(horizon=6, gamma=0.9, world_model="oracle"), config,
                                       (1, config.focal_slots.size))


@pytest.mark.parametrize("scenario, overrides", [
    ("many-learners-audit-v0", {}),
    ("many-learners-majority-v0", {}),
    ("many-learners-majority-v0", {"signal_audit": 0.5, "audit_norm": "L3"}),
])
def test_gradient_through_institutions_equals_finite_differences(scenario, overrides):
    """backward() through audits and majorities equals central finite differences (float64),
    for both heads of every learner."""
    config, rg = _rg(scenario, **overrides)
    rng = np.random.default_rng(3)
    n, f = config.num_agents, config.focal_slots.size
    est_a = torch.tensor(rng.uniform(0.05, 0.95, (1, n, 4)))
    est_s = torch.tensor(rng.uniform(0.05, 0.95, (1, n, 8)))
    start = torch.tensor(rng.integers(0, 2, (1, 2, n)), dtype=torch.float64)
    own = [torch.tensor(rng.uniform(0.1, 0.9, (1, f, size)), requires_grad=True)
           for size in (4, 8)]
    rg.objective(start, est_a, est_s, *own).sum().backward()
    eps = 1e-6
    for which, param in enumerate(own):
        for learner, context in itertools.product((0, f - 1), range(param.shape[-1])):
            values = []
            for sign in (1, -1):
                shifted = [x.detach().clone() for x in own]
                shifted[which][0, learner, context] += sign * eps
                values.append(rg.objective(start, est_a, est_s, *shifted).sum().item())
            fd = (values[0] - values[1]) / (2 * eps)
            assert param.grad[0, learner, context].item() == pytest.approx(fd, rel=1e-5,
                                                                           abs=1e-8)


def test_audit_makes_the_gradient_see_a_contradicted_signal():
    """Among honest stern judges (estimators = their observed behaviour), the audit adds to a
    learner's signal gradient a push towards the audit norm's verdict: up where L6 says Good
    (GGC), down where it says Bad (GGD). Without the audit term the difference would be 0."""
    grads = {}
    for audit in (0.0, 1.0):
        config, rg = _rg("many-learners-audit-v0", signal_audit=audit)
        n = config.num_agents
        l6 = get_scenario("L6-v0").env_config.strategies[1]
        est_a = torch.tensor(l6.action * 0.98).expand(1, n, 4)
        est_s = torch.tensor(0.02 + 0.96 * l6.assess).expand(1, n, 8)
        own_a = torch.tensor(l6.action).expand(1, 7, 4).clone().requires_grad_(True)
        own_s = torch.tensor(l6.assess).clamp(0.05, 0.95).expand(1, 7, 8).clone()
        own_s.requires_grad_(True)
        rg.objective(torch.ones(1, 1, n, dtype=torch.float64), est_a, est_s, own_a,
                     own_s).sum().backward()
        grads[audit] = own_s.grad[0, 0]
    difference = grads[1.0] - grads[0.0]
    ggc, ggd = 7, 6    # index 4 x + 2 y + a
    assert difference[ggc] > 1e-4
    assert difference[ggd] < -1e-4


@pytest.mark.parametrize("scenario", ["many-learners-majority-v0", "many-learners-audit-v0"])
def test_rg_updates_on_the_institution_scenarios(scenario):
    """A collect + update cycle: the estimators count k signals per interaction (each to its
    observer) and the reciprocity-gradient steps change every learner's policy."""
    from reciprocity.agents.rollout import collect
    from reciprocity.envs.vector import VectorGame

    config, rg = _rg(scenario)
    before = torch.cat(rg.policy.tables(), dim=-1).clone()
    game = VectorGame(config, 4, seed=0)
    game.reset()
    rollout = collect(game, rg.policy, 10, np.random.default_rng(0), 1)
    metrics = rg.update(rollout)
    k = config.params.observers_per_interaction
    assert rollout.signals.shape == (10 * k, 1, 7, 4)
    assert rg.estimators.signal_trials.sum() == pytest.approx(
        k * rg.estimators.action_trials.sum())
    assert math.isfinite(metrics["rg/model_value"])
    after = torch.cat(rg.policy.tables(), dim=-1)
    assert (after - before).abs().amax(dim=-1).min() > 0
