"""Hyper-parameter sweeps: scenarios x algorithms x hyper-parameter grids, on one machine or Ray.

    reciprocity sweep --grid sweep.yaml --backend local --out runs/sweep --workers 2
    reciprocity sweep --grid sweep.yaml --backend ray  --out runs/sweep

The grid file (YAML or JSON) is a mapping::

    scenarios: [L6-v0, discriminators-vs-defectors-v0]   # ids or scenario files
    algos: [rg, ppo]
    seeds: [0, 1, 2]            # or a count: 3 -> seeds 0, 1, 2
    rounds: 500                 # interaction budget: rounds in each game (all algorithms)
    num_envs: 16                # games per seed
    params:                     # per algorithm: hyper-parameter -> list of values
      rg: {horizon: [10, 25]}
      ppo: {lr: [0.01, 0.05], rounds_per_update: [50]}

Optional keys (defaults of ``reciprocity benchmark``): ``eval_envs`` (256), ``eval_rounds``
(the scenario's ``max_rounds``; also the reference's rounds), ``search_envs`` (32) and
``confirm_envs`` (= ``eval_envs``, so that learner and reference games are paired), and
``description``.

The sweep expands the Cartesian product (scenario, algorithm, hyper-parameter combination); each
combination trains all its seeds together in one :func:`reciprocity.train.train` call (seeds
vectorised in one process). Every scenario's reference (:func:`reciprocity.evaluation.reference`)
is computed once. Jobs run in a :class:`concurrent.futures.ProcessPoolExecutor` (``local``) or
as Ray tasks (``ray``: a local Ray instance, or a cluster with ``--ray-address auto``).

Outputs in ``out``: ``results.json`` (one record per scenario, algorithm and hyper-parameter
combination, in the schema of ``reciprocity benchmark`` plus ``params`` and ``run``),
``runs/<scenario>/<algo>/<params>/`` (``params.json``, per-seed metrics with their evaluation,
``progress.csv`` learning curves), ``references/<scenario>.json``, ``grid.json`` (the validated
grid) and ``sweep.json`` (backend, workers, wall time). The driver writes everything except the
learning curves, which the training job writes where it runs: on a multi-node Ray cluster, put
``out`` on a shared file system to collect them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .engine import Cell, Engine, ReferenceRequest, add_engine_options
from .learners import get_algorithm
from .records import build_record
from .report import format_interval
from .runfolder import RunFolder, open_run, write_json

__all__ = ["SweepGrid", "SweepJob", "add_parser", "expand", "load_grid", "run_sweep"]
_KNOWN = ("description", "scenarios", "algos", "seeds", "rounds", "num_envs", "eval_envs",
          "eval_rounds", "search_envs", "confirm_envs", "params")


def _positive_int(value: Any, name: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{source}: {name} must be a positive integer, got {value!r}")
    return int(value)


def _nonempty_list(value: Any, name: str, source: str) -> list:
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise ValueError(f"{source}: {name} must be a non-empty list, got {value!r}")
    return list(value)


def _check_value(value: Any, default: Any, name: str, source: str) -> Any:
    """A hyper-parameter value must have the type of the algorithm's default."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        kind = "a boolean"
    elif isinstance(default, int):
        ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
        kind = "an integer"
    elif isinstance(default, float):
        ok = isinstance(value, int | float | np.number) and not isinstance(value, bool)
        kind = "a number"
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
        kind = "a string"
    else:
        ok, kind = True, ""
    if not ok:
        raise ValueError(f"{source}: {name} must be {kind}, got {value!r}")
    return value


