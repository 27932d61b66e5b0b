"""The results benchmark: sample-efficiency curves of every algorithm and policy class on the whole
catalogue, with per-budget tuned hyper-parameters, long-run payoffs and head diagnosis.

    reciprocity benchmark --out docs/results --tuning-doc docs/agents.md
    reciprocity benchmark --quick --out runs/quick      # the same code paths in 1-3 minutes

Steps (every job runs on the study engine, :mod:`reciprocity.engine`: a pool of processes or
Ray, longest first):

1. the reference of every scenario (:func:`reciprocity.evaluation.reference`: long run after the
   scenario's burn-in, episode figure beside it);
2. the per-budget tuning (:mod:`reciprocity.tuning`; or ``--tuning FILE`` reuses an outcome, and
   without tuning every algorithm runs its defaults);
3. for every scenario, algorithm and policy class, the budgets are grouped by their tuned
   hyper-parameters: one training run per group (all seeds together) plays the group's largest
   budget and its policies are snapshotted and evaluated at every budget of the group — the
   learners have no budget-dependent schedule, so a snapshot at 200 rounds of a 400-round run
   *is* a 200-round run;
4. one record per (scenario, algorithm, policy class, budget)
   (:func:`reciprocity.records.build_record`), the curve points and the claim map
   (:mod:`reciprocity.curves`), figures;
5. the institutions study (:mod:`reciprocity.institutions`: many learners under each
   institution and start) in its own run folder ``<out>/institutions`` with its own block of the
   page (``cfg.institutions``; None skips it);
6. what RG must know of the game (:mod:`reciprocity.knowledge`: RG with the scenario's numbers,
   with numbers it learns, and deliberately misspecified, on every single-learner scenario) in
   its own run folder ``<out>/world`` with its own block of the page (``cfg.world``; None skips
   it);
7. the wall time to 95% of the reference at tuned settings (:mod:`reciprocity.walltime`) in its
   own run folder ``<out>/walltime`` with its own block of the page (``cfg.walltime``; None
   skips it).

Outputs in ``out``: ``results.json`` (``records``, ``curves``, ``config``), ``benchmark.json``
(configuration and wall time), ``tuning.json``, ``references/<scenario>.json``,
``runs/<scenario>/<algo>-<policy>/<budgets>/`` (per-seed metrics with every budget's evaluation,
``progress.csv``), ``curves_<regime>.png``, ``policy_heatmaps.png``, ``learning_curves.png`` and
``<scenario>.png``. The generated blocks of the results page are refreshed: text outside the
markers is kept, so the discussion survives regeneration. The page is ``<out>.md`` beside the
folder by default — ``docs/results.md`` beside ``docs/results/``, the documentation's page — and
``<out>/results.md`` inside it for ``--quick`` (a check of the code paths, whose outputs all stay
in ``--out``). With ``--tuning-doc FILE`` the tuning table of FILE is refreshed too.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .curves import GROUP_TITLES, GROUPS, claim_map, curve_points, curve_table, plot_curves
from .engine import Cell, Engine, ReferenceRequest, References
from .envs.norms import ACTION_CONTEXTS, SIGNAL_CONTEXTS
from .envs.scenarios import get_scenario, scenarios
from .institutions import QUICK as INSTITUTIONS_QUICK
from .institutions import InstitutionsConfig, run_institutions
from .knowledge import WorldStudyConfig, run_world_study
from .learners import BUILTIN, POLICY_CLASSES, get_algorithm, rank
from .records import build_record
from .report import (
    format_interval,
    label,
    line_kwargs,
    panel_grid,
    pyplot,
    reference_words,
    save_figure,
    seed_words,
    smooth,
    wrapped,
    write_block,
)
from .runfolder import open_run, write_json, write_text
from .tuning import (
    BUDGETS,
    QUICK,
    TuningConfig,
    run_tuning,
    selected_params,
    tuning_identity,
    write_tuning_doc,
)
from .walltime import WallTimeConfig, run_walltime

__all__ = ["CURVES_EXCLUDED", "BenchmarkConfig", "curve_cells", "curve_scenarios",
           "quick_config", "results_table", "run_benchmark", "write_results_table"]

TABLE_START = "<!-- results-table:start -->"
TABLE_END = "<!-- results-table:end -->"
CONTEXT_LEGEND = ("Contexts, G = Good, B = Bad. Action head P(C): own reputation, recipient's "
                  "(GB: I am Good, my recipient is Bad). Signal head P(Good): observed donor's "
                  "reputation, its recipient's, its action C / D (GBD: a Good donor defected "
                  "against a Bad recipient).")
# Left out of the curves by default: 35 learners among 50 agents cost about 175 times a
# single-learner scenario per round (its 2000-round cells alone would take hours on 2 cores);
# the institutions study runs it at its own, smaller budget.
CURVES_EXCLUDED = ("many-learners-audit-large-v0",)


def curve_scenarios() -> tuple[str, ...]:
    """The default scenarios of the curves: the catalogue minus :data:`CURVES_EXCLUDED`."""
    return tuple(s for s in scenarios() if s not in CURVES_EXCLUDED)


@dataclass
class BenchmarkConfig:
    """What to run."""

    scenarios: tuple[str, ...] = field(default_factory=curve_scenarios)  # see CURVES_EXCLUDED
    algos: tuple[str, ...] = tuple(BUILTIN)  # names or MODULE:CLASS locators
    policies: tuple[str, ...] = POLICY_CLASSES  # (an algorithm runs in those it has)
    budgets: tuple[int, ...] = BUDGETS  # rounds per game, identical for all algorithms
    main_budget: int = 1000  # the budget of the per-scenario table and policy figures
    seeds: int = 5  # seeds 0..seeds-1 per (scenario, algorithm, policy class)
    num_envs: int = 16  # games per seed
    eval_envs: int = 256  # evaluation games per learner (= confirm_envs: paired games)
    search_envs: int = 32  # games per candidate in the reference search
    confirm_envs: int = 256  # fresh games confirming the reference (= eval_envs)
    tuning: TuningConfig | None = field(default_factory=TuningConfig)  # None: the defaults
    algo_config: dict = field(default_factory=dict)  # {algo: {hyper-parameter: value}} on top
    # the institutions study (stage 5; None: skipped)
    institutions: InstitutionsConfig | None = field(default_factory=InstitutionsConfig)
    # what RG must know of the game (stage 6; None: skipped): left empty, its scenarios, seeds,
    # games and budget are the benchmark's single-learner scenarios, seeds, games and main budget
    world: WorldStudyConfig | None = field(default_factory=WorldStudyConfig)
    # wall time to the reference at tuned settings (stage 7; None: skipped): left empty, its
    # scenarios and budgets are the curves' discriminative single-learner ones and budgets
    walltime: WallTimeConfig | None = field(default_factory=WallTimeConfig)

    def __post_init__(self):
        for name in ("scenarios", "algos", "policies", "budgets"):
            setattr(self, name, tuple(getattr(self, name)))
        self.budgets = tuple(sorted(self.budgets))
        for algo in self.algos:
            get_algorithm(algo)
        if self.main_budget not in self.budgets:
            raise ValueError(f"main_budget {self.main_budget} must be one of the budgets "
                             f"{self.budgets}")
        if self.tuning is not None and set(self.budgets) - set(self.tuning.budgets):
            raise ValueError(f"budgets {self.budgets} must be tuned: tuning.budgets is "
                             f"{self.tuning.budgets}")
        if self.world is not None and not self.world.scenarios:
            single = tuple(get_scenario(s).id for s in self.scenarios
                           if get_scenario(s).num_focal == 1)
            self.world = dataclasses.replace(self.world, scenarios=single, seeds=self.seeds,
                                             rounds=self.main_budget, num_envs=self.num_envs,
                                             eval_envs=self.eval_envs,
                                             search_envs=self.search_envs) if single else None
        if self.tuning is not None:  # the search covers what the benchmark runs
            self.tuning = dataclasses.replace(self.tuning, algos=self.algos,
                                              policies=self.policies)
        # sizes that could not fit or finish are refused before anything runs
        from .agents.checks import check_int
        from .evaluation import check_reference_size
        from .train_config import check_study_size

        for budget in self.budgets:
            check_int("budgets", budget, minimum=1)
        check_study_size(self.scenarios, seeds=self.seeds, num_envs=self.num_envs,
                         rounds=max(self.budgets), eval_envs=self.eval_envs)
        for s in self.scenarios:
            check_reference_size(s, search_envs=self.search_envs, confirm_envs=self.confirm_envs)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["tuning"] = None if self.tuning is None else self.tuning.to_dict()
        d["institutions"] = None if self.institutions is None else self.institutions.to_dict()
        d["world"] = None if self.world is None else self.world.to_dict()
        d["walltime"] = None if self.walltime is None else self.walltime.to_dict()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def quick_config(**overrides) -> BenchmarkConfig:
    """1-3 minutes on 2 cores, every code path of the full benchmark: 3 scenarios (degenerate,
    discriminative, several learners), budgets of 10 and 20 rounds, 2 seeds, a tiny tuning."""
    settings = dict(scenarios=("all-cooperators-v0", "L6-v0", "many-learners-v0"),
                    budgets=(10, 20), main_budget=20, seeds=2, num_envs=4, eval_envs=16,
                    search_envs=4, confirm_envs=16, tuning=TuningConfig(**QUICK),
                    institutions=InstitutionsConfig(**INSTITUTIONS_QUICK))
    return BenchmarkConfig(**{**settings, **overrides})


def run_benchmark(cfg: BenchmarkConfig, out: str | Path, *, tuning: dict | str | Path | None = None,
                  tuning_doc: str | Path | None = None, progress: bool = True,
                  write_table: bool = True, command: str | None = None,
                  overwrite: bool = False, engine: Engine | None = None,
                  extra_evaluations: list[dict] | None = None,
                  page: str | Path | None = None) -> dict:
    """Run everything and write the outputs; returns ``results.json``'s content.

    Args:
        tuning: an outcome of :func:`reciprocity.tuning.run_tuning` (or its ``tuning.json``) to
            reuse; default: run ``cfg.tuning`` (or use the defaults if it is None).
        tuning_doc: Markdown file whose tuning block is refreshed (e.g. ``docs/agents.md``).
        write_table: refresh the generated blocks of the results page.
        command: the command line quoted in the generated blocks (default: the plain
            ``reciprocity benchmark --out OUT``, with ``--overwrite`` if ``overwrite``).
        overwrite: replace a folder that holds another run (otherwise refused).
        engine: runs the jobs (default: a local pool of 2 processes).
        extra_evaluations: evaluations of policies trained elsewhere (the evaluation.json of
            ``reciprocity evaluate --policy``, :func:`reciprocity.own_policy.evaluate_policy`),
            by the benchmark's protocol; those of one policy (``algo``) and scenario are its
            seeds. They become records (policy class ``own``) in the per-scenario table, the
            policy heat-maps and the claim map beside the benchmark's own.
        page: the results page (default ``<out>.md``, beside the folder: docs/results.md for
            docs/results); its figures are linked relative to it.
    """
    from .runfolder import read_json

    if isinstance(tuning, str | Path):
        tuning = read_json(tuning, "--tuning", required=("selected", "candidates"))
    identity = {"benchmark": cfg.to_dict(),
                "tuning": tuning_identity(tuning),
                **({"extra_evaluations": extra_evaluations} if extra_evaluations else {})}
    engine = engine or Engine(progress=progress)
    command = command or f"reciprocity benchmark --out {Path(out).as_posix()}" + \
        (" --overwrite" if overwrite else "")
    page = (Path(page) if page is not None else Path(out).with_suffix(".md")) \
        if write_table else None
    with open_run(out, "benchmark", identity, overwrite=overwrite) as folder:
        results = _run_benchmark(cfg, folder.path, tuning, tuning_doc, progress, page,
                                 command, engine, list(extra_evaluations or []))
        folder.complete()
    return results


def curve_cells(cfg: BenchmarkConfig, refs: dict, tuning: dict | None) -> list[Cell]:
    """Every (scenario, algorithm, policy class), its budgets grouped by their tuned
    hyper-parameters: one run per group playing its largest budget, snapshotted at each."""
    from .train import TrainConfig

    cells = []
    for s in cfg.scenarios:
        sid = get_scenario(s).id
        for algo in cfg.algos:
            algorithm = get_algorithm(algo)
            for policy in (p for p in cfg.policies if p in algorithm.policy_classes):
                groups: dict[str, list[int]] = {}
                for b in cfg.budgets:
                    params = {**selected_params(tuning, algorithm.name, policy, b),
                              **cfg.algo_config.get(algorithm.name, {})}
                    groups.setdefault(json.dumps(params, sort_keys=True), []).append(b)
                for key, budgets in groups.items():
                    params = json.loads(key)
                    config = TrainConfig(
                        s, algo=algorithm.locator, seeds=tuple(range(cfg.seeds)),
                        rounds=max(budgets), num_envs=cfg.num_envs, eval_envs=cfg.eval_envs,
                        eval_rounds=refs[sid]["rounds"], eval_burn_in=refs[sid]["burn_in"],
                        eval_budgets=tuple(budgets), algo_config={**params, "policy": policy},
                        checkpoint_every=0, save_checkpoint=False, tensorboard=False)
                    run_dir = f"runs/{sid}/{algorithm.name}-{policy}/budgets_" + \
                        "_".join(map(str, budgets))
                    cells.append(Cell(config, run_dir, {
                        "scenario": sid, "algo": algorithm.name, "policy": policy,
                        "params": params, "budgets": budgets}))
    return cells


def _run_benchmark(cfg: BenchmarkConfig, out: Path, tuning: dict | None, tuning_doc,
                   progress: bool, page: Path | None, command: str, engine: Engine,
                   extra_evaluations: list[dict]) -> dict:
    start = time.perf_counter()
    ids = {s: get_scenario(s).id for s in cfg.scenarios}
    tuning_scenarios = [] if cfg.tuning is None or tuning is not None else \
        [s for s in cfg.tuning.scenarios if get_scenario(s).id not in ids.values()]
    cache = References()
    refs = engine.references([ReferenceRequest.of(s, search_envs=cfg.search_envs,
                                                  confirm_envs=cfg.confirm_envs)
                              for s in [*cfg.scenarios, *tuning_scenarios]], cache, out=out)

    if tuning is None and cfg.tuning is not None:
        tuning = run_tuning(cfg.tuning, out, engine=engine, references=cache, progress=progress)
    if tuning is not None and tuning_doc is not None:
        write_tuning_doc(tuning_doc, tuning, command)

    cells = curve_cells(cfg, refs, tuning)
    run_metrics = engine.train(cells, out, desc="benchmark runs")
    records = []
    for cell, metrics in zip(cells, run_metrics, strict=True):
        meta = cell.meta
        write_json(out / cell.run_dir / "params.json", meta["params"])
        for b in meta["budgets"]:
            per_seed = [{**{key: v for key, v in m.items() if key != "budgets"},
                         **next(e for e in m["budgets"] if e["rounds"] == b)}
                        for m in metrics]
            record = build_record(meta["scenario"], meta["algo"], per_seed,
                                  refs[meta["scenario"]], meta["params"])
            record.update(policy_class=meta["policy"], budget=b, run=cell.run_dir)
            records.append(record)
    order = list(ids.values())
    records.sort(key=lambda r: (order.index(r["scenario"]), rank(r["algo"]),
                                POLICY_CLASSES.index(r["policy_class"]), r["budget"]))
    extra = extra_records(extra_evaluations, refs)
    points = curve_points(records + extra)
    meta = {"config": cfg.to_dict(), "wall_seconds": time.perf_counter() - start,
            **engine.describe(), "command": command,
            "tuning": "defaults" if tuning is None else "tuned per budget (tuning.json)"}
    results_json = {"config": meta["config"], "records": records, "curves": points,
                    **({"extra_records": extra} if extra else {})}
    write_json(out / "results.json", results_json)
    write_json(out / "benchmark.json", meta)

    scenario_ids = list(ids.values())
    main = [r for r in records if r["budget"] == cfg.main_budget]
    main_runs = {(r["scenario"], r["algo"], r["policy_class"]): out / r["run"] for r in main}
    for group in dict.fromkeys(p["group"] for p in points if p["budget"] is not None):
        plot_curves(out, points, group, cfg.seeds)
    plot_policy_heatmaps(out, scenario_ids, main + extra, refs)
    plot_learning_curves(out, scenario_ids, main_runs, refs)
    for sid in scenario_ids:
        plot_scenario(out, sid, [r for r in records if r["scenario"] == sid], refs[sid],
                      cfg.main_budget)
    if page is not None:
        write_results_table(out, results_json, meta, refs, page)
    if cfg.institutions is not None:
        run_institutions(cfg.institutions, out / "institutions", references=cache,
                         tuning=tuning, doc=page,
                         progress=progress, command=command, engine=engine)
    if cfg.world is not None:
        run_world_study(cfg.world, out / "world", references=cache, tuning=tuning, doc=page,
                        progress=progress, command=command, engine=engine)
    if cfg.walltime is not None and "tabular" in cfg.policies:
        walltime = walltime_config(cfg, refs)
        if walltime.scenarios:
            run_walltime(walltime, out / "walltime", references=cache, tuning=tuning,
                         doc=page, progress=progress, command=command, engine=engine)
    return results_json


def walltime_config(cfg: BenchmarkConfig, refs: dict) -> WallTimeConfig:
    """The wall-time stage's configuration, its empty fields filled from the benchmark: the
    discriminative single-learner scenarios of the curves and their budgets; its algorithms,
    seeds and games are the benchmark's."""
    walltime = cfg.walltime
    changes = {}
    if not walltime.scenarios:
        changes["scenarios"] = tuple(
            get_scenario(s).id for s in cfg.scenarios
            if refs[get_scenario(s).id]["kind"] == "exhaustive_search"
            and refs[get_scenario(s).id]["regime"] == "discriminative")
    if not walltime.budgets:
        changes["budgets"] = cfg.budgets
    return dataclasses.replace(walltime, algos=cfg.algos, seeds=cfg.seeds,
                               num_envs=cfg.num_envs, eval_envs=cfg.eval_envs,
                               search_envs=cfg.search_envs, **changes)


