"""Property-based invariants of the batched game core (spec §1), over random valid configurations.

Every round of :class:`reciprocity.envs.core.BatchedGame` must satisfy the rules of the game
whatever the population and the institution: derangement matching and observer assignment,
conservation of payoffs, one-sided execution errors, binary reputations, the update rule, focal
overrides on the right slots, determinism under a seed, and common random numbers through
:meth:`RoundNoise.tile`. The matching is also checked to be *uniform* over derangements.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import fields, replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reciprocity.envs.core import (
    BatchedGame,
    GameParams,
    RoundNoise,
    random_derangements,
    sample_round_noise,
)
from reciprocity.envs.norms import parse_strategy

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)

NAMED_SPECS = [
    *(f"L{k}" for k in range(1, 9)),
    "allc+L6", "alld+L6", "disc+image_scoring", "disc+shunning", "disc+stern_judging",
    "allc+simple_standing", "alld+L3", "L1+L8",
]
PROB = st.floats(0.0, 1.0, allow_nan=False)
BIT = st.sampled_from([0.0, 1.0])


def strategy_specs(deterministic: bool = False):
    """A named strategy, or a dict of probability tables given as lists (display order)."""
    values = BIT if deterministic else PROB
    tables = st.fixed_dictionaries({
        "action": st.lists(values, min_size=4, max_size=4),
        "assess": st.lists(values, min_size=8, max_size=8),
    })
    return st.one_of(st.sampled_from(NAMED_SPECS), tables)


AUDIT_NORMS = ["L6", "L1", "L8", "image_scoring", "shunning", [1, 0, 1, 1, 0, 1, 0, 0]]


@st.composite
def configurations(draw, *, min_n=2, max_n=30, deterministic=False, e=None, mu=None, u=None,
                   per_game_tables=None, institution=False):
    """A random valid (params, action_table, assess_table, batch, seed) tuple; with
    ``institution`` also a random signal audit and 1 or 3 observers per interaction."""
    n = draw(st.integers(max(min_n, 4) if institution else min_n, max_n))
    batch = draw(st.integers(1, 8))
    specs = draw(st.lists(strategy_specs(deterministic), min_size=n, max_size=n))
    strategies = [parse_strategy(s) for s in specs]
    action = np.stack([s.action for s in strategies])
    assess = np.stack([s.assess for s in strategies])
    if per_game_tables is None:
        per_game_tables = draw(st.booleans())
    if per_game_tables and batch > 1:
        # (B, N, k) tables: each game gets a random relabelling of the slots' strategies.
        table_seed = draw(st.integers(0, 2**32 - 1))
        perms = [np.random.default_rng(table_seed + k).permutation(n) for k in range(batch)]
        action = np.stack([action[p] for p in perms])
        assess = np.stack([assess[p] for p in perms])
    params = GameParams(
        num_agents=n,
        benefit=draw(st.floats(0.01, 50.0, allow_nan=False)),
        cost=draw(st.floats(0.0, 50.0, allow_nan=False)),
        execution_error=draw(st.floats(0.0, 1.0, exclude_max=True)) if e is None else e,
        assessment_error=draw(st.floats(0.0, 0.5)) if mu is None else mu,
        update_probability=draw(st.floats(0.0, 1.0)) if u is None else u,
        initial_reputation=draw(st.one_of(st.sampled_from(["good", "bad"]), PROB)),
    )
    if institution:
        audit = draw(st.one_of(st.just(0.0), st.just(1.0), PROB))
        params = replace(params, signal_audit=audit,
                         audit_norm=draw(st.sampled_from(AUDIT_NORMS)) if audit > 0 else None,
                         observers_per_interaction=draw(st.sampled_from([1, 3])))
    seed = draw(st.integers(0, 2**32 - 1))
    return params, action, assess, batch, seed


def table_lookup(table: np.ndarray, agents: np.ndarray, contexts: np.ndarray) -> np.ndarray:
    """P[game, slot] = table[(game,) agents[game, slot], contexts[game, slot]] (reference)."""
    b, n = agents.shape
    out = np.empty((b, n))
    for g in range(b):
        rows = table if table.ndim == 2 else table[g]
        for j in range(n):
            out[g, j] = rows[agents[g, j], contexts[g, j]]
    return out


def assert_derangement_rows(m: np.ndarray):
    n = m.shape[1]
    for row in m:
        assert sorted(row.tolist()) == list(range(n)), f"not a permutation: {row}"
        assert not np.any(row == np.arange(n)), f"fixed point in {row}"


def records_equal(r1, r2) -> bool:
    return all(np.array_equal(getattr(r1, f.name), getattr(r2, f.name)) for f in fields(r1))


def tile_games(values: np.ndarray, reps: int) -> np.ndarray:
    """Repeat the games (axis 0) of a record or noise field ``reps`` times."""
    return np.tile(values, (reps,) + (1,) * (values.ndim - 1))


# ----------------------------------------------------------------------------------------------
# Per-round invariants
# ----------------------------------------------------------------------------------------------


@SETTINGS
@given(cfg=configurations(), rounds=st.integers(1, 6))
def test_round_invariants(cfg, rounds):
    params, action, assess, batch, seed = cfg
    game = BatchedGame(params, action, assess, batch=batch, seed=seed)
    n = params.num_agents
    b, c, e = params.benefit, params.cost, params.execution_error
    previous_after = game.reputation.copy()
    for _ in range(rounds):
        noise = game.begin_round()
        od = game.observed_donors()
        game.act()
        rec = game.assess()

        # Matching and observation: derangements; nobody gives to / observes itself.
        assert rec.recipients.shape == rec.observers.shape == (batch, n)
        assert_derangement_rows(rec.recipients)
        assert_derangement_rows(rec.observers)
        # Each agent observes exactly one interaction, and observed_donors inverts observers.
        assert_derangement_rows(od)
        assert np.array_equal(np.take_along_axis(rec.observers, od, axis=1),
                              np.broadcast_to(np.arange(n), (batch, n)))
        # Each agent receives exactly once: count donations per recipient.
        for g in range(batch):
            assert np.array_equal(np.bincount(rec.recipients[g], minlength=n), np.ones(n))
            assert np.array_equal(np.bincount(rec.observers[g], minlength=n), np.ones(n))

        # Reputations are binary and the round starts from the previous round's end.
        for arr in (rec.reputation_before, rec.reputation_after, rec.signals, rec.actions,
                    rec.intents):
            assert set(np.unique(arr).tolist()) <= {0, 1}
        assert np.array_equal(rec.reputation_before, previous_after)
        assert np.array_equal(game.reputation, rec.reputation_after)
        previous_after = rec.reputation_after.copy()

        # An executed C implies an intended C; an intended C fails exactly on an execution error.
        assert np.all(rec.actions <= rec.intents)
        failed = (rec.intents == 1) & (rec.actions == 0)
        assert np.array_equal(failed, (rec.intents == 1) & (noise.execution_u < e))

        # Scripted intents follow the action table in context 2 g_d + g_recipient.
        g_rec = np.take_along_axis(rec.reputation_before, rec.recipients, axis=1)
        ctx = 2 * rec.reputation_before + g_rec
        p_c = table_lookup(action, np.broadcast_to(np.arange(n), (batch, n)), ctx)
        assert np.array_equal(rec.intents, (noise.intent_u < p_c).astype(np.int8))

        # Payoffs: Σ = (b - c) · #C, and per agent -c·(own C) + b·(C received).
        num_c = rec.actions.sum(axis=1)
        np.testing.assert_allclose(rec.payoffs.sum(axis=1), (b - c) * num_c,
                                   rtol=1e-9, atol=1e-9)
        giver = np.argsort(rec.recipients, axis=1)  # giver[g, i] donates to i
        expected = -c * rec.actions + b * np.take_along_axis(rec.actions, giver, axis=1)
        np.testing.assert_allclose(rec.payoffs, expected, rtol=1e-12, atol=1e-12)

        # Assessment: observer's table at 4 g_d + 2 g_recipient + a, flipped w.p. mu, then
        # the update w.p. u.
        sctx = 4 * rec.reputation_before + 2 * g_rec + rec.actions
        p_good = table_lookup(assess, rec.observers, sctx)
        emitted = (noise.signal_u < p_good).astype(np.int8)
        published = emitted ^ (noise.assessment_u < params.assessment_error)
        assert np.array_equal(rec.signals, published)
        updated = noise.update_u < params.update_probability
        assert np.array_equal(rec.reputation_after,
                              np.where(updated, rec.signals, rec.reputation_before))
    assert game.round == rounds


@SETTINGS
@given(cfg=configurations(deterministic=True, e=0.0, mu=0.0, u=1.0), rounds=st.integers(1, 5))
def test_noiseless_update_is_observer_assessment(cfg, rounds):
    """e = mu = 0, u = 1, deterministic rules: g_d' = d_{o(d)}(g_d, g_m(d), a_d) exactly."""
    params, action, assess, batch, seed = cfg
    game = BatchedGame(params, action, assess, batch=batch, seed=seed)
    n = params.num_agents
    for _ in range(rounds):
        rec = game.play_round()
        for g in range(batch):
            act = action if action.ndim == 2 else action[g]
            tab = assess if assess.ndim == 2 else assess[g]
            before = rec.reputation_before[g]
            for d in range(n):
                r = rec.recipients[g, d]
                intended = act[d, 2 * before[d] + before[r]]
                assert rec.actions[g, d] == intended  # no execution error
                o = rec.observers[g, d]
                judged = tab[o, 4 * before[d] + 2 * before[r] + rec.actions[g, d]]
                assert rec.signals[g, d] == judged
                assert rec.reputation_after[g, d] == judged


