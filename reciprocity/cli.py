"""The ``reciprocity`` command line.

    reciprocity scenarios                 list the registered scenarios
    reciprocity demo [--scenario ID]      play fixed focal policies, print a table, save plots
    reciprocity train --scenario ID | --config FILE --algo rg|ppo|reinforce --seed S --out DIR
    reciprocity train --resume DIR        continue a killed run from its checkpoint
    reciprocity reference --scenario ID | --config FILE --out DIR     reference optimum
    reciprocity evaluate --run DIR [--reference DIR]    adherence, reference performance
    reciprocity benchmark --out docs/results            every scenario x algorithm x seed
    reciprocity flagship [--out runs/flagship]          RG vs PPO on the flagship (main job)
    reciprocity sweep --grid FILE --backend local|ray   a grid of scenarios x algos x params
    reciprocity attribute --run DIR | --scenario ID --policy SPEC --out DIR
                                          where the reciprocity gradient comes from
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .envs import get_scenario, scenarios
from .envs.config import strategy_tables
from .envs.core import BatchedGame
from .envs.norms import parse_strategy

#: Focal policies played by ``demo``, as strategy specs.
DEMO_POLICIES = {
    "ALLC (always cooperate)": "allc+L6",
    "ALLD (always defect)": "alld+L6",
    "DISC + stern judging": "disc+L6",
}


def _cmd_scenarios(args) -> int:
    for sid in scenarios():
        s = get_scenario(sid)
        print(f"{sid:40s} N={len(s.population):<3d} focal={s.num_focal}  {s.description}")
    return 0


def play_focal_policy(scenario, spec, rounds: int, num_envs: int, seed: int):
    """Play a scenario on the core with every focal slot following strategy ``spec``.

    Returns (good fraction per round (rounds,), mean payoff per round of each slot (N,),
    the public records of game 0 as a list of dicts).
    """
    config = scenario.env_config
    policy = parse_strategy(spec)
    strategies = [policy if s is None else s for s in config.strategies]
    action, assess = strategy_tables(strategies)
    game = BatchedGame(config.params, action, assess, batch=num_envs, seed=seed)
    good = np.empty(rounds)
    payoff = np.zeros(config.num_agents)
    records = []
    for t in range(rounds):
        record = game.play_round()
        good[t] = record.reputation_after.mean()
        payoff += record.payoffs.mean(axis=0)
        records.append(record.public(0))
    return good, payoff / rounds, records


def _cmd_demo(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .envs.render import render_rgb

    scenario = get_scenario(args.scenario)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    focal = scenario.env_config.focal_slots
    b, c = scenario.benefit, scenario.cost
    print(f"scenario {scenario.id}: {scenario.description}")
    print(f"{args.rounds} rounds x {args.num_envs} games per policy; full cooperation pays "
          f"b - c = {b - c:g} per round\n")
    header = (f"{'focal policy':28s} {'focal payoff/round':>19s} {'focal Good':>11s} "
              f"{'all Good':>9s}")
    print(header)
    print("-" * len(header))
    rows, curves, pictures = [], {}, {}
    for name, spec in DEMO_POLICIES.items():
        good, payoff, records = play_focal_policy(scenario, spec, args.rounds, args.num_envs,
                                                  args.seed)
        focal_good = float(np.mean([r["reputation_after"][focal].mean() for r in records]))
        rows.append({"policy": name, "spec": spec, "focal_payoff": float(payoff[focal].mean()),
                     "focal_good_fraction_game0": focal_good,
                     "good_fraction": float(good.mean())})
        print(f"{name:28s} {payoff[focal].mean():19.3f} {focal_good:11.3f} {good.mean():9.3f}")
        curves[name] = good
        pictures[name] = render_rgb(records, focal, records[-1]["reputation_after"])
    fig, axes = plt.subplots(1 + len(pictures), 1, figsize=(8, 2.2 + 2.2 * len(pictures)),
                             gridspec_kw={"height_ratios": [1.4] + [1] * len(pictures)})
    for name, good in curves.items():
        axes[0].plot(good, label=name)
    axes[0].set(xlabel="round", ylabel="fraction Good", ylim=(0, 1.02),
                title=f"{scenario.id}: reputations under three focal policies")
    axes[0].legend(fontsize=8, loc="lower right")
    for ax, (name, img) in zip(axes[1:], pictures.items(), strict=True):
        ax.imshow(img, interpolation="nearest", aspect="auto")
        ax.set(title=f"{name}: last 48 rounds of game 0 (rows = agents, blue = focal; "
                     "green Good / red Bad; dot white C / black D)", xticks=[], yticks=[])
        ax.title.set_fontsize(8)
    fig.tight_layout()
    fig.savefig(out / "demo.png", dpi=120)
    (out / "demo.json").write_text(json.dumps({"scenario": scenario.id, "rounds": args.rounds,
                                               "num_envs": args.num_envs, "seed": args.seed,
                                               "rows": rows}, indent=2))
    print(f"\nwrote {out / 'demo.png'} and {out / 'demo.json'}")
    return 0


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _cmd_train(args) -> int:
    from .train import TrainConfig, train

    if args.resume:
        import torch

        ckpt = Path(args.resume) / "checkpoint.pt"
        if not ckpt.is_file():
            raise ValueError(f"--resume: no checkpoint.pt in {args.resume}")
        stored = torch.load(ckpt, weights_only=False)["config"]
        stored["seeds"] = tuple(stored["seeds"])
        config, out, resume = TrainConfig(**stored), Path(args.resume), True
    else:
        scenario = args.scenario or args.config
        if scenario is None:
            raise ValueError("train needs --scenario ID, --config FILE or --resume DIR")
        if args.out is None:
            raise ValueError("train needs --out DIR")
        overrides = {}
        for item in args.set or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
            overrides[key] = _parse_value(value)
        seeds = tuple(args.seeds) if args.seeds else (args.seed,)
        config = TrainConfig(scenario=scenario, algo=args.algo, seeds=seeds, rounds=args.rounds,
                             num_envs=args.num_envs, algo_config=overrides, device=args.device,
                             init_policy=args.init)
        out, resume = Path(args.out), False
    metrics = train(config, out, resume=resume, progress=not args.quiet)
    for m in metrics:
        pol = m["policy"]
        action = " ".join(f"{k}:{v:.2f}" for k, v in pol["action"].items())
        print(f"seed {m['seed']}: per-interaction payoff {m['per_interaction_payoff']:.3f} "
              f"± {m['per_interaction_payoff_ci95']:.3f}  P(C|ctx) {action}")
    print(f"wrote {out}")
    return 0


def _cmd_reference(args) -> int:
    from .evaluation import reference

    scenario = args.scenario or args.config
    if scenario is None:
        raise ValueError("reference needs --scenario ID or --config FILE")
    ref = reference(scenario, search_envs=args.search_envs, confirm_envs=args.confirm_envs,
                    seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reference.json").write_text(json.dumps(ref, indent=2))
    print(f"{ref['scenario']}: reference payoff {ref['reference_payoff']:.3f} "
          f"± {ref['reference_ci95']:.3f} ({ref['kind']}, regime {ref['regime']}; "
          f"b - c = {ref['full_cooperation_payoff']:g})")
    action = " ".join(f"{k}:{int(v)}" for k, v in ref["policy"]["action"].items())
    signal = " ".join(f"{k}:{int(v)}" for k, v in ref["policy"]["signal"].items())
    print(f"  action {action}\n  signal {signal}")
    if ref["decisive_contexts"]:
        decisive = [f"{c['head']}:{c['context']}" for c in ref["decisive_contexts"]
                    if c["decisive"]]
        print(f"  decisive contexts: {', '.join(decisive) or 'none'}")
    print(f"wrote {out / 'reference.json'} in {ref['seconds']:.1f} s")
    return 0


def _cmd_evaluate(args) -> int:
    from .evaluation import evaluate_run, reference

    run = Path(args.run)
    path = run / "metrics.json"
    if not path.is_file():
        raise ValueError(f"--run: no metrics.json in {run}")
    metrics = json.loads(path.read_text())
    if args.reference:
        ref_path = Path(args.reference) / "reference.json"
        if not ref_path.is_file():
            raise ValueError(f"--reference: no reference.json in {args.reference}")
        ref = json.loads(ref_path.read_text())
    else:
        from .envs.scenarios import Scenario

        # the run stores its scenario as data, so files need not be at hand any more
        ref = reference(Scenario.from_dict(metrics["config"]["scenario"], source="run config"))
    result = evaluate_run(metrics, ref)
    metrics["evaluation"] = result
    path.write_text(json.dumps(metrics, indent=2))
    perf = result["reference_performance"]
    perf = "n/a (reference <= 0)" if perf != perf else f"{perf:.3f}"
    print(f"{metrics['scenario']} {metrics['algo']} seed {metrics['seed']}: "
          f"payoff {metrics['per_interaction_payoff']:.3f} / reference "
          f"{result['reference_payoff']:.3f} = {perf}; "
          f"adherence {result['adherence']:.3f}; constant-output "
          f"{result['constant_output'][next(iter(result['constant_output']))]}")
    return 0


def _cmd_benchmark(args) -> int:
    from .benchmark import BenchmarkConfig, results_table, run_benchmark

    defaults = BenchmarkConfig()
    cfg = BenchmarkConfig(
        scenarios=tuple(args.scenarios) if args.scenarios else defaults.scenarios,
        algos=tuple(args.algos) if args.algos else defaults.algos,
        seeds=args.seeds, rounds=args.rounds, num_envs=args.num_envs,
        eval_envs=args.eval_envs, search_envs=args.search_envs,
        confirm_envs=args.confirm_envs, workers=args.workers)
    for s in cfg.scenarios:
        get_scenario(s)
    records = run_benchmark(cfg, args.out, progress=not args.quiet)
    print(results_table(records))
    print(f"wrote {args.out}/results.json and {Path(args.out).with_suffix('.md')}")
    return 0


def _cmd_flagship(args) -> int:
    from .benchmark import BenchmarkConfig, results_table, run_benchmark

    scenario = "discriminators-vs-defectors-v0"
    cfg = BenchmarkConfig(scenarios=(scenario,), algos=tuple(args.algos), seeds=args.seeds,
                          rounds=args.rounds, workers=args.workers)
    print(f"{scenario}: {get_scenario(scenario).description}")
    print(f"training {', '.join(cfg.algos)} with {cfg.seeds} seeds x {cfg.num_envs} games x "
          f"{cfg.rounds} rounds each, and the exhaustive reference (4096 policies)...")
    records = run_benchmark(cfg, args.out, progress=not args.quiet, write_table=False)
    print()
    print(results_table(records))
    print(f"\nplot: {Path(args.out) / (scenario + '.png')}; records: "
          f"{Path(args.out) / 'results.json'}")
    return 0


def _cmd_attribute(args) -> int:
    from .attribution_report import attribute_command

    attribute_command(out=args.out, run=args.run, scenario=args.scenario, policy=args.policy,
                      report=args.report, doc=args.doc, quick=args.quick,
                      progress=not args.quiet,
                      **({} if args.report else dict(horizon=args.horizon, gamma=args.gamma,
                                                     games=args.games, rounds=args.rounds,
                                                     seed=args.seed,
                                                     figure=not args.no_figure)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .benchmark import BenchmarkConfig as BenchmarkDefaults

    parser = argparse.ArgumentParser(prog="reciprocity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("scenarios", help="list the registered scenarios")
    p.set_defaults(func=_cmd_scenarios)
    p = sub.add_parser("demo", help="play fixed focal policies on a scenario and save plots")
    p.add_argument("--scenario", default="discriminators-vs-defectors-v0",
                   help="scenario id or file (default: the flagship)")
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--num-envs", type=int, default=64, help="games played in parallel")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.set_defaults(func=_cmd_demo)
    p = sub.add_parser("train", help="train learners on a scenario")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--scenario", help="scenario id")
    src.add_argument("--config", help="scenario file (.json / .yaml)")
    src.add_argument("--resume", metavar="DIR", help="continue the run in DIR")
    p.add_argument("--algo", default="rg", choices=["rg", "ppo", "reinforce"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", help="several seeds, trained together")
    p.add_argument("--rounds", type=int, default=2000,
                   help="interaction budget: rounds played in each game (default 2000)")
    p.add_argument("--num-envs", type=int, default=16, help="games per seed (default 16)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="algorithm hyper-parameter override, e.g. --set horizon=40")
    p.add_argument("--device", default="cpu")
    p.add_argument("--init", metavar="STRATEGY",
                   help="start every learner from a strategy, e.g. disc+L6 (tabular policies)")
    p.add_argument("--out", help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("reference", help="exhaustive reference optimum of a scenario")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--scenario", help="scenario id")
    src.add_argument("--config", help="scenario file (.json / .yaml)")
    p.add_argument("--search-envs", type=int, default=32,
                   help="games per policy in the exhaustive search (default 32)")
    p.add_argument("--confirm-envs", type=int, default=256,
                   help="fresh games re-measuring the best policy and its flips (default 256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder (reference.json)")
    p.set_defaults(func=_cmd_reference)
    p = sub.add_parser("evaluate", help="adherence and reference performance of a run")
    p.add_argument("--run", required=True, help="a train output folder (metrics.json)")
    p.add_argument("--reference", help="a reference output folder (default: compute it)")
    p.set_defaults(func=_cmd_evaluate)
    p = sub.add_parser("benchmark", help="all scenarios x algorithms x seeds -> results table")
    p.add_argument("--out", default="docs/results", help="output folder (default docs/results)")
    p.add_argument("--scenarios", nargs="+", help="scenario ids (default: the catalogue)")
    p.add_argument("--algos", nargs="+", choices=["rg", "ppo", "reinforce"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=BenchmarkDefaults.rounds,
                   help="rounds per game for every algorithm")
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--eval-envs", type=int, default=256)
    p.add_argument("--search-envs", type=int, default=32)
    p.add_argument("--confirm-envs", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_benchmark)
    p = sub.add_parser("flagship", help="main job: RG vs PPO on the flagship scenario")
    p.add_argument("--out", default="runs/flagship")
    p.add_argument("--algos", nargs="+", default=["rg", "ppo"],
                   choices=["rg", "ppo", "reinforce"])
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--rounds", type=int, default=BenchmarkDefaults.rounds)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_flagship)
    p = sub.add_parser("attribute", help="influence attribution: the reciprocity gradient of a "
                       "policy by channel and delay")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a train output folder (metrics.json)")
    src.add_argument("--scenario", help="scenario id or file (with --policy)")
    src.add_argument("--report", action="store_true",
                     help="train short runs and write the results section (see --doc)")
    p.add_argument("--policy", metavar="SPEC", help="strategy played by every focal slot")
    p.add_argument("--out", required=True, help="output folder (attribution.json, .png)")
    p.add_argument("--horizon", type=int, help="H (default: the run's, else RG's default)")
    p.add_argument("--gamma", type=float, help="discount (default: the run's, else RG's)")
    p.add_argument("--games", type=int, default=16, help="games of the fresh public record")
    p.add_argument("--rounds", type=int, help="rounds of the record (default: max_rounds)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fresh public record")
    p.add_argument("--no-figure", action="store_true", help="write attribution.json only")
    p.add_argument("--doc", help="with --report: the markdown file to update")
    p.add_argument("--quick", action="store_true", help="with --report: tiny budgets (CI)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_attribute)
    from .sweep import add_parser as add_sweep_parser

    add_sweep_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, ImportError) as err:  # bad input, or a missing optional extra
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
