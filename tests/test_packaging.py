"""Packaging: the editable install (``pip install -e .``, as ``make`` runs it) builds without a
warning and maps the spec's layout: ``reciprocity`` from reciprocity/, ``reciprocity.envs`` from
envs/ (with the catalogue's JSON), ``reciprocity.agents`` from agents/, ``reciprocity.baselines``
from baselines/, and nothing else at the top level."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Build the editable wheel through the build backend pyproject.toml names, as pip does (in a
#: fresh interpreter, from the project folder), recording every warning.
BUILD = """
import importlib, json, sys, tomllib, warnings
system = tomllib.load(open("pyproject.toml", "rb"))["build-system"]
sys.path[:0] = system.get("backend-path", [])
backend = importlib.import_module(system["build-backend"])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    wheel = backend.build_editable(sys.argv[1])
print(json.dumps({"wheel": wheel,
                  "warnings": [f"{w.category.__name__}: {w.message}" for w in caught]}))
"""


def test_editable_install_builds_without_warnings_and_maps_the_layout(tmp_path):
    done = subprocess.run([sys.executable, "-c", BUILD, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    built = json.loads(done.stdout.strip().splitlines()[-1])
    assert built["warnings"] == []
    with zipfile.ZipFile(tmp_path / built["wheel"]) as wheel:
        finder = next(n for n in wheel.namelist() if n.endswith("_finder.py"))
        source = wheel.read(finder).decode()
        top_level = wheel.read(next(n for n in wheel.namelist()
                                    if n.endswith("top_level.txt"))).decode().split()
    values = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and node.target.id in ("MAPPING", "NAMESPACES"):
            values[node.target.id] = ast.literal_eval(node.value)
    assert values["MAPPING"] == {"reciprocity": str(ROOT / "reciprocity"),
                                 "reciprocity.envs": str(ROOT / "envs"),
                                 "reciprocity.agents": str(ROOT / "agents"),
                                 "reciprocity.baselines": str(ROOT / "baselines")}
    assert values["NAMESPACES"] == {"reciprocity.envs.catalogue": [str(ROOT / "envs" /
                                                                       "catalogue")]}
    assert top_level == ["reciprocity"]
