"""Wall time to the reference at tuned settings: which learner gets there first? A stage of
``reciprocity benchmark``.

    reciprocity benchmark --out docs/results --stages walltime --tuning docs/results/tuning.json

**What is measured.** For every discriminative single-learner scenario of the curves, every
algorithm (tabular policy) and every budget, the algorithm trains with the hyper-parameters the
tuning selected *at that budget*, one seed alone per run (seeds 0 .. S - 1, interleaved across
algorithms and scenarios so that the machine's load falls on all alike, one run per worker). The
run's clock counts training only (collecting and updating, as :class:`~reciprocity.train.
TrainingRun` times it): its policy is snapshotted after every update, and the snapshots are
evaluated by the protocol (long run after the reference's burn-in, on the reference's paired
games) with the clock stopped. The run's time to the reference is the training time at its first
snapshot whose long-run payoff reaches ``fraction`` (95%) of the reference, and the interactions
(rounds x games) it had played; a run that does not get there within the budget is "not
reached". Budgets whose tuned settings agree share their runs (a learner has no budget-dependent
schedule): a run reaching at r rounds counts for every budget b >= r.

**How it stays affordable.** Training stops at the first reach. Every ``checks``-th of the budget
the current policy is screened on ``screen_envs`` games; where the screen passes, the snapshots
since the last confirmed miss are evaluated on all the reference's games, and the first that
reaches the fraction ends the run — or, if none does (a lucky screen), training goes on.

**Reported.** Per algorithm and budget: how many runs reached the fraction, and the median
training time and interactions to it over all (scenario, seed) runs, a run not reached counting
as longer than any (so the median is "not reached" when more than half are); the ratio of those
medians to RG's. Outputs in ``<benchmark out>/walltime`` (its own run folder): ``results.json``
(``runs``, ``summary``, ``config``) and the generated block of the results page (between
``<!-- walltime:start -->`` and ``<!-- walltime:end -->``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .engine import Engine, Job, ReferenceRequest, References
from .envs.scenarios import get_scenario
from .learners import BUILTIN, get_algorithm, rank
from .report import seconds, write_block
from .runfolder import open_run, write_json
from .tuning import selected_params, tuning_identity

__all__ = ["SECTION_END", "SECTION_START", "WallTimeConfig", "run_walltime", "section",
           "time_to_reference"]

SECTION_START, SECTION_END = "<!-- walltime:start -->", "<!-- walltime:end -->"


@dataclass
class WallTimeConfig:
    """What the stage runs (defaults: the results page)."""

    scenarios: tuple[str, ...] = ()  # default: the curves' discriminative single-learner ones
    algos: tuple[str, ...] = tuple(BUILTIN)
    budgets: tuple[int, ...] = ()  # default: the curves' budgets
    seeds: int = 5
    fraction: float = 0.95
    num_envs: int = 16
    eval_envs: int = 256  # = the references' confirmation games (paired)
    search_envs: int = 32  # games per candidate of the references' exhaustive search
    screen_envs: int = 32  # games of the screen that decides when to look closely
    checks: int = 10  # screens per run (every budget / checks rounds)

    def __post_init__(self):
        from .agents.checks import check_int, check_real

        for name in ("scenarios", "algos", "budgets"):
            setattr(self, name, tuple(getattr(self, name)))
        for algo in self.algos:
            get_algorithm(algo)
        for name in ("seeds", "num_envs", "screen_envs", "checks"):
            setattr(self, name, check_int(f"walltime.{name}", getattr(self, name), minimum=1))
        self.eval_envs = check_int("walltime.eval_envs", self.eval_envs, minimum=2)
        self.fraction = check_real("walltime.fraction", self.fraction, 0.0, 1.0, low_open=True)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


def time_to_reference(config, ref: dict, fraction: float, screen_envs: int, checks: int) -> dict:
    """Train one single-seed run until its long-run payoff first reaches ``fraction`` of the
    reference (or its budget ends); a job of the engine. Returns the training seconds and rounds
    at the first reaching snapshot (None if none did) and the training seconds spent."""
    import torch

    from .evaluation import evaluate_tables, protocol_for
    from .train import TrainingRun

    torch.set_num_threads(1)
    env_config = config.scenario_data.env_config
    paired = protocol_for(env_config, num_envs=ref["protocol"]["num_envs"],
                          window=ref["rounds"], burn_in=ref["burn_in"],
                          seed=ref["protocol"]["seed"])
    screen = dataclasses.replace(paired, num_envs=min(screen_envs, paired.num_envs))
    target = fraction * ref["reference_payoff"]
    run = TrainingRun(config)
    every = max(1, math.ceil(run.num_updates / checks))
    pending = []  # snapshots since the last confirmed miss: (rounds, seconds, tables)

    def payoffs(protocol, snapshots) -> list[float]:
        action = np.concatenate([a for _, _, (a, _) in snapshots]).astype(np.float64)
        signal = np.concatenate([s for _, _, (_, s) in snapshots]).astype(np.float64)
        return [e["per_interaction_payoff"]
                for e in evaluate_tables(env_config, action, signal, protocol)]

    while not run.done:
        run.step()
        with run.paused():  # evaluation outside the clock
            action, signal = run.learner.policy.tables()
            pending.append((run.rounds_done, run.wall_seconds(),
                            (action.cpu().numpy(), signal.cpu().numpy())))
            if run.update % every and not run.done:
                continue
            if payoffs(screen, pending[-1:])[0] < target and not run.done:
                continue
            for (rounds, spent, _), payoff in zip(pending, payoffs(paired, pending),
                                                  strict=True):
                if payoff >= target:
                    return {"rounds": rounds, "interactions": rounds * config.num_envs,
                            "seconds": spent, "total_seconds": run.wall_seconds()}
            pending = []
    return {"rounds": None, "interactions": None, "seconds": None,
            "total_seconds": run.wall_seconds()}


def walltime_jobs(cfg: WallTimeConfig, refs: dict, tuning: dict | None) -> list[tuple]:
    """(meta, Job) per single-seed run: every (scenario, algorithm, group of budgets with the
    same tuned settings, seed), ordered seed by seed, then scenario, then algorithm."""
    from .train import TrainConfig

    runs = []
    for seed in range(cfg.seeds):
        for s in cfg.scenarios:
            sid = get_scenario(s).id
            for algo in cfg.algos:
                algorithm = get_algorithm(algo)
                groups: dict[str, list[int]] = {}
                for b in cfg.budgets:
                    params = selected_params(tuning, algorithm.name, "tabular", b)
                    groups.setdefault(json.dumps(params, sort_keys=True), []).append(b)
                for key, budgets in groups.items():
                    config = TrainConfig(s, algo=algorithm.locator, seeds=(seed,),
                                         rounds=max(budgets), num_envs=cfg.num_envs,
                                         eval_envs=cfg.eval_envs,
                                         algo_config={**json.loads(key), "policy": "tabular"},
                                         checkpoint_every=0, save_checkpoint=False,
                                         tensorboard=False)
                    meta = {"scenario": sid, "algo": algorithm.name, "seed": seed,
                            "budgets": budgets, "params": json.loads(key)}
                    runs.append((meta, Job(time_to_reference, (config, refs[sid], cfg.fraction,
                                                               cfg.screen_envs, cfg.checks))))
    return runs


def summarise(cfg: WallTimeConfig, runs: list[dict]) -> dict:
    """algo -> budget -> reached, runs, median seconds and interactions (None: not reached by
    the median run), and their ratios to RG's."""
    out: dict[str, dict] = {}
    for algo in sorted({r["algo"] for r in runs}, key=rank):
        out[algo] = {}
        for b in cfg.budgets:
            rows = [r for r in runs if r["algo"] == algo and b in r["budgets"]]
            within = [r for r in rows if r["rounds"] is not None and r["rounds"] <= b]
            out[algo][str(b)] = {"reached": len(within), "runs": len(rows),
                                 "median_seconds": _median(within, rows, "seconds"),
                                 "median_interactions": _median(within, rows, "interactions")}
    for per_budget in out.values():
        for b, m in per_budget.items():
            rg = out.get("rg", {}).get(b, {})
            for key in ("seconds", "interactions"):
                mine, base = m[f"median_{key}"], rg.get(f"median_{key}")
                m[f"{key}_over_rg"] = mine / base if mine is not None and base else None
    return out