def extra_records(evaluations: list[dict], refs: dict) -> list[dict]:
    """Records of policies evaluated elsewhere: one per (scenario, policy name), its evaluations
    as seeds, scored against the benchmark's reference of that scenario (same game and protocol,
    or refused)."""
    from .learners import algorithm_names
    from .own_policy import record_from_evaluations

    groups: dict[tuple, list[dict]] = {}
    for e in evaluations:
        groups.setdefault((e["scenario"], e.get("algo") or "own policy"), []).append(e)
    records = []
    for (sid, name), group in groups.items():
        if sid not in refs:
            raise ValueError(f"--extra-records: an evaluation of {name!r} on {sid!r}, which the "
                             f"benchmark does not run (it runs {sorted(refs)})")
        if name in algorithm_names():
            raise ValueError(f"--extra-records: the policy {name!r} has the name of an "
                             "algorithm; rename its function")
        record = record_from_evaluations(group, refs[sid], name=name)
        records.append(record)
    return records


# -- figures -----------------------------------------------------------------------------------
def _mean_policy(record: dict) -> list[float]:
    """Mean over seeds (and focal learners) of the 12 probabilities, display order."""
    keys = [("action", k) for k in ACTION_CONTEXTS] + [("signal", k) for k in SIGNAL_CONTEXTS]
    return [float(np.mean([h[head]["probs"][k] for s in record["per_seed"]
                           for h in s["heads"].values()])) for head, k in keys]


