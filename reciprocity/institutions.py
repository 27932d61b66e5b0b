"""The institutions study (spec §7): which public rules, and which start, let learners sustain
cooperation among themselves? A stage of ``reciprocity benchmark``.

    reciprocity benchmark --out docs/results                            # the whole results page
    reciprocity benchmark --out docs/results --stages institutions      # this section alone
    reciprocity benchmark --quick --stages institutions --out build/q   # the same code, tiny

**Cells.** ``many-learners`` (7 learners + 3 unconditional defectors assessing by stern judging,
b = 3, c = 0.75) under five institutions — plain signalling, a signal audit by stern judging with
v = 0.1, 0.3 (``many-learners-audit-v0``) or 1.0, and a majority of k = 3 observers
(``many-learners-majority-v0``) — times three starts — from scratch (uniform 0.5), a warm-up
(each learner first trains alone among ideal discriminators, :mod:`reciprocity.train`) and the
ideal start (every learner starts as the ideal discriminator, ``--init disc+L6``) — times RG,
PPO and REINFORCE; plus the larger variant (``many-learners-audit-large-v0``: 35 learners and
15 defectors, v = 0.3) for RG. The audits with v = 0.1 and 1.0 are ``many-learners-audit-v0``
with ``signal_audit`` overridden (``many-learners-audit-0.1-v0``, ``...-1.0-v0``: not in the
catalogue, so that the sample-efficiency benchmark keeps its scenarios). Every cell is one
training run of all seeds with the same interaction budget (``rounds`` per learner, the warm-up
included) and each algorithm's default hyper-parameters, or those the benchmark's tuning selected
at that budget when a tuning outcome is given. Defaults: 5 seeds x 16 games, 1000 rounds with a
warm-up of 400; the larger variant after a warm-up and from the ideal start, 200 rounds with a
warm-up of 100, 8 games (RG's model of 35 learners among 50 agents is the costly part). The
whole stage took 16 minutes on an otherwise idle 2-core machine (2026-11-30).

**Measures.** Each learner is evaluated by the long-run protocol of
:mod:`reciprocity.evaluation` on the games of the reference's confirmation stage; the reference
is the ideal-discriminator population *under the same institution*. A record
(:func:`reciprocity.records.build_record`, one per cell) adds: ``worst_seed_performance`` (the
smallest per-seed payoff as a fraction of the reference), and ``honesty``: how often a learner's
signal agrees with the norm's verdict (the norm the ideal discriminator assesses by: the audit
norm, else the background's) — the probability P(signal = verdict) averaged over the signal
contexts with the weights the ideal discriminators meet them with, per learner, then the mean
over a seed's learners (1 = the norm's signals exactly, 0 = the opposite in every context met).

Outputs in the stage's run folder (``<benchmark out>/institutions``): ``results.json``
(``records``, ``config``, ``wall_seconds``), ``references/<scenario>.json``,
``runs/<institution>/<start>/<algo>/`` (per-seed metrics, ``progress.csv``) and
``institutions.png``; the generated block of the results page (between
``<!-- institutions:start -->`` and ``<!-- institutions:end -->``) is refreshed.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .engine import Cell, Engine, ReferenceRequest, References
from .envs.scenarios import Scenario, get_scenario
from .learners import BUILTIN, get_algorithm
from .records import build_record
from .report import (
    colour,
    format_interval,
    pyplot,
    save_figure,
    seed_words,
    wrapped,
    write_block,
)
from .runfolder import open_run, write_json
from .stats import interval
from .tuning import selected_params, tuning_identity

__all__ = ["INSTITUTIONS", "QUICK", "SECTION_END", "SECTION_START", "STARTS",
           "InstitutionsConfig", "honesty", "institution_scenario", "run_institutions",
           "section"]

SECTION_START, SECTION_END = "<!-- institutions:start -->", "<!-- institutions:end -->"

#: institution -> (label, catalogue scenario, overrides of its keywords)
INSTITUTIONS = {
    "plain": ("plain", "many-learners-v0", {}),
    "audit-0.1": ("audit v = 0.1", "many-learners-audit-v0", {"signal_audit": 0.1}),
    "audit-0.3": ("audit v = 0.3", "many-learners-audit-v0", {}),
    "audit-1.0": ("audit v = 1.0", "many-learners-audit-v0", {"signal_audit": 1.0}),
    "majority-3": ("majority k = 3", "many-learners-majority-v0", {}),
    "audit-0.3-large": ("audit v = 0.3, N = 50", "many-learners-audit-large-v0", {}),
}
#: start -> label
STARTS = {"scratch": "from scratch", "warmup": "warm-up", "ideal": "ideal start"}


@dataclass
class InstitutionsConfig:
    """What the stage runs (defaults: the results page)."""

    institutions: tuple[str, ...] = ("plain", "audit-0.1", "audit-0.3", "audit-1.0",
                                     "majority-3")
    starts: tuple[str, ...] = tuple(STARTS)
    algos: tuple[str, ...] = tuple(BUILTIN)  # names or MODULE:CLASS locators
    seeds: int = 5  # seeds 0 .. seeds - 1 in every cell
    rounds: int = 1000  # rounds each learner plays in each of its games, warm-up included
    warmup: int = 400  # rounds of the warm-up
    num_envs: int = 16  # games per seed
    eval_envs: int = 256  # evaluation games per learner (= the reference's confirmation games)
    # the larger variant: (institution, starts, algorithms, rounds, warm-up, games per seed)
    large: str | None = "audit-0.3-large"
    large_starts: tuple[str, ...] = ("warmup", "ideal")
    large_algos: tuple[str, ...] = ("rg",)
    large_rounds: int = 200
    large_warmup: int = 100
    large_num_envs: int = 8
    # rows added under some institutions only (where the question is; they cost more): these
    # algorithms from every start, and parameter sharing (one policy for all learners, each its
    # own loss) for shared_algos, from every start but the warm-up (which trains each learner
    # alone)
    added_institutions: tuple[str, ...] = ("plain", "audit-0.3", "majority-3")
    added_algos: tuple[str, ...] = ("rg-la", "rg-kant")
    shared_algos: tuple[str, ...] = ("rg", "ppo")
    # the basin-of-attraction map: every learner starts at P = 0.5 + lam (ideal - 0.5) for each
    # lam of basin_mixes (no warm-up), under these institutions, for these algorithms, trained
    # basin_rounds rounds; () skips it
    # (steps of 0.2, and 0.7 where RG's basin begins under the audit: 11 steps of 0.1 cost
    # the page about 3 minutes more)
    basin_mixes: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.7, 0.8, 1.0)
    basin_institutions: tuple[str, ...] = ("plain", "audit-0.3", "majority-3")
    basin_algos: tuple[str, ...] = ("rg", "rg-la", "ppo", "reinforce")
    basin_rounds: int = 400

    def __post_init__(self):
        from .agents.checks import check_int

        for name in ("institutions", "starts", "algos", "large_starts", "large_algos",
                     "added_institutions", "added_algos", "shared_algos", "basin_mixes",
                     "basin_institutions", "basin_algos"):
            setattr(self, name, tuple(getattr(self, name)))
        for name, known in (("institutions", INSTITUTIONS), ("starts", STARTS),
                            ("large_starts", STARTS), ("basin_institutions", INSTITUTIONS),
                            ("added_institutions", INSTITUTIONS)):
            unknown = [v for v in getattr(self, name) if v not in known]
            if unknown:
                raise ValueError(f"institutions.{name}: unknown {unknown}; known: {list(known)}")
        from .agents.checks import check_real

        self.basin_mixes = tuple(check_real("institutions.basin_mixes", m, 0.0, 1.0)
                                 for m in self.basin_mixes)
        for algo in (*self.algos, *self.large_algos, *self.added_algos, *self.shared_algos,
                     *self.basin_algos):
            try:
                get_algorithm(algo)
            except ValueError as err:
                raise ValueError(f"institutions.algos: {str(err).removeprefix('algo: ')}") \
                    from None
        if self.large is not None and self.large not in INSTITUTIONS:
            raise ValueError(f"institutions.large: unknown {self.large!r}; known: "
                             f"{list(INSTITUTIONS)}")
        for name in ("seeds", "rounds", "num_envs", "large_rounds", "large_num_envs",
                     "basin_rounds"):
            setattr(self, name, check_int(f"institutions.{name}", getattr(self, name),
                                          minimum=1))
        self.eval_envs = check_int("institutions.eval_envs", self.eval_envs, minimum=2)
        from .train_config import check_study_size  # before anything runs

        check_study_size([INSTITUTIONS[i][1] for i in self.institutions], seeds=self.seeds,
                         num_envs=self.num_envs, rounds=self.rounds, eval_envs=self.eval_envs,
                         where="institutions.")
        for name, total in (("warmup", "rounds"), ("large_warmup", "large_rounds")):
            value = check_int(f"institutions.{name}", getattr(self, name), minimum=1)
            if value >= getattr(self, total):
                raise ValueError(f"institutions.{name} must be below {total} "
                                 f"({getattr(self, total)}), got {value}")
            setattr(self, name, value)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


#: Seconds on 2 cores, for CI and ``--quick``: two institutions, every start and algorithm, tiny
#: budgets; not the larger variant (its burn-in alone takes half a minute; the tests run the
#: same code path on a small scenario).
QUICK = dict(institutions=("plain", "audit-0.3"), seeds=2, rounds=20, warmup=10, num_envs=4,
             eval_envs=16, large=None, added_institutions=("audit-0.3",),
             basin_mixes=(0.0, 1.0), basin_institutions=("audit-0.3",), basin_rounds=20)


def institution_scenario(institution: str) -> Scenario:
    """The scenario of an institution (a catalogue scenario, or one with its audit overridden:
    id ``many-learners-audit-<v>-v0``)."""
    _, base, overrides = INSTITUTIONS[institution]
    scenario = get_scenario(base)
    if not overrides:
        return scenario
    v = overrides["signal_audit"]
    data = {**scenario.to_dict(), **overrides, "id": f"many-learners-audit-{v:.1f}-v0",
            "description": f"{base} with the audit probability v = {v:g} instead of "
                           f"{scenario.signal_audit:g}."}
    return Scenario.from_dict(data, source=f"institution {institution!r}")


def ideal_start(scenario: Scenario) -> str | dict:
    """The ideal discriminator of a scenario as a strategy spec (``disc+<norm>``)."""
    from .evaluation import ideal_norm

    norm = ideal_norm(scenario.env_config)
    return f"disc+{norm}" if isinstance(norm, str) else {"action": "disc", "assess": norm}


def honesty(policy: dict, ref: dict) -> float:
    """P(signal = the norm's verdict) of one learner's signal head (metrics schema), averaged
    over the signal contexts with the weights the reference's ideal discriminators meet them
    with; the verdicts are the reference policy's signal head (the norm it assesses by)."""
    weights, verdicts = ref["visit_share"]["signal"], ref["policy"]["signal"]
    agree = [p if verdicts[k] >= 0.5 else 1.0 - p for k, p in policy["signal"].items()]
    return float(np.dot([weights[k] for k in policy["signal"]], agree)
                 / sum(weights[k] for k in policy["signal"]))


def institution_cells(cfg: InstitutionsConfig, tuning: dict | None) -> list[Cell]:
    """Every (institution, start, algorithm), the shared-policy rows, the larger variant's, and
    the basin map's (institution, mix, algorithm); ``meta``: institution, start, algo,
    scenario, params, shared, mix, part (``"main"`` or ``"basin"``)."""
    from .train import TrainConfig

    # (institution, start, algo, shared, mix, rounds, warm-up, games, part)
    grid = [(i, s, a, False, None, cfg.rounds, cfg.warmup, cfg.num_envs, "main")
            for i, s, a in itertools.product(cfg.institutions, cfg.starts, cfg.algos)]
    added = [i for i in cfg.institutions if i in cfg.added_institutions]
    grid += [(i, s, a, False, None, cfg.rounds, cfg.warmup, cfg.num_envs, "main")
             for i, s, a in itertools.product(added, cfg.starts, cfg.added_algos)
             if a not in cfg.algos]
    grid += [(i, s, a, True, None, cfg.rounds, cfg.warmup, cfg.num_envs, "main")
             for i, s, a in itertools.product(added, cfg.starts, cfg.shared_algos)
             if s != "warmup"]
    if cfg.large is not None:
        grid += [(cfg.large, s, a, False, None, cfg.large_rounds, cfg.large_warmup,
                  cfg.large_num_envs, "main")
                 for s, a in itertools.product(cfg.large_starts, cfg.large_algos)]
    grid += [(i, "mix", a, False, m, cfg.basin_rounds, 0, cfg.num_envs, "basin")
             for i, a, m in itertools.product(cfg.basin_institutions, cfg.basin_algos,
                                              cfg.basin_mixes)]
    scenarios = {i: institution_scenario(i) for i in dict.fromkeys(g[0] for g in grid)}
    cells = []
    for institution, start, algo, shared, mix, rounds, warmup, num_envs, part in grid:
        scenario, algorithm = scenarios[institution], get_algorithm(algo)
        params = tuned_params(tuning, algorithm, rounds)
        if shared:
            params = {**params, "share_policy": True}
        init = ideal_start(scenario) if start == "ideal" or (start == "mix" and mix) else None
        config = TrainConfig(
            scenario, algo=algorithm.locator, seeds=tuple(range(cfg.seeds)), rounds=rounds,
            num_envs=num_envs, eval_envs=cfg.eval_envs, algo_config=params,
            warmup=warmup if start == "warmup" else 0, init_policy=init,
            init_mix=mix if init is not None and start == "mix" else 1.0,
            checkpoint_every=0, save_checkpoint=False, tensorboard=False)
        name = algorithm.name + ("-shared" if shared else "")
        run_dir = f"runs/{institution}/{start}/{name}" if part == "main" else \
            f"runs/basin/{institution}/{mix:.2f}/{name}"
        cells.append(Cell(config, run_dir, {
            "institution": institution, "start": start, "algo": algorithm.name,
            "scenario": scenario, "params": params, "shared": shared, "mix": mix,
            "part": part}))
    return cells


def tuned_params(tuning: dict | None, algorithm, rounds: int) -> dict:
    """An algorithm's tuned configuration at ``rounds`` (tabular), or ``{}`` (its defaults)
    where the tuning has none. A learner that extends another (``tuned_like``, e.g. rg-la:
    RG plus a lookahead, which the tuning's single-learner scenarios cannot tune because there
    it is RG) takes the other's selection for the hyper-parameters they share."""
    for name in (algorithm.name, getattr(algorithm.learner, "tuned_like", None)):
        if name is None:
            continue
        try:
            params = selected_params(tuning, name, "tabular", rounds)
        except ValueError:  # not tuned at this budget
            continue
        fields = {f.name for f in dataclasses.fields(algorithm.config)}
        return {k: v for k, v in params.items() if k in fields}
    return {}


def row_label(record: dict) -> str:
    """An algorithm row's name in tables and figures: ``rg``, or ``rg, shared policy``."""
    return record["algo"] + (", shared policy" if record.get("shared") else "")


def run_institutions(cfg: InstitutionsConfig, out: str | Path, *,
                     references: References | None = None, tuning: dict | None = None,
                     doc: str | Path | None = None, progress: bool = True,
                     command: str | None = None, overwrite: bool = False,
                     engine: Engine | None = None) -> dict:
    """Run the stage into the run folder ``out`` and refresh the block of ``doc``; returns
    ``results.json``'s content.

    Args:
        references: references already computed (reused where they are the same game measured
            the same way).
        tuning: a tuning outcome; each algorithm then runs with the configuration selected at
            ``cfg.rounds`` (and ``cfg.large_rounds``) where there is one, else its defaults.
        doc: the Markdown page whose generated block is refreshed (e.g. docs/results.md).
        command: the command quoted in the block.
        overwrite: replace a folder that holds another run.
        engine: runs the jobs (default: a local pool of 2 processes).
    """
    engine = engine or Engine(progress=progress)
    out = Path(out)
    identity = {"institutions": cfg.to_dict(),
                "tuning": tuning_identity(tuning)}
    with open_run(out, "institutions", identity, overwrite=overwrite) as folder:
        start = time.perf_counter()
        cells = institution_cells(cfg, tuning)
        # the ideal discriminators of each scenario on the learners' evaluation games
        refs = engine.references([ReferenceRequest(c.meta["scenario"], search_envs=1,
                                                   confirm_envs=cfg.eval_envs)
                                  for c in cells], references, desc="institution references",
                                 out=out)
        for cell in cells:  # paired with the reference's games, burn-in and window
            ref = refs[cell.meta["scenario"].id]
            cell.config = dataclasses.replace(cell.config, eval_rounds=ref["rounds"],
                                              eval_burn_in=ref["burn_in"])
        metrics = engine.train(cells, out, desc="institution runs")
        built = [_record(cell, m, refs[cell.meta["scenario"].id], out)
                 for cell, m in zip(cells, metrics, strict=True)]
        records = [r for r, c in zip(built, cells, strict=True) if c.meta["part"] == "main"]
        basin = [r for r, c in zip(built, cells, strict=True) if c.meta["part"] == "basin"]
        results = {"config": cfg.to_dict(), "records": records, "basin": basin,
                   "tuning": "defaults" if tuning is None else "tuned (tuning.json)",
                   "wall_seconds": time.perf_counter() - start, **engine.describe(),
                   "command": command or f"reciprocity benchmark --out {out.parent.as_posix()} "
                                         "--stages institutions --overwrite"}
        write_json(out / "results.json", results)
        plot_institutions(out / "institutions.png", records)
        if basin:
            plot_basin(out / "basin.png", basin)
        if doc is not None:
            folder_rel = Path(os.path.relpath(out.resolve(), Path(doc).resolve().parent))
            write_block(doc, SECTION_START, SECTION_END,
                        section(results, figure=(folder_rel / "institutions.png").as_posix(),
                                basin_figure=(folder_rel / "basin.png").as_posix()))
        folder.complete()
    return results


def _record(cell: Cell, metrics: list[dict], ref: dict, out: Path) -> dict:
    meta = cell.meta
    record = build_record(meta["scenario"].id, meta["algo"], metrics, ref, meta["params"],
                          run_dir=out / cell.run_dir)
    honest = [float(np.mean([honesty(p, ref) for p in m["policies"].values()]))
              for m in metrics]
    for s, h in zip(record["per_seed"], honest, strict=True):
        s["honesty"] = h
    performance = [s["reference_performance"] for s in record["per_seed"]]
    record.update(institution=meta["institution"], start=meta["start"],
                  shared=meta["shared"], mix=meta["mix"],
                  init_policy=cell.config.init_policy, warmup=cell.config.warmup,
                  honesty=interval(honest, bounded=True),
                  worst_seed_performance=float(min(performance)), run=cell.run_dir)
    return record


# -- the figure --------------------------------------------------------------------------------
#: The label of a cell of the institutions figure that was not run (e.g. the larger variant
#: for an algorithm it does not run).
NOT_RUN = "n/r"


def plot_institutions(path: Path, records: list[dict]) -> Path:
    """Top: long-run payoff as a fraction of the ideal-discriminator payoff under the same
    institution; bottom: honesty of the learned signal heads. One column per start; in each
    panel one group of bars per institution, one bar per algorithm (mean over seeds, also drawn
    as a line, so that a zero shows), one dot per seed; a cell not run is labelled
    :data:`NOT_RUN`."""
    plt = pyplot()
    starts = list(dict.fromkeys(r["start"] for r in records))
    institutions = list(dict.fromkeys(r["institution"] for r in records))
    algos = list(dict.fromkeys(row_label(r) for r in records))
    fig_width = 4.6 * len(starts) + 0.8
    fig, axes = plt.subplots(2, len(starts), figsize=(fig_width, 7.2),
                             squeeze=False, sharey="row", layout="constrained")
    width = 0.8 / len(algos)
    for col, start in enumerate(starts):
        for row, (key, label) in enumerate((
                ("reference_performance", "payoff / ideal discriminators' payoff\n(same "
                                          "institution; bar: mean, dots: seeds)"),
                ("honesty", "honest signals: P(signal = the norm's verdict)\n(weighted as "
                            "ideal discriminators meet the contexts)"))):
            ax = axes[row][col]
            for j, algo in enumerate(algos):
                for i, institution in enumerate(institutions):
                    r = next((r for r in records if (r["start"], r["institution"],
                                                     row_label(r)) == (start, institution, algo)),
                             None)
                    x = i + (j - (len(algos) - 1) / 2) * width
                    if r is None:  # said so: a missing bar would read as a zero
                        ax.text(x, 0.03, NOT_RUN, rotation=90, ha="center", va="bottom",
                                fontsize=7, color="0.4")
                        continue
                    seeds = [s[key] for s in r["per_seed"]]
                    mean = float(np.mean(seeds))
                    # a shared policy: the algorithm's colour, hatched
                    ax.bar(x, mean, width * 0.9, color=colour(r["algo"]), alpha=0.55,
                           hatch="//" if r.get("shared") else None,
                           label=algo if i == 0 else None)
                    # the mean as a line of the algorithm's colour: a zero is a visible line
                    ax.plot([x - width * 0.45, x + width * 0.45], [mean, mean],
                            color=colour(r["algo"]), lw=2.2, solid_capstyle="butt")
                    ax.plot([x] * len(seeds), seeds, "k.", ms=3)
            ax.axhline(1.0, color="k", lw=0.8)
            ax.axhline(0.0, color="0.6", lw=0.6)
            if row == 0:
                ax.axhline(0.95, color="grey", lw=0.8, ls="--")
                ax.set_title(STARTS[start], fontsize=10)
            ax.set_xticks(range(len(institutions)),
                          [INSTITUTIONS[i][0].replace(", ", ",\n") for i in institutions],
                          rotation=30, ha="right", fontsize=7)
            ax.set_ylim(min(-0.05, ax.get_ylim()[0]), 1.08)  # room for the lines at 0
            ax.set_xlim(-0.5, len(institutions) - 0.5)  # every slot, run or not
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8)
    fig.suptitle(wrapped("Learners among themselves (many-learners): which institution and "
                         f"start sustain cooperation? (grey dashed: 95%; {NOT_RUN}: not run)",
                         fig_width, fontsize=10), fontsize=10)
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


