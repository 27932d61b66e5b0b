"""RG with a network policy: the ablation of its ascent, on every discriminative single-learner
scenario of the catalogue and on scenarios outside it.

    python benchmarks/rg_network.py --doc docs/agents.md            # 5 seeds (~30 min, 2 cores)
    python benchmarks/rg_network.py --seeds 2 --quick               # L6-v0 and one outside

For each variant of RG (the MLP with the gradient through the network's parameters, "logits";
the MLP with target tables, "targets", RG's default for the MLP, with its default step and a
smaller one; tabular RG for comparison), every scenario is trained for 2000 rounds x 16 games
per seed and its policies are evaluated by the protocol (long run after the burn-in, on the
reference's 256 confirmation games) at 400, 1000 and 2000 rounds. Printed, and with ``--doc``
written into the generated block ``<!-- rg-network:start -->`` ... ``<!-- rg-network:end -->``
of that page: per variant and budget the mean and the smallest fraction of the reference over
scenarios and seeds, how many runs stay below 98%, and the share of runs whose action head
conditions (P(C | G, G) and P(C | G, B) more than 0.8 apart) where the optimum does; the
scenarios outside the catalogue separately.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import numpy as np

from reciprocity.engine import Cell, Engine, ReferenceRequest
from reciprocity.envs import Scenario, get_scenario, scenarios
from reciprocity.report import write_block
from reciprocity.train import TrainConfig

START, END = "<!-- rg-network:start -->", "<!-- rg-network:end -->"
BUDGETS = (400, 1000, 2000)
VARIANTS = {
    "MLP, gradient through the network (logits, lr 0.01)":
        {"policy": "mlp", "ascent": "logits", "lr": 0.01},
    "MLP, target tables (RG's default: lr 0.1, step 1)": {"policy": "mlp"},
    "MLP, target tables, step 0.25": {"policy": "mlp", "target_step": 0.25},
    "tabular (RG's default)": {},
}
#: Scenarios outside the catalogue: other numbers, a mixed background, a larger population.
OUTSIDE = (
    {"id": "outside-L5-b2-v0", "description": "L5 background, b = 2, c = 1",
     "population": [{"slot": "focal", "count": 1}, {"slot": "L5", "count": 9}],
     "benefit": 2, "cost": 1, "execution_error": 0.02, "assessment_error": 0.02,
     "max_rounds": 100},
    {"id": "outside-mixed-v0", "description": "5 stern judges, 4 simple standing, e = 0.05",
     "population": [{"slot": "focal", "count": 1}, {"slot": "L6", "count": 5},
                    {"slot": "L3", "count": 4}],
     "benefit": 4, "cost": 1, "execution_error": 0.05, "assessment_error": 0.02,
     "max_rounds": 100},
    {"id": "outside-L8-N20-v0", "description": "L8 background of 19, mu = 0.05",
     "population": [{"slot": "focal", "count": 1}, {"slot": "L8", "count": 19}],
     "benefit": 5, "cost": 1, "execution_error": 0.02, "assessment_error": 0.05,
     "max_rounds": 100},
)


def discriminative_catalogue(engine: Engine) -> list[Scenario]:
    """The catalogue's single-learner scenarios whose optimum conditions its action."""
    single = [get_scenario(s) for s in scenarios() if get_scenario(s).num_focal == 1]
    refs = engine.references([ReferenceRequest(s) for s in single])
    return [s for s in single if refs[s.id]["regime"] == "discriminative"]


def conditional(policy: dict) -> bool:
    return abs(policy["action"]["GG"] - policy["action"]["GB"]) > 0.8


def protocol_cell(scenario: Scenario, ref: dict, seeds: int, budgets: tuple[int, ...],
                  algo_config: dict, meta: dict, name: str) -> Cell:
    """RG trained on ``scenario`` for max(budgets) rounds x 16 games per seed, evaluated by the
    protocol of its reference (games, rounds, burn-in) at each budget; no files kept."""
    config = TrainConfig(scenario, algo="rg", seeds=tuple(range(seeds)), rounds=max(budgets),
                         num_envs=16, eval_envs=ref["protocol"]["num_envs"],
                         eval_rounds=ref["rounds"], eval_burn_in=ref["burn_in"],
                         eval_budgets=budgets, algo_config=algo_config, checkpoint_every=0,
                         save_checkpoint=False, tensorboard=False)
    return Cell(config, name, {**meta, "scenario": scenario.id})


