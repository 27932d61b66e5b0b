"""Test collection: the tests of an optional extra are collected only where it is installed.

`make test` runs the core suite; `make test-sb3`, `make test-torchrl`, `make test-tianshou` and
`make test-ray` install the extras and run their marked tests (CI runs them all), so nothing is
reported as skipped for a missing extra.
"""

import importlib.util

collect_ignore = [
    path for path, module in (("test_sb3.py", "stable_baselines3"), ("test_rllib.py", "ray"),
                              ("test_torchrl.py", "torchrl"), ("test_benchmarl.py", "benchmarl"),
                              ("test_tianshou.py", "tianshou"))
    if importlib.util.find_spec(module) is None
]