# -- the section -------------------------------------------------------------------------------
def plot_basin(path: Path, records: list[dict]) -> Path:
    """The basin-of-attraction map: per institution (columns) the mean fraction of the ideal
    (top) and the share of seeds at >= 90% of it (bottom) against the start's mix lambda of
    the ideal discriminator, one line per algorithm."""
    plt = pyplot()
    institutions = list(dict.fromkeys(r["institution"] for r in records))
    algos = list(dict.fromkeys(r["algo"] for r in records))
    fig_width = 3.8 * len(institutions) + 0.8
    fig, axes = plt.subplots(2, len(institutions), figsize=(fig_width, 6.4), squeeze=False,
                             sharex=True, sharey="row", layout="constrained")
    for col, institution in enumerate(institutions):
        for algo in algos:
            rows = sorted((r for r in records if (r["institution"], r["algo"])
                           == (institution, algo)), key=lambda r: r["mix"])
            mixes = [r["mix"] for r in rows]
            fractions = [[s["reference_performance"] for s in r["per_seed"]] for r in rows]
            axes[0][col].plot(mixes, [np.mean(f) for f in fractions], "o-", ms=3,
                              color=colour(algo), label=algo)
            axes[1][col].plot(mixes, [np.mean([x >= BASIN_TARGET for x in f])
                                      for f in fractions], "o-", ms=3, color=colour(algo))
        axes[0][col].set_title(INSTITUTIONS[institution][0], fontsize=10)
        axes[1][col].set_xlabel("start: mix of the ideal discriminator (0 = uniform)", fontsize=8)
        for row in (0, 1):
            axes[row][col].axhline(1.0, color="k", lw=0.6)
            axes[row][col].set_ylim(-0.05, 1.08)
    axes[0][0].set_ylabel("payoff / ideal discriminators' payoff\n(mean over seeds)",
                          fontsize=8)
    axes[1][0].set_ylabel(f"share of seeds at >= {BASIN_TARGET:.0%}\nof the ideal", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8)
    fig.suptitle(wrapped("How much of the answer does each learner need? Learners started at "
                         "a mix of the uniform policy and the ideal discriminator",
                         fig_width, fontsize=10), fontsize=10)
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


