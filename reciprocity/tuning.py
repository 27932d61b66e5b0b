"""Per-budget hyper-parameter tuning: the same search effort for every algorithm (spec §6).

    reciprocity tune --out docs/results --doc docs/agents.md

For every algorithm (RG, PPO, REINFORCE) and policy class (tabular, MLP), the same number of
configurations is drawn from that algorithm's search space (``configurations``; the first is the
algorithm's default, projected onto the grid, the others are drawn uniformly without
replacement with a fixed seed). Every configuration is trained once per tuning scenario with the
tuning seeds — kept apart from the seeds the benchmark reports (0, 1, ...) — for the largest
budget, and its policies are snapshotted and evaluated (long run, :mod:`reciprocity.evaluation`)
at every budget on the way. Rounds per update are restricted to values dividing every budget, so
one run serves all budgets exactly. The score of a configuration at a budget is its payoff as a
fraction of the reference, averaged over tuning scenarios and seeds; the best configuration per
(algorithm, policy class, budget) is the outcome (ties: the earlier candidate, so the default
wins a tie). Effort: configurations x scenarios x seeds runs of the largest budget, identical for
every algorithm and policy class.

Outputs in ``out``: ``tuning.json`` (search spaces, every candidate's scores per budget, the
selected configurations) and ``tuning/runs/<algo>-<policy>/<k>/<scenario>/`` (the runs). With
``--doc FILE`` the generated outcome table of FILE (between ``<!-- tuning-table:start -->`` and
``<!-- tuning-table:end -->``) is refreshed.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .runfolder import write_block, write_json

__all__ = ["BUDGETS", "POLICY_CLASSES", "QUICK", "TuningConfig", "candidates",
           "run_tuning", "search_space", "selected_params", "train_job", "tuning_table",
           "write_tuning_doc"]

ALGOS = ("rg", "ppo", "reinforce")
POLICY_CLASSES = ("tabular", "mlp")
BUDGETS = (50, 100, 200, 400, 1000, 2000)  # rounds per game (x 16 games per seed)
TABLE_START = "<!-- tuning-table:start -->"
TABLE_END = "<!-- tuning-table:end -->"

#: Adam step sizes searched, per policy class (an MLP needs smaller steps than free logits).
LEARNING_RATES = {"tabular": (0.01, 0.03, 0.1, 0.3, 1.0), "mlp": (0.001, 0.003, 0.01, 0.03, 0.1)}
#: Rounds per update searched: every value divides every budget, so one run serves all budgets.
ROUNDS_PER_UPDATE = (5, 10, 25, 50)
#: The rest of each algorithm's search space (besides ``lr`` and ``rounds_per_update``).
ALGORITHM_SPACES: dict[str, dict[str, tuple]] = {
    # an update costs about steps x horizon: capped at twice the default's per round played
    "rg": {"horizon": (10, 25, 50), "steps_per_update": (1, 2, 5),
           "estimator_decay": (0.9, 0.97, 1.0)},
    "ppo": {"gamma": (0.97, 0.99), "gae_lambda": (0.9, 0.95, 1.0), "num_epochs": (2, 4, 8),
            "entropy_coef": (0.0, 0.01)},
    "reinforce": {"gamma": (0.95, 0.97, 0.99), "baseline": ("learned", "running_mean"),
                  "entropy_coef": (0.0, 0.01)},
}


@dataclass
class TuningConfig:
    """What the search runs (defaults: the benchmark's)."""

    scenarios: tuple[str, ...] = ("L6-v0", "discriminators-vs-defectors-v0", "low-benefit-v0")
    seeds: tuple[int, ...] = (100, 101)  # kept apart from the reported seeds 0, 1, ...
    configurations: int = 8  # per algorithm and policy class, the same for all
    budgets: tuple[int, ...] = BUDGETS
    algos: tuple[str, ...] = ALGOS
    policies: tuple[str, ...] = POLICY_CLASSES
    num_envs: int = 16  # games per seed (as in the benchmark)
    eval_envs: int = 64  # evaluation games per snapshot
    rounds_per_update: tuple[int, ...] = ROUNDS_PER_UPDATE
    search_seed: int = 0  # seeds the draw of the configurations
    workers: int = 2
    references: dict = field(default_factory=dict)  # scenario -> reference dict (else computed)

    def __post_init__(self):
        for name in ("scenarios", "seeds", "budgets", "algos", "policies", "rounds_per_update"):
            setattr(self, name, tuple(getattr(self, name)))
        if self.configurations < 1:
            raise ValueError(f"configurations must be positive, got {self.configurations!r}")
        if not self.budgets or min(self.budgets) < 1:
            raise ValueError(f"budgets must be positive round counts, got {self.budgets}")
        for algo in self.algos:
            if algo not in ALGOS:
                raise ValueError(f"algos must be among {ALGOS}, got {algo!r}")
        for policy in self.policies:
            if policy not in POLICY_CLASSES:
                raise ValueError(f"policies must be among {POLICY_CLASSES}, got {policy!r}")
        self.rounds_per_update = tuple(r for r in self.rounds_per_update
                                       if all(b % r == 0 for b in self.budgets))
        if not self.rounds_per_update:
            raise ValueError(f"no rounds_per_update value divides every budget {self.budgets}")

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out.pop("references")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def search_space(algo: str, policy: str, cfg: TuningConfig) -> dict[str, tuple]:
    """Hyper-parameter -> values searched for one algorithm and policy class."""
    return {"lr": LEARNING_RATES[policy], "rounds_per_update": cfg.rounds_per_update,
            **ALGORITHM_SPACES[algo]}


def _nearest(value, grid: tuple):
    """The grid value closest to ``value`` (on a log scale for positive numbers)."""
    if value in grid or isinstance(value, str):
        return value if value in grid else grid[0]
    if value > 0 and all(g > 0 for g in grid):
        return min(grid, key=lambda g: abs(math.log(g) - math.log(value)))
    return min(grid, key=lambda g: abs(g - value))


def candidates(algo: str, policy: str, cfg: TuningConfig) -> list[dict]:
    """The configurations searched: the default projected onto the grid, then distinct uniform
    draws (seeded by ``search_seed``, the algorithm and the policy class)."""
    from .train import algorithm

    space = search_space(algo, policy, cfg)
    defaults = algorithm(algo)[1]()
    default = {name: _nearest(getattr(defaults, name), values) for name, values in space.items()}
    grid = [dict(zip(space, values, strict=True)) for values in itertools.product(*space.values())]
    out = [default]
    rng = np.random.default_rng([cfg.search_seed, ALGOS.index(algo),
                                 POLICY_CLASSES.index(policy)])
    for k in rng.permutation(len(grid)):
        if len(out) >= min(cfg.configurations, len(grid)):
            break
        if grid[k] != default:
            out.append(grid[k])
    return out


def train_job(config, run_dir: str | None) -> list[dict]:
    """One training run in a worker process (top level: it is pickled)."""
    import torch

    from .train import train

    torch.set_num_threads(1)
    return train(config, run_dir, progress=False)


def _cost(algo: str, policy: str, params: dict, budget: int) -> float:
    """Relative cost of a run, to start the long ones first."""
    per_update = {"rg": params.get("horizon", 50) * params.get("steps_per_update", 5) / 25,
                  "ppo": params.get("num_epochs", 4) / 4, "reinforce": 0.1}[algo]
    return budget * (1.0 + per_update / params.get("rounds_per_update", 10)) * \
        (1.5 if policy == "mlp" else 1.0)


def run_tuning(cfg: TuningConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Run the search and write ``out/tuning.json``; returns the outcome (see module doc)."""
    from tqdm.auto import tqdm

    from .envs.scenarios import get_scenario
    from .evaluation import EVALUATION_ENVS
    from .sweep import _reference_job, _run_local
    from .train import TrainConfig

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    ids = [get_scenario(s).id for s in cfg.scenarios]
    refs = dict(cfg.references)
    missing = [s for s, sid in zip(cfg.scenarios, ids, strict=True) if sid not in refs]
    bar = tqdm(total=len(missing), desc="tuning references", disable=not progress,
               unit="job")
    for ref in _run_local([(_reference_job, s, 32, EVALUATION_ENVS, None) for s in missing],
                          cfg.workers, bar):
        refs[ref["scenario"]] = ref
    bar.close()
    budget = max(cfg.budgets)
    runs = []  # (algo, policy, candidate index, scenario id, TrainConfig, run dir)
    for algo in cfg.algos:
        for policy in cfg.policies:
            for k, params in enumerate(candidates(algo, policy, cfg)):
                for s, sid in zip(cfg.scenarios, ids, strict=True):
                    config = TrainConfig(
                        s, algo=algo, seeds=cfg.seeds, rounds=budget, num_envs=cfg.num_envs,
                        eval_envs=cfg.eval_envs, eval_burn_in=refs[sid]["burn_in"],
                        eval_rounds=refs[sid]["rounds"], eval_budgets=cfg.budgets,
                        algo_config={**params, "policy": policy}, checkpoint_every=0,
                        save_checkpoint=False, tensorboard=False)
                    run_dir = out / "tuning" / "runs" / f"{algo}-{policy}" / str(k) / sid
                    runs.append((algo, policy, k, sid, config, run_dir))
    order = sorted(range(len(runs)), key=lambda i: -_cost(
        runs[i][0], runs[i][1], runs[i][4].algo_config, budget))
    bar = tqdm(total=len(runs), desc="tuning", disable=not progress, unit="run")
    results = _run_local([(train_job, runs[i][4], str(runs[i][5])) for i in order],
                         cfg.workers, bar)
    bar.close()
    metrics = dict(zip(order, results, strict=True))
    outcome: dict[str, Any] = {
        "config": cfg.to_dict(),
        "search_spaces": {a: {p: {k: list(v) for k, v in search_space(a, p, cfg).items()}
                              for p in cfg.policies} for a in cfg.algos},
        "references": {sid: {"reference_payoff": refs[sid]["reference_payoff"],
                             "burn_in": refs[sid]["burn_in"]} for sid in ids},
        "candidates": {}, "selected": {},
    }
    for algo in cfg.algos:
        outcome["candidates"][algo], outcome["selected"][algo] = {}, {}
        for policy in cfg.policies:
            rows = []
            for k, params in enumerate(candidates(algo, policy, cfg)):
                scores = {b: [] for b in cfg.budgets}
                wall = []
                for i, run in enumerate(runs):
                    if run[:3] != (algo, policy, k):
                        continue
                    reference_payoff = refs[run[3]]["reference_payoff"]
                    for m in metrics[i]:
                        wall.append(m["wall_seconds"] / len(cfg.seeds))
                        for entry in m["budgets"]:
                            scores[entry["rounds"]].append(
                                entry["per_interaction_payoff"] / reference_payoff)
                rows.append({"params": params, "wall_seconds_per_seed": float(np.mean(wall)),
                             "scores": {str(b): {"mean": float(np.mean(v)), "runs": v}
                                        for b, v in scores.items()}})
            outcome["candidates"][algo][policy] = rows
            outcome["selected"][algo][policy] = {
                str(b): int(np.argmax([r["scores"][str(b)]["mean"] for r in rows]))
                for b in cfg.budgets}
    outcome["wall_seconds"] = time.perf_counter() - start
    outcome["cpu_count"] = os.cpu_count()
    write_json(out / "tuning.json", outcome)
    return outcome


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
    """Markdown: the search spaces, then per (algorithm, policy class, budget) the selected
    configuration, its score and the default's."""
    cfg = outcome["config"]
    lines = ["| algorithm | hyper-parameters searched (values) |", "| --- | --- |"]
    for algo, spaces in outcome["search_spaces"].items():
        for policy, space in spaces.items():
            values = "; ".join(f"`{k}` {', '.join(_value(v) for v in vals)}"
                               for k, vals in space.items())
            lines.append(f"| {algo} ({policy}) | {values} |")
    lines += ["", "| algorithm | policy | rounds per game | selected configuration | "
              "fraction of the reference (tuning runs) | default configuration |",
              "| --- | --- | --- | --- | --- | --- |"]
    for algo, per_policy in outcome["selected"].items():
        for policy, per_budget in per_policy.items():
            rows = outcome["candidates"][algo][policy]
            for budget, k in per_budget.items():
                params = ", ".join(f"{n}={_value(v)}" for n, v in rows[k]["params"].items())
                chosen = rows[k]["scores"][budget]["mean"]
                default = rows[0]["scores"][budget]["mean"]
                lines.append(f"| {algo} | {policy} | {budget} | "
                             f"{'default' if k == 0 else params} | {chosen:.3f} | "
                             f"{default:.3f} |")
    runs = cfg["configurations"] * len(cfg["scenarios"]) * len(cfg["seeds"])
    head = (f"Search: {cfg['configurations']} configurations per algorithm and policy class, "
            f"each trained on {', '.join(f'`{s}`' for s in cfg['scenarios'])} with seeds "
            f"{', '.join(map(str, cfg['seeds']))} ({runs} runs of {max(cfg['budgets'])} "
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
