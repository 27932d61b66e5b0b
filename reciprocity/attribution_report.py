"""``reciprocity attribute``: where a policy's reciprocity gradient comes from, for trained runs
and strategies — ``attribution.json``, a figure, and the generated section of docs/results.md.

What is attributed, and from what (the decomposition is :mod:`reciprocity.agents.attribution`):

* **the policy**: a run's stored tables (``policies`` in ``metrics.json``, one per focal agent and
  seed), read as a tabular policy whose logits are the logits of those tables — for a run of any
  algorithm (RG, PPO, REINFORCE) and either policy class, since every head is stored as a full
  probability table; or, with ``--scenario ID --policy SPEC``, the tabular policy that
  ``reciprocity train --init SPEC`` starts from (the strategy's tables clipped to
  [0.05, 0.95]) in every focal slot;
* **the model**: RG's model of the run's scenario (the resolved scenario stored in
  ``metrics.json`` under ``config.scenario``), with the run's ``horizon``, ``gamma``,
  ``tail_rounds`` and ``estimator_prior`` for an RG run and RG's defaults otherwise
  (``--horizon``/``--gamma`` override both);
* **the estimators and the start state**, from a fresh public record of the policy: every focal
  slot plays the policy (stochastically) for ``rounds`` rounds (default: the scenario's
  ``max_rounds``, one episode) in each of ``games`` games (default 16) from the scenario's
  initial reputations, the games and the decisions seeded by ``seed`` (default 0); the
  estimators are fitted to that whole record as RG fits them (one refit, so no forgetting) and
  the unroll starts from the public reputations after its last round, one start per game — as
  RG starts from the reputations at the end of its last rollout. The learner's own estimators
  in a checkpoint are not read, so that runs of every algorithm are attributed the same way.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .agents.attribution import HEADS, Attribution, attribute
from .agents.rg import ReciprocityGradient, RGConfig
from .agents.rollout import collect
from .engine import Engine, Job
from .envs.config import check_memory, check_work
from .envs.norms import (
    ACTION_CONTEXTS,
    SIGNAL_CONTEXTS,
    from_display_order,
    parse_strategy,
    to_display_order,
)
from .envs.scenarios import Scenario, get_scenario
from .envs.vector import VectorGame
from .learners import BUILTIN, lookup
from .report import pyplot, save_figure, write_block
from .runfolder import open_run, write_text

CONTEXTS = {"action": ACTION_CONTEXTS, "signal": SIGNAL_CONTEXTS}
#: Games of the fresh public record (as many as a training run plays per seed by default).
DEFAULT_GAMES = 16
#: Memory of the public record per (round, game, agent), as a training rollout's.
_RECORD_BYTES = 128
#: Shares of a head's gradient whose delays are reported (the delay by which they are reached).
REACHED = (0.5, 0.9)


@dataclass
class Subject:
    """A policy to attribute: (S, F) learners (seeds x focal slots) in a scenario."""

    scenario: Scenario
    name: str
    """the algorithm of the run, or the strategy spec"""
    seeds: list[int]
    action: np.ndarray
    """(S, F, 4) P(C), index order"""
    signal: np.ndarray
    """(S, F, 8) P(Good), index order"""
    config: RGConfig
    source: dict
    payoff: list[float | None]
    """per seed: the run's per-interaction payoff (None for a strategy)"""


# ----------------------------------------------------------------------------------------------
# What to attribute
# ----------------------------------------------------------------------------------------------

def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"run: {path} is not valid JSON ({err})") from None