def _median(within: list[dict], rows: list[dict], key: str) -> float | None:
    """The median of ``key`` over ``rows``, the runs not ``within`` the budget counting as
    longer than any; None when the median run is one of those."""
    values = sorted([r[key] for r in within] + [math.inf] * (len(rows) - len(within)))
    m = float(np.median(values)) if values else math.inf
    return None if math.isinf(m) else m


def run_walltime(cfg: WallTimeConfig, out: str | Path, *, references: References | None = None,
                 tuning: dict | None = None, doc: str | Path | None = None,
                 progress: bool = True, command: str | None = None, overwrite: bool = False,
                 engine: Engine | None = None) -> dict:
    """Run the stage into the run folder ``out`` and refresh the block of ``doc``; returns
    ``results.json``'s content (arguments as :func:`reciprocity.institutions.run_institutions`;
    without a tuning every algorithm runs its defaults)."""
    engine = engine or Engine(progress=progress)
    out = Path(out)
    if not cfg.scenarios or not cfg.budgets:
        raise ValueError("walltime: needs scenarios and budgets")
    identity = {"walltime": cfg.to_dict(),
                "tuning": tuning_identity(tuning)}
    with open_run(out, "walltime", identity, overwrite=overwrite) as folder:
        start = time.perf_counter()
        refs = engine.references([ReferenceRequest.of(s, search_envs=cfg.search_envs,
                                                  confirm_envs=cfg.eval_envs)
                                  for s in cfg.scenarios], references,
                                 desc="walltime references", out=out)
        jobs = walltime_jobs(cfg, refs, tuning)
        results = engine.run([job for _, job in jobs], "wall time to the reference",
                             unit="run", longest_first=False)
        runs = [{**meta, **result} for (meta, _), result in zip(jobs, results, strict=True)]
        content = {"config": cfg.to_dict(), "runs": runs, "summary": summarise(cfg, runs),
                   "references": {sid: ref["reference_payoff"] for sid, ref in refs.items()},
                   "tuning": "defaults" if tuning is None else "tuned per budget (tuning.json)",
                   "wall_seconds": time.perf_counter() - start, **engine.describe(),
                   "command": command or f"reciprocity benchmark --out {out.parent.as_posix()} "
                                         "--stages walltime --overwrite"}
        write_json(out / "results.json", content)
        if doc is not None:
            write_block(doc, SECTION_START, SECTION_END, section(content))
        folder.complete()
    return content


