"""PettingZoo throughput of ``indirect_reciprocity_v0`` against PettingZoo's ``rps_v2``.

Target (a): on the parallel API, an all-focal population of N = 10 steps at least as many
agent-steps per second as ``rps_v2.parallel_env()`` measured in the same run (ratio >= 1.0).
The AEC path is reported against ``rps_v2.env()`` for reference.

An agent-step is one agent's action consumed by the environment: a parallel step of k live
agents counts k; an AEC ``step`` with a real (non-``None``) action counts 1. Both loops use a
fixed valid action (1), build the action dict every step (as a user loop does), call ``last()``
before every AEC step and include episode resets (``rps_v2``: every 15 cycles; ours: every
``max_rounds = 100`` rounds = 200 parallel steps).

Each repeat measures the anchor and our env back to back for ``--seconds`` each (after a
warm-up); the reported throughput is the median over repeats and the ratio is the median of the
per-repeat ratios. The benchmark prints; it does not assert.

    python benchmarks/env_speed.py [--seconds 3] [--repeats 3]
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
from pettingzoo.classic import rps_v2

from reciprocity.envs import indirect_reciprocity_v0

N_AGENTS = 10
ACTION = 1  # valid for both environments
TARGET = 1.0


def parallel_rate(env, seconds: float) -> float:
    """Agent-steps per second of a parallel env stepped with a fixed action."""
    env.reset(seed=0)
    steps = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        if not env.agents:
            env.reset()
        actions = {agent: ACTION for agent in env.agents}
        env.step(actions)
        steps += len(actions)
        now = time.perf_counter()
        if now >= deadline:
            return steps / (now - start)


def aec_rate(env, seconds: float) -> float:
    """Agent-steps (non-``None`` actions) per second of an AEC env stepped with a fixed action."""
    env.reset(seed=0)
    steps = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        if not env.agents:
            env.reset()
        _, _, termination, truncation, _ = env.last()
        if termination or truncation:
            env.step(None)
        else:
            env.step(ACTION)
            steps += 1
        now = time.perf_counter()
        if now >= deadline:
            return steps / (now - start)


def compare(name, anchor_env, our_env, rate, seconds, repeats, warmup):
    """Median throughputs and the median of the paired per-repeat ratios."""
    rate(anchor_env, warmup)
    rate(our_env, warmup)
    anchors, ours, ratios = [], [], []
    for _ in range(repeats):
        a = rate(anchor_env, seconds)
        o = rate(our_env, seconds)
        anchors.append(a)
        ours.append(o)
        ratios.append(o / a)
    return {
        "path": name,
        "anchor_agent_steps_per_s": statistics.median(anchors),
        "ours_agent_steps_per_s": statistics.median(ours),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="duration of each measurement (default 3)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="measurements per configuration; the median is reported")
    parser.add_argument("--warmup", type=float, default=0.5,
                        help="warm-up seconds per environment before measuring")
    args = parser.parse_args(argv)

    population = ["focal"] * N_AGENTS
    print(f"env_speed: python {platform.python_version()}, numpy {np.__version__}, "
          f"pettingzoo {pettingzoo.__version__}, {os.cpu_count()} cpus; "
          f"{args.repeats} x {args.seconds:g} s per measurement")
    print(f"ours: indirect_reciprocity_v0, population=['focal'] * {N_AGENTS} (defaults otherwise);"
          " anchor: pettingzoo.classic.rps_v2 (2 agents)")

    rows = [
        compare("parallel", rps_v2.parallel_env(),
                indirect_reciprocity_v0.parallel_env(population=population),
                parallel_rate, args.seconds, args.repeats, args.warmup),
        compare("aec", rps_v2.env(), indirect_reciprocity_v0.env(population=population),
                aec_rate, args.seconds, args.repeats, args.warmup),
    ]

    header = (f"{'path':<9} {'rps_v2 agent-steps/s':>21} {'ours agent-steps/s':>19} "
              f"{'ratio':>6} {'(min-max)':>12} {'target':>7} {'status':>8}")
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        target = f">={TARGET:g}" if row["path"] == "parallel" else "-"
        status = ("met" if row["ratio"] >= TARGET else "NOT MET") \
            if row["path"] == "parallel" else "info"
        spread = f"{row['ratio_min']:.2f}-{row['ratio_max']:.2f}"
        print(f"{row['path']:<9} {row['anchor_agent_steps_per_s']:>21,.0f} "
              f"{row['ours_agent_steps_per_s']:>19,.0f} {row['ratio']:>6.2f} {spread:>12} "
              f"{target:>7} {status:>8}")

    par, aec = rows
    summary = {
        "benchmark": "env_speed",
        "n_agents": N_AGENTS,
        "seconds": args.seconds,
        "repeats": args.repeats,
        "parallel": {k: round(v, 3) if isinstance(v, float) else v for k, v in par.items()},
        "aec": {k: round(v, 3) if isinstance(v, float) else v for k, v in aec.items()},
        "target_parallel_ratio": TARGET,
        "met": bool(par["ratio"] >= TARGET),
    }
    print()
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