@dataclass(frozen=True)
class SweepGrid:
    """A validated grid (see the module docstring)."""

    scenarios: tuple[str, ...]
    algos: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    rounds: int = 1000
    num_envs: int = 16
    eval_envs: int = 256
    eval_rounds: int | None = None
    search_envs: int = 32
    confirm_envs: int | None = None  # None: eval_envs (paired games)
    params: dict[str, dict[str, list]] = field(default_factory=dict)
    description: str = ""

    @classmethod
    def from_dict(cls, data: Any, source: str = "grid") -> SweepGrid:
        """Validate a mapping; every error is a ValueError naming ``source`` and the field."""
        from .envs.scenarios import get_scenario

        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: a grid must be a mapping, got {type(data).__name__}")
        unknown = set(data) - set(_KNOWN)
        if unknown:
            raise ValueError(f"{source}: unknown field(s) {sorted(unknown)}; "
                             f"known: {list(_KNOWN)}")
        for required in ("scenarios", "algos"):
            if required not in data:
                raise ValueError(f"{source}: missing field {required!r}")
        scenarios = _nonempty_list(data["scenarios"], "scenarios", source)
        ids = []
        for s in scenarios:
            if not isinstance(s, str):
                raise ValueError(f"{source}: scenarios must hold scenario ids or files, "
                                 f"got {s!r}")
            try:
                ids.append(get_scenario(s).id)
            except ValueError as err:
                raise ValueError(f"{source}: scenarios: {err}") from None
        if len(set(ids)) != len(ids):
            raise ValueError(f"{source}: scenarios must be distinct, got ids {ids}")
        algos = _nonempty_list(data["algos"], "algos", source)
        for a in algos:
            try:
                get_algorithm(a)
            except ValueError as err:
                raise ValueError(f"{source}: algos: {str(err).removeprefix('algo: ')}") \
                    from None
        if len(set(algos)) != len(algos):
            raise ValueError(f"{source}: algos must be distinct, got {algos}")
        seeds = data.get("seeds", [0])
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            seeds = list(range(_positive_int(seeds, "seeds", source)))
        seeds = _nonempty_list(seeds, "seeds", source)
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                raise ValueError(f"{source}: seeds must be non-negative integers (or a count), "
                                 f"got {s!r}")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{source}: seeds must be distinct, got {seeds}")
        ints = {}
        for name in ("rounds", "num_envs", "eval_envs", "search_envs"):
            if name in data:
                ints[name] = _positive_int(data[name], name, source)
        for name in ("eval_rounds", "confirm_envs"):
            if data.get(name) is not None:
                ints[name] = _positive_int(data[name], name, source)
        params = data.get("params") or {}
        if not isinstance(params, Mapping):
            raise ValueError(f"{source}: params must be a mapping algo -> {{hyper-parameter: "
                             f"[values]}}, got {params!r}")
        checked: dict[str, dict[str, list]] = {}
        for algo, grid in params.items():
            if algo not in algos:
                raise ValueError(f"{source}: params: {algo!r} is not one of the grid's algos "
                                 f"{algos}")
            if not isinstance(grid, Mapping):
                raise ValueError(f"{source}: params.{algo} must be a mapping hyper-parameter "
                                 f"-> list of values, got {grid!r}")
            config_cls = get_algorithm(algo).config
            defaults = {f.name: getattr(config_cls(), f.name) for f in fields(config_cls)}
            checked[algo] = {}
            for name, values in grid.items():
                if name not in defaults:
                    raise ValueError(f"{source}: params.{algo}: unknown hyper-parameter "
                                     f"{name!r}; known: {sorted(defaults)}")
                if not isinstance(values, list | tuple):
                    values = [values]
                values = _nonempty_list(values, f"params.{algo}.{name}", source)
                values = [_check_value(v, defaults[name], f"params.{algo}.{name}", source)
                          for v in values]
                if len({json.dumps(v) for v in values}) != len(values):
                    # two equal combinations would train into the same folder at once
                    raise ValueError(f"{source}: params.{algo}.{name} must hold distinct values, "
                                     f"got {values}")
                checked[algo][str(name)] = values
        description = data.get("description", "")
        if not isinstance(description, str):
            raise ValueError(f"{source}: description must be a string, got {description!r}")
        return cls(scenarios=tuple(scenarios), algos=tuple(algos), seeds=tuple(seeds),
                   params=checked, description=description, **ints)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["scenarios"], out["algos"], out["seeds"] = (list(self.scenarios), list(self.algos),
                                                        list(self.seeds))
        return out


