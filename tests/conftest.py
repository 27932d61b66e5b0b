"""Test collection: the tests of an optional extra are collected only where it is installed.

`make test` runs the core suite; `make test-sb3`, `make test-torchrl`, `make test-tianshou` and
`make test-ray` install the extras and run their marked tests (CI runs them all), so nothing is
reported as skipped for a missing extra.
"""

import contextlib
import importlib.util
import os
import tempfile

import pytest

# burn-ins computed by the tests are kept in a folder of the session's, not the user's cache
os.environ["RECIPROCITY_CACHE"] = tempfile.mkdtemp(prefix="reciprocity-test-cache-")

collect_ignore = [
    path for path, module in (("test_sb3.py", "stable_baselines3"), ("test_rllib.py", "ray"),
                              ("test_ray_engine.py", "ray"),
                              ("test_torchrl.py", "torchrl"), ("test_benchmarl.py", "benchmarl"),
                              ("test_tianshou.py", "tianshou"))
    if importlib.util.find_spec(module) is None
]


@pytest.fixture
def stop_training(monkeypatch):
    """``with stop_training(n): ...``: the n-th rollout collection of a training run raises
    KeyboardInterrupt, as a Ctrl-C that lands in the middle of an update would."""
    from reciprocity import train as train_module

    @contextlib.contextmanager
    def stop(n: int):
        original, calls = train_module.collect, {"n": 0}

        def collect(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
            return original(*args, **kwargs)

        monkeypatch.setattr(train_module, "collect", collect)
        try:
            yield
        finally:
            monkeypatch.setattr(train_module, "collect", original)

    return stop


@pytest.fixture(scope="module")
def local_ray():
    """A small local Ray instance (2 CPUs, no dashboard) for a module's tests (the [ray] extra),
    shut down at the end of the module."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
