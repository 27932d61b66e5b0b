"""What RG must know of the game (spec §8): its model with the scenario's numbers (the oracle),
with numbers it learns itself, and deliberately misspecified. A stage of ``reciprocity
benchmark``.

    reciprocity benchmark --out docs/results --stages world        # this section alone

**Cells.** Every single-learner scenario of the benchmark, RG (tabular) at the benchmark's main
budget with the hyper-parameters tuned there (its defaults without a tuning), seeds 0 .. S - 1,
under five models of the game:

* ``oracle``: the scenario's numbers (what the curves run; their record is reused when the
  benchmark ran the same configuration);
* ``learned``: every number estimated from the learner's own payoffs and decisions and the public
  record (:class:`reciprocity.agents.world.LearnedWorld`);
* ``errors x0.5`` and ``errors x2``: the oracle with e and mu halved or doubled;
* ``norm wrong``: every other agent modelled as assessing by image scoring (stern judging where
  the background assesses by image scoring) instead of as its estimator says.

**Measures.** Each cell's record (:func:`reciprocity.records.build_record`) and, per scenario, the
payoff of each model relative to the oracle's (mean over seeds); the target: ``learned`` within
1% of the oracle on every scenario.

Outputs in ``<benchmark out>/world`` (its own run folder): ``results.json`` (``records``,
``config``), ``references/``, ``runs/<model>/<scenario>/`` and the generated block of the results
page (between ``<!-- world-model:start -->`` and ``<!-- world-model:end -->``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .engine import Cell, Engine, ReferenceRequest, References
from .envs.norms import ASSESSMENT_RULES, parse_assessment_rule
from .envs.scenarios import get_scenario
from .records import build_record
from .report import format_interval, write_block
from .runfolder import open_run, write_json
from .tuning import selected_params, tuning_identity

__all__ = ["MODELS", "SECTION_END", "SECTION_START", "WorldStudyConfig", "run_world_study",
           "section", "wrong_norm"]

SECTION_START, SECTION_END = "<!-- world-model:start -->", "<!-- world-model:end -->"
#: model -> (label, RG hyper-parameters of that model; "others_norm" is set per scenario)
MODELS = {
    "oracle": ("oracle (the scenario's numbers)", {"world_model": "oracle"}),
    "learned": ("learned from experience (the default)", {"world_model": "learned"}),
    "errors-x0.5": ("e and μ halved", {"world_model": "oracle",
                                       "world_factors": {"execution_error": 0.5,
                                                         "assessment_error": 0.5}}),
    "errors-x2": ("e and μ doubled", {"world_model": "oracle",
                                      "world_factors": {"execution_error": 2.0,
                                                        "assessment_error": 2.0}}),
    "norm-wrong": ("others' norm wrong", {"world_model": "oracle", "others_norm": None}),
}
TARGET = 0.01  # learned within 1% of the oracle's payoff


@dataclass
class WorldStudyConfig:
    """What the stage runs (defaults: the results page)."""

    scenarios: tuple[str, ...] = ()  # default: the benchmark's single-learner scenarios
    models: tuple[str, ...] = tuple(MODELS)
    seeds: int = 5
    rounds: int = 1000  # the benchmark's main budget
    num_envs: int = 16
    eval_envs: int = 256  # = the references' confirmation games (paired)
    search_envs: int = 32  # games per candidate of the references' exhaustive search

    def __post_init__(self):
        self.scenarios, self.models = tuple(self.scenarios), tuple(self.models)
        unknown = [m for m in self.models if m not in MODELS]
        if unknown or "oracle" not in self.models:
            raise ValueError(f"world.models: {unknown or 'oracle missing'}; known: "
                             f"{list(MODELS)} (the oracle is the comparison)")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


def wrong_norm(scenario) -> str:
    """A norm the scenario's background does not assess by: image scoring, or stern judging
    where the background assesses by image scoring."""
    from .evaluation import background_norm

    _, table = parse_assessment_rule(background_norm(scenario.env_config))
    return "stern_judging" if np.array_equal(table, ASSESSMENT_RULES["image_scoring"]) \
        else "image_scoring"


def world_cells(cfg: WorldStudyConfig, refs: dict, tuning: dict | None) -> list[Cell]:
    from .train import TrainConfig

    try:
        params = selected_params(tuning, "rg", "tabular", cfg.rounds)
    except ValueError:  # not tuned at this budget: the defaults
        params = {}
    cells = []
    for model in cfg.models:
        for s in cfg.scenarios:
            scenario = get_scenario(s)
            ref = refs[scenario.id]
            extra = dict(MODELS[model][1])
            if "others_norm" in extra:
                extra["others_norm"] = wrong_norm(scenario)
            config = TrainConfig(scenario, algo="rg", seeds=tuple(range(cfg.seeds)),
                                 rounds=cfg.rounds, num_envs=cfg.num_envs,
                                 eval_envs=cfg.eval_envs, eval_rounds=ref["rounds"],
                                 eval_burn_in=ref["burn_in"],
                                 algo_config={**params, **extra}, checkpoint_every=0,
                                 save_checkpoint=False, tensorboard=False)
            cells.append(Cell(config, f"runs/{model}/{scenario.id}",
                              {"model": model, "scenario": scenario.id, "params": params,
                               "extra": extra}))
    return cells


def run_world_study(cfg: WorldStudyConfig, out: str | Path, *,
                    references: References | None = None, tuning: dict | None = None,
                    doc: str | Path | None = None, progress: bool = True,
                    command: str | None = None, overwrite: bool = False,
                    engine: Engine | None = None) -> dict:
    """Run the stage into the run folder ``out`` and refresh the block of ``doc``; returns
    ``results.json``'s content (arguments as :func:`reciprocity.institutions.run_institutions`)."""
    engine = engine or Engine(progress=progress)
    out = Path(out)
    if not cfg.scenarios:
        raise ValueError("world.scenarios: no single-learner scenario to study")
    identity = {"world": cfg.to_dict(),
                "tuning": tuning_identity(tuning)}
    with open_run(out, "world", identity, overwrite=overwrite) as folder:
        start = time.perf_counter()
        refs = engine.references([ReferenceRequest.of(s, search_envs=cfg.search_envs,
                                                  confirm_envs=cfg.eval_envs)
                                  for s in cfg.scenarios], references,
                                 desc="world references", out=out)
        cells = world_cells(cfg, refs, tuning)
        metrics = engine.train(cells, out, desc="world models")
        records = []
        for cell, per_seed in zip(cells, metrics, strict=True):
            record = build_record(cell.meta["scenario"], "rg", per_seed,
                                  refs[cell.meta["scenario"]], cell.meta["params"],
                                  run_dir=out / cell.run_dir)
            record.update(model=cell.meta["model"], model_options=cell.meta["extra"],
                          run=cell.run_dir)
            records.append(record)
        results = {"config": cfg.to_dict(), "records": records,
                   "relative": relative_to_oracle(records),
                   "tuning": "defaults" if tuning is None else "tuned (tuning.json)",
                   "wall_seconds": time.perf_counter() - start, **engine.describe(),
                   "command": command or f"reciprocity benchmark --out {out.parent.as_posix()} "
                                         "--stages world --overwrite"}
        write_json(out / "results.json", results)
        if doc is not None:
            write_block(doc, SECTION_START, SECTION_END, section(results))
        folder.complete()
    return results