def load_grid(path: str | Path) -> SweepGrid:
    """Read and validate a grid file (``.json``, ``.yaml`` or ``.yml``)."""
    path = Path(path)
    source = f"grid file {str(path)!r}"
    if not path.is_file():
        raise ValueError(f"{source} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise ValueError(f"{source}: use a .json, .yaml or .yml file")
    text = path.read_text()
    try:
        if suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as err:  # json.JSONDecodeError, yaml.YAMLError
        raise ValueError(f"{source} could not be parsed: {err}") from None
    return SweepGrid.from_dict(data, source=source)


@dataclass(frozen=True)
class SweepJob:
    """One training call: a (scenario, algorithm, hyper-parameter combination), all seeds."""

    scenario: str  # as written in the grid (id or file)
    scenario_id: str
    algo: str  # as written in the grid (name or MODULE:CLASS)
    params: dict[str, Any]
    tag: str  # folder name of the combination

    @property
    def algo_name(self) -> str:
        return get_algorithm(self.algo).name

    def run_dir(self, out: Path) -> Path:
        return out / "runs" / self.scenario_id / self.algo_name / self.tag


def _tag(params: Mapping[str, Any]) -> str:
    if not params:
        return "default"
    text = ",".join(f"{k}={v}" for k, v in params.items())
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)


def expand(grid: SweepGrid) -> list[SweepJob]:
    """The Cartesian product (scenario, algorithm, hyper-parameter combination)."""
    from .envs.scenarios import get_scenario

    jobs = []
    for s in grid.scenarios:
        sid = get_scenario(s).id
        for algo in grid.algos:
            space = grid.params.get(algo, {})
            names = list(space)
            for values in itertools.product(*(space[n] for n in names)):
                params = dict(zip(names, values, strict=True))
                jobs.append(SweepJob(s, sid, algo, params, _tag(params)))
    folders = [(j.scenario_id, j.algo_name, j.tag) for j in jobs]
    if len(set(folders)) != len(folders):
        clash = next(f for f in folders if folders.count(f) > 1)
        raise ValueError(f"grid: two hyper-parameter combinations map to the same folder "
                         f"runs/{'/'.join(clash)}; make their values distinguishable")
    return jobs


def _train_config(job: SweepJob, grid: SweepGrid):
    from .train import TrainConfig

    return TrainConfig(job.scenario, algo=job.algo, seeds=grid.seeds, rounds=grid.rounds,
                       num_envs=grid.num_envs, eval_envs=grid.eval_envs,
                       eval_rounds=grid.eval_rounds, algo_config=dict(job.params),
                       checkpoint_every=0, save_checkpoint=False, tensorboard=False)


def run_config(grid: SweepGrid) -> dict:
    """What determines a sweep's results: the grid and the content of each of its scenarios."""
    from .envs.scenarios import get_scenario

    return {"grid": grid.to_dict(),
            "scenario_hashes": {s: get_scenario(s).content_hash() for s in grid.scenarios}}


def run_sweep(grid: SweepGrid | Mapping | str | Path, out: str | Path | RunFolder, *,
              backend: str = "local", workers: int = 2, progress: bool = True,
              ray_address: str | None = None, overwrite: bool = False) -> list[dict]:
    """Run a sweep and write its outputs; returns the results records.

    Args:
        grid: a :class:`SweepGrid`, a mapping or a grid file.
        out: output folder (a folder holding another run is refused unless ``overwrite``), or
            a :class:`~reciprocity.runfolder.RunFolder` opened by the caller, who then marks it
            complete.
        backend: ``"local"`` (process pool of ``workers``) or ``"ray"`` (Ray tasks; a local
            Ray instance with ``workers`` CPUs unless Ray is already initialised or
            ``ray_address`` / ``RAY_ADDRESS`` names a cluster).
        overwrite: clear ``out`` first if it holds another run.
    """
    if not isinstance(grid, SweepGrid):
        grid = load_grid(grid) if isinstance(grid, str | Path) else SweepGrid.from_dict(grid)
    workers = _positive_int(workers, "workers", "sweep")
    engine = Engine(backend, workers, ray_address=ray_address, progress=progress)
    for job in expand(grid):  # every combination is valid before anything runs
        try:
            _train_config(job, grid)
        except ValueError as err:
            raise ValueError(f"grid: {job.scenario_id} {job.algo} {job.tag}: {err}") from None
    if isinstance(out, RunFolder):
        return _sweep(grid, out.path, engine)
    with open_run(out, "sweep", run_config(grid), overwrite=overwrite) as folder:
        records = _sweep(grid, folder.path, engine)
        folder.complete()
    return records