@SETTINGS
@given(cfg=configurations(u=0.0), rounds=st.integers(1, 8))
def test_zero_update_probability_freezes_reputations(cfg, rounds):
    params, action, assess, batch, seed = cfg
    game = BatchedGame(params, action, assess, batch=batch, seed=seed)
    start = game.reputation.copy()
    for _ in range(rounds):
        rec = game.play_round()
        assert np.array_equal(rec.reputation_after, start)
    assert np.array_equal(game.reputation, start)


def test_zero_update_probability_is_not_vacuous():
    """Control for the test above: with u = 1 the same population's reputations do move."""
    params = GameParams(num_agents=6, benefit=2.0, cost=1.0, update_probability=1.0)
    alld_l6 = parse_strategy("alld+L6")
    game = BatchedGame(params, np.tile(alld_l6.action, (6, 1)), np.tile(alld_l6.assess, (6, 1)),
                       seed=0)
    rec = game.play_round()
    # ALLD defecting against Good recipients is Bad under stern judging.
    assert np.array_equal(rec.reputation_after, np.zeros((1, 6)))
    frozen = BatchedGame(GameParams(num_agents=6, benefit=2.0, cost=1.0, update_probability=0.0),
                         np.tile(alld_l6.action, (6, 1)), np.tile(alld_l6.assess, (6, 1)),
                         seed=0)
    assert np.array_equal(frozen.play_round().reputation_after, np.ones((1, 6)))