def _tables(metrics: dict, agent: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    expected = ("expected 'policies': {agent_<slot>: {'action': {GG, GB, BG, BB}, 'signal': "
                "{GGC, ..., BBD}}} with probabilities in [0, 1] for every focal slot")
    policy = metrics.get("policies", {}).get(agent) if isinstance(metrics.get("policies"),
                                                                  dict) else None
    tables = []
    for head in HEADS:
        values = policy.get(head) if isinstance(policy, dict) else None
        if not isinstance(values, dict) or set(values) != set(CONTEXTS[head]):
            raise ValueError(f"run: {path} has no RG-compatible policy for {agent} ({head} "
                             f"head): {expected}")
        table = [values[c] for c in CONTEXTS[head]]
        if not all(isinstance(v, int | float) and 0 <= v <= 1 for v in table):
            raise ValueError(f"run: {path}: {agent}'s {head} head is not a table of "
                             f"probabilities in [0, 1]: {values}")
        tables.append(from_display_order(np.asarray(table, dtype=np.float64)))
    return tables[0], tables[1]


def _stored(metrics: dict, key: str):
    """``metrics["config"][key]``, or None."""
    config = metrics.get("config") if isinstance(metrics, dict) else None
    return config.get(key) if isinstance(config, dict) else None


def from_run(run: str | Path) -> Subject:
    """The policies stored in a run folder (``metrics.json``, or ``seed_<s>/metrics.json`` for
    several seeds)."""
    run = Path(run)
    paths = [run / "metrics.json"] if (run / "metrics.json").is_file() else \
        sorted(run.glob("seed_*/metrics.json"))
    if not paths:
        raise ValueError(f"run: no metrics.json in {run} (nor seed_<s>/metrics.json)")
    records = [(p, _read_json(p)) for p in paths]
    first_path, first = records[0]
    stored = _stored(first, "scenario")
    if not isinstance(stored, dict):
        raise ValueError(f"run: {first_path} has no config.scenario (the resolved scenario): "
                         "not a reciprocity run folder")
    scenario = Scenario.from_dict(stored, source=f"{first_path} (config.scenario)")
    algo = first.get("algo")
    for path, m in records[1:]:
        if _stored(m, "scenario") != stored or m.get("algo") != algo:
            raise ValueError(f"run: {path} belongs to another run than {first_path} "
                             "(scenario or algorithm differ)")
    config = RGConfig()
    algo_config = _stored(first, "algo")
    if algo == "rg" and isinstance(algo_config, dict):
        config = replace(config, **{k: algo_config[k] for k in
                                    ("horizon", "gamma", "tail_rounds", "estimator_prior")
                                    if k in algo_config})
    agents = [f"agent_{slot}" for slot in scenario.env_config.focal_slots]
    tables = [[_tables(m, agent, path) for agent in agents] for path, m in records]
    return Subject(scenario=scenario, name=str(algo), seeds=[m.get("seed") for _, m in records],
                   action=np.array([[a for a, _ in row] for row in tables]),
                   signal=np.array([[s for _, s in row] for row in tables]),
                   config=config, source={"run": str(run)},
                   payoff=[m.get("per_interaction_payoff") for _, m in records])


def from_policy(scenario: str | Scenario, spec: str) -> Subject:
    """Every focal slot of ``scenario`` playing the tabular policy ``train --init SPEC`` starts
    from (the strategy's tables clipped to [0.05, 0.95], so that its logits are finite)."""
    scenario = get_scenario(scenario)
    strategy = parse_strategy(spec, field="policy")
    f = scenario.env_config.focal_slots.size
    if f == 0:
        raise ValueError(f"scenario: {scenario.id} has no focal slot to attribute")
    learner = ReciprocityGradient(RGConfig(), scenario.env_config, (1, f))
    learner.policy.set_tables(strategy.action, strategy.assess)
    action, signal = (t.double().numpy() for t in learner.policy.tables())
    return Subject(scenario=scenario, name=strategy.name, seeds=[0], action=action,
                   signal=signal, config=RGConfig(), source={"policy": strategy.name},
                   payoff=[None])


# ----------------------------------------------------------------------------------------------
# Attribution of a subject
# ----------------------------------------------------------------------------------------------

def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def attribution_options(subject: Subject, *, horizon: int | None = None,
                        gamma: float | None = None, games: int = DEFAULT_GAMES,
                        rounds: int | None = None, seed: int = 0) -> tuple[RGConfig, int, int]:
    """The model's config, the record's games and rounds of an attribution; a ValueError naming
    the option that is invalid, or too large to fit in memory or to finish (before anything is
    computed)."""
    config = subject.config
    if horizon is not None:
        config = replace(config, horizon=horizon)
    if gamma is not None:
        config = replace(config, gamma=gamma)
    _positive_int("horizon", config.horizon)
    if isinstance(config.gamma, bool) or not isinstance(config.gamma, int | float) or \
            not 0 < config.gamma <= 1:  # NaN included
        raise ValueError(f"gamma must lie in (0, 1], got {config.gamma!r}")
    env_config = subject.scenario.env_config
    rounds = env_config.max_rounds if rounds is None else rounds
    _positive_int("games", games)
    _positive_int("rounds", rounds)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    config = replace(config, policy="tabular")
    s, n = subject.action.shape[0], env_config.num_agents
    record_name = "games" if games > rounds else "rounds"
    parts = {record_name: (f"a record of {rounds} rounds x {s * games} games of {n} agents",
                           rounds * s * games * n * _RECORD_BYTES),
             **ReciprocityGradient.memory_parts(config, s, games, env_config)}
    name = max(parts, key=lambda k: parts[k][1])
    check_memory(name, f"{parts[name][0]} (with everything else)",
                 sum(nbytes for _, nbytes in parts.values()))
    # the record, then one backward pass through model rounds 0..t for every payoff round
    # t < H (and the tail's rounds): a model round with its gradient costs about 100 rounds of
    # the core (measured)
    model_rounds = config.horizon + config.tail_rounds
    record, model = rounds * s * games * n, 100 * model_rounds ** 2 * s * games * n
    check_work(record_name if record >= model else "horizon", "the attribution",
               record + model)
    return config, games, rounds


def attribute_subject(subject: Subject, *, horizon: int | None = None,
                      gamma: float | None = None, games: int = DEFAULT_GAMES,
                      rounds: int | None = None, seed: int = 0,
                      progress: bool = False) -> tuple[Attribution, dict]:
    """Fit estimators to a fresh public record of the subject's policy and decompose its
    gradient under RG's model. Returns (the attribution, a description of the record);
    ``progress``: a bar over its two stages (the record, the attribution)."""
    config, games, rounds = attribution_options(subject, horizon=horizon, gamma=gamma,
                                                games=games, rounds=rounds, seed=seed)
    env_config = subject.scenario.env_config
    s, f = subject.action.shape[:2]
    learner = ReciprocityGradient(config, env_config, (s, f))
    learner.policy.double()
    with torch.no_grad():  # logits of the stored tables (a table entry of 0 or 1 stays exact)
        learner.policy.action_table.copy_(torch.logit(torch.as_tensor(subject.action)))
        learner.policy.signal_table.copy_(torch.logit(torch.as_tensor(subject.signal)))
    game_seed, decision_seed = np.random.SeedSequence(seed).spawn(2)
    world = VectorGame(env_config, s * games, seed=np.random.default_rng(game_seed))
    world.reset()
    with tqdm(total=2, desc=f"attribute {subject.name}", unit="stage", disable=not progress,
              leave=False) as bar:
        bar.set_postfix_str(f"public record, {rounds} rounds x {games} games")
        record = collect(world, learner.policy, rounds, np.random.default_rng(decision_seed),
                         s)
        # the learner's model as RG would have it after this record: the estimators of the
        # others and (world_model="learned") the numbers of the game, fitted to it
        learner.estimators.update(record.public)
        learner.world.update(record)
        bar.update()
        bar.set_postfix_str(f"the gradient by channel and delay, H = {config.horizon}")
        start = record.public["reputation_after"][-1].reshape(s, games, -1)
        attribution = attribute(learner, torch.as_tensor(start, dtype=torch.float64))
        bar.update()
    return attribution, {"games": games, "rounds": rounds, "seed": seed,
                         "start_good_fraction": float(start.mean()),
                         "estimator_prior": config.estimator_prior}


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _display(table: np.ndarray) -> list[float]:
    return [float(v) for v in to_display_order(np.asarray(table))]


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    """Mean over the finite entries (NaN where there is none: a share of a zero gradient)."""
    finite = np.isfinite(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finite, x, 0.0).sum(axis=axis) / finite.sum(axis=axis)


def _reached(cumulative: np.ndarray, share: float) -> int | None:
    """The first delay at which a cumulative share reaches ``share`` (None: never)."""
    hits = np.flatnonzero(cumulative >= share)
    return int(hits[0]) if hits.size else None


def _head_summary(att: Attribution, head: str) -> dict:
    shares = att.gradient_share(head)                                  # (S, F, C, H)
    flat = shares.reshape(-1, *shares.shape[-2:])
    mean = _nanmean(flat, axis=0)                                      # (C, H), over learners
    cumulative = np.cumsum(mean.sum(axis=0))
    names = [c.name for c in att.head_channels(head)]
    parts = np.stack([att.gradient[n] for n in names], axis=-3)        # (S, F, C, H, K)
    return {
        "share": {n: _finite(mean[i].sum()) for i, n in enumerate(names)},
        "share_by_delay": {n: [_finite(v) for v in mean[i]] for i, n in enumerate(names)},
        "cumulative_share_by_delay": [_finite(v) for v in cumulative],
        "delay_reaching": {f"{q:.0%}": _reached(cumulative, q) for q in REACHED},
        "largest_gradient_at_delay_0": float(np.abs(parts[..., 0, :]).max()),
        "gradient_norm": float(np.sqrt((att.total(head) ** 2).sum(axis=-1)).mean()),
    }


def attribution_record(subject: Subject, att: Attribution, record: dict) -> dict:
    """The JSON record of an attribution (contexts in display order)."""
    value_share = att.value_change_share()
    change = att.value_change()
    focal = subject.scenario.env_config.focal_slots
    learners = []
    for i, seed in enumerate(subject.seeds):
        for j, slot in enumerate(focal):
            heads = {}
            for head in HEADS:
                share = att.gradient_share(head)[i, j]
                heads[head] = {
                    "gradient": _display(att.total(head)[i, j]),
                    "model_gradient": _display(att.model_gradient[head][i, j]),
                    "cumulative_share_by_delay": [_finite(v) for v in
                                                  att.cumulative_share(head)[i, j]],
                    "channels": {
                        c.name: {"gradient": _display(att.gradient[c.name][i, j].sum(axis=0)),
                                 "gradient_by_delay": [_display(g) for g in
                                                       att.gradient[c.name][i, j]],
                                 "share": _finite(share[k].sum()),
                                 "share_by_delay": [_finite(v) for v in share[k]]}
                        for k, c in enumerate(att.head_channels(head))},
                }
            squared = sum(v[i, j].sum() for v in change.values())
            learners.append({
                "seed": seed, "agent": f"agent_{slot}",
                "value": float(att.value[i, j]),
                "policy": {h: dict(zip(CONTEXTS[h], _display(t[i, j]), strict=True))
                           for h, t in (("action", subject.action), ("signal", subject.signal))},
                "heads": heads,
                "value_change": {
                    "per_unit_step_first_order": float(squared),
                    "step_length": att.step_length,
                    "first_order": float(att.step_length * math.sqrt(max(squared, 0.0))),
                    "measured": _finite(att.measured_value_change[i, j]),
                    "share": {n: _finite(v[i, j].sum()) for n, v in value_share.items()},
                    "share_by_delay": {n: [_finite(x) for x in v[i, j]]
                                       for n, v in value_share.items()},
                },
                "sum_error": float(max(np.abs(att.total(h)[i, j] - att.model_gradient[h][i, j])
                                       .max() for h in HEADS)),
            })
    value_summary = {n: _finite(_nanmean(v.sum(axis=-1).ravel(), axis=0))
                     for n, v in value_share.items()}
    return {
        "scenario": subject.scenario.id,
        "policy": subject.name,
        "source": subject.source,
        "seeds": subject.seeds,
        "run_payoff": subject.payoff,
        "model": {"horizon": att.horizon, "gamma": att.gamma,
                  # the tail's rounds are delays after the horizon (recorded only with one)
                  **({"tail_rounds": att.tail_rounds} if att.tail_rounds else {}),
                  "institution": {"signal_audit": subject.scenario.signal_audit,
                                  "observers_per_interaction":
                                      subject.scenario.observers_per_interaction},
                  "policy_parameterisation": "tabular logits of the tables"},
        "record": {**record, "start": "public reputations after the record's last round, one "
                                      "start per game"},
        "contexts": {h: list(CONTEXTS[h]) for h in HEADS},
        "channels": [{"name": c.name, "head": c.head, "use": c.use, "reaches": c.reaches}
                     for c in att.channels],
        "summary": {"value": float(att.value.mean()),
                    **{h: _head_summary(att, h) for h in HEADS},
                    "value_change_share": value_summary},
        "sum_error": att.sum_error(),
        "learners": learners,
    }


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------

CHANNEL_LABELS = {
    "own_donation": "own donation (cost)",
    "self_assessment": "assessment of itself",
    "recipient_receipt": "recipient's receipt",
    "observers_audit": "its observers' audit",
    "donors_assessment": "assessment of donors",
    "majority_verdict": "majority verdict on donors",
    "own_audit": "own audit",
}


#: The cumulative share's axis: what a share is, and why it may leave [0, 1].
CUMULATIVE_LABEL = ("share of the head's gradient reached by delay d\n(1 at the horizon; "
                    "below 0 or above 1 where\nchannels of opposite sign cancel)")


def _shown_delays(record: dict) -> int:
    """Delays up to the last one where some part of a head's shares reaches 1e-4 of its
    largest (at least 10, at most the model's rounds: the horizon and its tail)."""
    shown = 10
    for head in HEADS:
        grid = np.array([[np.nan if v is None else v for v in delays]
                         for delays in record["summary"][head]["share_by_delay"].values()])
        size = np.nan_to_num(np.abs(grid)).max(axis=0)
        if size.max() > 0:
            shown = max(shown, int(np.flatnonzero(size >= 1e-4 * size.max())[-1]) + 2)
    return min(shown, record["model"]["horizon"] + record["model"].get("tail_rounds", 0))


def plot_heads(ax_action, ax_signal, ax_cumulative, record: dict, title: str = "") -> None:
    """Heat-maps delay x channel of the mean share of each head's gradient, and the cumulative
    share reached by delay d, from an attribution record."""
    from matplotlib.colors import SymLogNorm
    from matplotlib.ticker import MaxNLocator

    summary = record["summary"]
    shown = _shown_delays(record)
    for ax, head in ((ax_action, "action"), (ax_signal, "signal")):
        names = list(summary[head]["share_by_delay"])
        grid = np.array([[np.nan if v is None else v for v in delays[:shown]]
                         for delays in summary[head]["share_by_delay"].values()])
        limit = max(np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0, 1e-3)
        image = ax.imshow(grid, aspect="auto", cmap="RdBu_r", interpolation="nearest",
                          norm=SymLogNorm(linthresh=1e-3, vmin=-limit, vmax=limit))
        ax.set_yticks(range(len(names)), [CHANNEL_LABELS.get(n, n) for n in names], fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("delay t - s (rounds)", fontsize=8)
        ax.set_title(f"{title if head == 'action' else ''}{head} head: share of the gradient "
                     "by channel and delay", fontsize=9)
        bar = ax.figure.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
        bar.ax.tick_params(labelsize=7)
        bar.set_label("share (symmetric log scale)", fontsize=8)
    for head, style in (("action", "-"), ("signal", "--")):
        cumulative = [np.nan if v is None else v
                      for v in summary[head]["cumulative_share_by_delay"][:shown]]
        ax_cumulative.plot(range(len(cumulative)), cumulative, style, marker=".",
                           label=f"{head} head")
    ax_cumulative.axhline(1.0, color="grey", lw=0.5)
    ax_cumulative.axhline(0.0, color="grey", lw=0.5)
    ax_cumulative.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_cumulative.set_xlabel("delay d (rounds)", fontsize=8)
    ax_cumulative.set_ylabel(CUMULATIVE_LABEL, fontsize=8)
    ax_cumulative.set_title("cumulative share of the gradient", fontsize=9)
    ax_cumulative.legend(fontsize=8)
    for ax in (ax_action, ax_signal, ax_cumulative):
        ax.tick_params(labelsize=8)


def plot_record(record: dict, path: Path) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2), layout="constrained",
                             gridspec_kw={"width_ratios": [1.3, 1.3, 1]})
    plot_heads(*axes, record)
    fig.suptitle(f"{record['scenario']}, policy {record['policy']}: influence attribution "
                 f"(H = {record['model']['horizon']}, gamma = {record['model']['gamma']})",
                 fontsize=10)
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def write_attribution(out: str | Path, subject: Subject, *, figure: bool = True,
                      **options) -> dict:
    """Attribute a subject and write ``attribution.json`` (and ``attribution.png``) to ``out``.
    ``options``: those of :func:`attribute_subject`."""
    att, record_info = attribute_subject(subject, **options)
    record = attribution_record(subject, att, record_info)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, separators=(",", ":"), allow_nan=False)
    write_text(out / "attribution.json", text)
    if figure:
        plot_record(record, out / "attribution.png")
    return record


