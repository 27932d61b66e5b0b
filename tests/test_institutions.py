"""Institutions of spec §7 in the core and its shells: signal audit, k observers with majority.

The rules are checked round by round against a plain-Python reference of spec §7 over random
institutions (hypothesis), the observer panels against their exact law (chi-square over all
valid panels), bad configuration against named errors, and the PettingZoo shell, the learners'
vector game and the estimators against the core.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_invariants import (
    SETTINGS,
    assert_derangement_rows,
    chi2_sf_even,
    chi2_statistic,
    configurations,
    derangements,
    table_lookup,
)

from reciprocity.agents.estimators import PublicEstimators
from reciprocity.envs import (
    BatchedGame,
    EnvConfig,
    GameParams,
    Scenario,
    get_scenario,
    make,
    make_parallel,
    parse_strategy,
    register,
    sample_round_noise,
    simulate,
)
from reciprocity.envs.config import strategy_tables
from reciprocity.envs.core import random_observer_panels
from reciprocity.envs.norms import ASSESSMENT_RULES
from reciprocity.envs.vector import VectorGame
from reciprocity.evaluation import reference

L6 = parse_strategy("L6")


def panel(values: np.ndarray, k: int) -> np.ndarray:
    """(B, N) -> (B, 1, N) when k = 1, so that every round reads as k panels."""
    return values[:, None] if k == 1 else values


# ----------------------------------------------------------------------------------------------
# The rules, round by round
# ----------------------------------------------------------------------------------------------


@SETTINGS
@given(cfg=configurations(institution=True), rounds=st.integers(1, 4))
def test_round_follows_the_institution(cfg, rounds):
    """Every published signal, verdict, audit, flag and update as spec §7 says (plain loops)."""
    params, action, assess, batch, seed = cfg
    game = BatchedGame(params, action, assess, batch=batch, seed=seed)
    n, k, v = params.num_agents, params.observers_per_interaction, params.signal_audit
    norm = params.audit_table
    for _ in range(rounds):
        noise = game.begin_round()
        game.act()
        rec = game.assess()
        observers, signals, flags = (panel(x, k) for x in (rec.observers, rec.signals,
                                                           rec.flags))
        signal_u, assessment_u = panel(noise.signal_u, k), panel(noise.assessment_u, k)
        assert observers.shape == signals.shape == flags.shape == (batch, k, n)
        g_rec = np.take_along_axis(rec.reputation_before, rec.recipients, axis=1)
        ctx = 4 * rec.reputation_before + 2 * g_rec + rec.actions
        for g in range(batch):
            for j in range(k):
                assert_derangement_rows(observers[g, j][None])
            for d in range(n):
                seats = observers[g, :, d]
                assert len(set(seats.tolist())) == k and d not in seats  # k distinct others
        for j in range(k):
            p_good = table_lookup(assess, observers[:, j], ctx)
            emitted = (signal_u[:, j] < p_good).astype(np.int8)
            assert np.array_equal(signals[:, j],
                                  emitted ^ (assessment_u[:, j] < params.assessment_error))
        assert np.array_equal(rec.verdicts, (2 * signals.sum(axis=1) > k).astype(np.int8))
        audited = (noise.audit_u < v) if v > 0 else np.zeros((batch, n), bool)
        assert np.array_equal(rec.audits, audited.astype(np.int8))
        for g in range(batch):
            flagged = set()
            for d in range(n):
                for j in range(k):
                    contradicted = signals[g, j, d] != norm[ctx[g, d]]
                    assert flags[g, j, d] == int(audited[g, d] and contradicted)
                    if flags[g, j, d]:
                        flagged.add(int(observers[g, j, d]))
            for i in range(n):
                updated = noise.update_u[g, i] < params.update_probability
                expected = rec.verdicts[g, i] if updated else rec.reputation_before[g, i]
                assert rec.reputation_after[g, i] == (0 if i in flagged else expected)


def test_audit_flags_the_contradicting_observer_by_hand():
    """3 ALLC agents assessing by stern judging, every interaction audited, no errors: the
    observer that calls a cooperation with a Good recipient Bad is flagged and set Bad; the donor
    it judged takes that (Bad) verdict; the agent judged by an honest observer stays Good."""
    params = GameParams(num_agents=3, benefit=2.0, cost=1.0, signal_audit=1.0, audit_norm="L6")
    allc = parse_strategy("allc+L6")
    game = BatchedGame(params, np.tile(allc.action, (3, 1)), np.tile(allc.assess, (3, 1)),
                       seed=0)
    game.begin_round()
    game.act()
    liar = 1
    watched = int(game.observed_donors()[0, liar])
    rec = game.assess(np.array([liar]), np.array([[0]]))   # slot 1 calls its donor Bad
    assert rec.audits[0].tolist() == [1, 1, 1]
    assert rec.signals[0, watched] == 0 and rec.flags[0, watched] == 1
    assert rec.flags[0].sum() == 1
    after = rec.reputation_after[0]
    assert after[liar] == 0      # flagged (although the verdict about its own donation is Good)
    assert rec.verdicts[0, liar] == 1
    assert after[watched] == 0   # the published verdict about it was Bad
    (other,) = {0, 1, 2} - {liar, watched}
    assert after[other] == 1


def test_majority_outvotes_one_signal_by_hand():
    """k = 3 in a population of 4 ALLC + L6: one focal observer calling its donor Bad in every
    phase is outvoted by the two honest observers of each interaction."""
    params = GameParams(num_agents=4, benefit=2.0, cost=1.0, observers_per_interaction=3)
    allc = parse_strategy("allc+L6")
    game = BatchedGame(params, np.tile(allc.action, (4, 1)), np.tile(allc.assess, (4, 1)),
                       seed=3)
    game.begin_round()
    game.act()
    rec = game.assess(np.array([0]), np.zeros((1, 3, 1), dtype=np.int8))
    for j in range(3):
        d = int(game.observed_donors(j)[0, 0])
        assert rec.signals[0, j, d] == 0
    assert rec.verdicts[0].tolist() == [1, 1, 1, 1]
    assert rec.reputation_after[0].tolist() == [1, 1, 1, 1]


@settings(max_examples=25, deadline=None, derandomize=True)
@given(cfg=configurations(mu=0.0, institution=True), data=st.data())
def test_focal_signals_land_on_the_observed_interaction_of_each_phase(cfg, data):
    params, action, assess, batch, seed = cfg
    n, k = params.num_agents, params.observers_per_interaction
    focal = np.array(sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1))))
    signals = np.asarray(data.draw(st.lists(st.integers(0, 1), min_size=batch * k * focal.size,
                                            max_size=batch * k * focal.size)), dtype=np.int8)
    signals = signals.reshape(batch, k, focal.size)
    game = BatchedGame(params, action, assess, batch=batch, seed=seed)
    game.begin_round()
    game.act()
    observed = [game.observed_donors(j) for j in range(k)]
    assert np.array_equal(np.stack(observed, axis=1) if k > 1 else observed[0],
                          game.observed_donors())
    rec = game.assess(focal, signals if k > 1 else signals[:, 0])
    published = panel(rec.signals, k)
    for j in range(k):
        # agent i watches, in phase j, the interaction whose j-th observer is i
        assert np.array_equal(np.take_along_axis(panel(rec.observers, k)[:, j], observed[j],
                                                 axis=1), np.tile(np.arange(n), (batch, 1)))
        seen = np.take_along_axis(published[:, j], observed[j][:, focal], axis=1)
        assert np.array_equal(seen, signals[:, j])


# ----------------------------------------------------------------------------------------------
# Observer panels: their exact law, and the draws of the defaults
# ----------------------------------------------------------------------------------------------


def test_observer_panels_are_uniform_over_valid_panels():
    """N = 4, k = 3: the panel is uniform over the 24 triples of derangements whose observers of
    every interaction are distinct (k independent derangements conditioned on distinctness)."""
    valid = [p for p in itertools.product(derangements(4), repeat=3)
             if all(len({p[0][d], p[1][d], p[2][d]}) == 3 for d in range(4))]
    assert len(valid) == 24
    index = {p: i for i, p in enumerate(valid)}
    draws = random_observer_panels(np.random.default_rng(5), 24 * 300, 4, 3)
    counts = np.zeros(len(valid))
    for row in draws:
        counts[index[tuple(tuple(r.tolist()) for r in row)]] += 1  # KeyError if invalid
    assert chi2_sf_even(chi2_statistic(counts), 24) > 1e-3  # 23 dof, conservative


def test_five_observers_are_distinct():
    panels = random_observer_panels(np.random.default_rng(0), 2, 20, 5)
    for p in panels:
        assert_derangement_rows(p)
        assert all(len(set(p[:, d].tolist())) == 5 for d in range(20))


def test_remembered_observer_panels_are_the_drawn_ones_bit_for_bit(monkeypatch):
    """The panel memory (evaluations replay the same generator states): a state seen before
    gives the panels drawing gives and leaves the generator where drawing would, bit for bit;
    the memory stays within its byte budget."""
    from reciprocity.envs import core

    draws = []
    real = core._draw_observer_panels
    monkeypatch.setattr(core, "_draw_observer_panels",
                        lambda *a: draws.append(1) or real(*a))
    monkeypatch.setattr(core, "_PANEL_MEMO", type(core._PANEL_MEMO)())
    monkeypatch.setattr(core, "_panel_memo_size", 0)

    def play(budget):
        monkeypatch.setattr(core, "_PANEL_MEMO_BYTES", budget)
        rng = np.random.default_rng(3)
        panels = [random_observer_panels(rng, 50, 7, 3) for _ in range(4)]
        return panels, rng.random(5)

    fresh, after_fresh = play(0)           # nothing kept
    assert len(draws) == 4 and not core._PANEL_MEMO
    first, after_first = play(64 << 20)    # drawn and kept
    again, after_again = play(64 << 20)    # remembered
    assert len(draws) == 8 and len(core._PANEL_MEMO) == 4
    for a, b, c in zip(fresh, first, again, strict=True):
        assert a.dtype == c.dtype == np.int64
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(after_fresh, after_first)
    np.testing.assert_array_equal(after_fresh, after_again)
    small = 2 * 50 * 3 * 7                 # bytes of two panels (int8)
    monkeypatch.setattr(core, "_PANEL_MEMO_BYTES", small)
    rng = np.random.default_rng(4)
    for _ in range(5):
        random_observer_panels(rng, 50, 7, 3)
        assert core._panel_memo_size <= small and len(core._PANEL_MEMO) <= 2


def test_audit_draws_come_after_the_plain_games_draws():
    """With one observer an audited game draws the plain game's numbers, then its audits: the
    same seed gives the same matching and errors (common random numbers with the plain game)."""
    plain = sample_round_noise(np.random.default_rng(9), 5, 7)
    audited = sample_round_noise(np.random.default_rng(9), 5, 7, audit=True)
    assert plain.audit_u is None and audited.audit_u.shape == (5, 7)
    for name in ("recipients", "observers", "intent_u", "execution_u", "signal_u",
                 "assessment_u", "update_u"):
        assert np.array_equal(getattr(plain, name), getattr(audited, name)), name


# ----------------------------------------------------------------------------------------------
# Bad configuration: named errors
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, field", [
    ({"signal_audit": -0.1}, "signal_audit"),
    ({"signal_audit": 1.5}, "signal_audit"),
    ({"signal_audit": "often"}, "signal_audit"),
    ({"signal_audit": 0.3, "audit_norm": "L9"}, "audit_norm"),
    ({"signal_audit": 0.3, "audit_norm": [1, 0, 0.5, 1, 1, 0, 0, 1]}, "audit_norm"),
    ({"signal_audit": 0.3, "audit_norm": [1, 0, 1]}, "audit_norm"),
    ({"observers_per_interaction": 2}, "observers_per_interaction"),
    ({"observers_per_interaction": 0}, "observers_per_interaction"),
    ({"observers_per_interaction": 2.5}, "observers_per_interaction"),
    ({"observers_per_interaction": True}, "observers_per_interaction"),
    ({"observers_per_interaction": "3"}, "observers_per_interaction"),
    ({"observers_per_interaction": 11}, "observers_per_interaction"),   # k >= N = 10
    ({"observers_per_interaction": 7}, "observers_per_interaction"),    # not supported
])
def test_bad_institutions_fail_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        make("many-learners-v0", **overrides)
    with pytest.raises(ValueError, match=field):
        make_parallel("L6-v0", **overrides)


@pytest.mark.parametrize("population, message", [
    (["focal"] * 4, "no background agents"),
    (["focal", "L6", "disc+image_scoring"], "different rules"),
    (["focal", {"action": "disc", "assess": [1, 0, 0, 1, 1, 0, 0.5, 1]}], "stochastic"),
])
def test_an_audit_needs_a_norm_to_audit_by(population, message):
    with pytest.raises(ValueError, match=f"audit_norm: .*{message}"):
        EnvConfig.from_kwargs(population=population, signal_audit=0.3)
    # naming the norm resolves it
    config = EnvConfig.from_kwargs(population=population, signal_audit=0.3, audit_norm="L6")
    assert np.array_equal(config.params.audit_table, ASSESSMENT_RULES["L6"])
    with pytest.raises(ValueError, match=r"audit_norm: signal_audit = 0\.3 needs a norm"):
        GameParams(num_agents=3, benefit=1.0, cost=0.0, signal_audit=0.3)


def test_default_audit_norm_is_the_background_rule():
    config = EnvConfig.from_kwargs(population=["focal", "L1", "alld+L1"], signal_audit=0.5)
    assert np.array_equal(config.params.audit_table, ASSESSMENT_RULES["L1"])
    # a name, a display-order list or tuple (GGC ... BBD, as for strategies) and the default all
    # give the same verdicts, stored in display order, and re-validating keeps them
    l1 = [1, 0, 1, 1, 1, 0, 1, 0]
    for norm in ("L1", l1, tuple(l1)):
        params = GameParams(3, 1.0, 0.0, signal_audit=0.5, audit_norm=norm)
        assert params.audit_norm == tuple(l1) == config.params.audit_norm
        assert replace(params, benefit=2.0).audit_norm == tuple(l1)


def test_bad_institution_in_a_scenario_file_names_file_and_field(tmp_path):
    path = tmp_path / "bad-v0.json"
    path.write_text('{"id": "bad-v0", "population": ["focal", "L6", "L6", "L6"], '
                    '"benefit": 2, "cost": 1, "observers_per_interaction": 4}')
    with pytest.raises(ValueError, match=r"bad-v0\.json.*observers_per_interaction"):
        get_scenario(str(path))


# ----------------------------------------------------------------------------------------------
# The catalogue scenarios
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sid, n, focal, audit, k", [
    ("many-learners-audit-v0", 10, 7, 0.3, 1),
    ("many-learners-majority-v0", 10, 7, 0.0, 3),
    ("many-learners-audit-large-v0", 50, 35, 0.3, 1),
])
def test_institution_scenarios(sid, n, focal, audit, k):
    scenario = get_scenario(sid)
    params = scenario.env_config.params
    assert (params.num_agents, scenario.num_focal) == (n, focal)
    assert (params.signal_audit, params.observers_per_interaction) == (audit, k)
    assert (params.benefit, params.cost) == (3, 0.75)
    if audit:
        assert np.array_equal(params.audit_table, ASSESSMENT_RULES["L6"])
    assert Scenario.from_dict(scenario.to_dict()).env_config.params == params
    assert scenario.description


@pytest.mark.parametrize("institution", [dict(signal_audit=1.0, assessment_error=0.1),
                                         dict(observers_per_interaction=3, assessment_error=0.2)],
                         ids=["audit", "majority"])
def test_ideal_discriminator_reference_is_played_under_the_institution(institution):
    """The multi-learner reference (every learner an ideal discriminator) equals an independent
    play of that population on the core under the same institution (5 combined standard errors),
    and differs from the plain game's by far more: the audit costs the discriminators flags
    (mu = 0.1), the majority of three corrects assessment errors (mu = 0.2)."""
    scenario = register({**get_scenario("many-learners-v0").to_dict(), **institution,
                         "id": "institution-reference-test-v0"}, overwrite=True)
    ref = reference(scenario, confirm_envs=64, rounds=60)
    assert ref["kind"] == "ideal_discriminator" and ref["norm"] == "L6"
    estimates = {}
    for name, overrides in (("institution", institution),
                            ("plain", {"assessment_error": institution["assessment_error"]})):
        config = EnvConfig.from_kwargs(population=["disc+L6"] * 7 + ["alld+L6"] * 3, benefit=3,
                                       cost=0.75, **overrides)
        game = BatchedGame(config.params, *strategy_tables(config.strategies), batch=256,
                           seed=5)
        per_game = sum(game.play_round().payoffs[:, :7].mean(axis=1) for _ in range(60)) / 60
        estimates[name] = (per_game.mean(), per_game.std(ddof=1) / 16)
    mean, se = estimates["institution"]
    combined = np.hypot(ref["reference_ci95"] / 1.96, se)
    assert abs(ref["reference_payoff"] - mean) < 5 * combined
    assert abs(ref["reference_payoff"] - estimates["plain"][0]) > 20 * combined


# ----------------------------------------------------------------------------------------------
# Shells: PettingZoo (1 + k steps per round), the vector game, simulate, the estimators
# ----------------------------------------------------------------------------------------------


def _discriminator(obs):
    phase, _, action, recipient_rep, _ = obs[:5]
    return int(recipient_rep) if phase == 0 else int(action == recipient_rep)


@pytest.mark.parametrize("sid", ["many-learners-majority-v0", "many-learners-audit-v0"])
def test_parallel_env_plays_the_core(sid):
    """The PettingZoo env and the core, same seed and same focal decisions: same rounds. A round
    is act + k assess steps; rewards come on the act step; every phase shows one interaction."""
    env = make_parallel(sid, max_rounds=6)
    config = env.config
    k = config.params.observers_per_interaction
    focal = config.focal_slots
    action, assess = strategy_tables(config.strategies)
    game = BatchedGame(config.params, action, assess, batch=1, seed=11)
    observations, infos = env.reset(seed=11)
    rng = np.random.default_rng(0)
    for _ in range(6):
        game.begin_round()
        assert all(info["phase"] == 0 for info in infos.values())
        intents = np.array([[_discriminator(observations[a]) for a in env.agents]], np.int8)
        observations, rewards, *_, infos = env.step(dict(zip(env.agents, intents[0].tolist(),
                                                                      strict=True)))
        _, payoffs = game.act(focal, intents)
        assert [rewards[a] for a in env.agents] == payoffs[0, focal].tolist()
        signals = np.empty((1, k, focal.size), np.int8)
        for j in range(k):
            assert all(info["phase"] == j + 1 for info in infos.values())
            donors = game.observed_donors(j)[0, focal]
            ctx = game.signal_contexts()[0, donors]
            obs = np.stack([observations[a] for a in env.agents])
            assert np.all(obs[:, 0] == 1)
            assert np.array_equal(obs[:, 1:4], np.stack([ctx >> 2, ctx & 1, (ctx >> 1) & 1], 1))
            signals[0, j] = rng.integers(0, 2, focal.size)
            decisions = dict(zip(env.agents, signals[0, j].tolist(), strict=True))
            observations, rewards, *_, infos = env.step(decisions)
            assert set(rewards.values()) == {0.0}
        record = game.assess(focal, signals if k > 1 else signals[:, 0]).public(0)
        seen = env.public_record()
        assert seen.keys() == record.keys()
        info = infos[env.possible_agents[0]]
        for key in record:
            assert np.array_equal(seen[key], record[key]), key
            assert np.array_equal(info["record_" + key], record[key]), key
    assert not env.agents


def test_aec_round_has_one_plus_k_cycles():
    env = make("many-learners-majority-v0", max_rounds=2)
    env.reset(seed=0)
    steps = 0
    for _agent in env.agent_iter():
        obs, _, termination, truncation, _ = env.last()
        env.step(None if termination or truncation else _discriminator(obs))
        steps += 1
    assert steps == 7 * (2 * (1 + 3)) + 7  # 2 rounds of 4 cycles, then the final last() calls


def test_vector_game_needs_one_signal_per_assess_phase():
    config = get_scenario("many-learners-majority-v0").env_config
    game = VectorGame(config, 4, seed=0)
    game.reset()
    game.act(np.ones((4, 7), np.int8))
    contexts = np.stack([game.signal_contexts(j) for j in range(3)], axis=1)
    assert contexts.shape == (4, 3, 7)
    with pytest.raises(ValueError, match=r"signals must have shape \(4, 3, 7\)"):
        game.assess(np.ones((4, 7), np.int8))
    bad = np.ones((4, 3, 7), np.int8)
    bad[1, 2, 2] = 2
    with pytest.raises(ValueError, match="agent_2 in game 1"):
        game.assess(bad)
    record = game.assess(np.ones((4, 3, 7), np.int8))
    assert record.signals.shape == (4, 3, 10)


def test_simulate_takes_the_institution():
    result = simulate(["L6"] * 12, 30, benefit=2, cost=1, execution_error=0.1,
                      assessment_error=0.1, num_envs=4, seed=0, signal_audit=1.0,
                      observers_per_interaction=3)
    plain = simulate(["L6"] * 12, 30, benefit=2, cost=1, execution_error=0.1,
                     assessment_error=0.1, num_envs=4, seed=0)
    # honest observers are still flagged through assessment errors: fewer Good under audit
    assert result.good_fraction.mean() < plain.good_fraction.mean()


def test_estimators_attribute_each_signal_of_a_panel_to_its_observer():
    """k = 3, scripted agents with different assessment rules: every observer's published-signal
    estimate matches its own rule (mu + (1 - 2 mu) d), and each round adds k signals per
    interaction."""
    mu = 0.05
    population = ["L6"] * 3 + ["disc+image_scoring"] * 3 + ["alld+shunning"] * 2 + ["L3"] * 2
    config = EnvConfig.from_kwargs(population=population, benefit=2.0, cost=1.0,
                                   execution_error=0.05, assessment_error=mu,
                                   initial_reputation=0.5, observers_per_interaction=3)
    action, assess = strategy_tables(config.strategies)
    game = BatchedGame(config.params, action, assess, batch=32, seed=4)
    records = [game.play_round() for _ in range(120)]
    est = PublicEstimators(num_seeds=1, num_agents=len(population), prior=2.0)
    est.update({k: np.stack([getattr(r, k) for r in records]) for k in records[0].PUBLIC_FIELDS})
    assert est.signal_trials.sum() == 3 * est.action_trials.sum() == 3 * 120 * 32 * 10
    truth = mu + (1 - 2 * mu) * assess
    checked = 0
    for j in range(len(population)):
        for c in range(8):
            n = est.signal_trials[0, j, c]
            if n < 100:
                continue
            t = truth[j, c]
            tol = 4 * np.sqrt(max(t * (1 - t), 0.01) / n) + 2.0 / n
            assert abs(est.signal_probs()[0, j, c] - t) < tol, (j, c)
            checked += 1
    assert checked >= 20