#: A basin-map seed "ends at the ideal" at this fraction of its payoff.
BASIN_TARGET = 0.9


def basin_lines(results: dict, figure: str) -> list[str]:
    """The basin map's part of the block: a table (per institution and algorithm, per mix:
    seeds at >= 90% of the ideal / mean fraction) and the figure."""
    cfg, records = results["config"], results["basin"]
    mixes = sorted({r["mix"] for r in records})
    tuned = "each algorithm's default hyper-parameters" if results["tuning"] == "defaults" \
        else "the hyper-parameters the tuning selected at that budget" + \
        _tuned_like_words(r["algo"] for r in records)
    lines = [
        "**How much of the answer each learner needs** (the basin-of-attraction map). Every "
        "learner starts at P = 0.5 + λ (P_ideal − 0.5), a mix λ of the uniform policy and the "
        "ideal discriminator (its probabilities clipped to 0.05 / 0.95), with no warm-up, and "
        f"trains {cfg['basin_rounds']} rounds ({cfg['seeds']} seeds x {cfg['num_envs']} games, "
        f"{tuned}). Each cell: seeds that end at >= "
        f"{BASIN_TARGET:.0%} of the ideal discriminators' payoff / the mean fraction of it "
        "(a negative fraction: the learners pay more for cooperating than they receive).",
        "",
        "| institution | algorithm | " + " | ".join(f"λ = {m:g}" for m in mixes) + " |",
        "|" + " --- |" * (2 + len(mixes))]
    for institution in dict.fromkeys(r["institution"] for r in records):
        for algo in dict.fromkeys(r["algo"] for r in records):
            cells = []
            for m in mixes:
                r = next((r for r in records if (r["institution"], r["algo"], r["mix"])
                          == (institution, algo, m)), None)
                if r is None:
                    cells.append(NOT_RUN)
                    continue
                f = [s["reference_performance"] for s in r["per_seed"]]
                mean = f"{np.mean(f):.2f}".replace("-0.00", "0.00")  # no sign on a rounded 0
                cells.append(f"{sum(x >= BASIN_TARGET for x in f)}/{len(f)} · {mean}")
            lines.append(f"| {INSTITUTIONS[institution][0]} | {algo} | " + " | ".join(cells)
                         + " |")
    return [*lines, "", f"![basin of attraction]({figure})"]