def _policy_grid(ref: dict, records: list[dict]) -> tuple[list[str], np.ndarray]:
    keys = [("action", k) for k in ACTION_CONTEXTS] + [("signal", k) for k in SIGNAL_CONTEXTS]
    labels = ["reference"] + [label(r["algo"], r["policy_class"]) for r in records]
    grid = [[ref["policy"][h][k] for h, k in keys]] + [_mean_policy(r) for r in records]
    return labels, np.array(grid)


def _draw_policies(ax, labels, grid, *, annotate: bool, ytick_labels: bool = True):
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    ax.set_yticks(range(len(labels)), labels if ytick_labels else [], fontsize=7)
    ax.set_xticks(range(12), list(ACTION_CONTEXTS) + list(SIGNAL_CONTEXTS), fontsize=7,
                  rotation=90)
    ax.axvline(3.5, color="k", lw=1.2)
    if annotate:
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6)
    return im


def plot_policy_heatmaps(out: Path, scenario_ids, records: list[dict], refs: dict) -> Path:
    """One panel per scenario (three per row): rows = reference and every algorithm and policy
    class, columns = the 12 contexts, colour = mean probability of C / Good over seeds."""
    plt = pyplot()
    rows, cols = panel_grid(len(scenario_ids), 3)
    per_panel = 1 + len([r for r in records if r["scenario"] == scenario_ids[0]])
    width, height = 5.0 * cols, 0.22 * per_panel + 1.1
    fig = plt.figure(figsize=(width, height * rows + 2.0), layout="constrained")
    # the colour bar in a row of its own under the middle column: a bar taken from the panels
    # (colorbar(ax=axes)) is placed by a fraction of the whole height, far below the panels of
    # a tall figure, and its label then ran into the caption
    slots = fig.add_gridspec(rows + 1, cols, height_ratios=[height] * rows + [0.12])
    axes = np.array([[fig.add_subplot(slots[r, c]) for c in range(cols)] for r in range(rows)])
    im = None
    for k, (ax, sid) in enumerate(zip(axes.flat, scenario_ids, strict=False)):
        labels, grid = _policy_grid(refs[sid], [r for r in records if r["scenario"] == sid])
        im = _draw_policies(ax, labels, grid, annotate=False, ytick_labels=k % cols == 0)
        ax.set_title(f"{sid} ({refs[sid]['regime']})", fontsize=8)
    for ax in axes.flat[len(scenario_ids):]:
        ax.axis("off")
    bar = fig.colorbar(im, cax=fig.add_subplot(slots[rows, cols // 2]), orientation="horizontal")
    bar.set_label(wrapped("probability of C (action head, left of the black line) or Good "
                          "(signal head), mean over seeds", 5.0, fontsize=8), fontsize=8)
    fig.supxlabel(wrapped(CONTEXT_LEGEND, width), fontsize=7)
    path = out / "policy_heatmaps.png"
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def _training_curves(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(rounds (U,), reward per round (U, seeds)) from a run's progress.csv."""
    with (run_dir / "progress.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    seeds = sorted({int(r["seed"]) for r in rows})
    rounds = sorted({int(r["rounds"]) for r in rows})
    grid = np.full((len(rounds), len(seeds)), np.nan)
    for r in rows:
        grid[rounds.index(int(r["rounds"])), seeds.index(int(r["seed"]))] = \
            float(r["train_reward_per_round"])
    return np.array(rounds), grid


def plot_learning_curves(out: Path, scenario_ids, runs: dict, refs: dict) -> Path:
    """Training payoff per round against rounds played, one panel per scenario (four per row),
    one line per algorithm and policy class (mean over seeds, smoothed over 5 updates)."""
    plt = pyplot()
    rows, cols = panel_grid(len(scenario_ids), 4)
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols + 0.6, 2.8 * rows + 1.0),
                             squeeze=False, layout="constrained")
    for ax, sid in zip(axes.flat, scenario_ids, strict=False):
        for (scenario, algo, policy), run_dir in runs.items():
            if scenario != sid:
                continue
            x, y = _training_curves(run_dir)
            ax.plot(x, np.nanmean(smooth(y), axis=1), **line_kwargs(algo, policy),
                    markevery=max(1, len(x) // 6), ms=4, label=label(algo, policy))
        ax.axhline(refs[sid]["reference_payoff"], color="k", ls=":", lw=1,
                   label="reference (long run)")
        ax.set_title(sid, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(scenario_ids):]:
        ax.axis("off")
    for k, ax in enumerate(axes.flat[:len(scenario_ids)]):
        if k + cols >= len(scenario_ids):  # no panel below
            ax.set_xlabel("rounds played per game", fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4),
               fontsize=8)
    fig.supylabel("training payoff per round (mean over seeds)", fontsize=9)
    path = out / "learning_curves.png"
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def plot_scenario(out: Path, scenario: str, records: list[dict], ref: dict,
                  main_budget: int) -> Path:
    """One scenario: long-run payoff against interactions for every algorithm and policy class
    (left; band: 95% bootstrap over seeds), the learned policies at ``main_budget`` rounds
    (right)."""
    from .report import interaction_ticks
    from .stats import bootstrap_ci95

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.0), layout="constrained",
                                      gridspec_kw={"width_ratios": [1, 1.3]})
    for algo, policy in dict.fromkeys((r["algo"], r["policy_class"]) for r in records):
        line = sorted((r for r in records if (r["algo"], r["policy_class"]) == (algo, policy)),
                      key=lambda r: r["budget"])
        x = [r["interactions_per_seed"] for r in line]
        stats = [bootstrap_ci95([s["per_interaction_payoff"] for s in r["per_seed"]])
                 for r in line]
        style = line_kwargs(algo, policy)
        left.plot(x, [m for m, _, _ in stats], **style, label=label(algo, policy))
        left.fill_between(x, [lo for _, lo, _ in stats], [hi for _, _, hi in stats],
                          color=style["color"], alpha=0.15, lw=0)
    left.axhline(ref["reference_payoff"], color="k", ls=":", lw=1,
                 label="reference optimum (long run)")
    left.axhline(ref["full_cooperation_payoff"], color="grey", ls="-.", lw=1,
                 label="b − c (full cooperation)")
    interaction_ticks(left, [r["interactions_per_seed"] for r in records])
    left.set(xlabel="interactions per seed (rounds x games)",
             ylabel="long-run payoff per round (band: 95% over seeds)",
             title=f"{scenario}: sample efficiency")
    left.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.13))
    main = [r for r in records if r["budget"] == main_budget]
    labels, grid = _policy_grid(ref, main)
    im = _draw_policies(right, labels, grid, annotate=True)
    right.set_title(f"policies after {main_budget} rounds per game (mean over seeds)",
                    fontsize=9)
    bar = fig.colorbar(im, ax=right, shrink=0.8)
    bar.set_label("P(C) left of the black line, P(Good) right of it", fontsize=8)
    fig.supxlabel(wrapped(CONTEXT_LEGEND, 13), fontsize=7)
    path = out / f"{scenario}.png"
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


