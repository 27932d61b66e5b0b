"""RG's model with and without a tail (``tail_rounds``): the configurations the tuning selected for
the results page, and RG's defaults, on every discriminative single-learner scenario.

    python benchmarks/rg_tail.py --doc docs/agents.md       # 5 seeds (~15 min, 2 cores)
    python benchmarks/rg_tail.py --seeds 2 --quick          # low-benefit-v0 and L6-v0

Without a tail RG's objective counts the first H model rounds only, and near b ~ c a short H
makes "always defect" the model's optimum (docs/agents.md, "The differentiable model"). For
each configuration — every distinct tabular configuration the tuning selected at some budget
(read from ``docs/results/tuning.json``) and RG's defaults — with no tail and with a tail of 2,
every scenario is trained for 1000 rounds x 16 games per seed and evaluated by the protocol
(long run after the burn-in, the reference's confirmation games) at 400 and 1000 rounds.
Printed, and with ``--doc`` written into the generated block ``<!-- rg-tail:start -->`` ...
``<!-- rg-tail:end -->`` of that page: per configuration, tail and budget the mean and the
smallest fraction of the reference over scenarios and seeds and the runs below 98%.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from reciprocity.engine import Cell, Engine, ReferenceRequest
from reciprocity.envs import get_scenario
from reciprocity.report import write_block
from reciprocity.train import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rg_network import discriminative_catalogue

START, END = "<!-- rg-tail:start -->", "<!-- rg-tail:end -->"
BUDGETS = (400, 1000)
TAILS = (0, 2)
TUNING = Path(__file__).resolve().parent.parent / "docs" / "results" / "tuning.json"


def configurations(tuning_path: Path) -> dict[str, dict]:
    """RG's defaults and every distinct tabular configuration the tuning selected."""
    tuning = json.loads(tuning_path.read_text())
    candidates = tuning["candidates"]["rg"]["tabular"]
    budgets: dict[int, list[str]] = {}
    for budget, index in tuning["selected"]["rg"]["tabular"].items():
        budgets.setdefault(index, []).append(budget)
    out = {"RG's defaults (H = 50, Adam 0.1)": {}}
    for index, chosen in sorted(budgets.items()):
        params = candidates[index]["params"]
        out[f"tuned for {', '.join(chosen)} rounds (H = {params['horizon']}, "
            f"Adam {params['lr']})"] = dict(params)
    return out


def run(args) -> dict:
    engine = Engine(workers=args.workers, progress=not args.quiet)
    everything = ([get_scenario("low-benefit-v0"), get_scenario("L6-v0")] if args.quick
                  else discriminative_catalogue(engine))
    refs = engine.references([ReferenceRequest(s) for s in everything])
    variants = configurations(Path(args.tuning))
    cells = []
    for name, params in variants.items():
        for tail in TAILS:
            for s in everything:
                ref = refs[s.id]
                config = TrainConfig(
                    s, algo="rg", seeds=tuple(range(args.seeds)), rounds=max(BUDGETS),
                    num_envs=16, eval_envs=ref["protocol"]["num_envs"],
                    eval_rounds=ref["rounds"], eval_burn_in=ref["burn_in"],
                    eval_budgets=BUDGETS, algo_config={**params, "tail_rounds": tail},
                    checkpoint_every=0, save_checkpoint=False, tensorboard=False)
                cells.append(Cell(config, f"{len(cells)}",
                                  {"variant": name, "tail": tail, "scenario": s.id}))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        metrics = engine.train(cells, out, desc="rg tail")
    runs = []
    for cell, per_seed in zip(cells, metrics, strict=True):
        ref = refs[cell.meta["scenario"]]
        for m in per_seed:
            for entry in m["budgets"]:
                runs.append({**cell.meta, "seed": m["seed"], "budget": entry["rounds"],
                             "fraction": entry["per_interaction_payoff"]
                             / ref["reference_payoff"]})
    return {"runs": runs, "seeds": args.seeds, "variants": list(variants),
            "scenarios": [s.id for s in everything],
            "wall_seconds": time.perf_counter() - start}


def table(result: dict) -> str:
    lines = ["| configuration | tail | rounds per game | fraction of the reference: mean | "
             "smallest | runs below 98% |", "| --- | --- | --- | --- | --- | --- |"]
    for name in result["variants"]:
        for tail in TAILS:
            for b in BUDGETS:
                rows = [r for r in result["runs"] if r["variant"] == name and r["tail"] == tail
                        and r["budget"] == b]
                fractions = [r["fraction"] for r in rows]
                worst = min(rows, key=lambda r: r["fraction"])
                lines.append(f"| {name} | {tail or 'none'} | {b} | {np.mean(fractions):.4f} | "
                             f"{worst['fraction']:.4f} ({worst['scenario']}) | "
                             f"{sum(f < 0.98 for f in fractions)} / {len(rows)} |")
    return "\n".join(lines)


def markdown(result: dict, command: str) -> str:
    return "\n".join([
        f"Generated by `{command}` ({result['seeds']} seeds x 16 games per scenario, tabular "
        f"policies; {result['wall_seconds'] / 60:.0f} min on 2 cores). Scenarios: "
        f"{', '.join(result['scenarios'])}.", "", table(result)])


def main() -> int:
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tuning", default=str(TUNING),
                        help="the tuning outcome whose selected configurations are compared")
    parser.add_argument("--quick", action="store_true", help="low-benefit-v0 and L6-v0")
    parser.add_argument("--doc", help="Markdown page whose rg-tail block is refreshed")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    result = run(args)
    command = "python benchmarks/rg_tail.py" + (f" --doc {args.doc}" if args.doc else "") + \
        (f" --seeds {args.seeds}" if args.seeds != 5 else "") + (" --quick" if args.quick else "")
    text = markdown(result, command)
    print(text)
    if args.doc:
        write_block(args.doc, START, END, text)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