def section(results: dict, figure: str = "results/institutions/institutions.png",
            basin_figure: str = "results/institutions/basin.png") -> str:
    """The generated block (without its markers): what was run, the table, the targets."""
    cfg, records = results["config"], results["records"]
    tuned = "each algorithm's default hyper-parameters" if results["tuning"] == "defaults" \
        else "the hyper-parameters the tuning selected at that budget (" + "; ".join(
            ["defaults where none", *_tuned_like(r["algo"] for r in records)]) + ")"
    lines = [
        f"Generated by `{results['command']}` ({results['wall_seconds'] / 60:.1f} min on "
        f"{results['cpu_count']} cores). `many-learners` (7 learners + 3 defectors) under "
        f"each institution ({'; '.join(INSTITUTIONS[i][0] for i in cfg['institutions'])}; "
        "audits by stern judging) from each start (from scratch: every probability 0.5; "
        "warm-up: each learner first trains alone among ideal discriminators; ideal start: "
        "every learner starts as the ideal discriminator, `--init disc+L6`, its probabilities "
        f"clipped to 0.05 / 0.95), for {', '.join(cfg['algos'])}"
        + _added_words(cfg) + "; "
        f"{cfg['seeds']} seeds x {cfg['num_envs']} games, {cfg['rounds']} rounds per learner "
        f"in each game (a warm-up's {cfg['warmup']} included), {tuned}."
        + (f" The larger variant ({INSTITUTIONS[cfg['large']][0]}: 35 learners + 15 "
           f"defectors): {', '.join(cfg['large_algos'])} "
           f"({', '.join(STARTS[s] for s in cfg['large_starts'])}), {cfg['seeds']} seeds x "
           f"{cfg['large_num_envs']} games, {cfg['large_rounds']} rounds (warm-up "
           f"{cfg['large_warmup']})." if cfg["large"] else "")
        + " Payoffs are long-run payoffs per round (mean ± 95% t over seeds); the reference is "
          "a population of ideal discriminators under the same institution; fractions and "
          "honesty: mean [95% bootstrap over seeds].",
        "",
        "| institution | start | algorithm | payoff / round | ideal discriminators | "
        "fraction of it | worst seed | honest signals | action head | signal head |",
        "|" + " --- |" * 10,
    ]
    for r in records:
        lines.append(
            f"| {INSTITUTIONS[r['institution']][0]} | {STARTS[r['start']]} | {row_label(r)} | "
            f"{format_interval(r['per_interaction_payoff'])} | {r['reference_payoff']:.3f} | "
            f"{format_interval(r['reference_performance'])} | "
            f"{r['worst_seed_performance']:.3f} | {format_interval(r['honesty'])} | "
            f"{seed_words(r, 'action')} | {seed_words(r, 'signal')} |")
    lines += ["", *_targets(records), *_scratch_targets(records), "",
              f"![institutions]({figure})"]
    if results.get("basin"):
        lines += ["", *basin_lines(results, basin_figure)]
    return "\n".join(lines)