def summary_line(record: dict) -> str:
    """One line: the shares of each head by channel and the delays reaching 50% / 90%."""
    parts = [f"{record['scenario']} {record['policy']}: J = {record['summary']['value']:.3f}"]
    for head in HEADS:
        s = record["summary"][head]
        shares = ", ".join(f"{n} {_fmt(v)}" for n, v in s["share"].items())
        reach = " / ".join(str(v) for v in s["delay_reaching"].values())
        parts.append(f"{head}: {shares} (50% / 90% by delay {reach})")
    parts.append(f"sum error {record['sum_error']:.1e}")
    return "; ".join(parts)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


# ----------------------------------------------------------------------------------------------
# The results section
# ----------------------------------------------------------------------------------------------

ALGOS = tuple(BUILTIN)
#: (entry, scenario, what is attributed: a run of an algorithm trained for the report or a
#: strategy, the strategy the trained learners start from)
REPORT_ENTRIES = (
    *((f"flagship-{a}", "discriminators-vs-defectors-v0", a, None) for a in ALGOS),
    *((f"L6-{a}", "L6-v0", a, None) for a in ALGOS),
    *((f"L6-slow-{a}", "L6-slow-v0", a, None) for a in ALGOS),
    ("many-learners-disc", "many-learners-v0", "disc+L6", None),
    *((f"many-learners-{a}", "many-learners-v0", a, "disc+L6") for a in ALGOS),
    ("many-learners-audit-disc", "many-learners-audit-v0", "disc+L6", None),
    *((f"many-learners-audit-{a}", "many-learners-audit-v0", a, "disc+L6") for a in ALGOS),
)
#: The report's training budget (seed 0) and attribution options; ``--quick``: a few entries at
#: tiny budgets, to check that the whole path runs.
REPORT_PLAN = {"entries": REPORT_ENTRIES, "train": dict(rounds=1000, num_envs=16),
               "attribution": {}}
