"""Steps per second of the environments through TorchRL's ``PettingZooWrapper``, with and
without the record infos, against the bare PettingZoo parallel env in the same run.

TorchRL's wrapper turns every info value of every agent into a tensor on every step (after a
``copy.deepcopy`` of all infos), so the infos are most of its cost here. Three configurations
of the same scenario are stepped for ``--seconds`` each, back to back in every repeat:

* ``bare`` (the anchor): ``make_parallel(scenario)``, a plain loop that builds the action dict
  and resets when the episode ends;
* ``torchrl``: ``reciprocity.integrations.torchrl.make_env(scenario)`` (parallel API, the global
  state at ``"state"``, the default ``record_infos=True``), stepped by ``env.rollout`` with a
  fixed action and automatic resets;
* ``torchrl, record_infos=False``: the same with the infos reduced to ``"phase"``.

A step is one parallel step (one phase of a round, every focal agent acting). Reported: the
median steps/s over repeats, and per repeat the ratio to the bare env timed next to it (median,
min-max). The benchmark prints; it does not assert.

    python benchmarks/torchrl_speed.py [--scenario many-learners-v0] [--seconds 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np
import torch

from reciprocity.envs import make_parallel

ACTION = 1
CHUNK = 200  # TorchRL steps per rollout call (one episode of the default scenario)


def bare_rate(env, seconds: float) -> float:
    """Parallel steps per second of the PettingZoo env stepped with a fixed action."""
    env.reset(seed=0)
    steps = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        if not env.agents:
            env.reset()
        env.step({agent: ACTION for agent in env.agents})
        steps += 1
        now = time.perf_counter()
        if now >= deadline:
            return steps / (now - start)


def torchrl_rate(env, seconds: float) -> float:
    """Parallel steps per second of a TorchRL env rolled out with a fixed action."""
    action = torch.full(env.full_action_spec["agents", "action"].shape, ACTION,
                        dtype=torch.int64)

    def policy(td):
        return td.set(("agents", "action"), action)

    steps = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        env.rollout(CHUNK, policy, break_when_any_done=False)
        steps += CHUNK
        now = time.perf_counter()
        if now >= deadline:
            return steps / (now - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="many-learners-v0")
    parser.add_argument("--max-rounds", type=int, default=100, help="rounds per episode")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="duration of each measurement (default 3)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="measurements per configuration; the median is reported")
    parser.add_argument("--warmup", type=float, default=0.5,
                        help="warm-up seconds per configuration before measuring")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    import torchrl

    from reciprocity.integrations.torchrl import make_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchRL's "PettingZoo in TorchRL is tested with ..."
        configs = {
            "bare": (make_parallel(args.scenario, max_rounds=args.max_rounds), bare_rate),
            "torchrl": (make_env(args.scenario, max_rounds=args.max_rounds, seed=0),
                        torchrl_rate),
            "torchrl, record_infos=False": (
                make_env(args.scenario, max_rounds=args.max_rounds, seed=0, record_infos=False),
                torchrl_rate),
        }
    print(f"torchrl_speed: python {platform.python_version()}, numpy {np.__version__}, "
          f"torch {torch.__version__} (1 thread), torchrl {torchrl.__version__}, "
          f"{os.cpu_count()} cpus; scenario {args.scenario}, max_rounds {args.max_rounds}; "
          f"{args.repeats} x {args.seconds:g} s per measurement")
    rates = {name: [] for name in configs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for env, rate in configs.values():
            rate(env, args.warmup)
        for _ in range(args.repeats):
            for name, (env, rate) in configs.items():
                rates[name].append(rate(env, args.seconds))
    rows = []
    for name, values in rates.items():
        ratios = [v / b for v, b in zip(values, rates["bare"], strict=True)]
        rows.append({"config": name, "steps_per_s": statistics.median(values),
                     "ratio_to_bare": statistics.median(ratios), "ratio_min": min(ratios),
                     "ratio_max": max(ratios)})
    on, off = rates["torchrl"], rates["torchrl, record_infos=False"]
    speedup = statistics.median([b / a for a, b in zip(on, off, strict=True)])

    header = f"{'configuration':<28} {'steps/s':>10} {'x bare':>8} {'(min-max)':>13}"
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        spread = f"{row['ratio_min']:.3f}-{row['ratio_max']:.3f}"
        print(f"{row['config']:<28} {row['steps_per_s']:>10,.0f} {row['ratio_to_bare']:>8.3f} "
              f"{spread:>13}")
    print(f"\nrecord_infos=False steps {speedup:.2f}x as fast as the default through TorchRL "
          "(median of paired repeats)")
    print()
    print(json.dumps({"benchmark": "torchrl_speed", "scenario": args.scenario,
                      "max_rounds": args.max_rounds, "seconds": args.seconds,
                      "repeats": args.repeats,
                      "rows": [{k: round(v, 4) if isinstance(v, float) else v
                                for k, v in row.items()} for row in rows],
                      "record_infos_off_speedup": round(speedup, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
