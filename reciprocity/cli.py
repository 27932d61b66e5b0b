"""The reciprocity command line.

    reciprocity scenarios                 list the registered scenarios
    reciprocity demo [--scenario ID]      play fixed focal policies, print a table, save plots
    reciprocity train --scenario ID | --config FILE --algo rg|ppo|reinforce --seed S --out DIR
    reciprocity train ... --warmup W      several learners: each trains W rounds alone first
    reciprocity train --resume DIR        continue a stopped run from its checkpoint
    reciprocity reference --scenario ID | --config FILE --out DIR     reference optimum
    reciprocity evaluate --run DIR [--reference FILE|DIR]  adherence, reference performance
    reciprocity benchmark --out docs/results            curves: scenarios x algos x budgets
    reciprocity tune --out DIR                          per-budget hyper-parameter search
    reciprocity flagship [--out runs/flagship]          RG vs PPO on the flagship (main job)
    reciprocity sweep --grid FILE --backend local|ray   a grid of scenarios x algos x params
    reciprocity attribute --run DIR | --scenario ID --policy SPEC --out DIR
                                          where the reciprocity gradient comes from

Output folders: a folder holding a different run is refused unless --overwrite (which clears
it); a train run is continued with --resume. A mistake is reported on one line (error: ...,
exit status 2); --debug shows the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from .envs import get_scenario, scenarios
from .envs.simulate import play_scenario

#: The stages of ``reciprocity benchmark``.
STAGES = ("curves", "institutions", "world", "walltime")

#: Focal policies played by ``demo``, as strategy specs.
DEMO_POLICIES = {
    "ALLC (always cooperate)": "allc+L6",
    "ALLD (always defect)": "alld+L6",
    "DISC + stern judging": "disc+L6",
}

#: Keys ``evaluate`` needs in a run's metrics.json (a reference.json's: own_policy.REFERENCE_KEYS).
METRICS_KEYS = ("scenario", "algo", "seed", "per_interaction_payoff", "policies", "config",
                "scenario_hash", "protocol")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; every option's help ends with its default (unless the help
    already states it: "(default ..." or "default: ...")."""

    def _get_help_string(self, action):
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS \
                or "(default" in text or "default:" in text or "(required" in text:
            return text
        if action.required:
            return f"{text} (required)"
        if action.nargs == 0:
            return f"{text} (default: off)"
        default = action.default
        if default is None:
            return f"{text} (default: none)"
        if isinstance(default, list | tuple):
            default = " ".join(map(str, default))
        return f"{text} (default: {str(default).replace('%', '%%')})"


def _count(text: str) -> int:
    """argparse type: a positive integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative(what: str):
    """argparse type: an integer >= 0, described as ``what`` in errors."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if value < 0:
            raise argparse.ArgumentTypeError(f"expected {what} (an integer >= 0), got {text!r}")
        return value

    return parse


_seed = _non_negative("a seed")
_rounds = _non_negative("a number of rounds")


def _cmd_scenarios(args) -> int:
    import shutil
    import textwrap

    # the terminal's width, at most 100 columns (100 when the output is not a terminal)
    width = max(60, min(100, shutil.get_terminal_size((100, 24)).columns))
    ids = scenarios()
    id_width = max(len(sid) for sid in ids)
    for sid in ids:
        s = get_scenario(sid)
        head = f"{sid:{id_width}s}  N={len(s.population):<3d} focal={s.num_focal:<2d} "
        if width - len(head) < 40:  # a narrow terminal: the description below, indented
            print(head.rstrip())
            head = "    "
        print(textwrap.fill(s.description, width, initial_indent=head,
                            subsequent_indent=" " * len(head), break_on_hyphens=False)
              or head.rstrip())  # (no description)
    return 0


