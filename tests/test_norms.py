"""Norm and action-rule tables against the published tables of SPEC §2.

The expected tables below are typed out independently from the spec (they are NOT imported from
the library). They are checked twice:

* through the public parsing API: ``parse_strategy(spec).action[2 x + y]`` and
  ``parse_strategy(spec).assess[4 x + 2 y + a]`` (index order, see ``reciprocity.envs.norms``);
* behaviourally: a :class:`BatchedGame` without errors is put into hand-chosen reputation states
  and the executed actions and published signals of scripted agents are compared, interaction by
  interaction, with the table entry of the context each interaction was played in.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import spec_tables

from reciprocity.envs import (
    ACTION_CONTEXTS,
    SIGNAL_CONTEXTS,
    BatchedGame,
    GameParams,
    indirect_reciprocity_v0,
    parse_strategy,
    simulate,
)

G, B = 1, 0  # reputations / signals
C, D = 1, 0  # actions

# ---------------------------------------------------------------------------------------------
# The published tables (SPEC §2), typed out by hand.
# ---------------------------------------------------------------------------------------------

# Second-order rules: columns "C vs G", "D vs G", "C vs B", "D vs B" (donor reputation ignored).
SECOND_ORDER = {name: tuple(cols) for name, cols in spec_tables.SECOND_ORDER.items()}
LEADING_EIGHT_COLUMNS = spec_tables.COLUMNS
LEADING_EIGHT = {name: (" ".join(cols), pbb)
                 for name, (cols, pbb) in spec_tables.LEADING_EIGHT.items()}


def _letter(ch: str) -> int:
    return {"G": 1, "B": 0, "C": 1, "D": 0}[ch]


def expected_assessment(norm: str) -> dict[tuple[int, int, int], int]:
    """d(x, y, a) for every (donor rep x, recipient rep y, executed action a)."""
    table = {}
    if norm in SECOND_ORDER:
        cvg, dvg, cvb, dvb = (_letter(ch) for ch in SECOND_ORDER[norm])
        for x in (G, B):
            table[(x, G, C)] = cvg
            table[(x, G, D)] = dvg
            table[(x, B, C)] = cvb
            table[(x, B, D)] = dvb
        return table
    letters = LEADING_EIGHT[norm][0].split()
    for column, value in zip(LEADING_EIGHT_COLUMNS, letters, strict=True):
        x, y, a = (_letter(ch) for ch in column)
        table[(x, y, a)] = _letter(value)
    return table


def expected_action(rule: str) -> dict[tuple[int, int], int]:
    """p(x, y) for every (own rep x, recipient rep y)."""
    if rule == "allc":
        return {(x, y): 1 for x in (G, B) for y in (G, B)}
    if rule == "alld":
        return {(x, y): 0 for x in (G, B) for y in (G, B)}
    if rule == "disc":
        return {(x, y): y for x in (G, B) for y in (G, B)}  # p = y
    pbb = _letter(LEADING_EIGHT[rule][1])
    # For all eight: p(G,G) = C, p(G,B) = D, p(B,G) = C.
    return {(G, G): C, (G, B): D, (B, G): C, (B, B): pbb}


ALL_CONTEXTS_XY = list(itertools.product((G, B), (G, B)))
ALL_CONTEXTS_XYA = list(itertools.product((G, B), (G, B), (C, D)))


# ---------------------------------------------------------------------------------------------
# Tables through the parsing API.
# ---------------------------------------------------------------------------------------------


def test_display_order_constants():
    assert tuple(ACTION_CONTEXTS) == ("GG", "GB", "BG", "BB")
    assert tuple(SIGNAL_CONTEXTS) == ("GGC", "GGD", "GBC", "GBD", "BGC", "BGD", "BBC", "BBD")


@pytest.mark.parametrize("rule", sorted(SECOND_ORDER))
def test_second_order_assessment_table(rule):
    strategy = parse_strategy(f"disc+{rule}")
    assert strategy.assess.shape == (8,)
    for (x, y, a), value in expected_assessment(rule).items():
        assert strategy.assess[4 * x + 2 * y + a] == value, (rule, x, y, a)


@pytest.mark.parametrize("norm", sorted(LEADING_EIGHT))
def test_leading_eight_assessment_table(norm):
    strategy = parse_strategy(norm)
    assert strategy.assess.shape == (8,)
    expected = expected_assessment(norm)
    for x, y, a in ALL_CONTEXTS_XYA:
        assert strategy.assess[4 * x + 2 * y + a] == expected[(x, y, a)], (norm, x, y, a)


@pytest.mark.parametrize("norm", sorted(LEADING_EIGHT))
def test_leading_eight_action_rule(norm):
    strategy = parse_strategy(norm)
    assert strategy.action.shape == (4,)
    for (x, y), value in expected_action(norm).items():
        assert strategy.action[2 * x + y] == value, (norm, x, y)


@pytest.mark.parametrize("rule", ["allc", "alld", "disc"])
def test_basic_action_rules(rule):
    strategy = parse_strategy(f"{rule}+L6")
    for (x, y), value in expected_action(rule).items():
        assert strategy.action[2 * x + y] == value, (rule, x, y)
    # the assessment half is L6's, whatever the action rule
    for (x, y, a), value in expected_assessment("L6").items():
        assert strategy.assess[4 * x + 2 * y + a] == value


def test_spec_examples_from_section_2():
    """SJ = L6 shares its assessment with second-order stern judging; L3 with simple standing."""
    assert np.array_equal(parse_strategy("L6").assess, parse_strategy("disc+stern_judging").assess)
    assert np.array_equal(parse_strategy("L3").assess,
                          parse_strategy("disc+simple_standing").assess)
    # and the leading-eight action rule is DISC except p(B, B) for L1, L2
    for norm in LEADING_EIGHT:
        same = np.array_equal(parse_strategy(norm).action, parse_strategy("disc+L6").action)
        assert same == (norm not in ("L1", "L2")), norm


# ---------------------------------------------------------------------------------------------
# Spec parsing.
# ---------------------------------------------------------------------------------------------


def _tables(strategy):
    return np.asarray(strategy.action).tolist(), np.asarray(strategy.assess).tolist()


def _expected_tables(action_rule: str, assess_rule: str):
    act = expected_action(action_rule)
    ass = expected_assessment(assess_rule)
    return ([act[(ctx >> 1) & 1, ctx & 1] for ctx in range(4)],
            [ass[(ctx >> 2) & 1, (ctx >> 1) & 1, ctx & 1] for ctx in range(8)])


@pytest.mark.parametrize(
    ("spec", "action_rule", "assess_rule"),
    [
        ("L6", "L6", "L6"),
        ("l6", "L6", "L6"),
        (" L6 ", "L6", "L6"),
        ("L1", "L1", "L1"),
        ("disc+image_scoring", "disc", "image_scoring"),
        ("DISC+Image-Scoring", "disc", "image_scoring"),
        ("alld+L6", "alld", "L6"),
        ("alld+l6", "alld", "L6"),
        ("allc+stern-judging", "allc", "stern_judging"),
        ("disc+stern judging", "disc", "stern_judging"),
        ("disc+Stern Judging", "disc", "stern_judging"),
        ("disc+SIMPLE-STANDING", "disc", "simple_standing"),
        ("L2+L7", "L2", "L7"),
        ({"action": "alld", "assess": "L6"}, "alld", "L6"),
        ({"action": "L1", "assess": "shunning"}, "L1", "shunning"),
        ({"action": "disc", "assess": "Stern-Judging"}, "disc", "stern_judging"),
    ],
)
def test_parse_named_specs(spec, action_rule, assess_rule):
    assert _tables(parse_strategy(spec)) == _expected_tables(action_rule, assess_rule)


def test_parse_lists_in_display_order():
    # Display order: actions GG GB BG BB, signals GGC GGD GBC GBD BGC BGD BBC BBD.
    # L6 typed in display order must give L6.
    l6 = parse_strategy({"action": [1, 0, 1, 0], "assess": [1, 0, 0, 1, 1, 0, 0, 1]})
    assert _tables(l6) == _expected_tables("L6", "L6")
    # A one-hot list pins down the mapping of every position to its context.
    for k, name in enumerate(("GG", "GB", "BG", "BB")):
        onehot = [0.0] * 4
        onehot[k] = 1.0
        s = parse_strategy({"action": onehot, "assess": "L6"})
        x, y = _letter(name[0]), _letter(name[1])
        assert s.action[2 * x + y] == 1.0 and s.action.sum() == 1.0, name
    for k, name in enumerate(LEADING_EIGHT_COLUMNS):
        onehot = [0.0] * 8
        onehot[k] = 1.0
        s = parse_strategy({"action": "disc", "assess": onehot})
        x, y, a = (_letter(ch) for ch in name)
        assert s.assess[4 * x + 2 * y + a] == 1.0 and s.assess.sum() == 1.0, name
    # probabilities (not only 0/1) are allowed, numpy arrays too
    s = parse_strategy({"action": np.array([0.9, 0.1, 0.8, 0.2]),
                        "assess": [0.5, 0.25, 0, 1, 1, 0, 0.75, 0.125]})
    assert s.action[2 * G + G] == 0.9 and s.action[2 * B + B] == 0.2
    assert s.action[2 * G + B] == 0.1 and s.action[2 * B + G] == 0.8
    assert s.assess[4 * G + 2 * G + C] == 0.5 and s.assess[4 * B + 2 * B + D] == 0.125
    assert s.assess[4 * G + 2 * G + D] == 0.25 and s.assess[4 * B + 2 * B + C] == 0.75


def test_to_spec_round_trip():
    for spec in ["L1", "L4", "alld+L6", "disc+shunning",
                 {"action": [0.9, 0.1, 0.8, 0.2], "assess": "image_scoring"}]:
        s = parse_strategy(spec)
        again = parse_strategy(s.to_spec())
        assert np.array_equal(again.action, s.action)
        assert np.array_equal(again.assess, s.assess)


def test_equivalent_spellings_share_a_name():
    assert parse_strategy("l6").name == parse_strategy("L6").name
    assert (parse_strategy("disc+stern-judging").name
            == parse_strategy({"action": "DISC", "assess": "stern judging"}).name)
    assert parse_strategy("alld+L6").name != parse_strategy("L6").name


def test_mutating_a_parsed_strategy_cannot_corrupt_the_registry():
    s = parse_strategy("L6")
    try:
        s.assess[4 * G + 2 * B + D] = 0.0  # read-only tables may refuse; either way ...
    except ValueError:
        pass
    # ... a fresh parse still gives the published L6 table
    assert _tables(parse_strategy("L6")) == _expected_tables("L6", "L6")
    # and a parse never aliases a caller's list
    values = [1.0, 0.0, 1.0, 0.0]
    s = parse_strategy({"action": values, "assess": "L6"})
    values[0] = 0.0
    assert s.action[2 * G + G] == 1.0


# ---------------------------------------------------------------------------------------------
# Errors.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("L9", "L9"),
        ("stern_judgement", "stern_judgement"),
        ("alld", "alld"),            # an action rule alone is not a strategy
        ("ALLC", "ALLC"),
        ("disc", "disc"),
        ("disc+nonsense", "nonsense"),
        ("nonsense+L6", "nonsense"),
        ("L6+", "population[3]"),
        ("", "population[3]"),
        (42, "42"),
        ({"action": "alld"}, "assess"),
        ({"assess": "L6"}, "action"),
        ({"action": "alld", "assess": "L6", "extra": 1}, "extra"),
        ({"action": [1, 0, 1], "assess": "L6"}, "4"),
        ({"action": "disc", "assess": [1, 0, 0, 1]}, "8"),
        ({"action": [1, 0, 1, 1.5], "assess": "L6"}, "[0, 1]"),
        ({"action": [1, 0, 1, -0.1], "assess": "L6"}, "[0, 1]"),
        ({"action": [1, 0, 1, float("nan")], "assess": "L6"}, "population[3]"),
        ({"action": 1, "assess": "L6"}, "population[3]"),
    ],
)
def test_bad_strategy_in_population_names_the_slot(bad, fragment):
    population = ["L6", "L6", "L6", bad, "L6"]
    with pytest.raises(ValueError) as info:
        simulate(population, 2, benefit=5, cost=1, execution_error=0.0, assessment_error=0.0)
    message = str(info.value)
    assert "population[3]" in message
    assert fragment in message
    # the PettingZoo constructor reports the same field
    with pytest.raises(ValueError) as info:
        indirect_reciprocity_v0.parallel_env(population=["focal", *population[1:]])
    assert "population[3]" in str(info.value)


def test_action_only_string_explains_what_is_missing():
    with pytest.raises(ValueError) as info:
        parse_strategy("alld", field="population[7]")
    message = str(info.value)
    assert message.startswith("population[7]")
    assert "action rule" in message and "assess" in message


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("disc+nonsense", "slot.assess"),
        ("nonsense+L6", "slot.action"),
        ({"action": [1, 0], "assess": "L6"}, "slot.action"),
        ({"action": "allc", "assess": [0.5] * 9}, "slot.assess"),
    ],
)
def test_sub_field_is_named(spec, field):
    with pytest.raises(ValueError) as info:
        parse_strategy(spec, field="slot")
    assert field in str(info.value)


# ---------------------------------------------------------------------------------------------
# Behaviour: the core applies the tables (no errors, hand-set reputations).
# ---------------------------------------------------------------------------------------------


def _split(spec: str) -> tuple[str, str]:
    if "+" in spec:
        action, assess = spec.split("+")
        return action, assess
    return spec, spec


def _play_scripted_rounds(population, reputations_per_round, seed):
    """Play one error-free round per given reputation state (B, N); yield (before, record)."""
    n = len(population)
    strategies = [parse_strategy(s) for s in population]
    action_table = np.stack([s.action for s in strategies])
    assess_table = np.stack([s.assess for s in strategies])
    batch = reputations_per_round[0].shape[0]
    params = GameParams(num_agents=n, benefit=3.0, cost=1.0, execution_error=0.0,
                        assessment_error=0.0, update_probability=1.0)
    game = BatchedGame(params, action_table, assess_table, batch=batch, seed=seed)
    for reps in reputations_per_round:
        game.reputation = reps.astype(np.int8).copy()
        game.begin_round()
        game.act()
        record = game.assess()
        yield reps, record


def _check_population(population, rounds=6, batch=48, seed=0):
    """Compare every interaction with the typed-out tables; return the contexts covered."""
    n = len(population)
    rules = [_split(s) for s in population]
    act_tables = [expected_action(a) for a, _ in rules]
    ass_tables = [expected_assessment(s) for _, s in rules]
    rng = np.random.default_rng(seed)
    states = [rng.integers(0, 2, size=(batch, n)) for _ in range(rounds)]
    seen_action = {i: set() for i in range(n)}
    seen_signal = {i: set() for i in range(n)}
    for reps, rec in _play_scripted_rounds(population, states, seed):
        assert np.array_equal(rec.reputation_before, reps)
        for b in range(batch):
            for d in range(n):
                r, o = int(rec.recipients[b, d]), int(rec.observers[b, d])
                assert r != d and o != d
                x, y = int(reps[b, d]), int(reps[b, r])
                a = int(rec.actions[b, d])
                assert a == act_tables[d][(x, y)], (population[d], "action", x, y)
                # the OBSERVER's assessment rule judges the donor
                assert int(rec.signals[b, d]) == ass_tables[o][(x, y, a)], \
                    (population[o], "signal", x, y, a)
                # u = 1: the published signal becomes the donor's reputation
                assert int(rec.reputation_after[b, d]) == int(rec.signals[b, d])
                seen_action[d].add((x, y))
                seen_signal[o].add((x, y, a))
    return seen_action, seen_signal


@pytest.mark.parametrize("norm", [*sorted(LEADING_EIGHT), *sorted(SECOND_ORDER)])
def test_core_follows_published_tables(norm):
    own_action = norm if norm in LEADING_EIGHT else "disc"
    # Own-rule donors exercise the action rule; ALLC and ALLD donors make every signal context
    # (including "cooperated with a Bad recipient") occur for the observers, who all use `norm`.
    population = ([f"{own_action}+{norm}"] * 4 + [f"allc+{norm}"] * 4 + [f"alld+{norm}"] * 4)
    seen_action, seen_signal = _check_population(population)
    for d in range(len(population)):
        assert seen_action[d] == set(ALL_CONTEXTS_XY)
    assert set().union(*seen_signal.values()) == set(ALL_CONTEXTS_XYA)


def test_core_uses_each_observers_own_assessment_rule():
    population = ["allc+image_scoring", "alld+shunning", "disc+stern_judging", "L1", "L7",
                  "allc+L2", "alld+L8", "disc+simple_standing", "L4", "allc+L5", "alld+L3",
                  "L6"]
    _, seen_signal = _check_population(population, rounds=8, batch=64, seed=3)
    for o in range(len(population)):
        # every observer has judged a reasonable variety of contexts (at least 6 of 8)
        assert len(seen_signal[o]) >= 6, population[o]


def test_behaviour_matches_tables_for_list_specs():
    """A strategy given as display-order lists behaves per the list (index order mapping)."""
    spec = {"action": [0, 1, 1, 0], "assess": [0, 1, 1, 0, 0, 0, 1, 1]}
    act = {(G, G): 0, (G, B): 1, (B, G): 1, (B, B): 0}
    ass = dict(zip([tuple(_letter(ch) for ch in col) for col in LEADING_EIGHT_COLUMNS],
                   [0, 1, 1, 0, 0, 0, 1, 1], strict=True))
    population = [spec] * 6
    rng = np.random.default_rng(11)
    states = [rng.integers(0, 2, size=(32, 6)) for _ in range(4)]
    checked = 0
    for reps, rec in _play_scripted_rounds(population, states, seed=11):
        x = reps
        y = np.take_along_axis(reps, rec.recipients, axis=1)
        exp_a = np.vectorize(lambda xx, yy: act[(xx, yy)])(x, y)
        assert np.array_equal(rec.actions, exp_a)
        exp_s = np.vectorize(lambda xx, yy, aa: ass[(xx, yy, aa)])(x, y, rec.actions)
        assert np.array_equal(rec.signals, exp_s)
        checked += exp_a.size
    assert checked == 4 * 32 * 6


def test_assessment_rule_alone_is_rejected_with_a_hint():
    with pytest.raises(ValueError, match=r"population\[1\].*assessment rule only.*disc\+"):
        parse_strategy("stern_judging", field="population[1]")