# -- tables ------------------------------------------------------------------------------------
def results_table(records: list[dict], refs: dict | None = None) -> str:
    """One row per record: long-run payoff (and the episode payoff where it differs from the
    long run by more than the reference's interval), reference, fraction of the reference,
    adherence, and how the heads came out."""
    lines = ["| scenario | regime | algorithm | policy | rounds per game | payoff / round "
             "(long run) | episode from the initial reputations | reference (long run) | "
             "fraction of the reference | adherence | action head | signal head | "
             "optimal heads (action / signal) |",
             "|" + " --- |" * 13]
    for r in records:
        episode = "≈ long run"
        if "episode_payoff" in r:
            half = (refs or {}).get(r["scenario"], {}).get("reference_ci95", 0.0)
            if abs(r["episode_payoff"]["mean"] - r["per_interaction_payoff"]["mean"]) > half:
                episode = format_interval(r["episode_payoff"])
        lines.append(
            f"| {r['scenario']} | {r['regime']} | {r['algo']} | {r['policy_class']} | "
            f"{'–' if r['budget'] is None else r['budget']} | "
            f"{format_interval(r['per_interaction_payoff'])} | {episode} | "
            f"{r['reference_payoff']:.3f} | {format_interval(r['reference_performance'])} | "
            f"{format_interval(r['adherence'])} | {seed_words(r, 'action')} | "
            f"{seed_words(r, 'signal')} | {reference_words(r, 'action')} / "
            f"{reference_words(r, 'signal')} |")
    return "\n".join(lines)