def _sweep(grid: SweepGrid, out: Path, engine: Engine) -> list[dict]:
    write_json(out / "grid.json", grid.to_dict())
    start = time.perf_counter()
    jobs = expand(grid)
    refs = engine.references([ReferenceRequest.of(s, search_envs=grid.search_envs,
                                                  confirm_envs=grid.confirm_envs or grid.eval_envs,
                                                  rounds=grid.eval_rounds)
                              for s in grid.scenarios], out=out)
    cells = [Cell(_train_config(job, grid), job.run_dir(out).relative_to(out).as_posix(),
                  {"job": job}) for job in jobs]
    runs = engine.train(cells, out, desc="sweep")
    records = []
    for cell, metrics in zip(cells, runs, strict=True):  # grid order
        job = cell.meta["job"]
        run_dir = out / cell.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "params.json", job.params)
        record = build_record(job.scenario_id, job.algo_name, metrics, refs[job.scenario_id],
                              job.params, run_dir)
        record["run"] = cell.run_dir
        records.append(record)
    write_json(out / "results.json", records)
    meta = {"grid": grid.to_dict(), **engine.describe(),
            "jobs": len(refs) + len(cells), "wall_seconds": time.perf_counter() - start}
    write_json(out / "sweep.json", meta)
    return records


# -- command line ------------------------------------------------------------------------------
def summary_table(records: list[dict]) -> str:
    """A Markdown table: one row per record, with its hyper-parameters."""
    fmt = format_interval
    lines = ["| scenario | algo | params | payoff / round | reference | "
             "reference performance | adherence |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in records:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "defaults"
        lines.append(f"| {r['scenario']} | {r['algo']} | {params} | "
                     f"{fmt(r['per_interaction_payoff'])} | {r['reference_payoff']:.3f} | "
                     f"{fmt(r['reference_performance'])} | {fmt(r['adherence'])} |")
    return "\n".join(lines)


def _cmd_sweep(args) -> int:
    grid = load_grid(args.grid)
    records = run_sweep(grid, args.out, backend=args.backend, workers=args.workers,
                        progress=not args.quiet, ray_address=args.ray_address,
                        overwrite=args.overwrite)
    print(summary_table(records))
    print(f"wrote {Path(args.out) / 'results.json'} ({len(records)} records)")
    return 0


#: ``reciprocity sweep --help``: the module docstring's usage, in plain text.
_DESCRIPTION = """\
A grid of scenarios x algorithms x hyper-parameter values, on local processes or Ray.

    reciprocity sweep --grid sweep.yaml --backend local --out runs/sweep --workers 2
    reciprocity sweep --grid sweep.yaml --backend ray  --out runs/sweep

The grid file (YAML or JSON) is a mapping:

    scenarios: [L6-v0, discriminators-vs-defectors-v0]   # ids or scenario files
    algos: [rg, ppo]
    seeds: [0, 1, 2]            # or a count: 3 -> seeds 0, 1, 2
    rounds: 500                 # interaction budget: rounds in each game (all algorithms)
    num_envs: 16                # games per seed
    params:                     # per algorithm: hyper-parameter -> list of distinct values
      rg: {horizon: [10, 25]}
      ppo: {lr: [0.01, 0.05], rounds_per_update: [50]}

Optional keys: eval_envs (256), eval_rounds (the scenario's max_rounds), search_envs (32),
confirm_envs (= eval_envs), description. Outputs in --out: results.json, runs/, references/,
grid.json, sweep.json, run.json.
"""


def add_parser(subparsers, **kwargs) -> Any:
    """Register the ``sweep`` subcommand (and its handler) on an argparse subparsers object;
    ``kwargs`` go to ``add_parser`` (e.g. ``parents``, ``formatter_class``)."""
    kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
    p = subparsers.add_parser("sweep", help="scenarios x algorithms x hyper-parameter grid "
                              "(local processes or Ray)", description=_DESCRIPTION, **kwargs)
    p.add_argument("--grid", required=True, metavar="FILE", help="grid file (.yaml / .json)")
    p.add_argument("--out", default="runs/sweep", help="output folder (default: runs/sweep)")
    p.add_argument("--overwrite", action="store_true",
                   help="clear the output folder first if it holds another run (default: off)")
    add_engine_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: off)")
    p.set_defaults(func=_cmd_sweep)
    return p