QUICK_PLAN = {"entries": tuple(e for e in REPORT_ENTRIES if e[0] in (
                  "flagship-rg", "flagship-ppo", "flagship-reinforce",
                  "many-learners-audit-disc", "many-learners-audit-rg")),
              "train": dict(rounds=20, num_envs=2, eval_envs=4, eval_rounds=10),
              "attribution": dict(horizon=4, games=2, rounds=10)}
SECTION_START, SECTION_END = "<!-- attribution:start -->", "<!-- attribution:end -->"
REPORT_COMMAND = ("reciprocity attribute --report --out docs/attribution --doc docs/results.md "
                  "--overwrite")


def report_entry(entry: tuple, plan: dict, out: str) -> dict:
    """One entry of the report (a job of :class:`reciprocity.engine.Engine`): train its run in a
    temporary folder (a strategy needs none), attribute it, write ``<out>/<entry>/``; returns
    the attribution record."""
    from .train import TrainConfig, train

    name, scenario, what, init = entry
    torch.set_num_threads(1)
    if lookup(what) is not None:  # an algorithm: a run trained for the report
        with tempfile.TemporaryDirectory(prefix="attribution-run-") as runs:
            run = Path(runs) / name
            train(TrainConfig(scenario, algo=what, seeds=(0,), init_policy=init,
                              save_checkpoint=False, tensorboard=False, **plan["train"]),
                  run, progress=False)
            subject = from_run(run)
        # the run folder is temporary: record how it was trained instead
        subject.source = {"trained": {"algo": what, "seeds": [0], "init_policy": init,
                                      **plan["train"]}}
    else:
        subject = from_policy(scenario, what)
    record = write_attribution(Path(out) / name, subject, **plan["attribution"])
    record["entry"] = name
    return record