# ----------------------------------------------------------------------------------------------
# Focal overrides
# ----------------------------------------------------------------------------------------------


@SETTINGS
@given(cfg=configurations(min_n=2, mu=0.0), data=st.data())
def test_focal_overrides_land_on_the_right_slots(cfg, data):
    params, action, assess, batch, seed = cfg
    n = params.num_agents
    focal = np.array(data.draw(st.permutations(range(n)).flatmap(
        lambda p: st.integers(1, n).map(lambda k: sorted(p[:k])))), dtype=np.int64)
    # The focal slots' own table rows are coin flips: an override that does not land (or lands
    # on the wrong slot) shows up as a mismatch in some example.
    action = action.copy()
    assess = assess.copy()
    intents = np.asarray(data.draw(st.lists(st.lists(st.integers(0, 1), min_size=len(focal),
                                                     max_size=len(focal)),
                                            min_size=batch, max_size=batch)), dtype=np.int8)
    signals = np.asarray(data.draw(st.lists(st.lists(st.integers(0, 1), min_size=len(focal),
                                                     max_size=len(focal)),
                                            min_size=batch, max_size=batch)), dtype=np.int8)
    if action.ndim == 2:
        action[focal] = 0.5
        assess[focal] = 0.5
    else:
        action[:, focal] = 0.5
        assess[:, focal] = 0.5
    game = BatchedGame(params, action, assess, batch=batch, seed=seed)
    for _ in range(3):
        noise = game.begin_round()
        od = game.observed_donors()
        game.act(focal, intents)
        rec = game.assess(focal, signals)
        # observed_donors: agent j watches the interaction whose observer is j.
        for g in range(batch):
            for j in range(n):
                assert rec.observers[g, od[g, j]] == j
        # Intents of focal slots are the overrides; executed actions lose C only by error.
        assert np.array_equal(rec.intents[:, focal], intents)
        ok = noise.execution_u[:, focal] >= params.execution_error
        assert np.array_equal(rec.actions[:, focal], intents & ok)
        # Signals about the donors the focal agents observe are the focal signals (mu = 0).
        watched = od[:, focal]
        assert np.array_equal(np.take_along_axis(rec.signals, watched, axis=1), signals)
        # Every other donor is judged by its (scripted) observer's table.
        scripted = np.ones((batch, n), dtype=bool)
        np.put_along_axis(scripted, watched, False, axis=1)
        g_rec = np.take_along_axis(rec.reputation_before, rec.recipients, axis=1)
        sctx = 4 * rec.reputation_before + 2 * g_rec + rec.actions
        p_good = table_lookup(assess, rec.observers, sctx)
        emitted = (noise.signal_u < p_good).astype(np.int8)
        assert np.array_equal(rec.signals[scripted], emitted[scripted])
        # Payoffs still follow from the executed actions.
        num_c = rec.actions.sum(axis=1)
        np.testing.assert_allclose(rec.payoffs.sum(axis=1),
                                   (params.benefit - params.cost) * num_c, atol=1e-9)