def _cmd_demo(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .envs.render import render_rgb
    from .runfolder import open_run, save_figure, write_json

    scenario = get_scenario(args.scenario)
    if scenario.num_focal == 0:
        raise ValueError(f"scenario {scenario.id!r} has no focal slot: the demo plays focal "
                         "policies")
    run = {"scenario": scenario.to_dict(), "rounds": args.rounds, "num_envs": args.num_envs,
           "seed": args.seed}
    with open_run(args.out, "demo", run, overwrite=args.overwrite) as folder:
        out = folder.path
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
            played = play_scenario(scenario, spec, args.rounds, num_envs=args.num_envs,
                                   seed=args.seed, keep_records=True)
            good, payoff, records = played.good_fraction, played.payoffs, played.records
            focal_good = float(np.mean([r["reputation_after"][focal].mean() for r in records]))
            rows.append({"policy": name, "spec": spec,
                         "focal_payoff": float(payoff[focal].mean()),
                         "focal_good_fraction_game0": focal_good,
                         "good_fraction": float(good.mean())})
            print(f"{name:28s} {payoff[focal].mean():19.3f} {focal_good:11.3f} "
                  f"{good.mean():9.3f}")
            curves[name] = good
            pictures[name] = render_rgb(records, focal, records[-1]["reputation_after"])
        fig, axes = plt.subplots(1 + len(pictures), 1,
                                 figsize=(8, 2.2 + 2.2 * len(pictures)),
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
        save_figure(fig, out / "demo.png", dpi=120)
        plt.close(fig)
        write_json(out / "demo.json", {"scenario": scenario.id, "rounds": args.rounds,
                                       "num_envs": args.num_envs, "seed": args.seed,
                                       "rows": rows})
        folder.complete()
    print(f"\nwrote {out / 'demo.png'} and {out / 'demo.json'}")
    return 0


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _overrides(items: list[str] | None) -> dict:
    overrides = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key] = _parse_value(value)
    return overrides


def _check_resume_options(args, run) -> None:
    """Options given with --resume must agree with the run's own (it continues with those)."""
    def refuse(option: str, given, stored) -> None:
        raise ValueError(f"--resume {args.resume}: {option} {given} contradicts the run's "
                         f"{stored} (a resumed run continues with its own options; start a new "
                         "run in another folder to change them)")

    if args.overwrite:
        raise ValueError("--resume continues the run in its folder; --overwrite would clear it: "
                         "give one of them")
    if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
        raise ValueError(f"--resume {args.resume} writes into its own folder; --out "
                         f"{args.out} names another one")
    if args.algo is not None:
        from .learners import get_algorithm

        if get_algorithm(args.algo) is not run.algorithm:
            refuse("--algo", args.algo, run.algo)
    seeds = tuple(args.seeds) if args.seeds else (args.seed,) if args.seed is not None else None
    if seeds is not None and seeds != run.seeds:
        refuse("--seeds" if args.seeds else "--seed", " ".join(map(str, seeds)),
               "seeds " + " ".join(map(str, run.seeds)))
    for option, given, name, stored in (
            ("--rounds", args.rounds, "rounds", run.rounds),
            ("--num-envs", args.num_envs, "num_envs", run.num_envs),
            ("--eval-envs", args.eval_envs, "eval_envs", run.eval_envs),
            ("--eval-rounds", args.eval_rounds, "eval_rounds", run.resolved_eval_rounds()),
            ("--init", args.init, "init_policy", run.init_policy),
            ("--init-mix", args.init_mix, "init_mix", run.init_mix),
            ("--warmup", args.warmup, "warmup", run.warmup)):
        if given is not None and given != stored:
            refuse(option, given, f"{name} {stored}")
    if args.warmup_strategy is not None:
        from .train import warmup_opponent

        given = warmup_opponent(run.scenario_data.env_config, args.warmup_strategy)
        stored = run.warmup_opponent
        if stored is None or given.to_spec() != stored.to_spec():
            refuse("--warmup-strategy", args.warmup_strategy,
                   "run without a warm-up" if stored is None else
                   f"warm-up strategy {run.warmup_strategy or stored.name}")
    if args.device is not None:
        from .train import check_device

        if check_device(args.device) != run.device:
            refuse("--device", args.device, f"device {run.device}")
    if args.set:
        changed = dataclasses.replace(run, algo_config={**run.algo_config,
                                                        **_overrides(args.set)})
        given, stored = (dataclasses.asdict(c.learner_config()) for c in (changed, run))
        diff = sorted(k for k in given if given[k] != stored[k])
        if diff:
            refuse("--set", ", ".join(f"{k}={given[k]}" for k in diff),
                   ", ".join(f"{k}={stored[k]}" for k in diff))
    source = args.scenario or args.config
    if source is not None:
        scenario = get_scenario(source)
        if scenario.content_hash() != run.scenario_data.content_hash():
            refuse("--scenario" if args.scenario else "--config", source,
                   f"scenario {run.scenario_data.id} as it was when the run started (the run "
                   "keeps its own copy; was the file edited since?)")


def _cmd_train(args) -> int:
    from .runfolder import read_manifest
    from .train import LEARNING_CURVE, TrainConfig, load_run_config, train

    if args.seed is not None and args.seeds:
        raise ValueError(f"--seed {args.seed} and --seeds {' '.join(map(str, args.seeds))}: give "
                         "one of them (--seeds S1 S2 ... trains several seeds)")
    finished = False
    if args.resume:
        config = load_run_config(args.resume)
        _check_resume_options(args, config)
        if args.checkpoint_every is not None:
            config = dataclasses.replace(config, checkpoint_every=args.checkpoint_every)
        out, resume = Path(args.resume), True
        finished = (read_manifest(out) or {}).get("status") == "complete"
    else:
        scenario = args.scenario or args.config
        if scenario is None:
            raise ValueError("train needs --scenario ID, --config FILE or --resume DIR")
        if args.out is None:
            raise ValueError("train needs --out DIR")
        seeds = tuple(args.seeds) if args.seeds else (0 if args.seed is None else args.seed,)
        options = {name: value for name, value in (
            ("algo", args.algo), ("rounds", args.rounds), ("num_envs", args.num_envs),
            ("eval_envs", args.eval_envs), ("eval_rounds", args.eval_rounds),
            ("device", args.device), ("checkpoint_every", args.checkpoint_every))
            if value is not None}
        config = TrainConfig(scenario=scenario, seeds=seeds, algo_config=_overrides(args.set),
                             init_policy=args.init, warmup=args.warmup or 0,
                             init_mix=1.0 if args.init_mix is None else args.init_mix,
                             warmup_strategy=args.warmup_strategy, **options)
        out, resume = Path(args.out), False
    metrics = train(config, out, resume=resume, overwrite=args.overwrite,
                    progress=not args.quiet)
    if finished:  # train left it as it was
        print(f"{out}: the run is already complete, nothing to resume; its stored results "
              "below (to compute them again, run it without --resume)")
    print("\n".join(_train_summary(metrics)))
    if not finished:
        print(f"wrote {out} (learning curve: {out / LEARNING_CURVE})")
    return 0


def _train_summary(metrics: list[dict]) -> list[str]:
    """The lines ``train`` prints: per seed its long-run payoff, then a table with one line per
    learner: its long-run payoff, P(C) per action context and P(Good) per signal context."""
    first = metrics[0]["policies"][next(iter(metrics[0]["policies"]))]
    action, signal = list(first["action"]), list(first["signal"])
    lines = []
    for m in metrics:
        learners = len(m["policies"])
        lines.append(f"seed {m['seed']}: per-interaction payoff {m['per_interaction_payoff']:.3f} "
                     f"± {m['per_interaction_payoff_ci95']:.3f} (long run"
                     + (f", mean over {learners} learners)" if learners > 1 else ")"))
    width = max(len("learner"), *(len(a) for m in metrics for a in m["policies"]))
    lines.append(f"{'':{width + 6}s}{'long-run':>8s}  {'P(C) | own, recipient':{5 * len(action)}s} "
                 "P(Good) | donor, action, recipient")
    lines.append(f"{'seed':>4s} {'learner':{width}s} {'payoff':>8s}  "
                 + " ".join(f"{c:>4s}" for c in action) + "  "
                 + " ".join(f"{c:>4s}" for c in signal))
    for m in metrics:
        for agent, pol in m["policies"].items():
            lines.append(f"{m['seed']:>4d} {agent:{width}s} {m['per_agent_payoff'][agent]:8.3f}  "
                         + " ".join(f"{pol['action'][c]:4.2f}" for c in action) + "  "
                         + " ".join(f"{pol['signal'][c]:4.2f}" for c in signal))
    return lines


def _cmd_reference(args) -> int:
    from .evaluation import check_reference_size, reference
    from .runfolder import open_run, write_json

    source = args.scenario or args.config
    if source is None:
        raise ValueError("reference needs --scenario ID or --config FILE")
    scenario = get_scenario(source)
    if scenario.num_focal == 0:  # checked here too: the folder is only touched for a valid run
        raise ValueError(f"scenario {scenario.id!r} has no focal slot: a reference is the best "
                         "policy of its learners, and it has none")
    if args.confirm_envs < 2:
        raise ValueError(f"--confirm-envs must be at least 2 (an interval needs two games), got "
                         f"{args.confirm_envs}")
    check_reference_size(scenario, search_envs=args.search_envs, confirm_envs=args.confirm_envs,
                         rounds=args.rounds, names={"search_envs": "--search-envs",
                                                    "confirm_envs": "--confirm-envs",
                                                    "rounds": "--rounds"})
    run = {"scenario": scenario.to_dict(), "search_envs": args.search_envs,
           "confirm_envs": args.confirm_envs, "rounds": args.rounds, "seed": args.seed}
    started = time.perf_counter()
    with open_run(args.out, "reference", run, overwrite=args.overwrite) as folder:
        ref = reference(scenario, search_envs=args.search_envs, confirm_envs=args.confirm_envs,
                        rounds=args.rounds, seed=args.seed, progress=True, cache=True)
        write_json(folder.path / "reference.json", ref)
        folder.complete()
    print(f"{ref['scenario']}: reference payoff {ref['reference_payoff']:.3f} "
          f"± {ref['reference_ci95']:.3f} in the long run (after a burn-in of "
          f"{ref['burn_in']} rounds), {ref['episode_payoff']:.3f} over the first episode "
          f"({ref['kind']}, regime {ref['regime']}; b - c = {ref['full_cooperation_payoff']:g})")
    action = " ".join(f"{k}:{int(v)}" for k, v in ref["policy"]["action"].items())
    signal = " ".join(f"{k}:{int(v)}" for k, v in ref["policy"]["signal"].items())
    print(f"  action {action}\n  signal {signal}")
    if ref["decisive_contexts"]:
        decisive = [f"{c['head']}:{c['context']}" for c in ref["decisive_contexts"]
                    if c["decisive"]]
        print(f"  decisive contexts: {', '.join(decisive) or 'none'}")
    # this command's time (a reference read from the cache keeps the seconds it first took)
    print(f"wrote {folder.path / 'reference.json'} in {time.perf_counter() - started:.1f} s")
    return 0


def _run_metrics(run: Path) -> list[tuple[Path, dict]]:
    """The per-seed metrics files of a finished training run folder."""
    from .runfolder import read_json, read_manifest

    if not run.is_dir():
        raise ValueError(f"--run {run}: no such folder")
    manifest = read_manifest(run)
    if manifest is not None and manifest["kind"] != "train":
        raise ValueError(f"--run {run} holds a {manifest['kind']} run, not a training run")
    if manifest is not None and manifest["status"] != "complete":
        raise ValueError(f"--run {run}: the run is not finished (status {manifest['status']}); "
                         f"continue it with reciprocity train --resume {run}")
    paths = [run / "metrics.json"] if (run / "metrics.json").is_file() else sorted(
        (p for p in run.glob("seed_*/metrics.json") if p.parent.name[5:].isdigit()),
        key=lambda p: int(p.parent.name[5:]))
    if not paths:
        raise ValueError(f"--run {run}: no metrics.json or seed_*/metrics.json (not a finished "
                         "training run)")
    return [(p, read_json(p, "--run", required=METRICS_KEYS)) for p in paths]


def _cmd_evaluate(args) -> int:
    from .envs.scenarios import Scenario
    from .evaluation import evaluate_run, mean_ci95, reference
    from .own_policy import load_reference
    from .runfolder import locked, read_json, write_json

    if args.run is None or args.scenario is not None or args.policy is not None:
        return _cmd_evaluate_policy(args)
    policy_options = [flag for flag, value in (
        ("--eval-envs", args.eval_envs), ("--eval-rounds", args.eval_rounds),
        ("--out", args.out), ("--overwrite", args.overwrite)) if value not in (None, False)]
    if policy_options:
        raise ValueError(f"{policy_options[0]} is for --policy; --run evaluates a training run "
                         "on its own evaluation games, in its own folder")
    run = Path(args.run)
    runs = _run_metrics(run)
    first = runs[0][1]
    if args.reference:  # a reference.json (as a benchmark's references/<id>.json) or its folder
        ref = load_reference(args.reference)
    else:  # the run stores its scenario as data, so files need not be at hand any more
        scenario = Scenario.from_dict(first["config"]["scenario"],
                                      source=f"{runs[0][0]} (config.scenario)")
        protocol = first.get("protocol") or {}
        # paired with the run's evaluation games: same games, burn-in and window
        ref = reference(scenario, rounds=protocol.get("window"), burn_in=protocol.get("burn_in"),
                        confirm_envs=protocol.get("num_envs", 256),
                        confirm_seed=protocol.get("seed", 1), progress=True)
    results = [evaluate_run(m, ref) for _, m in runs]  # refuses another game or protocol
    with locked(run):
        for (path, m), result in zip(runs, results, strict=True):
            m["evaluation"] = result
            write_json(path, m)
        if len(runs) > 1:
            summary_path = run / "summary.json"
            summary = read_json(summary_path, "--run") if summary_path.is_file() else {}
            perf = mean_ci95([r["reference_performance"] for r in results])
            adher = mean_ci95([r["adherence"] for r in results])
            summary["evaluation"] = {
                "reference_payoff": ref["reference_payoff"],
                "reference_performance": {"mean": perf[0], "ci95": perf[1]},
                "adherence": {"mean": adher[0], "ci95": adher[1]},
                "seeds": [m["seed"] for _, m in runs]}
            write_json(summary_path, summary)
    for (_, m), result in zip(runs, results, strict=True):
        perf = result["reference_performance"]
        perf = "n/a (reference <= 0)" if perf != perf else f"{perf:.3f}"
        print(f"{m['scenario']} {m['algo']} seed {m['seed']}: "
              f"payoff {m['per_interaction_payoff']:.3f} / reference "
              f"{result['reference_payoff']:.3f} = {perf}; "
              f"adherence {result['adherence']:.3f}; heads: " + ", ".join(
                  f"{head} {d['diagnosis']}" for head, d in
                  result["heads"][next(iter(result["heads"]))].items()))
    if len(runs) > 1:
        stats = summary["evaluation"]
        print(f"{len(runs)} seeds: reference performance "
              f"{_mean_text(stats['reference_performance'])}, adherence "
              f"{_mean_text(stats['adherence'])} (mean ± 95% interval)")
    return 0


def _cmd_evaluate_policy(args) -> int:
    """``evaluate --scenario ID --policy FILE.py:FUNC --out DIR``: see
    :func:`reciprocity.own_policy.evaluate_policy`."""
    from .evaluation import check_reference_size
    from .locate import canonical
    from .own_policy import (
        check_reference,
        evaluate_policy,
        load_policy,
        load_reference,
        policy_tables,
    )
    from .runfolder import open_run, write_json

    if args.run is not None:
        raise ValueError("--run evaluates a training run, --scenario and --policy a policy "
                         "trained elsewhere: give one of them")
    if args.policy is None:
        raise ValueError("--scenario needs --policy FILE.py:FUNC" if args.scenario else
                         "evaluate needs --run DIR, or --scenario ID with --policy FILE.py:FUNC")
    if args.scenario is None:
        raise ValueError("--policy needs --scenario ID (the scenario it plays)")
    if args.out is None:
        raise ValueError("--policy needs --out DIR (where evaluation.json goes)")
    if args.eval_envs is not None and args.eval_envs < 2:
        raise ValueError(f"--eval-envs must be at least 2 (an interval needs two games), got "
                         f"{args.eval_envs}")
    scenario = get_scenario(args.scenario)
    locator = canonical(args.policy, "--policy")
    # a bad function or reference is refused before the output folder is touched
    policy_tables(load_policy(locator), name=args.policy)
    ref = None if args.reference is None else load_reference(args.reference)
    if ref is not None:
        check_reference(scenario, ref, eval_rounds=args.eval_rounds)
    # sizes that cannot fit or finish, too (the reference is played on the evaluation games)
    protocol = {} if ref is None else ref["protocol"]
    check_reference_size(scenario, confirm_envs=args.eval_envs or protocol.get("num_envs", 256),
                         rounds=args.eval_rounds or protocol.get("window"),
                         burn_in=protocol.get("burn_in"),
                         names={"confirm_envs": "--eval-envs", "rounds": "--eval-rounds"})
    config = {"scenario": scenario.to_dict(), "policy": locator, "reference": None if
              args.reference is None else str(Path(args.reference).resolve()),
              "eval_envs": args.eval_envs, "eval_rounds": args.eval_rounds}
    with open_run(args.out, "evaluate-policy", config, overwrite=args.overwrite) as folder:
        result = evaluate_policy(scenario, args.policy, eval_envs=args.eval_envs,
                                 eval_rounds=args.eval_rounds, reference=ref,
                                 progress=not args.quiet)
        write_json(folder.path / "evaluation.json", result)
        folder.complete()
    ref = result["reference_payoff"]
    for agent, payoff in result["per_agent_payoff"].items():
        perf = "n/a (reference <= 0)" if ref <= 0 else f"{payoff / ref:.3f}"
        heads = ", ".join(f"{head} {d['diagnosis']}" for head, d in result["heads"][agent].items())
        print(f"{result['scenario']} {result['algo']} {agent}: payoff {payoff:.3f} / reference "
              f"{ref:.3f} = {perf}; adherence "
              f"{result['evaluation']['adherence_per_agent'][agent]:.3f}; heads: {heads}")
    print(f"wrote {folder.path / 'evaluation.json'}")
    return 0


def _mean_text(stat: dict) -> str:
    mean, half = stat["mean"], stat["ci95"]
    if mean != mean:
        return "n/a"
    return f"{mean:.3f}" if half != half else f"{mean:.3f} ± {half:.3f}"


def _cmd_benchmark(args) -> int:
    from .benchmark import BenchmarkConfig, quick_config, run_benchmark
    from .institutions import QUICK, InstitutionsConfig, run_institutions

    overrides = {k: v for k, v in (
        ("scenarios", tuple(args.scenarios) if args.scenarios else None),
        ("algos", tuple(args.algos) if args.algos else None),
        ("policies", tuple(args.policies) if args.policies else None),
        ("seeds", args.seeds)) if v is not None}
    if args.no_tuning:
        overrides["tuning"] = None
    engine = _engine(args)
    stages = args.stages or list(STAGES)
    institutions = {**(QUICK if args.quick else {}),
                    **{k: overrides[k] for k in ("algos", "seeds") if k in overrides}}
    if args.algos:  # the larger variant, the shared rows and the map too run only those
        large = tuple(a for a in InstitutionsConfig.large_algos if a in args.algos)
        institutions.update(large_algos=large, **({} if large else {"large": None}))
        institutions.update({name: tuple(a for a in getattr(InstitutionsConfig, name)
                                         if a in args.algos)
                             for name in ("added_algos", "shared_algos", "basin_algos")})
    overrides["institutions"] = InstitutionsConfig(**institutions) \
        if "institutions" in stages else None
    if "world" not in stages:
        overrides["world"] = None
    if "walltime" not in stages:
        overrides["walltime"] = None
    cfg = quick_config(**overrides) if args.quick else BenchmarkConfig(**overrides)
    for s in cfg.scenarios:
        get_scenario(s)
    if args.tuning and not Path(args.tuning).is_file():
        raise ValueError(f"--tuning: no such file {args.tuning}")
    extra = _extra_evaluations(args.extra_records)
    command = ["reciprocity", "benchmark", "--out", Path(args.out).as_posix()]
    for flag, value in (("--quick", args.quick), ("--stages", args.stages),
                        ("--no-tuning", args.no_tuning),
                        ("--tuning", args.tuning), ("--tuning-doc", args.tuning_doc),
                        ("--scenarios", args.scenarios), ("--algos", args.algos),
                        ("--policies", args.policies), ("--seeds", args.seeds),
                        ("--extra-records", args.extra_records)):
        if value not in (None, False):
            command += [flag] + ([] if value is True else
                                 list(map(str, value)) if isinstance(value, list) else [value])
    if args.overwrite:  # the generated blocks quote the command as it was run
        command.append("--overwrite")
    # the results page: the documentation's beside its folder (docs/results.md beside
    # docs/results/); a --quick check keeps everything it writes inside --out
    out = Path(args.out)
    page = out / "results.md" if args.quick else out.with_suffix(".md")
    if "curves" not in stages:  # studies alone, beside the benchmark's results
        from .knowledge import run_world_study
        from .runfolder import read_json

        tuning = None if args.tuning is None else \
            read_json(args.tuning, "--tuning", required=("selected", "candidates"))
        common = dict(tuning=tuning, doc=page, progress=not args.quiet,
                      command=" ".join(map(str, command)), overwrite=args.overwrite,
                      engine=engine)
        written = []
        if cfg.institutions is not None:
            results = run_institutions(cfg.institutions, out / "institutions", **common)
            written.append(f"{out / 'institutions' / 'results.json'} "
                           f"({len(results['records'])} records)")
        if cfg.world is not None:
            results = run_world_study(cfg.world, out / "world", **common)
            written.append(f"{out / 'world' / 'results.json'} ({len(results['records'])} records)")
        if cfg.walltime is not None:
            from .benchmark import walltime_config
            from .engine import ReferenceRequest, References
            from .walltime import run_walltime

            cache = References()
            refs = engine.references([ReferenceRequest.of(s, search_envs=cfg.search_envs,
                                                          confirm_envs=cfg.confirm_envs)
                                      for s in cfg.scenarios], cache)
            results = run_walltime(walltime_config(cfg, refs), out / "walltime",
                                   references=cache, **common)
            written.append(f"{out / 'walltime' / 'results.json'} ({len(results['runs'])} runs)")
        print(f"wrote {', '.join(written)} and {page}")
        return 0
    results = run_benchmark(cfg, args.out, tuning=args.tuning, tuning_doc=args.tuning_doc,
                            progress=not args.quiet, command=" ".join(map(str, command)),
                            overwrite=args.overwrite, engine=engine,
                            extra_evaluations=extra, page=page)
    print(f"{len(results['records'])} records; wrote {out / 'results.json'} and {page}")
    return 0


def _extra_evaluations(files: list[str] | None) -> list[dict]:
    """The evaluation.json files of ``benchmark --extra-records``."""
    from .runfolder import read_json

    return [read_json(f, "--extra-records", required=("scenario", "per_interaction_payoff",
                                                      "policies", "protocol"))
            for f in files or []]


def _engine(args):
    """The study engine of a command's --backend, --workers and --ray-address."""
    from .engine import engine_from_args

    return engine_from_args(args)


def _add_engine_options(p, default_workers: int | None = 2,
                        default_backend: str | None = "local") -> None:
    from .engine import add_engine_options

    add_engine_options(p, default_workers=default_workers, default_backend=default_backend)


def _cmd_flagship(args) -> int:
    from .benchmark import BenchmarkConfig, results_table, run_benchmark
    from .learners import get_algorithm

    scenario = "discriminators-vs-defectors-v0"
    # points of the sample-efficiency curve, read off the same runs: budgets every algorithm's
    # default collection size divides
    sizes = [get_algorithm(a).defaults().rounds_per_update for a in args.algos]
    budgets = (*(b for b in (100, 200, 400)
                 if b < args.rounds and all(b % size == 0 for size in sizes)), args.rounds)
    cfg = BenchmarkConfig(scenarios=(scenario,), algos=tuple(args.algos), policies=("tabular",),
                          seeds=args.seeds, budgets=budgets, main_budget=args.rounds,
                          tuning=None, institutions=None)
    engine = _engine(args)  # its options are checked before anything runs
    print(f"{scenario}: {get_scenario(scenario).description}")
    print(f"training {', '.join(cfg.algos)} with {cfg.seeds} seeds x {cfg.num_envs} games x "
          f"{args.rounds} rounds each (default hyper-parameters), and the exhaustive reference "
          "(4096 policies)...")
    results = run_benchmark(cfg, args.out, progress=not args.quiet, write_table=False,
                            overwrite=args.overwrite, engine=engine)
    print()
    print(results_table(results["records"]))
    print(f"\nplot: {Path(args.out) / (scenario + '.png')}; records: "
          f"{Path(args.out) / 'results.json'}")
    return 0


def _algorithm_choices() -> str:
    """The algorithm names a command accepts, in its help."""
    from .learners import algorithm_names

    return ", ".join(algorithm_names()) + " or a learner class as MODULE:CLASS / FILE.py:CLASS"


def _add_output_options(p, out_help: str, default: str | None = None) -> None:
    p.add_argument("--out", default=default, required=default is None and out_help != "",
                   help=out_help)
    p.add_argument("--overwrite", action="store_true",
                   help="clear the output folder first if it holds another run")


def _cmd_tune(args) -> int:
    from .runfolder import open_run
    from .tuning import QUICK, TuningConfig, run_tuning, tuning_table, write_tuning_doc

    cfg = TuningConfig(**(QUICK if args.quick else {}),
                       **({"algos": tuple(args.algos)} if args.algos else {}))
    engine = _engine(args)
    with open_run(args.out, "tune", cfg.to_dict(), overwrite=args.overwrite) as folder:
        outcome = run_tuning(cfg, folder.path, engine=engine, progress=not args.quiet)
        folder.complete()
    if args.doc:
        command = f"reciprocity tune --out {Path(args.out).as_posix()} --doc {args.doc}"
        write_tuning_doc(args.doc, outcome, command + (" --quick" if args.quick else "")
                         + " --overwrite")
    print(tuning_table(outcome))
    print(f"wrote {Path(args.out) / 'tuning.json'}")
    return 0


def _cmd_attribute(args) -> int:
    from .attribution_report import attribute_command

    engine = None
    if args.backend or args.workers or args.ray_address:
        if not args.report:
            raise ValueError("attribute: --backend, --workers and --ray-address go with "
                             "--report")
        engine = _engine(args)
    attribute_command(out=args.out, run=args.run, scenario=args.scenario, policy=args.policy,
                      report=args.report, doc=args.doc, quick=args.quick,
                      progress=not args.quiet, overwrite=args.overwrite, engine=engine,
                      **({} if args.report else dict(horizon=args.horizon, gamma=args.gamma,
                                                     games=args.games, rounds=args.rounds,
                                                     seed=args.seed,
                                                     figure=not args.no_figure)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .benchmark import BenchmarkConfig as BenchmarkDefaults

    parser = argparse.ArgumentParser(prog="reciprocity", description=__doc__,
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error instead of a one-line message")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error instead of a one-line message "
                             "(default: off)")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str):
        return sub.add_parser(name, help=help_text, description=help_text, parents=[common],
                              formatter_class=_HelpFormatter)

    p = command("scenarios", "list the registered scenarios")
    p.set_defaults(func=_cmd_scenarios)

    p = command("demo", "play fixed focal policies on a scenario and save plots")
    p.add_argument("--scenario", default="discriminators-vs-defectors-v0",
                   help="scenario id or file")
    p.add_argument("--rounds", type=_count, default=200, help="rounds per game")
    p.add_argument("--num-envs", type=_count, default=64, help="games played in parallel")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the games")
    _add_output_options(p, "output folder (demo.png, demo.json)", "runs/demo")
    p.set_defaults(func=_cmd_demo)

    p = command("train", "train learners on a scenario")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--scenario", help="scenario id (default: none; one of --scenario, "
                     "--config or --resume is needed)")
    src.add_argument("--config", help="scenario file (.json / .yaml)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the stopped run in DIR with its own options and scenario; "
                        "options given beside it must agree with the run's")
    p.add_argument("--algo", metavar="ALGO",
                   help=f"learning algorithm: {_algorithm_choices()} (default: rg)")
    p.add_argument("--seed", type=_seed, help="seed of a single run (default: 0)")
    p.add_argument("--seeds", type=_seed, nargs="+",
                   help="several seeds, trained together; each gives the numbers it gives alone "
                        "(default: --seed)")
    p.add_argument("--rounds", type=_count,
                   help="interaction budget: rounds played in each game, exactly, for every "
                        "algorithm (default: 2000)")
    p.add_argument("--num-envs", type=_count, help="games per seed (default: 16)")
    p.add_argument("--eval-envs", type=_count,
                   help="evaluation games per learner after training (default: 256)")
    p.add_argument("--eval-rounds", type=_count,
                   help="rounds per evaluation game (default: the scenario's max_rounds)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="algorithm hyper-parameter override, repeatable, e.g. --set horizon=40 "
                        "(default: the algorithm's defaults)")
    p.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cpu)")
    p.add_argument("--init", metavar="STRATEGY",
                   help="start every learner from a strategy, e.g. disc+L6 (tabular policies; "
                        "default: uniform 0.5)")
    p.add_argument("--init-mix", type=float, metavar="LAMBDA",
                   help="start at a mix of the uniform policy and --init: P = 0.5 + LAMBDA "
                        "(P_init - 0.5), LAMBDA in [0, 1] (default: 1, the strategy itself)")
    p.add_argument("--warmup", type=_rounds, metavar="W",
                   help="several learners: each first trains W rounds alone, the other learner "
                        "slots played by --warmup-strategy, then all train together; the W "
                        "rounds are part of --rounds (default: 0, no warm-up)")
    p.add_argument("--warmup-strategy", metavar="STRATEGY",
                   help="plays the other learner slots during the warm-up (default: DISC "
                        "assessing by the audit norm, or by the background's norm)")
    p.add_argument("--checkpoint-every", metavar="N|Ns",
                   help="checkpoint every N updates, or every N seconds with a trailing s "
                        "(e.g. 300s); 0: only at the end (default: 10 evenly spaced, plus one "
                        "at the end)")
    p.add_argument("--out", help="output folder (required unless --resume)")
    p.add_argument("--overwrite", action="store_true",
                   help="clear the output folder first if it holds another run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = command("reference", "exhaustive reference optimum of a scenario")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--scenario", help="scenario id (this or --config is required)")
    src.add_argument("--config", help="scenario file (.json / .yaml)")
    p.add_argument("--search-envs", type=_count, default=32,
                   help="games per policy in the exhaustive search")
    p.add_argument("--confirm-envs", type=_count, default=256,
                   help="fresh games re-measuring the best policy and its flips (at least 2)")
    p.add_argument("--rounds", type=_count,
                   help="rounds per evaluation game, as in the runs it is compared with "
                        "(default: the scenario's max_rounds)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the search games")
    _add_output_options(p, "output folder (reference.json)")
    p.set_defaults(func=_cmd_reference)

    p = command("evaluate", "adherence and reference performance of a training run (every "
                            "seed, plus a summary), or of a policy trained elsewhere "
                            "(--scenario, --policy, --out)")
    p.add_argument("--run", help="a train output folder (default: none; this, or --scenario "
                                 "with --policy, is needed)")
    p.add_argument("--scenario", help="scenario id or file on which --policy plays every focal "
                                      "slot")
    p.add_argument("--policy", metavar="FILE.py:FUNC",
                   help="a function from observations (n, 5) to actions or probabilities of 1, "
                        "path/to/file.py:FUNC or module:FUNC; writes OUT/evaluation.json")
    p.add_argument("--reference", metavar="FILE|DIR",
                   help="a reference.json (e.g. a benchmark's or the flagship's "
                        "OUT/references/<scenario>.json) or a reference output folder holding "
                        "one; it must be for the scenario and evaluation rounds of the run or "
                        "policy (default: compute it)")
    p.add_argument("--eval-envs", type=_count,
                   help="with --policy: evaluation games, at least 2 (default: the reference's, "
                        "else 256)")
    p.add_argument("--eval-rounds", type=_count,
                   help="with --policy: rounds of the long-run window (default: the "
                        "reference's, else the scenario's max_rounds)")
    p.add_argument("--out", help="with --policy: output folder (evaluation.json)")
    p.add_argument("--overwrite", action="store_true",
                   help="with --policy: clear the output folder first if it holds another run")
    p.add_argument("--quiet", action="store_true", help="with --policy: no progress bar")
    p.set_defaults(func=_cmd_evaluate)

    p = command("benchmark", "sample-efficiency curves of every algorithm and policy class on "
                "the catalogue, tuned per budget -> results page")
    _add_output_options(p, "output folder; the results page is the .md file beside it "
                        "(docs/results.md for docs/results), with --quick OUT/results.md",
                        "docs/results")
    p.add_argument("--quick", action="store_true",
                   help="3 scenarios, budgets 10 and 20, 2 seeds, a tiny tuning: the same code "
                        "paths in 1-3 minutes on 2 cores (for CI); everything, the results "
                        "page included, goes into --out")
    p.add_argument("--stages", nargs="+", choices=STAGES,
                   help="curves: the sample-efficiency benchmark; institutions: many learners "
                        "under each institution and start, into OUT/institutions; world: RG's "
                        "model with the game's numbers given, learned or misspecified, into "
                        "OUT/world; walltime: training time to 95%% of the reference at tuned "
                        "settings, into OUT/walltime (without curves, the stages leave the rest "
                        "of OUT as it is) (default: all four)")
    p.add_argument("--tuning", metavar="FILE",
                   help="reuse a tuning outcome (tuning.json) instead of running the search")
    p.add_argument("--no-tuning", action="store_true",
                   help="run every algorithm with its default hyper-parameters")
    p.add_argument("--tuning-doc", metavar="FILE",
                   help="Markdown file whose tuning table is refreshed, e.g. docs/agents.md")
    p.add_argument("--scenarios", nargs="+",
                   help="scenario ids (default: the catalogue except many-learners-audit-large-v0, "
                        "which the institutions study runs)")
    p.add_argument("--algos", nargs="+", metavar="ALGO",
                   help=f"algorithms: {_algorithm_choices()} (default: rg ppo reinforce)")
    p.add_argument("--policies", nargs="+", choices=["tabular", "mlp"],
                   help="policy classes (default: both)")
    p.add_argument("--seeds", type=_count, help="seeds 0 .. N-1 per cell (default 5; --quick 2)")
    p.add_argument("--extra-records", nargs="+", metavar="FILE",
                   help="evaluation.json files of policies evaluated with reciprocity evaluate "
                        "--policy (several files of one policy and scenario: its seeds), shown "
                        "in the tables and the claim map beside the benchmark's own")
    _add_engine_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_benchmark)

    p = command("flagship", "main job: RG vs PPO on the flagship scenario")
    _add_output_options(p, "output folder", "runs/flagship")
    p.add_argument("--algos", nargs="+", default=["rg", "ppo"], metavar="ALGO",
                   help=f"algorithms: {_algorithm_choices()}")
    p.add_argument("--seeds", type=_count, default=2, help="seeds 0 .. N-1 per algorithm")
    p.add_argument("--rounds", type=_count, default=BenchmarkDefaults.main_budget,
                   help="rounds per game for every algorithm")
    _add_engine_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_flagship)

    p = command("tune", "per-budget hyper-parameter search with the same effort for every "
                "algorithm (see reciprocity.tuning)")
    _add_output_options(p, "output folder of tuning.json", "runs/tuning")
    p.add_argument("--doc", metavar="FILE",
                   help="Markdown file whose tuning table is refreshed, e.g. docs/agents.md")
    p.add_argument("--quick", action="store_true",
                   help="1 scenario, 2 configurations, budgets 10 and 20: the same code in "
                        "about a minute")
    p.add_argument("--algos", nargs="+", metavar="ALGO",
                   help=f"algorithms: {_algorithm_choices()} (default: rg ppo reinforce)")
    _add_engine_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_tune)

    p = command("attribute", "influence attribution: the reciprocity gradient of a policy by "
                "channel and delay")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a train output folder (metrics.json)")
    src.add_argument("--scenario", help="scenario id or file (with --policy)")
    src.add_argument("--report", action="store_true",
                     help="train short runs and write the results section (see --doc)")
    p.add_argument("--policy", metavar="SPEC", help="strategy played by every focal slot")
    _add_output_options(p, "output folder (attribution.json, attribution.png)")
    p.add_argument("--horizon", type=int, help="H (default: the run's, else RG's default)")
    p.add_argument("--gamma", type=float, help="discount (default: the run's, else RG's)")
    p.add_argument("--games", type=int, default=16, help="games of the fresh public record")
    p.add_argument("--rounds", type=int, help="rounds of the record (default: max_rounds)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fresh public record")
    p.add_argument("--no-figure", action="store_true", help="write attribution.json only")
    p.add_argument("--doc", help="with --report: the markdown file to update")
    p.add_argument("--quick", action="store_true", help="with --report: tiny budgets (CI)")
    _add_engine_options(p, default_workers=None, default_backend=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_attribute)
    from .sweep import add_parser as add_sweep_parser

    add_sweep_parser(sub, parents=[common], formatter_class=_HelpFormatter)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0, 1 unexpected error, 2 user mistake, 130
    interrupted). Errors are printed on one line unless ``--debug``."""
    args = build_parser().parse_args(argv)
    from .runfolder import RunInterrupted

    try:
        return args.func(args)
    except RunInterrupted as err:
        print(err, file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, ImportError, OSError) as err:  # bad input, a missing extra, the disk
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if args.debug:
            raise
        print(f"error: unexpected {type(err).__name__}: {err} (rerun with --debug for the "
              "traceback)", file=sys.stderr)
        return 1


def run() -> None:
    """The ``reciprocity`` command (the console script): :func:`main` with two settings torch
    reads once, before it computes anything (an explicit setting in the environment is kept):

    * its portable CPU kernels (``ATEN_CPU_CAPABILITY=default``). The vectorised ones (AVX2,
      AVX512) round exp, tanh, ... differently in the tail of an array, so a learner's last bits
      would depend on which other seeds share its batch; the portable ones compute every element
      alike;
    * one thread per process (``OMP_NUM_THREADS=1``). The tensors are small: a second thread
      only contends for the cores, badly so beside other CPU-bound work (the model's burn-in of
      a scenario took 83 s at torch's default against 6 s with one thread on a busy 2-core
      machine). Studies run in parallel across processes instead (``--workers``).
    """
    os.environ.setdefault("ATEN_CPU_CAPABILITY", "default")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())


if __name__ == "__main__":
    run()
