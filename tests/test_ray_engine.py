"""The study engine on Ray (``--backend ray``): the same seeds give the same records as on the
local process pool, for the benchmark's curves, its tuning and the institutions study, and the
tuning and the attribution report accept the backend on their own.

Needs the ``[ray]`` extra (its own environment: ``make test-ray``). One small local Ray instance
(2 CPUs, no dashboard) serves the module.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ray")

import ray

from reciprocity.cli import main

pytestmark = pytest.mark.ray

TIMES = ("wall_seconds", "wall_seconds_per_seed", "evaluation_seconds", "seconds")


def without_times(obj):
    """The same data without wall-clock times (which differ from run to run)."""
    if isinstance(obj, dict):
        return {k: without_times(v) for k, v in obj.items() if k not in TIMES}
    if isinstance(obj, list):
        return [without_times(v) for v in obj]
    return obj


def read(path):
    return without_times(json.loads(path.read_text()))


def test_quick_benchmark_gives_the_same_records_on_ray_and_locally(tmp_path, local_ray):
    for backend in ("ray", "local"):
        assert main(["benchmark", "--quick", "--backend", backend, "--out",
                     str(tmp_path / backend / "results"), "--quiet"]) == 0
    assert ray.is_initialized()  # the running instance was used and left alone
    ray_out, local_out = tmp_path / "ray" / "results", tmp_path / "local" / "results"
    by_ray, by_local = read(ray_out / "results.json"), read(local_out / "results.json")
    assert by_ray["records"] and by_ray["records"] == by_local["records"]
    assert by_ray["curves"] == by_local["curves"]
    assert read(ray_out / "tuning.json")["candidates"] == \
        read(local_out / "tuning.json")["candidates"]
    ray_study = read(ray_out / "institutions" / "results.json")
    local_study = read(local_out / "institutions" / "results.json")
    assert ray_study["records"] and ray_study["records"] == local_study["records"]
    assert json.loads((ray_out / "benchmark.json").read_text())["backend"] == "ray"
    assert json.loads((ray_out / "institutions" / "results.json").read_text())["backend"] == \
        "ray"


def test_tune_and_the_attribution_report_run_on_ray(tmp_path, local_ray):
    assert main(["tune", "--quick", "--backend", "ray", "--out", str(tmp_path / "tune"),
                 "--quiet"]) == 0
    outcome = json.loads((tmp_path / "tune" / "tuning.json").read_text())
    assert outcome["backend"] == "ray" and set(outcome["selected"]) == {"rg", "ppo", "reinforce"}
    assert main(["attribute", "--report", "--quick", "--backend", "ray", "--out",
                 str(tmp_path / "attribution"), "--quiet"]) == 0
    assert (tmp_path / "attribution" / "flagship-rg" / "attribution.json").is_file()
