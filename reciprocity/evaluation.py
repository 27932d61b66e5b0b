"""Evaluation protocol (spec §6): long-run payoffs, reference optima, decisive contexts, regimes,
head diagnosis, metrics.

**Long run.** A policy's per-interaction payoff is its mean payoff per round in the *long run*:
every evaluation game starts from the scenario's initial reputations, plays ``burn_in`` rounds
that are not counted, then averages ``window`` rounds (default: the scenario's ``max_rounds``).
The burn-in is set per scenario from the dynamics (:func:`burn_in_rounds`): the mean-field model
of the game (:mod:`reciprocity.agents.model`) is run for every deterministic learner policy, and
the burn-in is the first round after which the window average of the learner's payoff stays
within ``BURN_IN_TOLERANCE`` x b of its stationary value for all of them. The payoff over one
episode from the initial reputations (rounds ``0 .. max_rounds - 1`` of the same games) is
reported beside it: the two differ where the stationary state is far from the initial one.

Reference optimum (single focal learner): all 2^4 x 2^8 = 4096 deterministic policies are played
on the same games (common random numbers) and ranked by their long-run payoff; the best is then
re-measured, together with its 12 single-context flips, on fresh games (so its payoff and
interval are not inflated by having been selected as the maximum). A context is **decisive** when
flipping the optimal output there lowers the payoff by more than the 95% interval of that
(paired) difference. A scenario is **degenerate** when the optimal action rule is constant over
the decisive action contexts, **discriminative** otherwise.

Multi-learner reference: every learner plays the ideal discriminator (C with Good recipients, D
with Bad ones; assesses by the background norm, or under a signal audit by the audit norm, so that
it is flagged only through assessment errors); b - c (full cooperation) is reported too. Every
reference is played on the core under the scenario's institution (audit, k observers). Its
decisive contexts are not searched; the head diagnosis looks at the contexts the ideal
discriminators visit.

Learners are evaluated on the games of the reference's confirmation stage (same seed, games,
burn-in and window: :class:`Protocol`), so that learner and reference payoffs are paired by
common random numbers; a run is compared with a reference only when their scenario contents
(hash) and protocols agree (:func:`check_comparable`).

**Head diagnosis** (what "collapse" means): a head is *context-sensitive* when its greedy output
differs across the decisive contexts with every output there at least ``HEAD_MARGIN`` = 0.2 from
0.5; *constant* when all its visited outputs are on one side of 0.5 by at least 0.2; *undecided*
otherwise (outputs near 0.5: not learned yet).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .agents.checks import check_int
from .envs.config import BYTES_PER_GAME_SLOT, EnvConfig, strategy_tables
from .envs.core import BatchedGame, sample_round_noise
from .envs.norms import (
    ACTION_CONTEXTS,
    ASSESSMENT_RULES,
    SIGNAL_CONTEXTS,
    parse_strategy,
    to_display_order,
)
from .envs.paired_games import evaluate_focal_tables, play_focal_tables
from .envs.scenarios import Scenario, get_scenario
from .stats import mean_ci95, t975

__all__ = ["CONTEXT_KEYS", "EVALUATION_ENVS", "EVALUATION_SEED", "HEAD_DIAGNOSES", "Protocol",
           "all_deterministic_policies", "background_norm", "burn_in_rounds", "context_visits",
           "diagnose_head", "evaluate_run", "evaluate_tables", "head_diagnoses", "mean_ci95",
           "protocol_for", "reference", "t975"]

#: Context names of the 12 outputs in the order [action (index order), signal (index order)].
CONTEXT_KEYS = [("action", ACTION_CONTEXTS[3 - i]) for i in range(4)] + \
    [("signal", SIGNAL_CONTEXTS[7 - i]) for i in range(8)]

#: Seed of the evaluation games. Learners are evaluated on the same games as the reference's
#: confirmation stage (same seed, number of games, burn-in and window), so that learner and
#: reference payoffs are paired by common random numbers.
EVALUATION_SEED = 1
EVALUATION_ENVS = 256

CONSTANT_OUTPUT_SPAN = 0.1  # a head is constant-output when its visited outputs span less
VISITED = 0.01  # a context counts as visited when it has at least this share of visits
HEAD_MARGIN = 0.2  # a decided output is at least this far from 0.5
HEAD_DIAGNOSES = ("context-sensitive", "constant", "undecided")

#: Burn-in: the window average of the learner's payoff must be within this fraction of b of its
#: stationary value, for every deterministic learner policy, in the mean-field model.
BURN_IN_TOLERANCE = 1e-3
BURN_IN_MAX_MODEL_ROUNDS = 4000  # model rounds at most; policies not settled by then are counted


def all_deterministic_policies() -> tuple[np.ndarray, np.ndarray]:
    """(4096, 4) action and (4096, 8) signal tables (index order), policy k = 256 a + s."""
    actions = np.array(list(itertools.product([0, 1], repeat=4)), dtype=np.float64)
    signals = np.array(list(itertools.product([0, 1], repeat=8)), dtype=np.float64)
    return np.repeat(actions, 256, axis=0), np.tile(signals, (16, 1))


# -- long run ----------------------------------------------------------------------------------
_BURN_IN_CACHE: dict[tuple, dict] = {}
#: Version of the burn-in computation: a result cached on disk by another version is not used.
BURN_IN_VERSION = 1


def cache_dir() -> Path | None:
    """Where results that take long to compute and never change for the same inputs (burn-ins)
    are kept between runs: ``$RECIPROCITY_CACHE`` (set to an empty string: nothing is kept on
    disk), else ``$XDG_CACHE_HOME/reciprocity``, else ``~/.cache/reciprocity``."""
    if "RECIPROCITY_CACHE" in os.environ:
        value = os.environ["RECIPROCITY_CACHE"]
        return Path(value).expanduser() if value else None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "reciprocity"


def _cached(name: str, key: bytes) -> tuple[Path | None, dict | None]:
    """(the cache file of ``key``, its content if it holds a valid entry)."""
    folder = cache_dir()
    if folder is None:
        return None, None
    path = folder / name / f"{hashlib.sha256(key).hexdigest()}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return path, None
    return path, data if isinstance(data, dict) else None


def _store(path: Path | None, data: dict) -> None:
    """Keep an entry on disk, atomically (a temporary file moved over the name: a concurrent
    reader sees a whole entry or none); a cache that cannot be written is skipped."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data))
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def burn_in_rounds(env_config: EnvConfig, window: int | None = None, *,
                   tolerance: float = BURN_IN_TOLERANCE,
                   max_model_rounds: int = BURN_IN_MAX_MODEL_ROUNDS,
                   progress: bool = False) -> dict:
    """The burn-in of a scenario: rounds after which payoffs are stationary (spec §6).

    The mean-field model of the game (:func:`reciprocity.agents.model.advance`: reputations as
    probabilities, every background agent's tables with the public error rates, the scenario's
    institution) is started from
    the initial reputations with every focal slot playing one of the 4096 deterministic
    policies (all focal slots the same one). Its rounds are iterated, ``window`` at a time, until
    every policy's learner payoff averaged over the last two windows agrees with the average over
    the two before within ``tolerance * b`` (or ``max_model_rounds`` is reached). The
    stationary payoff of a policy is its average over the last two windows; the burn-in is the
    smallest B such that, for every settled policy and every start from B on, the average over
    ``window`` rounds is within ``tolerance * b`` of it.

    Returns a dict: ``burn_in`` (rounds), ``window``, ``tolerance`` (absolute, payoff per round),
    ``policies`` (4096), ``unsettled`` (policies still drifting at ``max_model_rounds``,
    excluded), ``model_rounds`` (rounds iterated). Cached per configuration, in the process and
    on disk (:func:`cache_dir`: a second run of the same scenario takes no time for it); with
    ``progress``, a bar over the model rounds while it is computed.
    """
    import torch

    from .agents.model import advance, prepare

    window = env_config.max_rounds if window is None else int(window)
    params = env_config.params
    background_action, background_assess = strategy_tables(env_config.strategies)
    focal = env_config.focal_slots
    key = (repr(params), background_action.tobytes(), background_assess.tobytes(),
           tuple(focal), window, tolerance, max_model_rounds)
    if key in _BURN_IN_CACHE:
        return dict(_BURN_IN_CACHE[key])
    disk_key = b"|".join([f"burn-in v{BURN_IN_VERSION} torch {torch.__version__}".encode(),
                          *(str(k).encode() if not isinstance(k, bytes) else k for k in key)])
    path, stored = _cached("burn-in", disk_key)
    if stored is not None and set(stored) == {"burn_in", "window", "tolerance", "policies",
                                              "unsettled", "model_rounds"}:
        _BURN_IN_CACHE[key] = stored
        return dict(stored)
    actions, signals = all_deterministic_policies()
    p = actions.shape[0]
    action = np.broadcast_to(background_action, (p, *background_action.shape)).copy()
    assess = np.broadcast_to(background_assess, (p, *background_assess.shape)).copy()
    action[:, focal] = actions[:, None]
    assess[:, focal] = signals[:, None]
    e, mu = params.execution_error, params.assessment_error
    # the model takes executed-C and published-Good probabilities, and the institution
    audit = params.signal_audit > 0
    tables = prepare(torch.as_tensor(action * (1 - e), dtype=torch.float32),
                     torch.as_tensor(mu + (1 - 2 * mu) * assess, dtype=torch.float32),
                     observers_per_interaction=params.observers_per_interaction,
                     audit_norm=torch.as_tensor(params.audit_table) if audit else None)
    init = params.initial_reputation
    start = {"good": 1.0, "bad": 0.0}.get(init, init)  # p0: each agent Good w.p. p0
    rep = torch.full((p, env_config.num_agents), float(start), dtype=torch.float32)
    focal_index = torch.as_tensor(focal)
    tol = tolerance * params.benefit
    cumulative = [np.zeros(p)]  # learner payoff summed over the first t rounds
    bar = tqdm(total=max_model_rounds, desc="burn-in (model)", unit="round",
               disable=not progress, leave=False)
    with torch.no_grad(), bar:
        while True:
            for _ in range(window):
                rep, payoff = advance(rep, tables, benefit=params.benefit, cost=params.cost,
                                      update_probability=params.update_probability,
                                      signal_audit=params.signal_audit)
                cumulative.append(cumulative[-1] + payoff[:, focal_index].double().mean(-1)
                                  .numpy())
            bar.update(window)
            t = len(cumulative) - 1
            if t < 4 * window:
                continue
            last = (cumulative[t] - cumulative[t - 2 * window]) / (2 * window)
            before = (cumulative[t - 2 * window] - cumulative[t - 4 * window]) / (2 * window)
            settled = np.abs(last - before) <= tol
            if settled.all() or t >= max_model_rounds:
                break
    cumulative = np.array(cumulative)                                  # (T + 1, P)
    starts = np.arange(t - 4 * window + 1)
    averages = (cumulative[starts + window] - cumulative[starts]) / window
    off = (np.abs(averages - last) > tol) & settled                    # (starts, P)
    late = np.flatnonzero(off.any(axis=1))
    out = {"burn_in": int(late[-1]) + 1 if late.size else 0, "window": window,
           "tolerance": tol, "policies": p, "unsettled": int((~settled).sum()),
           "model_rounds": t}
    _BURN_IN_CACHE[key] = out
    _store(path, out)
    return dict(out)