def test_focal_override_example():
    """A hand-checked case: 3 ALLC+L6 agents; focal slot 1 defects and calls its donor Bad."""
    params = GameParams(num_agents=3, benefit=4.0, cost=1.0)
    allc_l6 = parse_strategy("allc+L6")
    game = BatchedGame(params, np.tile(allc_l6.action, (3, 1)), np.tile(allc_l6.assess, (3, 1)),
                       seed=3)
    game.begin_round()
    od = game.observed_donors()[0]
    actions, payoffs = game.act(np.array([1]), np.array([[0]]))
    assert actions[0].tolist() == [1, 0, 1]
    rec = game.assess(np.array([1]), np.array([[0]]))
    # Donor 1 defected against a Good recipient: its (scripted) observer says Bad under L6.
    assert rec.signals[0, 1] == 0
    # Slot 1 calls the donor it watches Bad although that donor cooperated with a Good
    # recipient; the remaining donor, watched by a scripted L6 observer, is Good.
    assert od[1] in (0, 2)
    assert rec.signals[0, od[1]] == 0
    assert rec.signals[0, 2 - od[1]] == 1
    assert rec.reputation_after[0].tolist() == rec.signals[0].tolist()
    recipient_of_1 = rec.recipients[0, 1]
    np.testing.assert_allclose(payoffs[0, 1], 4.0)  # receives once, gives nothing
    np.testing.assert_allclose(payoffs[0, recipient_of_1], -1.0)  # gives, receives nothing