def _tuned_like(algos) -> list[str]:
    """``rg-la: rg's, its own at their defaults`` for each algorithm that takes another's
    tuning (``tuned_like``)."""
    words = []
    for name in dict.fromkeys(algos):
        like = getattr(get_algorithm(name).learner, "tuned_like", None)
        if like is not None:
            words.append(f"{name}: {like}'s, its own at their defaults")
    return words


def _tuned_like_words(algos) -> str:
    """`` (rg-la: rg's, its own at their defaults)``, or ``""``."""
    words = _tuned_like(algos)
    return f" ({'; '.join(words)})" if words else ""


def discriminates(seed: dict) -> bool:
    """Whether every learner of a seed record cooperates with Good and defects against Bad as a
    Good donor (greedy P(C | G, G) > 0.5 > P(C | G, B), its action head conditional): the
    ideal discriminator's action rule, in the audit's labels."""
    return all(h["action"]["diagnosis"] == "context-sensitive"
               and h["action"]["probs"]["GG"] > 0.5 > h["action"]["probs"]["GB"]
               for h in seed["heads"].values())


#: The target for learners from scratch (issue 17): under this institution, at least
#: SCRATCH_SEEDS of the seeds at >= SCRATCH_TARGET of the ideal, discriminating.
SCRATCH_INSTITUTION, SCRATCH_TARGET, SCRATCH_SEEDS = "audit-0.3", 0.95, 0.8