@dataclass(frozen=True)
class Protocol:
    """How a policy's payoff is measured: the games, the burn-in and the averaged windows.

    The long-run payoff averages rounds ``burn_in .. burn_in + window - 1`` of ``num_envs``
    games seeded with ``seed``; the episode payoff averages rounds ``0 .. episode_rounds - 1``
    of the same games (one episode from the initial reputations).
    """

    burn_in: int
    window: int
    episode_rounds: int
    num_envs: int = EVALUATION_ENVS
    seed: int = EVALUATION_SEED

    def windows(self) -> list[tuple[int, int]]:
        """[(long-run window), (episode)] as (start, stop) rounds."""
        return [(self.burn_in, self.burn_in + self.window), (0, self.episode_rounds)]

    def to_dict(self) -> dict:
        return asdict(self)


def protocol_for(env_config: EnvConfig, *, num_envs: int = EVALUATION_ENVS,
                 window: int | None = None, burn_in: int | None = None,
                 seed: int = EVALUATION_SEED) -> Protocol:
    """The evaluation protocol of a scenario (``burn_in=None``: :func:`burn_in_rounds`)."""
    window = env_config.max_rounds if window is None else int(window)
    if burn_in is None:
        burn_in = burn_in_rounds(env_config, window)["burn_in"]
    for name, value in (("window", window), ("num_envs", num_envs)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"evaluation {name} must be a positive integer, got {value!r}")
    if isinstance(burn_in, bool) or not isinstance(burn_in, int | np.integer) or burn_in < 0:
        raise ValueError(f"evaluation burn_in must be a non-negative integer, got {burn_in!r}")
    return Protocol(burn_in=int(burn_in), window=window, episode_rounds=env_config.max_rounds,
                    num_envs=int(num_envs), seed=int(seed))