def train_runs(engine: Engine, cells: list[Cell], refs: dict, desc: str) -> tuple[list, float]:
    """Train the cells; (one record per cell, seed and budget: the cell's meta, the seed, the
    budget, the fraction of the reference, whether the action head conditions and whether the
    optimum's does; the wall seconds)."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        metrics = engine.train(cells, out, desc=desc)
    runs = []
    for cell, per_seed in zip(cells, metrics, strict=True):
        ref = refs[cell.meta["scenario"]]
        sensitive = ref["policy"]["action"]["GG"] != ref["policy"]["action"]["GB"]
        for m in per_seed:
            for entry in m["budgets"]:
                runs.append({**cell.meta, "seed": m["seed"], "budget": entry["rounds"],
                             "fraction": entry["per_interaction_payoff"]
                             / ref["reference_payoff"],
                             "conditional": conditional(entry["policy"]),
                             "optimum_conditions": sensitive})
    return runs, time.perf_counter() - start


def run(args) -> dict:
    engine = Engine(workers=args.workers, progress=not args.quiet)
    outside = [Scenario.from_dict(d, source="outside") for d in OUTSIDE]
    catalogue = [get_scenario("L6-v0")] if args.quick else discriminative_catalogue(engine)
    everything = catalogue + (outside[:1] if args.quick else outside)
    refs = engine.references([ReferenceRequest(s) for s in everything])
    cells = []
    for name, params in VARIANTS.items():
        for s in everything:
            cells.append(protocol_cell(s, refs[s.id], args.seeds, BUDGETS, params,
                                       {"variant": name, "outside": s in outside},
                                       str(len(cells))))
    runs, seconds = train_runs(engine, cells, refs, "rg network")
    return {"runs": runs, "seeds": args.seeds, "scenarios": [s.id for s in catalogue],
            "outside": [s.id for s in outside if s.id in refs], "wall_seconds": seconds}


def table(result: dict, outside: bool) -> str:
    lines = ["| variant | rounds per game | fraction of the reference: mean | smallest | "
             "runs below 98% | action head conditional where the optimum is |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name in VARIANTS:
        for b in BUDGETS:
            rows = [r for r in result["runs"] if r["variant"] == name and r["budget"] == b
                    and r["outside"] == outside]
            if not rows:
                continue
            fractions = [r["fraction"] for r in rows]
            worst = min(rows, key=lambda r: r["fraction"])
            sensitive = [r for r in rows if r["optimum_conditions"]]
            lines.append(
                f"| {name} | {b} | {np.mean(fractions):.4f} | {worst['fraction']:.4f} "
                f"({worst['scenario']}) | {sum(f < 0.98 for f in fractions)} / {len(rows)} | "
                f"{sum(r['conditional'] for r in sensitive)} / {len(sensitive)} |")
    return "\n".join(lines)


def markdown(result: dict, command: str) -> str:
    return "\n".join([
        f"Generated by `{command}` ({result['seeds']} seeds x 16 games per scenario; "
        f"{result['wall_seconds'] / 60:.0f} min on 2 cores). Catalogue: the "
        f"{len(result['scenarios'])} discriminative single-learner scenarios "
        f"({', '.join(result['scenarios'])}).", "",
        table(result, outside=False), "",
        f"Outside the catalogue ({', '.join(result['outside'])}: other numbers, a mixed "
        "background, a larger population; definitions in `benchmarks/rg_network.py`):", "",
        table(result, outside=True)])


def cli(doc: str, script: str, block: tuple[str, str], run, markdown, quick_help: str,
        add_arguments=None, command_options=None) -> int:
    """The command line shared by the RG studies in this folder: ``--seeds`` (5), ``--workers``,
    ``--quick``, ``--doc PAGE`` (the generated ``block`` of that page is refreshed), ``--quiet``
    and whatever ``add_arguments(parser)`` adds; ``run(args)`` measures, ``markdown(result,
    command)`` writes the block quoting the command (``command_options(args)`` adds the script's
    own options to it)."""
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--doc", help="Markdown page whose generated block is refreshed")
    parser.add_argument("--quiet", action="store_true")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()
    result = run(args)
    command = f"python benchmarks/{script}" + (f" --doc {args.doc}" if args.doc else "") + \
        (f" --seeds {args.seeds}" if args.seeds != 5 else "") + \
        (" --quick" if args.quick else "") + \
        (command_options(args) if command_options is not None else "")
    text = markdown(result, command)
    print(text)
    if args.doc:
        write_block(args.doc, *block, text)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}))
    return 0


def main() -> int:
    return cli(__doc__, "rg_network.py", (START, END), run, markdown,
               "L6-v0 and one outside scenario")


if __name__ == "__main__":
    sys.exit(main())