def write_report(out: str | Path, doc: str | Path | None = None, *, quick: bool = False,
                 progress: bool = True, engine: Engine | None = None) -> list[dict]:
    """Train the short runs of :data:`REPORT_PLAN` (1000 rounds x 16 games, seed 0; the learners
    of the many-learners scenarios start as ideal discriminators), attribute them and the
    strategies (one job per entry, on ``engine``), and write
    ``<out>/<entry>/attribution.{json,png}``, ``<out>/overview.png`` and, with ``doc``, the
    generated section of that file."""
    plan = QUICK_PLAN if quick else REPORT_PLAN
    engine = engine or Engine(progress=progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    jobs = [Job(report_entry, (entry, plan, str(out)),
                cost=1.0 if lookup(entry[2]) is None else 10.0 * entry_size(entry))
            for entry in plan["entries"]]
    records = engine.run(jobs, "attribution", unit="entry")
    if progress:
        for record in records:
            print(summary_line(record), flush=True)
        print(f"{len(records)} attributions in {(time.perf_counter() - started) / 60:.1f} min")
    plot_overview(records, out / "overview.png")
    if doc is not None:
        write_section(Path(doc), section_markdown(records, out, Path(doc), plan, quick))
    return records


def entry_size(entry: tuple) -> float:
    """Agents x learners of an entry's scenario (its training cost grows with both)."""
    scenario = get_scenario(entry[1])
    return float(len(scenario.population) * scenario.num_focal)


def plot_overview(records: list[dict], path: Path) -> None:
    """Every RG run and strategy of the report in four panels, one column per head: top, the
    share of the head's gradient by channel (summed over delays; a bar per channel, a group per
    entry); bottom, the cumulative share reached by delay d (a line per entry). The delay x
    channel detail of each entry is its own attribution.png."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    rows = [r for r in records if r["policy"] != "ppo" and r["policy"] != "reinforce"]
    names = [f"{r['scenario']}, {r['policy']}" for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(15, 4.0 + 0.55 * len(rows) + 4.2),
                             layout="constrained",
                             gridspec_kw={"height_ratios": [0.55 * len(rows) + 1.0, 4.2]})
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    shown = max((_shown_delays(r) for r in rows), default=10)
    for col, head in enumerate(HEADS):
        bars, lines = axes[0][col], axes[1][col]
        channels = list(dict.fromkeys(n for r in rows for n in r["summary"][head]["share"]))
        height = 0.8 / max(1, len(channels))
        for k, channel in enumerate(channels):
            shares = [r["summary"][head]["share"].get(channel) for r in rows]
            y = np.arange(len(rows)) + (k - (len(channels) - 1) / 2) * height
            bars.barh(y, [np.nan if v is None else v for v in shares], height * 0.9,
                      color=palette[list(CHANNEL_LABELS).index(channel) % len(palette)
                                    if channel in CHANNEL_LABELS else k % len(palette)],
                      label=CHANNEL_LABELS.get(channel, channel))
        bars.axvline(0.0, color="k", lw=0.8)
        bars.axvline(1.0, color="grey", lw=0.8, ls=":")
        bars.set_yticks(range(len(rows)), names if col == 0 else [], fontsize=9)
        bars.invert_yaxis()
        bars.set_xlabel(f"share of the {head} head's gradient (summed over delays; the shares "
                        "add up to 1,\na channel pulling against the total is negative)",
                        fontsize=9)
        bars.set_title(f"{head} head: where its gradient comes from", fontsize=11)
        bars.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="channel",
                    title_fontsize=8)
        for r, name, style in zip(rows, names, ["-", "--", "-.", ":"] * len(rows),
                                  strict=False):
            cumulative = [np.nan if v is None else v
                          for v in r["summary"][head]["cumulative_share_by_delay"][:shown]]
            lines.plot(range(len(cumulative)), cumulative, style, marker=".", label=name)
        lines.axhline(1.0, color="grey", lw=0.8)
        lines.axhline(0.0, color="grey", lw=0.8)
        lines.xaxis.set_major_locator(MaxNLocator(integer=True))
        lines.set_xlim(-0.5, shown - 0.5)
        lines.set_xlabel("delay d (rounds)", fontsize=9)
        lines.set_ylabel(CUMULATIVE_LABEL, fontsize=9)
        lines.set_title(f"{head} head: how soon its gradient is reached", fontsize=11)
        for ax in (bars, lines):
            ax.tick_params(labelsize=9)
    handles, labels = axes[1][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(3, len(labels)),
               fontsize=9)
    fig.suptitle("Influence attribution of RG runs and the ideal discriminator: the share of "
                 "each head's reciprocity gradient by channel and by delay", fontsize=12)
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def _shares(head_summary: dict) -> str:
    return "<br>".join(f"{CHANNEL_LABELS.get(n, n)} {_fmt(v)}"
                       for n, v in head_summary["share"].items())


def _reach(head_summary: dict) -> str:
    return " / ".join("–" if v is None else str(v) for v in head_summary["delay_reaching"].values())


def section_markdown(records: list[dict], out: Path, doc: Path, plan: dict,
                     quick: bool = False) -> str:
    """The generated section: a table of channel shares and delays per entry."""
    rel = os.path.relpath(out, doc.parent)
    model, record = records[0]["model"], records[0]["record"]
    lines = [
        f"Generated by `{REPORT_COMMAND}{' --quick' if quick else ''}`: RG, PPO and REINFORCE "
        f"trained for {plan['train']['rounds']} rounds x "
        f"{plan['train']['num_envs']} games (seed 0; in the many-learners scenarios every "
        "learner starts as the ideal discriminator `disc+L6`), and the ideal discriminator "
        f"itself, each attributed under RG's model (H = {model['horizon']}, gamma = "
        f"{model['gamma']}) with estimators fitted to a fresh record of its own play "
        f"({record['games']} games x {record['rounds']} rounds from the initial reputations). "
        "Columns: each head's share "
        "of its gradient by channel (a part's projection on the head's total gradient, summed "
        "over delays) and the delays by which 50% / 90% of it is reached; the size of each "
        "head's gradient (Euclidean norm of dJ/dP over its contexts); each channel's share of "
        "the value change for a small step along the gradient in the tables' logits (shown "
        "from 0.005); the largest |part| of the signal gradient at delay 0 and the largest "
        "|sum of the parts - gradient of the objective|. Means over the learners.",
        "",
        "| scenario | policy | payoff / round | action head: share by channel | signal head: "
        "share by channel | 50% / 90% by delay (action; signal) | \\|∂J/∂P\\| (action; signal) "
        "| value change: share by channel | signal at delay 0; sum error |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        s = r["summary"]
        payoff = r["run_payoff"][0]
        init = r["source"].get("trained", {}).get("init_policy")
        policy = r["policy"] + (f" (from {init})" if init else "")
        value = "<br>".join(f"{CHANNEL_LABELS.get(n, n)} {_fmt(v)}"
                            for n, v in s["value_change_share"].items()
                            if v is not None and abs(v) >= 0.005) or "–"
        lines.append(
            f"| [{r['scenario']}]({rel}/{r['entry']}/attribution.png) | {policy} | "
            f"{'–' if payoff is None else f'{payoff:.3f}'} | {_shares(s['action'])} | "
            f"{_shares(s['signal'])} | {_reach(s['action'])}; {_reach(s['signal'])} | "
            f"{s['action']['gradient_norm']:.3f}; {s['signal']['gradient_norm']:.3f} | {value} | "
            f"{s['signal']['largest_gradient_at_delay_0']:.0e}; {r['sum_error']:.0e} |")
    lines += ["", f"![influence attribution of RG runs and the ideal discriminator]"
                  f"({rel}/overview.png)"]
    return "\n".join(lines)


def write_section(doc: Path, markdown: str) -> None:
    """Replace the text between the attribution markers of ``doc`` (appended if absent)."""
    write_block(doc, SECTION_START, SECTION_END, markdown)


def attribute_command(*, out: str | Path, run: str | Path | None = None,
                      scenario: str | None = None, policy: str | None = None,
                      report: bool = False, doc: str | Path | None = None, quick: bool = False,
                      progress: bool = True, overwrite: bool = False,
                      engine: Engine | None = None, **options) -> list[dict]:
    """``reciprocity attribute``: a run folder (``run``), a strategy in a scenario (``scenario``
    and ``policy``) or the results section (``report``, its entries run on ``engine``);
    ``options`` as :func:`attribute_subject`. ``out`` is a run folder
    (:func:`reciprocity.runfolder.open_run`: a folder holding another run is refused unless
    ``overwrite``). Prints one summary line per attribution."""
    subject = None
    if not report:  # read and check what to attribute before touching the output folder
        if doc is not None or quick:
            raise ValueError("attribute: --doc and --quick go with --report")
        if engine is not None:
            raise ValueError("attribute: an engine (--backend, --workers) goes with --report")
        if run is not None and policy is not None:
            raise ValueError("attribute: --policy goes with --scenario ID (a run brings its "
                             "own)")
        if run is not None:
            subject = from_run(run)
        elif scenario is not None and policy is not None:
            subject = from_policy(scenario, policy)
        else:
            raise ValueError("attribute needs --run DIR, --scenario ID --policy SPEC, or "
                             "--report")
        attribution_options(subject, **{k: v for k, v in options.items() if k != "figure"})
    config = {"run": None if run is None else str(Path(run).resolve()), "scenario": scenario,
              "policy": policy, "report": report, "quick": quick, **options}
    with open_run(out, "attribute", config, overwrite=overwrite) as folder:
        if report:
            records = write_report(folder.path, doc, quick=quick, progress=progress,
                                   engine=engine)
        else:
            records = [write_attribution(folder.path, subject, progress=progress, **options)]
            if progress:
                print(summary_line(records[0]))
                figure = f" and {folder.path / 'attribution.png'}" \
                    if options.get("figure", True) else ""
                print(f"wrote {folder.path / 'attribution.json'}{figure}")
        folder.complete()
    return records