# -- sizes: refused before anything is computed -----------------------------------------------
#: Memory of the burn-in model (:func:`burn_in_rounds`) per model round and policy (the
#: learner's cumulative payoff, kept in about three copies), and per (policy, agent).
_BURN_IN_ROUND_BYTES = 24
_BURN_IN_AGENT_BYTES = 256
_CHUNK_GAMES = 1 << 17  # games played at once by paired_games (per chunk of candidates)


def burn_in_model_rounds(window: int, max_model_rounds: int = BURN_IN_MAX_MODEL_ROUNDS) -> int:
    """Model rounds :func:`burn_in_rounds` iterates at most for ``window`` (a bound of its
    burn-in too)."""
    return max(4 * window, -(-max_model_rounds // window) * window)


def evaluation_size(env_config: EnvConfig, *, candidates: int, num_envs: int, window: int,
                    burn_in: int | None, episode: bool = True) -> tuple[dict, tuple[str, int]]:
    """What playing ``candidates`` sets of focal tables on ``num_envs`` paired games by the
    protocol costs (before anything is allocated or played).

    Returns:
        memory ``{cause: (description, bytes)}`` and work ``(cause, agent-rounds)``, a cause
        being ``"games"`` (``num_envs``), ``"window"``, ``"burn_in"`` (its rounds, or the burn-in
        model when ``burn_in`` is None) or ``"episode"`` (the scenario's ``max_rounds``, played
        beside the window when ``episode``): the largest of the counts.
    """
    n, f = env_config.num_agents, int(env_config.focal_slots.size)
    games = candidates * num_envs
    memory = {"games": (f"{candidates} x {num_envs} evaluation games of {n} agents",
                        min(games, max(num_envs, _CHUNK_GAMES)) * n * BYTES_PER_GAME_SLOT
                        + 16 * games * f)}
    if burn_in is None:
        model = burn_in_model_rounds(window)
        memory["burn_in"] = (f"the burn-in model over windows of {window} rounds",
                             4096 * (model * _BURN_IN_ROUND_BYTES + n * _BURN_IN_AGENT_BYTES))
        burn_in = model  # at most
    counts = {"games": num_envs, "window": window, "burn_in": burn_in,
              **({"episode": env_config.max_rounds} if episode else {})}
    played = max(burn_in + window, env_config.max_rounds if episode else 0)
    return memory, (max(counts, key=counts.get), games * played * n)


def check_reference_size(scenario: str | Scenario, *, search_envs: int = 32,
                         confirm_envs: int = EVALUATION_ENVS, rounds: int | None = None,
                         burn_in: int | None = None, names: dict | None = None) -> None:
    """Refuse (ValueError naming the option) a reference that does not fit in memory or would
    not finish: 4096 candidates x ``search_envs`` games (one learner), then the best and its
    flips on ``confirm_envs`` games, of ``burn_in`` + ``rounds`` rounds each. ``names``: the
    options' names in the caller's words (e.g. ``{"rounds": "--rounds"}``)."""
    from .envs.config import check_memory, check_work

    env_config = get_scenario(scenario).env_config
    names = {"search_envs": "search_envs", "confirm_envs": "confirm_envs", "rounds": "rounds",
             "burn_in": "burn_in", **(names or {})}
    window = env_config.max_rounds if rounds is None else rounds
    single = env_config.focal_slots.size == 1
    stages = [(names["confirm_envs"], evaluation_size(
        env_config, candidates=13 if single else 1, num_envs=confirm_envs, window=window,
        burn_in=burn_in))]
    if single:
        stages.append((names["search_envs"], evaluation_size(
            env_config, candidates=4096, num_envs=search_envs, window=window, burn_in=burn_in,
            episode=False)))

    def name(cause: str, games: str) -> str:
        return {"games": games, "episode": "max_rounds (the scenario's)",
                "window": names["rounds"] if rounds is not None else "max_rounds (the scenario's)",
                "burn_in": names["burn_in"] if burn_in is not None else
                names["rounds"] if rounds is not None else "max_rounds (the scenario's)"}[cause]

    memory = [(name(cause, games), what, nbytes) for games, (parts, _) in stages
              for cause, (what, nbytes) in parts.items()]
    option, what, _ = max(memory, key=lambda m: m[2])
    check_memory(option, f"{what} (with everything else)",
                 sum(m[2] for m in memory))
    games, (_, (cause, _)) = max(stages, key=lambda st: st[1][1][1])
    check_work(name(cause, games), "the reference", sum(st[1][1][1] for st in stages))


def evaluate_tables(env_config: EnvConfig, action: np.ndarray, signal: np.ndarray,
                    protocol: Protocol, progress: bool = False) -> list[dict]:
    """Long-run and episode payoffs of S sets of focal tables (one per seed), paired games.

    Args:
        action: (S, F, 4), signal: (S, F, 8) P(C) / P(Good) tables of every focal slot, index
            order; or signal (S, F, 2, 8), a table per own reputation of the observer (own Bad,
            own Good; see :func:`reciprocity.envs.paired_games.play_focal_tables`).
    Returns:
        per set: ``per_interaction_payoff`` (long run, mean over the focal learners) and its
        ``per_interaction_payoff_ci95`` (over games), ``episode_payoff`` and
        ``episode_payoff_ci95``, ``per_agent_payoff`` (long run), ``policy`` (first focal
        learner) and ``policies`` (every focal agent) in the metrics schema, ``protocol``.
        With (S, F, 2, 8) signal tables a policy's ``signal`` is its own-Good table and
        ``signal_by_own_reputation`` holds both (``{"G": {...}, "B": {...}}``).
    """
    chunks = -(-action.shape[0] // max(1, (1 << 17) // protocol.num_envs))
    with tqdm(total=(protocol.burn_in + protocol.window) * chunks, desc="evaluation (long run)",
              unit="round", disable=not progress, leave=False) as bar:
        payoffs = play_focal_tables(env_config, action, signal, protocol.windows(),
                                    num_envs=protocol.num_envs, seed=protocol.seed,
                                    on_round=bar.update)  # (2, S, E, F)
    agents = [f"agent_{i}" for i in env_config.focal_slots]
    out = []
    for k in range(action.shape[0]):
        long_run, episode = (mean_ci95(payoffs[w, k].mean(axis=1)) for w in (0, 1))
        out.append({
            "per_interaction_payoff": long_run[0], "per_interaction_payoff_ci95": long_run[1],
            "episode_payoff": episode[0], "episode_payoff_ci95": episode[1],
            "per_agent_payoff": {a: float(v) for a, v in
                                 zip(agents, payoffs[0, k].mean(axis=0), strict=True)},
            "policy": _policy_schema(action[k, 0], signal[k, 0]),
            "policies": {a: _policy_schema(action[k, j], signal[k, j])
                         for j, a in enumerate(agents)},
            "protocol": protocol.to_dict(),
        })
    return out


def context_visits(env_config: EnvConfig, action: np.ndarray, signal: np.ndarray, *,
                   num_envs: int, rounds: int | None = None, burn_in: int = 0, seed: int = 0):
    """How often each focal slot meets each context when all focal slots play given tables.

    Counts rounds ``burn_in .. burn_in + rounds - 1`` (default ``rounds``: the scenario's
    ``max_rounds``).

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
    for t in range(burn_in + rounds):
        game.begin_round(sample_round_noise(game.rng, num_envs, env_config.num_agents,
                                            **env_config.params.noise_options()))
        a_ctx = game.action_contexts()[:, focal]
        game.act()
        if t < burn_in:
            game.assess()
            continue
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
    """Metrics schema of (4,) action and (8,) signal tables (index order). A (2, 8) signal
    table (own Bad, own Good) is shown by its own-Good row, which the head diagnosis and the
    adherence read, and both rows go to ``signal_by_own_reputation``."""
    def signal_schema(table):
        return dict(zip(SIGNAL_CONTEXTS, map(float, to_display_order(table)), strict=True))

    signal = np.asarray(signal)
    out = {"action": dict(zip(ACTION_CONTEXTS, map(float, to_display_order(action)),
                              strict=True)),
           "signal": signal_schema(signal[-1] if signal.ndim == 2 else signal)}
    if signal.ndim == 2:
        out["signal_by_own_reputation"] = {"G": signal_schema(signal[1]),
                                           "B": signal_schema(signal[0])}
    return out


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


def check_comparable(metrics: dict, ref: dict) -> None:
    """Refuse to score a run against a reference of another game: the scenario ids must match,
    and so must the scenario content hashes and the evaluation protocols' burn-in and windows
    where both record them."""
    if metrics["scenario"] != ref["scenario"]:
        raise ValueError(f"reference is for {ref['scenario']!r}, run is {metrics['scenario']!r}")
    run_hash, ref_hash = metrics.get("scenario_hash"), ref.get("scenario_hash")
    if run_hash is not None and ref_hash is not None and run_hash != ref_hash:
        raise ValueError(f"the run's scenario {metrics['scenario']!r} is not the reference's: "
                         f"same id, different contents (hash {run_hash[:12]}... vs "
                         f"{ref_hash[:12]}...)")
    # what a payoff means: the burn-in and the averaged windows (the number of games and their
    # seed only decide how precise the numbers are and whether they are paired)
    meaning = ("burn_in", "window", "episode_rounds")
    run_protocol, ref_protocol = (None if p is None else {k: p.get(k) for k in meaning}
                                  for p in (metrics.get("protocol"), ref.get("protocol")))
    if run_protocol is not None and ref_protocol is not None and run_protocol != ref_protocol:
        raise ValueError(f"the run was evaluated with {run_protocol}, the reference with "
                         f"{ref_protocol}: payoffs are not comparable (recompute the reference "
                         "with the run's protocol)")


#: Version of the reference computation: a reference cached on disk by another is not used.
REFERENCE_VERSION = 1


def reference(scenario: str | Scenario, *, search_envs: int = 32,
              confirm_envs: int = EVALUATION_ENVS, rounds: int | None = None,
              burn_in: int | None = None, seed: int = 0,
              confirm_seed: int = EVALUATION_SEED, progress: bool = False,
              cache: bool = False) -> dict:
    """The reference of a scenario (spec §6) as a JSON-able dict.

    ``rounds`` is the long-run window (default the scenario's ``max_rounds``), ``burn_in`` the
    rounds before it (default :func:`burn_in_rounds`). ``reference_payoff`` is the long-run
    payoff, ``episode_payoff`` the same policy's payoff over one episode from the initial
    reputations, on the same games. ``progress``: a bar for each stage (the burn-in's model,
    the search, the confirmation). ``cache``: keep the result on disk (:func:`cache_dir`) by
    the scenario's content, the protocol and the package version, and read it back instead of
    computing it again (the ``reference`` command does).
    """
    scenario = get_scenario(scenario)
    options = dict(search_envs=search_envs, confirm_envs=confirm_envs, rounds=rounds,
                   burn_in=burn_in, seed=seed, confirm_seed=confirm_seed)
    if not cache:
        return _reference(scenario, progress=progress, **options)
    from . import __version__

    key = json.dumps({"reference": REFERENCE_VERSION, "package": __version__,
                      "scenario": scenario.content_hash(), **options}, sort_keys=True)
    path, stored = _cached("reference", key.encode())
    if stored is not None and stored.get("scenario_hash") == scenario.content_hash() and \
            "reference_payoff" in stored and "policy" in stored:
        if progress:
            tqdm.write(f"reference: read from the cache ({path})", file=sys.stderr)
        return stored
    out = _reference(scenario, progress=progress, **options)
    _store(path, out)
    return out


def _reference(scenario: Scenario, *, search_envs: int, confirm_envs: int, rounds: int | None,
               burn_in: int | None, seed: int, confirm_seed: int, progress: bool) -> dict:
    env_config = scenario.env_config
    check_int("search_envs", search_envs, minimum=1)
    check_int("confirm_envs", confirm_envs, minimum=2)  # an interval needs two games
    if rounds is not None:
        check_int("rounds", rounds, minimum=1)
    if env_config.focal_slots.size == 0:
        raise ValueError(f"scenario {scenario.id!r} has no focal slot: a reference is the best "
                         "policy of its learners, and it has none")
    check_reference_size(scenario, search_envs=search_envs, confirm_envs=confirm_envs,
                         rounds=rounds, burn_in=burn_in)
    start = time.perf_counter()
    if burn_in is None:  # computed (or read from the cache) with its own bar
        burn_in_rounds(env_config, rounds, progress=progress)
    protocol = protocol_for(env_config, num_envs=confirm_envs, window=rounds, burn_in=burn_in,
                            seed=confirm_seed)
    played = protocol.burn_in + protocol.window

    def bar(desc: str, candidates: int, games: int):
        chunks = -(-candidates // max(1, (1 << 17) // games))
        return tqdm(total=played * chunks, desc=desc, unit="round", disable=not progress,
                    leave=False)

    b, c = env_config.params.benefit, env_config.params.cost
    out = {"scenario": scenario.id, "scenario_hash": scenario.content_hash(),
           "rounds": protocol.window, "burn_in": protocol.burn_in,
           "protocol": protocol.to_dict(), "full_cooperation_payoff": b - c}
    if burn_in is None:
        out["burn_in_model"] = burn_in_rounds(env_config, protocol.window)
    f = env_config.focal_slots.size
    if f > 1:
        norm = ideal_norm(env_config)
        ideal = parse_strategy({"action": "disc", "assess": norm})
        action, signal = np.tile(ideal.action, (1, f, 1)), np.tile(ideal.assess, (1, f, 1))
        with bar("reference: the ideal discriminators", 1, confirm_envs) as shown:
            payoffs = play_focal_tables(env_config, action, signal, protocol.windows(),
                                        num_envs=confirm_envs, seed=confirm_seed,
                                        on_round=shown.update).mean(axis=-1)
        (mean, half), (episode, episode_half) = mean_ci95(payoffs[0, 0]), \
            mean_ci95(payoffs[1, 0])
        a_visits, s_visits = context_visits(env_config, action[0], signal[0],
                                            num_envs=confirm_envs, rounds=protocol.window,
                                            burn_in=protocol.burn_in, seed=confirm_seed)
        out.update(kind="ideal_discriminator", reference_payoff=mean, reference_ci95=half,
                   episode_payoff=episode, episode_ci95=episode_half,
                   policy=_policy_schema(ideal.action, ideal.assess), norm=norm,
                   regime="discriminative", decisive_contexts=None,
                   visit_share=_policy_schema(a_visits.mean(axis=0), s_visits.mean(axis=0)),
                   seconds=time.perf_counter() - start)
        return out
    # stage 1: exhaustive search with common random numbers, ranked by the long-run payoff
    actions, signals = all_deterministic_policies()
    with bar(f"reference search ({len(actions)} policies)", len(actions), search_envs) as shown:
        search = evaluate_focal_tables(env_config, actions[:, None], signals[:, None],
                                       num_envs=search_envs, rounds=protocol.window,
                                       burn_in=protocol.burn_in, seed=seed,
                                       on_round=shown.update)[..., 0]
    means = search.mean(axis=1)
    best = int(np.argmax(means))
    # stage 2: the best and its 12 single-context flips on fresh common random numbers
    flips = np.concatenate([actions[best], signals[best]])[None].repeat(13, axis=0)
    for k in range(12):
        flips[k + 1, k] = 1 - flips[k + 1, k]
    with bar("reference: the best and its flips", 13, confirm_envs) as shown:
        confirm = play_focal_tables(env_config, flips[:, None, :4], flips[:, None, 4:],
                                    protocol.windows(), num_envs=confirm_envs,
                                    seed=confirm_seed, on_round=shown.update)[..., 0]  # (2,13,E)
    mean, half = mean_ci95(confirm[0, 0])
    episode, episode_half = mean_ci95(confirm[1, 0])
    a_visits, s_visits = context_visits(env_config, actions[best][None], signals[best][None],
                                        num_envs=confirm_envs, rounds=protocol.window,
                                        burn_in=protocol.burn_in, seed=confirm_seed)
    visits = np.concatenate([a_visits[0], s_visits[0]])
    contexts = []
    for k, (head, name) in enumerate(CONTEXT_KEYS):
        loss, loss_half = mean_ci95(confirm[0, 0] - confirm[0, k + 1])
        contexts.append({"head": head, "context": name, "index": k if k < 4 else k - 4,
                         "optimal": int(flips[0, k]), "loss_if_flipped": loss,
                         "loss_ci95": loss_half, "decisive": bool(loss > loss_half),
                         "visit_share": float(visits[k] / 2)})   # half the visits per head
    decisive_actions = {c["optimal"] for c in contexts if c["head"] == "action" and c["decisive"]}
    regime = "discriminative" if len(decisive_actions) > 1 else "degenerate"
    ranking = np.argsort(-means)[:5]
    out.update(kind="exhaustive_search", reference_payoff=mean, reference_ci95=half,
               episode_payoff=episode, episode_ci95=episode_half,
               policy=_policy_schema(actions[best], signals[best]), regime=regime,
               decisive_contexts=contexts,
               visit_share=_policy_schema(a_visits[0], s_visits[0]),
               search={"policies": len(means), "games": search_envs,
                       "best_search_payoff": float(means[best]),
                       "top5": [{"policy": _policy_schema(actions[k], signals[k]),
                                 "search_payoff": float(means[k])} for k in ranking]},
               seconds=time.perf_counter() - start)
    return out


# -- head diagnosis and metrics ----------------------------------------------------------------
def _table(policy: dict, head: str) -> np.ndarray:
    """Metrics-schema head -> index-order array."""
    names = ACTION_CONTEXTS if head == "action" else SIGNAL_CONTEXTS
    return np.array([policy[head][k] for k in names])[::-1]


def _visited(ref: dict, head: str) -> np.ndarray:
    """Contexts of a head (index order) visited under the reference policy (all, if unknown)."""
    size = 4 if head == "action" else 8
    if ref.get("visit_share"):
        return _table(ref["visit_share"], head) >= VISITED
    if not ref.get("decisive_contexts"):
        return np.ones(size, dtype=bool)
    shares = np.zeros(size)
    for c in ref["decisive_contexts"]:
        if c["head"] == head:
            shares[c["index"]] = 2 * c["visit_share"]
    return shares >= VISITED


def _decisive(ref: dict, head: str) -> np.ndarray:
    """Decisive contexts of a head (index order); the visited ones for a multi-learner reference
    (whose decisive contexts are not searched)."""
    if not ref.get("decisive_contexts"):
        return _visited(ref, head)
    mask = np.zeros(4 if head == "action" else 8, dtype=bool)
    for c in ref["decisive_contexts"]:
        if c["head"] == head and c["decisive"]:
            mask[c["index"]] = True
    return mask


def diagnose_head(probs, decisive, visited) -> dict:
    """Head diagnosis of spec §6 for one head.

    Args:
        probs: (K,) the head's probabilities of C / Good per context.
        decisive, visited: (K,) bool masks (an empty ``visited`` means every context).
    Returns:
        ``{"diagnosis": "context-sensitive" | "constant" | "undecided", "side": 1 | 0 | None}``
        where ``side`` is the constant output (1 = C / Good) of a constant head.
    """
    probs = np.asarray(probs, dtype=np.float64)
    decisive, visited = np.asarray(decisive, bool), np.asarray(visited, bool)
    if not visited.any():
        visited = np.ones_like(visited)
    decided = np.abs(probs - 0.5) >= HEAD_MARGIN - 1e-12
    greedy = probs > 0.5
    on_decisive = greedy[decisive]
    if on_decisive.size and on_decisive.any() and not on_decisive.all() and \
            decided[decisive].all():
        return {"diagnosis": "context-sensitive", "side": None}
    if decided[visited].all() and (greedy[visited].all() or not greedy[visited].any()):
        return {"diagnosis": "constant", "side": int(greedy[visited][0])}
    return {"diagnosis": "undecided", "side": None}


def head_diagnoses(policy: dict, ref: dict) -> dict:
    """Both heads of one policy (metrics schema) diagnosed against a scenario's reference."""
    return {head: diagnose_head(_table(policy, head), _decisive(ref, head), _visited(ref, head))
            for head in ("action", "signal")}


def evaluate_run(metrics: dict, ref: dict) -> dict:
    """Adherence, reference performance, head diagnosis and constant-output flags of one run.

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
    out["heads"] = {agent: head_diagnoses(pol, ref) for agent, pol in policies.items()}
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