def relative_to_oracle(records: list[dict]) -> dict:
    """model -> scenario -> the model's payoff / the oracle's (means over seeds); None where
    the oracle's payoff is not positive (e.g. all-defectors-v0: nobody gives, the ratio has no
    meaning)."""
    oracle = {r["scenario"]: r["per_interaction_payoff"]["mean"] for r in records
              if r["model"] == "oracle"}
    out: dict[str, dict] = {}
    for r in records:
        base = oracle[r["scenario"]]
        out.setdefault(r["model"], {})[r["scenario"]] = \
            r["per_interaction_payoff"]["mean"] / base if base > 0 else None
    return out


def section(results: dict) -> str:
    """The generated block: what was run, a row per model, the learned model's target."""
    cfg, records, relative = results["config"], results["records"], results["relative"]
    tuned = "the hyper-parameters tuned at that budget" if results["tuning"] != "defaults" \
        else "its defaults"
    lines = [
        f"Generated by `{results['command']}` ({results['wall_seconds'] / 60:.1f} min on "
        f"{results['cpu_count']} cores). RG (tabular, {cfg['rounds']} rounds x "
        f"{cfg['num_envs']} games, {cfg['seeds']} seeds, {tuned}) on each of the "
        f"{len(cfg['scenarios'])} single-learner scenarios under each model of the game. "
        "Fraction of the reference: mean over scenarios [smallest scenario mean]; relative to "
        "the oracle: each scenario's mean payoff over seeds / the oracle's (scenarios with a "
        "positive oracle payoff), smallest and largest.",
        "",
        "| model of the game | fraction of the reference | relative to the oracle: smallest | "
        "largest | scenarios within 1% of the oracle |",
        "| --- | --- | --- | --- | --- |",
    ]
    for model in cfg["models"]:
        rows = [r for r in records if r["model"] == model]
        fractions = [r["reference_performance"]["mean"] for r in rows
                     if r["reference_payoff"] > 0]
        ratios = [v for v in relative[model].values() if v is not None]
        within = sum(abs(v - 1) <= TARGET for v in ratios)
        lines.append(f"| {MODELS[model][0]} | {np.mean(fractions):.3f} "
                     f"[{min(fractions):.3f}] | {min(ratios):.4f} | {max(ratios):.4f} | "
                     f"{within} / {len(ratios)} |")
    if "learned" in relative:
        defined = {k: v for k, v in relative["learned"].items() if v is not None}
        worst = min(defined.items(), key=lambda kv: kv[1])
        ok = all(abs(v - 1) <= TARGET for v in defined.values())
        lines += ["", f"- Target (the learned model within 1% of the oracle's payoff on every "
                      f"single-learner scenario): smallest ratio {worst[1]:.4f} ({worst[0]}) — "
                      f"{'met' if ok else 'not met'}."]
    per_scenario = ["", "| scenario | " + " | ".join(MODELS[m][0] for m in cfg["models"]) + " |",
                    "|" + " --- |" * (len(cfg["models"]) + 1)]
    for s in dict.fromkeys(r["scenario"] for r in records):
        cells = []
        for m in cfg["models"]:
            r = next(r for r in records if (r["model"], r["scenario"]) == (m, s))
            cells.append(format_interval(r["per_interaction_payoff"]))
        per_scenario.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines + per_scenario)
