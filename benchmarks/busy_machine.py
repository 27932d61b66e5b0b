"""A single command on a busy machine: `reciprocity reference --scenario L6-v0` beside CPU hogs.

    python benchmarks/busy_machine.py [--hogs 2] [--scenario L6-v0]

Runs the command as a user would (a fresh process, the `reciprocity` console script, its own
thread policy) four times, each into a fresh run folder: on the machine as it is, cold burn-in
cache (a fresh, empty ``RECIPROCITY_CACHE``) and warm (the same cache again); then the same two
beside ``--hogs`` CPU-bound processes (pure-Python busy loops, one core each), the anchor being
the first pair measured in the same run. Target (issue: no silent minutes): beside two CPU-bound
processes at most 30 s cold and 10 s warm. Prints a table and a final JSON line; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def hog(stop) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def timed(scenario: str, cache: Path, out: Path) -> float:
    exe = Path(sys.executable).with_name("reciprocity")
    env = {**os.environ, "RECIPROCITY_CACHE": str(cache)}
    start = time.perf_counter()
    subprocess.run([str(exe), "reference", "--scenario", scenario, "--out", str(out)],
                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hogs", type=int, default=2)
    parser.add_argument("--scenario", default="L6-v0")
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, hogs in (("as it is", 0), (f"beside {args.hogs} CPU hogs", args.hogs)):
            stop = multiprocessing.Event()
            procs = [multiprocessing.Process(target=hog, args=(stop,)) for _ in range(hogs)]
            for p in procs:
                p.start()
            try:
                cache = tmp / f"cache-{hogs}"
                cold = timed(args.scenario, cache, tmp / f"cold-{hogs}")
                warm = timed(args.scenario, cache, tmp / f"warm-{hogs}")
            finally:
                stop.set()
                for p in procs:
                    p.join()
            rows[label] = {"cold_seconds": cold, "warm_seconds": warm}
    print(f"`reciprocity reference --scenario {args.scenario}` (a fresh process each time)")
    print(f"{'machine':>22s} {'cold cache':>11s} {'warm cache':>11s}")
    for label, r in rows.items():
        print(f"{label:>22s} {r['cold_seconds']:10.1f}s {r['warm_seconds']:10.1f}s")
    busy = rows[f"beside {args.hogs} CPU hogs"]
    print(f"target (beside {args.hogs} hogs: cold <= 30 s, warm <= 10 s): "
          f"{'met' if busy['cold_seconds'] <= 30 and busy['warm_seconds'] <= 10 else 'not met'}")
    print(json.dumps({"benchmark": "busy_machine", "scenario": args.scenario,
                      "cpu_count": os.cpu_count(), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