def _scratch_targets(records: list[dict]) -> list[str]:
    """From scratch under the audit: per algorithm, the seeds at >= 95% of the ideal that
    discriminate by the audit's labels, and those at >= 95% by another code."""
    out = []
    for r in records:
        if r["start"] != "scratch" or r["institution"] != SCRATCH_INSTITUTION:
            continue
        high = [s for s in r["per_seed"] if s["reference_performance"] >= SCRATCH_TARGET]
        good = sum(discriminates(s) for s in high)
        n = len(r["per_seed"])
        ok = good >= SCRATCH_SEEDS * n
        other = f"; {len(high) - good} more at >= {SCRATCH_TARGET:.0%} with another code" \
            if len(high) > good else ""
        out.append(f"- Target ({row_label(r)} from scratch, {INSTITUTIONS[r['institution']][0]}: "
                   f">= {SCRATCH_TARGET:.0%} of the ideal discriminators' payoff on >= "
                   f"{SCRATCH_SEEDS:.0%} of "
                   f"the seeds, every learner cooperating with Good and defecting against "
                   f"Bad): {good} of {n} seeds{other} — {'met' if ok else 'not met'}.")
    return out


def _added_words(cfg: dict) -> str:
    """What the rows run under some institutions only are, in words."""
    parts = []
    if cfg.get("added_algos"):
        parts.append(", ".join(cfg["added_algos"]))
    if cfg.get("shared_algos"):
        parts.append(f"{', '.join(cfg['shared_algos'])} with one policy shared by all "
                     "learners (each learner's loss its own payoff, `--set share_policy=true`; "
                     "not after a warm-up, which trains every learner alone)")
    added = [INSTITUTIONS[i][0] for i in cfg["institutions"]
             if i in cfg.get("added_institutions", ())]
    if not parts or not added:
        return ""
    return f", and under {'; '.join(added)} also {' and '.join(parts)}"


def _targets(records: list[dict]) -> list[str]:
    """The study's target, checked: RG with an audit and a warm-up at >= 95% of the ideal
    discriminators' payoff on every seed."""
    out = []
    for r in records:
        if r["algo"] == "rg" and r["start"] == "warmup" and r["institution"].startswith("audit"):
            ok = r["worst_seed_performance"] >= 0.95
            out.append(f"- Target (RG, {INSTITUTIONS[r['institution']][0]}, warm-up: >= 95% of "
                       f"the ideal discriminators' payoff on every seed): worst seed "
                       f"{r['worst_seed_performance']:.1%} of {r['reference_payoff']:.3f} — "
                       f"{'met' if ok else 'not met'}.")
    return out