def write_results_table(out: Path, results: dict, meta: dict, refs: dict,
                        page: str | Path | None = None) -> None:
    """Refresh the generated block of the results page ``page`` (default ``<out>.md``, e.g.
    docs/results.md for docs/results), its figures linked relative to it."""
    page = Path(out).with_suffix(".md") if page is None else Path(page)

    def figure(name: str) -> str:
        return Path(os.path.relpath(Path(out, name).resolve(), page.resolve().parent)).as_posix()

    cfg = meta["config"]
    records, points = results["records"], results["curves"]
    tuned = "tuned at each budget (see the tuning table in agents.md)" \
        if meta["tuning"] != "defaults" else "default hyper-parameters"
    burn_in = {r["scenario"]: r.get("burn_in") for r in records}
    blocks = [
        f"Generated by `{meta['command']}` "
        f"({len(cfg['scenarios'])} scenarios; {', '.join(cfg['algos'])}; "
        f"{', '.join(cfg['policies'])} policies; {cfg['seeds']} seeds x {cfg['num_envs']} games "
        f"at budgets of {', '.join(map(str, cfg['budgets']))} rounds per game, {tuned}; "
        f"{meta['wall_seconds'] / 60:.1f} min on {meta['cpu_count']} cores). Payoffs are "
        "long-run payoffs per round (after each scenario's burn-in, listed below). Intervals: "
        "payoffs mean ± 95% Student t over seeds; fractions, adherence and shares mean [95% "
        "percentile bootstrap over seeds] (a single number: every seed gave the same value).",
        "",
        "### Sample efficiency",
        "",
    ]
    for group in GROUPS:
        if not any(p["group"] == group for p in points):
            continue
        blocks += [f"**{GROUP_TITLES[group]}**: long-run payoff as a fraction of the reference "
                   "(mean over the scenarios with a positive reference) and, in brackets, the "
                   f"training wall-clock time of the {cfg['seeds']} seeds together (median over "
                   "scenarios).", "", curve_table(points, group), "",
                   f"![{group} curves]({figure(f'curves_{group}.png')})", ""]
    blocks += [
        "### Claim map: where do the baselines collapse into constant-output policies?",
        "",
        "Share of runs (scenario x seed; several learners: every learner) whose head is "
        "*conditional* (its greedy output differs across the decisive contexts, every output "
        "there at least 0.2 from 0.5), *constant* (every visited output on one side of 0.5 by "
        "at least 0.2) or *undecided* (neither: outputs near 0.5, not learned yet). The claim "
        "holds in a cell when at least half of a baseline's runs have a constant action head "
        "where the optimal action rule is conditional.",
        "",
        claim_map(points),
        "",
        f"### Every scenario at {cfg['main_budget']} rounds per game",
        "",
        "Burn-in (rounds before the long-run window, from the scenario's dynamics): "
        + ", ".join(f"{s} {b}" for s, b in burn_in.items()) + ".",
        "",
        results_table([r for r in records if r["budget"] == cfg["main_budget"]]
                      + results.get("extra_records", []), refs),
        "",
        f"![policy heat-maps]({figure('policy_heatmaps.png')})",
        "",
        f"![learning curves]({figure('learning_curves.png')})",
    ]
    if not page.is_file():
        write_text(page, "# Results\n")
    write_block(page, TABLE_START, TABLE_END, "\n".join(blocks))
