"""Per-budget hyper-parameter tuning: the same search effort for every algorithm (spec §6).

    reciprocity tune --out docs/results --doc docs/agents.md

For every algorithm (RG, PPO, REINFORCE, or any learner of :mod:`reciprocity.learners`) and
policy class it has (tabular, MLP), the same number of configurations is drawn uniformly without
replacement, with a fixed seed, from the search space its learner class declares
(``tuning_space``; ``configurations`` of them, or the whole space if it is smaller). The built-in
learners' spaces have the same number of points (720), and no algorithm's hand-set default is a
candidate unless ``include_defaults`` (then every algorithm's is, first). Every configuration is
trained once per tuning scenario with the tuning seeds — kept apart from the seeds the benchmark
reports (0, 1, ...) — for the largest budget, and its policies are snapshotted and evaluated
(long run, :mod:`reciprocity.evaluation`) at every budget on the way. Rounds per update are
restricted to values dividing every budget, so one run serves all budgets exactly. The score of
a configuration at a budget is its payoff as a fraction of the reference, averaged over tuning
scenarios and seeds; the best configuration per (algorithm, policy class, budget) is the outcome
(ties: the earlier candidate). Effort: configurations x scenarios x
seeds runs of the largest budget, identical for every algorithm and policy class.

Outputs in ``out``: ``tuning.json`` (search spaces, every candidate's scores per budget, the
selected configurations) and ``tuning/runs/<algo>-<policy>/<k>/<scenario>/`` (the runs). With
``--doc FILE`` the generated outcome table of FILE (between ``<!-- tuning-table:start -->`` and
``<!-- tuning-table:end -->``) is refreshed.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .engine import Cell, Engine, ReferenceRequest, References
from .learners import BUILTIN, POLICY_CLASSES, ROUNDS_PER_UPDATE, get_algorithm
from .report import write_block
from .runfolder import write_json

__all__ = ["BUDGETS", "POLICY_CLASSES", "QUICK", "TuningConfig", "candidates", "run_tuning",
           "search_space", "selected_params", "tuning_identity", "tuning_table",
           "write_tuning_doc"]

BUDGETS = (50, 100, 200, 400, 1000, 2000)  # rounds per game (x 16 games per seed)
TABLE_START = "<!-- tuning-table:start -->"
TABLE_END = "<!-- tuning-table:end -->"


@dataclass
class TuningConfig:
    """What the search runs (defaults: the benchmark's)."""

    # six of the curves' discriminative scenarios, one seed each: a candidate is scored over
    # norms (L3, L6, shunning), populations (the flagship), slow reputations and b close to c,
    # the way the curves average it, rather than on two seeds of three (where one scenario in
    # which large steps fail weighed a third)
    scenarios: tuple[str, ...] = ("L3-v0", "L6-v0", "shunning-v0",
                                  "discriminators-vs-defectors-v0",
                                  "discriminators-vs-defectors-slow-v0", "low-benefit-v0")
    seeds: tuple[int, ...] = (100,)  # kept apart from the reported seeds 0, 1, ...
    configurations: int = 8  # per algorithm and policy class, the same for all
    budgets: tuple[int, ...] = BUDGETS
    algos: tuple[str, ...] = tuple(BUILTIN)  # names or MODULE:CLASS locators
    policies: tuple[str, ...] = POLICY_CLASSES  # (an algorithm is tuned in those it has)
    num_envs: int = 16  # games per seed (as in the benchmark)
    eval_envs: int = 64  # evaluation games per snapshot
    rounds_per_update: tuple[int, ...] = ROUNDS_PER_UPDATE  # allowed where it is searched
    search_seed: int = 0  # seeds the draw of the configurations
    # whether each algorithm's hand-set default (projected onto its grid) is one of its
    # candidates; the same for every algorithm. Off: every candidate is a uniform draw, so no
    # algorithm profits from defaults tuned by hand on the scenarios it is scored on
    include_defaults: bool = False

    def __post_init__(self):
        for name in ("scenarios", "seeds", "budgets", "algos", "policies", "rounds_per_update"):
            setattr(self, name, tuple(getattr(self, name)))
        if self.configurations < 1:
            raise ValueError(f"configurations must be positive, got {self.configurations!r}")
        if not self.budgets or min(self.budgets) < 1:
            raise ValueError(f"budgets must be positive round counts, got {self.budgets}")
        for algo in self.algos:
            get_algorithm(algo)
        for policy in self.policies:
            if policy not in POLICY_CLASSES:
                raise ValueError(f"policies must be among {POLICY_CLASSES}, got {policy!r}")
        self.rounds_per_update = tuple(r for r in self.rounds_per_update
                                       if all(b % r == 0 for b in self.budgets))
        if not self.rounds_per_update:
            raise ValueError(f"no rounds_per_update value divides every budget {self.budgets}")

    def pairs(self) -> list[tuple[Any, str]]:
        """(algorithm, policy class) pairs searched: each algorithm in the classes it has."""
        out = []
        for algo in self.algos:
            algorithm = get_algorithm(algo)
            out += [(algorithm, p) for p in self.policies if p in algorithm.policy_classes]
        return out

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def search_space(algo, policy: str, cfg: TuningConfig) -> dict[str, tuple]:
    """Hyper-parameter -> values searched for one algorithm (name, locator or
    :class:`~reciprocity.learners.Algorithm`) and policy class: its declared space, with
    ``rounds_per_update`` restricted to the values that divide every budget."""
    algorithm = get_algorithm(algo)
    space = algorithm.search_space(policy, rounds_per_update=cfg.rounds_per_update)
    empty = [name for name, values in space.items() if not values]
    if empty:
        raise ValueError(f"tuning: {algorithm.name} ({policy}) has no value of {empty} left "
                         f"(rounds_per_update must divide every budget {cfg.budgets})")
    return space


def _nearest(value, grid: tuple):
    """The grid value closest to ``value`` (on a log scale for positive numbers)."""
    if value in grid or isinstance(value, str):
        return value if value in grid else grid[0]
    if value > 0 and all(g > 0 for g in grid):
        return min(grid, key=lambda g: abs(math.log(g) - math.log(value)))
    return min(grid, key=lambda g: abs(g - value))


def candidates(algo, policy: str, cfg: TuningConfig) -> list[dict]:
    """The configurations searched: ``configurations`` distinct uniform draws from the grid
    (seeded by ``search_seed``, the algorithm and the policy class), the first of them the
    default projected onto the grid when ``include_defaults``."""
    algorithm = get_algorithm(algo)
    space = search_space(algorithm, policy, cfg)
    grid = [dict(zip(space, values, strict=True)) for values in itertools.product(*space.values())]
    out = []
    if cfg.include_defaults:
        defaults = algorithm.defaults()
        out.append({name: _nearest(getattr(defaults, name), values)
                    for name, values in space.items()})
    rng = np.random.default_rng([cfg.search_seed, algorithm.search_key(),
                                 POLICY_CLASSES.index(policy)])
    for k in rng.permutation(len(grid)):
        if len(out) >= min(cfg.configurations, len(grid)):
            break
        if grid[k] not in out:
            out.append(grid[k])
    return out


def tuning_cells(cfg: TuningConfig, refs: dict) -> list[Cell]:
    """Every (algorithm, policy class, candidate, scenario): one run of the largest budget,
    snapshotted at every budget; ``meta``: algo, policy, candidate, scenario."""
    from .envs.scenarios import get_scenario
    from .train import TrainConfig

    budget = max(cfg.budgets)
    cells = []
    for algorithm, policy in cfg.pairs():
        for k, params in enumerate(candidates(algorithm, policy, cfg)):
            for s in cfg.scenarios:
                sid = get_scenario(s).id
                config = TrainConfig(
                    s, algo=algorithm.locator, seeds=cfg.seeds, rounds=budget,
                    num_envs=cfg.num_envs, eval_envs=cfg.eval_envs,
                    eval_burn_in=refs[sid]["burn_in"], eval_rounds=refs[sid]["rounds"],
                    eval_budgets=cfg.budgets, algo_config={**params, "policy": policy},
                    checkpoint_every=0, save_checkpoint=False, tensorboard=False)
                cells.append(Cell(config, f"tuning/runs/{algorithm.name}-{policy}/{k}/{sid}",
                                  {"algo": algorithm.name, "policy": policy, "candidate": k,
                                   "scenario": sid}))
    return cells


def run_tuning(cfg: TuningConfig, out: str | Path, *, engine: Engine | None = None,
               references: References | None = None, progress: bool = True) -> dict:
    """Run the search and write ``out/tuning.json``; returns the outcome (see module doc).

    Args:
        engine: runs the jobs (default: a local pool of 2 processes).
        references: references computed before (reused where they fit; new ones are added).
    """
    from .evaluation import EVALUATION_ENVS

    engine = engine or Engine(progress=progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    refs = engine.references([ReferenceRequest.of(s, search_envs=32,
                                                  confirm_envs=EVALUATION_ENVS)
                              for s in cfg.scenarios], references,
                             desc="tuning references")
    cells = tuning_cells(cfg, refs)
    metrics = engine.train(cells, out, desc="tuning")
    outcome: dict[str, Any] = {
        "config": cfg.to_dict(),
        "search_spaces": {}, "candidates": {}, "selected": {},
        "references": {sid: {"reference_payoff": ref["reference_payoff"],
                             "burn_in": ref["burn_in"]} for sid, ref in refs.items()},
    }
    for algorithm, policy in cfg.pairs():
        name = algorithm.name
        space = search_space(algorithm, policy, cfg)
        outcome["search_spaces"].setdefault(name, {})[policy] = \
            {k: list(v) for k, v in space.items()}
        rows = []
        for k, params in enumerate(candidates(algorithm, policy, cfg)):
            scores = {b: [] for b in cfg.budgets}
            wall = []
            for cell, per_seed in zip(cells, metrics, strict=True):
                if (cell.meta["algo"], cell.meta["policy"], cell.meta["candidate"]) != \
                        (name, policy, k):
                    continue
                reference_payoff = refs[cell.meta["scenario"]]["reference_payoff"]
                for m in per_seed:
                    wall.append(m["wall_seconds"] / len(cfg.seeds))
                    for entry in m["budgets"]:
                        scores[entry["rounds"]].append(
                            entry["per_interaction_payoff"] / reference_payoff)
            rows.append({"params": params, "wall_seconds_per_seed": float(np.mean(wall)),
                         "scores": {str(b): {"mean": float(np.mean(v)), "runs": v}
                                    for b, v in scores.items()}})
        outcome["candidates"].setdefault(name, {})[policy] = rows
        outcome["selected"].setdefault(name, {})[policy] = {
            str(b): int(np.argmax([r["scores"][str(b)]["mean"] for r in rows]))
            for b in cfg.budgets}
    outcome["wall_seconds"] = time.perf_counter() - start
    outcome.update(engine.describe())
    write_json(out / "tuning.json", outcome)
    return outcome


def tuning_identity(outcome: dict | None) -> dict | None:
    """What of a tuning outcome decides a study's results (part of the study's identity): the
    candidates and the selected configurations; None without a tuning."""
    return None if outcome is None else {k: outcome[k] for k in ("selected", "candidates")}


def selected_params(outcome: dict | None, algo: str, policy: str, budget: int) -> dict:
    """The tuned hyper-parameters of (algorithm, policy class, budget); ``{}`` (the defaults)
    without an outcome."""
    if outcome is None:
        return {}
    try:
        k = outcome["selected"][algo][policy][str(budget)]
    except KeyError:
        raise ValueError(f"tuning: no selected configuration for {algo} / {policy} at "
                         f"{budget} rounds; run `reciprocity tune` with that budget") from None
    return dict(outcome["candidates"][algo][policy][k]["params"])


def _value(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def tuning_table(outcome: dict) -> str:
    """Markdown: the search spaces and their sizes, then per (algorithm, policy class, budget)
    the selected configuration, its score and the default's (or, without defaults among the
    candidates, the median candidate's)."""
    cfg = outcome["config"]
    lines = ["| algorithm | hyper-parameters searched (values) | points in the space |",
             "| --- | --- | --- |"]
    for algo, spaces in outcome["search_spaces"].items():
        for policy, space in spaces.items():
            values = "; ".join(f"`{k}` {', '.join(_value(v) for v in vals)}"
                               for k, vals in space.items()) or "none (the defaults)"
            points = math.prod(len(vals) for vals in space.values())
            lines.append(f"| {algo} ({policy}) | {values} | {points} |")
    with_defaults = cfg.get("include_defaults", True)  # tuning.json of earlier versions had them
    last = "default configuration" if with_defaults else "median candidate"
    lines += ["", "| algorithm | policy | rounds per game | selected configuration | "
              f"fraction of the reference (tuning runs) | {last} |",
              "| --- | --- | --- | --- | --- | --- |"]
    for algo, per_policy in outcome["selected"].items():
        for policy, per_budget in per_policy.items():
            rows = outcome["candidates"][algo][policy]
            for budget, k in per_budget.items():
                params = ", ".join(f"{n}={_value(v)}" for n, v in rows[k]["params"].items())
                chosen = rows[k]["scores"][budget]["mean"]
                other = rows[0]["scores"][budget]["mean"] if with_defaults else \
                    float(np.median([r["scores"][budget]["mean"] for r in rows]))
                name = "default" if with_defaults and k == 0 else params or "the defaults"
                lines.append(f"| {algo} | {policy} | {budget} | {name} | {chosen:.3f} | "
                             f"{other:.3f} |")
    runs = cfg["configurations"] * len(cfg["scenarios"]) * len(cfg["seeds"])
    drawn = ("the first being the algorithm's hand-set default" if with_defaults else
             "all drawn uniformly from its space: no hand-set default among them")
    head = (f"Search: {cfg['configurations']} configurations per algorithm and policy class "
            f"({drawn}), each trained on {', '.join(f'`{s}`' for s in cfg['scenarios'])} with "
            f"seeds {', '.join(map(str, cfg['seeds']))} ({runs} runs of {max(cfg['budgets'])} "
            f"rounds x {cfg['num_envs']} games each, evaluated at "
            f"{', '.join(map(str, cfg['budgets']))} rounds; {outcome['wall_seconds'] / 60:.1f} "
            f"min on {outcome['cpu_count']} cores).")
    return head + "\n\n" + "\n".join(lines)


def write_tuning_doc(doc: str | Path, outcome: dict, command: str) -> None:
    """Refresh the generated tuning block of a Markdown file (it must hold the markers)."""
    doc = Path(doc)
    text = doc.read_text() if doc.is_file() else ""
    if TABLE_START not in text or TABLE_END not in text:
        raise ValueError(f"--doc: {doc} has no {TABLE_START} ... {TABLE_END} block")
    write_block(doc, TABLE_START, TABLE_END,
                "\n".join([f"Generated by `{command}`.", "", tuning_table(outcome)]))


#: ``--quick``: the same code paths in about a minute (one scenario, two configurations).
QUICK = {"scenarios": ("L6-v0",), "seeds": (100,), "configurations": 2, "budgets": (10, 20),
         "num_envs": 4, "eval_envs": 16}
