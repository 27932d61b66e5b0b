"""Interactions per second of the batched NumPy core against the PettingZoo parallel path.

One interaction is one donor's donation in one round, so a round of B games x N agents is
B * N interactions (and one PettingZoo round, two parallel steps, is N interactions).

Target (b): the core, all-scripted, N = 100, B = 512 (every slot stern judging "L6", via
``strategy_tables`` + ``BatchedGame.play_round``), runs at least 1000 times as many
interactions per second as the PettingZoo parallel path measured in the same run.

Denominator: ``indirect_reciprocity_v0.parallel_env`` with N = 100, one focal agent (slot 0)
driven by the fixed action 1 in both phases and 99 background "L6" agents (defaults otherwise,
episode resets included every ``max_rounds = 100`` rounds). For reference the script also
reports the all-focal N = 10 parallel env (the configuration of ``env_speed.py``) and the core
at B = 1, N = 100 (the per-call overhead the PettingZoo shell inherits).

Each repeat measures every configuration back to back for ``--seconds`` (after a warm-up);
reported throughputs are medians over repeats, ratios are medians of per-repeat ratios. The
benchmark prints; it does not assert.

    python benchmarks/core_speed.py [--seconds 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import pettingzoo

from reciprocity.envs import indirect_reciprocity_v0
from reciprocity.envs.config import DEFAULTS, EnvConfig, strategy_tables
from reciprocity.envs.core import BatchedGame

TARGET = 1000.0
CORE_N, CORE_B = 100, 512
NORM = "L6"


def make_core(n: int, batch: int, seed: int = 0) -> BatchedGame:
    """An all-scripted ``BatchedGame`` of ``n`` L6 agents (catalogue defaults otherwise)."""
    config = EnvConfig.from_kwargs(population=[NORM] * n)
    action_table, assess_table = strategy_tables(config.strategies)
    return BatchedGame(config.params, action_table, assess_table, batch=batch, seed=seed)


def core_rate(game: BatchedGame, seconds: float) -> float:
    """Interactions per second of ``play_round`` (B * N per round)."""
    per_round = game.batch * game.params.num_agents
    rounds = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        game.play_round()
        rounds += 1
        now = time.perf_counter()
        if now >= deadline:
            return rounds * per_round / (now - start)


def pettingzoo_rate(env, seconds: float) -> float:
    """Interactions per second of the parallel env driven by the fixed action 1.

    One parallel step is half a round; a round of N slots is N interactions.
    """
    n = env.num_slots
    env.reset(seed=0)
    steps = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        if not env.agents:
            env.reset()
        env.step({agent: 1 for agent in env.agents})
        steps += 1
        now = time.perf_counter()
        if now >= deadline:
            return steps * n / 2 / (now - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="duration of each measurement (default 3)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="measurements per configuration; the median is reported")
    parser.add_argument("--warmup", type=float, default=0.5,
                        help="warm-up seconds per configuration before measuring")
    args = parser.parse_args(argv)

    configs = {
        "core": (f"core B={CORE_B} N={CORE_N} all-{NORM} (play_round)",
                 make_core(CORE_N, CORE_B), core_rate),
        "pz100": (f"pettingzoo parallel N={CORE_N}, 1 focal + {CORE_N - 1} {NORM}",
                  indirect_reciprocity_v0.parallel_env(
                      population=["focal"] + [NORM] * (CORE_N - 1)),
                  pettingzoo_rate),
        "pz10": ("pettingzoo parallel N=10, all focal",
                 indirect_reciprocity_v0.parallel_env(population=["focal"] * 10),
                 pettingzoo_rate),
        "core_b1": (f"core B=1 N={CORE_N} all-{NORM} (play_round)",
                    make_core(CORE_N, 1), core_rate),
    }
    print(f"core_speed: python {platform.python_version()}, numpy {np.__version__}, "
          f"pettingzoo {pettingzoo.__version__}, {os.cpu_count()} cpus; "
          f"{args.repeats} x {args.seconds:g} s per measurement")
    print(f"institution: benefit={DEFAULTS['benefit']:g} cost={DEFAULTS['cost']:g} "
          f"execution_error={DEFAULTS['execution_error']:g} "
          f"assessment_error={DEFAULTS['assessment_error']:g}")

    for _, obj, rate in configs.values():
        rate(obj, args.warmup)
    samples = {key: [] for key in configs}
    for _ in range(args.repeats):
        for key, (_, obj, rate) in configs.items():
            samples[key].append(rate(obj, args.seconds))

    median = {key: statistics.median(v) for key, v in samples.items()}
    ratios = [c / p for c, p in zip(samples["core"], samples["pz100"], strict=True)]
    ratios10 = [c / p for c, p in zip(samples["core"], samples["pz10"], strict=True)]
    ratio, ratio10 = statistics.median(ratios), statistics.median(ratios10)

    header = f"{'configuration':<46} {'interactions/s':>15} {'(min-max)':>23}"
    print()
    print(header)
    print("-" * len(header))
    for key, (label, _, _) in configs.items():
        lo, hi = min(samples[key]), max(samples[key])
        print(f"{label:<46} {median[key]:>15,.0f} {f'{lo:,.0f}-{hi:,.0f}':>23}")
    print()
    print(f"{'ratio':<46} {'value':>9} {'(min-max)':>15} {'target':>7} {'status':>8}")
    print(f"{'core / pettingzoo N=100 one focal':<46} {ratio:>9,.1f} "
          f"{f'{min(ratios):.1f}-{max(ratios):.1f}':>15} {f'>={TARGET:g}':>7} "
          f"{'met' if ratio >= TARGET else 'NOT MET':>8}")
    print(f"{'core / pettingzoo N=10 all focal (reference)':<46} {ratio10:>9,.1f} "
          f"{f'{min(ratios10):.1f}-{max(ratios10):.1f}':>15} {'-':>7} {'info':>8}")

    summary = {
        "benchmark": "core_speed",
        "seconds": args.seconds,
        "repeats": args.repeats,
        "core_b512_n100_interactions_per_s": round(median["core"], 1),
        "pettingzoo_n100_one_focal_interactions_per_s": round(median["pz100"], 1),
        "pettingzoo_n10_all_focal_interactions_per_s": round(median["pz10"], 1),
        "core_b1_n100_interactions_per_s": round(median["core_b1"], 1),
        "ratio": round(ratio, 2),
        "ratio_vs_n10_all_focal": round(ratio10, 2),
        "target": TARGET,
        "met": bool(ratio >= TARGET),
    }
    print()
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
