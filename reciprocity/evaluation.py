"""Evaluation protocol (spec §6): reference optima, decisive contexts, regimes, metrics.

Per-interaction payoff is measured in evaluation episodes on the batched core: ``rounds``
rounds (default: the scenario's ``max_rounds``) from the scenario's initial reputations, mean
payoff per round. The same protocol serves the learners and the references.

Reference optimum (single focal learner): all 2^4 x 2^8 = 4096 deterministic policies are played
on the same games (common random numbers); the best is then re-measured, together with its 12
single-context flips, on fresh games (so its payoff and interval are not inflated by having been
selected as the maximum). A context is **decisive** when flipping the optimal output there
lowers the payoff by more than the 95% interval of that (paired) difference. A scenario is
**degenerate** when the optimal action rule is constant over the decisive action contexts,
**discriminative** otherwise.

Multi-learner reference: every learner plays the ideal discriminator (C with Good recipients, D
with Bad ones; assesses by the background norm, or under a signal audit by the audit norm, so that
it is flagged only through assessment errors); b - c (full cooperation) is reported too. Every
reference is played on the core under the scenario's institution (audit, k observers).
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter

import numpy as np

from .agents.checks import check_int
from .envs.config import EnvConfig, strategy_tables
from .envs.core import BatchedGame, sample_round_noise
from .envs.evaluate import evaluate_focal_tables
from .envs.norms import (
    ACTION_CONTEXTS,
    ASSESSMENT_RULES,
    SIGNAL_CONTEXTS,
    parse_strategy,
    to_display_order,
)
from .envs.scenarios import Scenario, get_scenario

#: Two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30 (normal beyond).
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]

#: Context names of the 12 outputs in the order [action (index order), signal (index order)].
CONTEXT_KEYS = [("action", ACTION_CONTEXTS[3 - i]) for i in range(4)] + \
    [("signal", SIGNAL_CONTEXTS[7 - i]) for i in range(8)]

#: Seed of the evaluation games. Learners are evaluated on the same games as the reference's
#: confirmation stage (same seed, same number of games and rounds), so that learner and
#: reference payoffs are paired by common random numbers.
EVALUATION_SEED = 1
EVALUATION_ENVS = 256

CONSTANT_OUTPUT_SPAN = 0.1  # a head is constant-output when its visited outputs span less
VISITED = 0.01  # a context counts as visited when it has at least this share of visits


def t975(df: int) -> float:
    return _T975[df - 1] if df <= len(_T975) else 1.96


def mean_ci95(values) -> tuple[float, float]:
    """Mean and half-width of the 95% Student-t interval of the mean (nan for one value)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return float(values.mean()), float("nan")
    half = t975(values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    return float(values.mean()), float(half)


def all_deterministic_policies() -> tuple[np.ndarray, np.ndarray]:
    """(4096, 4) action and (4096, 8) signal tables (index order), policy k = 256 a + s."""
    actions = np.array(list(itertools.product([0, 1], repeat=4)), dtype=np.float64)
    signals = np.array(list(itertools.product([0, 1], repeat=8)), dtype=np.float64)
    return np.repeat(actions, 256, axis=0), np.tile(signals, (16, 1))


def context_visits(env_config: EnvConfig, action: np.ndarray, signal: np.ndarray, *,
                   num_envs: int, rounds: int | None = None, seed: int = 0):
    """How often each focal slot meets each context when all focal slots play given tables.

    Args: action (F, 4), signal (F, 8) tables (index order).
    Returns: (action visits (F, 4), signal visits (F, 8)), each normalised to sum to 1 per slot.
    """
    focal = env_config.focal_slots
    background_action, background_assess = strategy_tables(env_config.strategies)
    background_action[focal], background_assess[focal] = action, signal
    game = BatchedGame(env_config.params, background_action, background_assess,
                       batch=num_envs, seed=seed)
    rounds = env_config.max_rounds if rounds is None else rounds
    a_counts = np.zeros((focal.size, 4))
    s_counts = np.zeros((focal.size, 8))
    for _ in range(rounds):
        game.begin_round(sample_round_noise(game.rng, num_envs, env_config.num_agents,
                                            **env_config.params.noise_options()))
        a_ctx = game.action_contexts()[:, focal]
        game.act()
        for j in range(focal.size):
            a_counts[j] += np.bincount(a_ctx[:, j], minlength=4)
        for phase in range(env_config.params.observers_per_interaction):
            observed = game.observed_donors(phase)[:, focal]
            s_ctx = np.take_along_axis(game.signal_contexts(), observed, axis=1)
            for j in range(focal.size):
                s_counts[j] += np.bincount(s_ctx[:, j], minlength=8)
        game.assess()
    return (a_counts / a_counts.sum(axis=1, keepdims=True),
            s_counts / s_counts.sum(axis=1, keepdims=True))


def _policy_schema(action: np.ndarray, signal: np.ndarray) -> dict:
    return {"action": dict(zip(ACTION_CONTEXTS, map(float, to_display_order(action)),
                               strict=True)),
            "signal": dict(zip(SIGNAL_CONTEXTS, map(float, to_display_order(signal)),
                               strict=True))}


def background_norm(env_config: EnvConfig) -> str:
    """Name of the most common assessment rule among background agents."""
    names = Counter(s.name.split("+")[-1] for s in env_config.strategies if s is not None)
    if not names:
        raise ValueError("population: no background agents to take a norm from")
    return names.most_common(1)[0][0]


def ideal_norm(env_config: EnvConfig) -> str | list[int]:
    """The assessment rule the ideal discriminator follows: under a signal audit the audit norm
    (by name when it has one, else its verdicts in display order), otherwise the background's."""
    params = env_config.params
    background = background_norm(env_config)
    if params.signal_audit > 0:
        table = params.audit_table
        names = [k for k, v in ASSESSMENT_RULES.items() if np.array_equal(v, table)]
        if background in names:
            return background
        return names[0] if names else to_display_order(table).astype(int).tolist()
    return background
def evaluation_protocol(scenario: Scenario, rounds: int | None = None) -> dict:
    """What a payoff measurement means (rounds per evaluation game from the scenario's initial
    reputations). A run and its reference must have the same protocol to be compared."""
    return {"rounds": scenario.max_rounds if rounds is None else rounds}


def check_comparable(metrics: dict, ref: dict) -> None:
    """Refuse to score a run against a reference of another game: the scenario ids must match,
    and so must the scenario content hashes and evaluation protocols where both record them."""
    if metrics["scenario"] != ref["scenario"]:
        raise ValueError(f"reference is for {ref['scenario']!r}, run is {metrics['scenario']!r}")
    run_hash, ref_hash = metrics.get("scenario_hash"), ref.get("scenario_hash")
    if run_hash is not None and ref_hash is not None and run_hash != ref_hash:
        raise ValueError(f"the run's scenario {metrics['scenario']!r} is not the reference's: "
                         f"same id, different contents (hash {run_hash[:12]}... vs "
                         f"{ref_hash[:12]}...)")
    run_protocol, ref_protocol = metrics.get("evaluation_protocol"), ref.get("protocol")
    if run_protocol is not None and ref_protocol is not None and run_protocol != ref_protocol:
        raise ValueError(f"the run was evaluated with {run_protocol}, the reference with "
                         f"{ref_protocol}: payoffs are not comparable (recompute the reference "
                         "with the run's protocol)")


def reference(scenario: str | Scenario, *, search_envs: int = 32,
              confirm_envs: int = EVALUATION_ENVS, rounds: int | None = None, seed: int = 0,
              confirm_seed: int = EVALUATION_SEED) -> dict:
    """The reference of a scenario (spec §6) as a JSON-able dict."""
    scenario = get_scenario(scenario)
    env_config = scenario.env_config
    check_int("search_envs", search_envs, minimum=1)
    check_int("confirm_envs", confirm_envs, minimum=2)  # an interval needs two games
    if rounds is not None:
        check_int("rounds", rounds, minimum=1)
    if env_config.focal_slots.size == 0:
        raise ValueError(f"scenario {scenario.id!r} has no focal slot: a reference is the best "
                         "policy of its learners, and it has none")
    start = time.perf_counter()
    rounds = env_config.max_rounds if rounds is None else rounds
    b, c = env_config.params.benefit, env_config.params.cost
    out = {"scenario": scenario.id, "scenario_hash": scenario.content_hash(),
           "protocol": evaluation_protocol(scenario, rounds), "rounds": rounds,
           "full_cooperation_payoff": b - c}
    if env_config.focal_slots.size > 1:
        norm = ideal_norm(env_config)
        ideal = parse_strategy({"action": "disc", "assess": norm})
        f = env_config.focal_slots.size
        payoffs = evaluate_focal_tables(env_config, np.tile(ideal.action, (1, f, 1)),
                                        np.tile(ideal.assess, (1, f, 1)),
                                        num_envs=confirm_envs, rounds=rounds,
                                        seed=confirm_seed)[0].mean(axis=1)
        mean, half = mean_ci95(payoffs)
        out.update(kind="ideal_discriminator", reference_payoff=mean, reference_ci95=half,
                   policy=_policy_schema(ideal.action, ideal.assess), norm=norm,
                   regime="discriminative", decisive_contexts=None,
                   seconds=time.perf_counter() - start)
        return out
    # stage 1: exhaustive search with common random numbers
    actions, signals = all_deterministic_policies()
    search = evaluate_focal_tables(env_config, actions[:, None], signals[:, None],
                                   num_envs=search_envs, rounds=rounds, seed=seed)[..., 0]
    means = search.mean(axis=1)
    best = int(np.argmax(means))
    # stage 2: the best and its 12 single-context flips on fresh common random numbers
    flips = np.concatenate([actions[best], signals[best]])[None].repeat(13, axis=0)
    for k in range(12):
        flips[k + 1, k] = 1 - flips[k + 1, k]
    confirm = evaluate_focal_tables(env_config, flips[:, None, :4], flips[:, None, 4:],
                                    num_envs=confirm_envs, rounds=rounds,
                                    seed=confirm_seed)[..., 0]      # (13, E)
    mean, half = mean_ci95(confirm[0])
    a_visits, s_visits = context_visits(env_config, actions[best][None], signals[best][None],
                                        num_envs=confirm_envs, rounds=rounds,
                                        seed=confirm_seed)
    visits = np.concatenate([a_visits[0], s_visits[0]])
    contexts = []
    for k, (head, name) in enumerate(CONTEXT_KEYS):
        loss, loss_half = mean_ci95(confirm[0] - confirm[k + 1])
        contexts.append({"head": head, "context": name, "index": k if k < 4 else k - 4,
                         "optimal": int(flips[0, k]), "loss_if_flipped": loss,
                         "loss_ci95": loss_half, "decisive": bool(loss > loss_half),
                         "visit_share": float(visits[k] / 2)})   # half the visits per head
    decisive_actions = {c["optimal"] for c in contexts if c["head"] == "action" and c["decisive"]}
    regime = "discriminative" if len(decisive_actions) > 1 else "degenerate"
    ranking = np.argsort(-means)[:5]
    out.update(kind="exhaustive_search", reference_payoff=mean, reference_ci95=half,
               policy=_policy_schema(actions[best], signals[best]), regime=regime,
               decisive_contexts=contexts,
               search={"policies": len(means), "games": search_envs,
                       "best_search_payoff": float(means[best]),
                       "top5": [{"policy": _policy_schema(actions[k], signals[k]),
                                 "search_payoff": float(means[k])} for k in ranking]},
               seconds=time.perf_counter() - start)
    return out


def _table(policy: dict, head: str) -> np.ndarray:
    """Metrics-schema head -> index-order array."""
    names = ACTION_CONTEXTS if head == "action" else SIGNAL_CONTEXTS
    return np.array([policy[head][k] for k in names])[::-1]


def evaluate_run(metrics: dict, ref: dict) -> dict:
    """Adherence, reference performance and constant-output flags of one trained run.

    ``metrics`` is a run's metrics.json, ``ref`` the scenario's reference.json.
    """
    check_comparable(metrics, ref)
    payoff = metrics["per_interaction_payoff"]
    # a ratio to a reference payoff <= 0 (e.g. among defectors, where 0 is optimal) is
    # meaningless: reported as nan and shown as n/a
    out = {"reference_payoff": ref["reference_payoff"],
           "reference_performance": payoff / ref["reference_payoff"]
           if ref["reference_payoff"] > 0 else float("nan")}
    policies = metrics["policies"]
    constant = {}
    for agent, pol in policies.items():
        flags = {}
        for head in ("action", "signal"):
            probs = _table(pol, head)
            visited = _visited(ref, head)
            span = float(probs[visited].max() - probs[visited].min()) if visited.any() else 0.0
            flags[head] = span < CONSTANT_OUTPUT_SPAN
        constant[agent] = flags
    out["constant_output"] = constant
    first = next(iter(policies))
    out["constant_output_any_head"] = bool(any(constant[first].values()))
    if ref.get("decisive_contexts"):
        adherence = {}
        for agent, pol in policies.items():
            hit = total = 0.0
            for c in ref["decisive_contexts"]:
                if not c["decisive"]:
                    continue
                greedy = int(_table(pol, c["head"])[c["index"]] > 0.5)
                total += c["visit_share"]
                hit += c["visit_share"] * (greedy == c["optimal"])
            adherence[agent] = hit / total if total > 0 else float("nan")
        out["adherence"] = adherence[first]
        out["adherence_per_agent"] = adherence
    else:  # multi-learner: adherence to the ideal discriminator's action rule and norm
        ideal = ref["policy"]
        shares = []
        for pol in policies.values():
            same = [int(pol[h][k] > 0.5) == int(ideal[h][k]) for h in ("action", "signal")
                    for k in ideal[h]]
            shares.append(float(np.mean(same)))
        out["adherence"] = shares[0]
        out["adherence_per_agent"] = dict(zip(policies, shares, strict=True))
    return out


def _visited(ref: dict, head: str) -> np.ndarray:
    """Contexts of a head visited under the reference policy (all, if unknown)."""
    size = 4 if head == "action" else 8
    if not ref.get("decisive_contexts"):
        return np.ones(size, dtype=bool)
    shares = np.zeros(size)
    for c in ref["decisive_contexts"]:
        if c["head"] == head:
            shares[c["index"]] = 2 * c["visit_share"]
    return shares >= VISITED