def section(results: dict) -> str:
    """The generated block: what was measured, and a row per algorithm."""
    cfg, summary = results["config"], results["summary"]
    budgets = [str(b) for b in cfg["budgets"]]
    tuned = "the hyper-parameters the tuning selected at each budget" \
        if results["tuning"] != "defaults" else "each algorithm's defaults"
    lines = [
        f"Generated by `{results['command']}` ({results['wall_seconds'] / 60:.1f} min on "
        f"{results['cpu_count']} cores, {results['workers']} runs at a time). Training time "
        f"until the long-run payoff first reaches {cfg['fraction']:.0%} of the reference, "
        f"tabular policies, {tuned}; {cfg['seeds']} seeds, each trained alone, on the "
        f"{len(cfg['scenarios'])} discriminative single-learner scenarios of the curves "
        f"({len(cfg['scenarios']) * cfg['seeds']} runs per cell; snapshots evaluated with the "
        "clock stopped). Each cell: runs that got there within the budget; median training time "
        "and median interactions (rounds x games) over all runs, one that did not get there "
        "counting as longer than any (– : the median run did not); in brackets, the ratio of "
        "the median time to RG's.",
        "",
        "| algorithm | " + " | ".join(f"{b} rounds" for b in budgets) + " |",
        "| --- |" + " --- |" * len(budgets),
    ]
    for algo, per_budget in summary.items():
        cells = []
        for b in budgets:
            m = per_budget[b]
            time_text = "–" if m["median_seconds"] is None else seconds(m["median_seconds"])
            inter = "" if m["median_interactions"] is None else \
                f", {m['median_interactions']:,.0f} interactions"
            ratio = "" if m["seconds_over_rg"] is None or algo == "rg" else \
                f" ({m['seconds_over_rg']:.2f}x RG)"
            cells.append(f"{m['reached']}/{m['runs']}: {time_text}{inter}{ratio}")
        lines.append(f"| {algo} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