# ----------------------------------------------------------------------------------------------
# Seeds and common random numbers
# ----------------------------------------------------------------------------------------------


@SETTINGS
@given(cfg=configurations(institution=True), rounds=st.integers(1, 6))
def test_same_seed_same_trajectory(cfg, rounds):
    params, action, assess, batch, seed = cfg
    g1 = BatchedGame(params, action, assess, batch=batch, seed=seed)
    g2 = BatchedGame(params, action, assess, batch=batch, seed=np.random.default_rng(seed))
    assert np.array_equal(g1.reputation, g2.reputation)
    for _ in range(rounds):
        assert records_equal(g1.play_round(), g2.play_round())
    # reset(seed) replays the same trajectory.
    g1.reset(seed)
    g3 = BatchedGame(params, action, assess, batch=batch, seed=seed)
    for _ in range(rounds):
        assert records_equal(g1.play_round(), g3.play_round())


@settings(max_examples=40, deadline=None, derandomize=True)
@given(cfg=configurations(min_n=4, institution=True), seed2=st.integers(0, 2**32 - 1))
def test_different_seeds_differ(cfg, seed2):
    params, action, assess, batch, seed = cfg
    if seed2 == seed:
        seed2 += 1
    g1 = BatchedGame(params, action, assess, batch=batch, seed=seed)
    g2 = BatchedGame(params, action, assess, batch=batch, seed=seed2)
    recs1 = [g1.play_round() for _ in range(20)]
    recs2 = [g2.play_round() for _ in range(20)]
    assert not all(records_equal(a, b) for a, b in zip(recs1, recs2, strict=True))


@SETTINGS
@given(cfg=configurations(per_game_tables=False, institution=True), reps=st.integers(2, 4),
       rounds=st.integers(1, 6))
def test_tiled_noise_gives_common_random_numbers(cfg, reps, rounds):
    params, action, assess, batch, seed = cfg
    if params.initial_reputation not in ("good", "bad"):
        params = replace(params, initial_reputation="good")
    small = BatchedGame(params, action, assess, batch=batch, seed=seed)
    # Identical tables for every copy, given as a (reps * B, N, k) array.
    big = BatchedGame(params, np.tile(action, (reps * batch, 1, 1)),
                      np.tile(assess, (reps * batch, 1, 1)), batch=reps * batch, seed=seed + 1)
    rng = np.random.default_rng(seed + 2)
    for _ in range(rounds):
        noise = sample_round_noise(rng, batch, params.num_agents, **params.noise_options())
        tiled = noise.tile(reps)
        assert tiled.recipients.shape == (reps * batch, params.num_agents)
        r_small = small.play_round(noise)
        r_big = big.play_round(tiled)
        for f in fields(r_small):
            want = tile_games(getattr(r_small, f.name), reps)
            assert np.array_equal(getattr(r_big, f.name), want), f.name


@settings(max_examples=30, deadline=None, derandomize=True)
@given(cfg=configurations(per_game_tables=False, institution=True), candidates=st.integers(1, 3),
       rounds=st.integers(1, 4), data=st.data())
def test_table_groups_with_tiled_noise_match_separate_games(cfg, candidates, rounds, data):
    """P candidate tables on the same E games (the reference search's layout) behave exactly
    like P separate games fed the same noise."""
    params, action, assess, batch, seed = cfg
    n = params.num_agents
    if params.initial_reputation not in ("good", "bad"):
        params = replace(params, initial_reputation="good")
    tables = [(action, assess)]
    for _ in range(candidates - 1):
        perm = np.asarray(data.draw(st.permutations(range(n))))
        tables.append((action[perm], assess[perm]))
    groups = np.repeat(np.arange(candidates), batch)
    big = BatchedGame(params, np.stack([t[0] for t in tables]), np.stack([t[1] for t in tables]),
                      batch=candidates * batch, seed=seed, table_groups=groups)
    small = [BatchedGame(params, a, s, batch=batch, seed=seed) for a, s in tables]
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        noise = sample_round_noise(rng, batch, n, **params.noise_options())
        r_big = big.play_round(noise.tile(candidates))
        for p, game in enumerate(small):
            r_small = game.play_round(noise)
            for f in fields(r_small):
                assert np.array_equal(getattr(r_big, f.name)[p * batch:(p + 1) * batch],
                                      getattr(r_small, f.name)), (f.name, p)


@pytest.mark.parametrize("observers, audit", [(1, False), (1, True), (3, True)])
def test_tile_layout(observers, audit):
    rng = np.random.default_rng(0)
    noise = sample_round_noise(rng, 3, 5, observers_per_interaction=observers, audit=audit)
    tiled = noise.tile(2)
    assert isinstance(tiled, RoundNoise)
    panel = {"observers", "signal_u", "assessment_u"}
    for f in fields(noise):
        a, t = getattr(noise, f.name), getattr(tiled, f.name)
        if f.name == "audit_u" and not audit:
            assert a is None and t is None
            continue
        assert t.shape == ((6, 3, 5) if observers == 3 and f.name in panel else (6, 5))
        for k in range(2):
            for r in range(3):
                assert np.array_equal(t[k * 3 + r], a[r]), (f.name, k, r)


def test_noise_of_the_wrong_shape_is_rejected():
    params = GameParams(num_agents=4, benefit=2.0, cost=1.0)
    l6 = parse_strategy("L6")
    game = BatchedGame(params, np.tile(l6.action, (4, 1)), np.tile(l6.assess, (4, 1)), batch=2)
    with pytest.raises(ValueError):
        game.begin_round(sample_round_noise(np.random.default_rng(0), 3, 4))


@pytest.mark.parametrize("params, options", [
    (dict(observers_per_interaction=3), dict()),
    (dict(), dict(observers_per_interaction=3)),
    (dict(signal_audit=0.5, audit_norm="L6"), dict()),
])
def test_noise_of_another_institution_is_rejected(params, options):
    """Noise must carry the institution's draws (k observers, audits): CRN callers are told."""
    params = GameParams(num_agents=4, benefit=2.0, cost=1.0, **params)
    l6 = parse_strategy("L6")
    game = BatchedGame(params, np.tile(l6.action, (4, 1)), np.tile(l6.assess, (4, 1)), batch=2)
    with pytest.raises(ValueError, match="noise_options"):
        game.begin_round(sample_round_noise(np.random.default_rng(0), 2, 4, **options))


# ----------------------------------------------------------------------------------------------
# Uniformity of the matching (chi-square with a fixed seed)
# ----------------------------------------------------------------------------------------------


def chi2_sf_even(x: float, dof: int) -> float:
    """Survival function of the chi-square distribution for an even number of dof (exact)."""
    assert dof % 2 == 0 and dof > 0
    half = x / 2.0
    term, total = 1.0, 1.0
    for i in range(1, dof // 2):
        term *= half / i
        total += term
    return math.exp(-half) * total


def derangements(n: int) -> list[tuple[int, ...]]:
    return [p for p in itertools.permutations(range(n)) if all(p[i] != i for i in range(n))]


def chi2_statistic(counts: np.ndarray) -> float:
    expected = counts.sum() / counts.size
    return float(((counts - expected) ** 2 / expected).sum())


def test_chi2_helper_matches_known_quantiles():
    # 99.9% quantiles of chi-square with 2 and 8 dof: 13.816 and 26.124.
    assert abs(chi2_sf_even(13.8155, 2) - 1e-3) < 1e-6
    assert abs(chi2_sf_even(26.1245, 8) - 1e-3) < 1e-5


@pytest.mark.parametrize("n", [3, 4, 5])
def test_derangements_are_uniform(n):
    rng = np.random.default_rng(20261127 + n)
    all_d = derangements(n)
    assert len(all_d) == {3: 2, 4: 9, 5: 44}[n]
    index = {d: k for k, d in enumerate(all_d)}
    draws = random_derangements(rng, 400 * len(all_d), n)
    counts = np.zeros(len(all_d))
    for row in draws:
        counts[index[tuple(row.tolist())]] += 1  # KeyError if not a derangement
    dof = len(all_d) - 1
    stat = chi2_statistic(counts)
    if dof % 2:  # odd dof: chi2_sf(x, k) <= chi2_sf(x, k + 1), so this is conservative
        dof += 1
    assert chi2_sf_even(stat, dof) > 1e-3, (counts, stat)


def test_derangement_chi2_detects_a_biased_sampler():
    """Control: the same statistic rejects 'a random cyclic shift' (3 of the 9 for N = 4)."""
    rng = np.random.default_rng(1)
    all_d = derangements(4)
    index = {d: k for k, d in enumerate(all_d)}
    counts = np.zeros(len(all_d))
    for s in rng.integers(1, 4, size=3600):
        counts[index[tuple(((np.arange(4) + s) % 4).tolist())]] += 1
    assert chi2_sf_even(chi2_statistic(counts), 8) < 1e-3


def test_recipients_and_observers_are_independent_and_uniform():
    """Joint law of (m, o) in a round, N = 4: uniform over the 9 x 9 pairs."""
    rng = np.random.default_rng(7)
    all_d = derangements(4)
    index = {d: k for k, d in enumerate(all_d)}
    noise = sample_round_noise(rng, 81 * 150, 4)
    counts = np.zeros((9, 9))
    for m, o in zip(noise.recipients, noise.observers, strict=True):
        counts[index[tuple(m.tolist())], index[tuple(o.tolist())]] += 1
    assert chi2_sf_even(chi2_statistic(counts.reshape(-1)), 80) > 1e-3


def test_large_n_marginals_are_uniform():
    """N = 30: the recipient of donor 0 is uniform over the 29 others."""
    rng = np.random.default_rng(11)
    draws = random_derangements(rng, 29 * 200, 30)
    assert_derangement_rows(draws)
    counts = np.bincount(draws[:, 0], minlength=30)
    assert counts[0] == 0
    assert chi2_sf_even(chi2_statistic(counts[1:].astype(float)), 28) > 1e-3


def test_two_agents_swap():
    rng = np.random.default_rng(0)
    assert np.array_equal(random_derangements(rng, 50, 2), np.tile([1, 0], (50, 1)))
    params = GameParams(num_agents=2, benefit=3.0, cost=1.0)
    allc = parse_strategy("allc+L6")
    game = BatchedGame(params, np.tile(allc.action, (2, 1)), np.tile(allc.assess, (2, 1)),
                       batch=4, seed=0)
    for _ in range(5):
        rec = game.play_round()
        assert np.array_equal(rec.recipients, np.tile([1, 0], (4, 1)))
        assert np.array_equal(rec.observers, np.tile([1, 0], (4, 1)))
        # Mutual cooperation: each gets b - c.
        np.testing.assert_allclose(rec.payoffs, np.full((4, 2), 2.0))


def test_per_game_tables_must_match_the_batch_without_groups():
    from reciprocity.envs.core import BatchedGame, GameParams

    params = GameParams(num_agents=3, benefit=2.0, cost=1.0)
    with pytest.raises(ValueError, match="action_table"):
        BatchedGame(params, np.zeros((5, 3, 4)), np.zeros((3, 8)), batch=4)
    game = BatchedGame(params, np.zeros((5, 3, 4)), np.zeros((3, 8)), batch=4,
                       table_groups=np.array([0, 4, 4, 1]))
    assert game.play_round().actions.shape == (4, 3)
