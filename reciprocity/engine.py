"""The study engine: one way to run the jobs of every study, on local processes or on Ray.

A study (the benchmark's curves, the tuning, the institutions study, the attribution report, a
sweep) is a list of **cells** — typed records of what to train (:class:`Cell`: a
:class:`~reciprocity.train.TrainConfig`, the folder of its run, and what the study needs to know
about it) — plus the references its records are scored against. The engine

* computes the **references** (:meth:`Engine.references`), cached by scenario content and
  protocol (:class:`References`): a reference computed for one stage is reused by the next when
  it is the same game measured the same way;
* runs jobs **longest first** (each cell's cost is estimated from its scenario's size, its budget
  and its learner's declared cost, :meth:`reciprocity.learners.Algorithm.relative_cost`) and
  returns their results in the order the study gave them;
* on a **backend**: ``"local"`` (a process pool of ``workers`` processes) or ``"ray"`` (Ray tasks
  of one CPU each: a local Ray instance of ``workers`` CPUs, or the cluster at ``ray_address`` /
  ``$RAY_ADDRESS``).

Every job is a deterministic function of its arguments — a training run draws everything from
its seeds, with one torch thread and the portable CPU kernels the ``reciprocity`` command selects
— so the same study gives the same records on either backend and with any number of workers.
Jobs write their run folders where they run: on a multi-node Ray cluster, put the study's output
folder on a shared file system.

What a study keeps to itself: which cells it runs, how their metrics become records, and its
tables and figures (:mod:`reciprocity.report`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .envs.scenarios import Scenario, get_scenario
from .runfolder import write_json

__all__ = ["BACKENDS", "Cell", "Engine", "Job", "ReferenceRequest", "References",
           "add_engine_options", "engine_from_args", "import_ray", "run_cell", "run_reference",
           "write_references"]

BACKENDS = ("local", "ray")
#: Most processes a local pool (or CPUs a new local Ray instance) is given: each worker imports
#: torch (hundreds of MB), so more never fit on one machine; a cluster is joined with its own.
MAX_WORKERS = 1024


# -- jobs (top-level functions: they run in worker processes or as Ray tasks) -------------------
def _one_thread() -> None:
    # the tensors are small: more threads only contend for the cores the other workers use
    import torch

    torch.set_num_threads(1)


def run_reference(request: ReferenceRequest) -> dict:
    """Compute one reference (:func:`reciprocity.evaluation.reference`)."""
    from .evaluation import reference

    _one_thread()
    return reference(request.scenario, search_envs=request.search_envs,
                     confirm_envs=request.confirm_envs, rounds=request.rounds)


def run_cell(config, run_dir: str | None) -> list[dict]:
    """Train one cell (all its seeds) into ``run_dir``; returns the per-seed metrics."""
    from .train import train

    _one_thread()
    return train(config, run_dir, progress=False)


@dataclass(frozen=True)
class Job:
    """A call of a top-level function, with its estimated cost (only the order depends on it)."""

    fn: Callable[..., Any]
    args: tuple = ()
    cost: float = 1.0


# -- references ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReferenceRequest:
    """A reference to compute: the scenario and the protocol's games and window."""

    scenario: Scenario
    search_envs: int = 32  # games per candidate of the exhaustive search (one learner only)
    confirm_envs: int = 256  # games of the confirmation = the learners' evaluation games
    rounds: int | None = None  # the long-run window (None: the scenario's max_rounds)

    @classmethod
    def of(cls, scenario: str | Scenario, **kwargs) -> ReferenceRequest:
        return cls(get_scenario(scenario), **kwargs)

    def key(self) -> tuple:
        """What the reference depends on: the game's content and the protocol (the search's
        games only matter where there is a search, i.e. with one learner)."""
        window = self.scenario.max_rounds if self.rounds is None else self.rounds
        search = self.search_envs if self.scenario.num_focal == 1 else None
        return (self.scenario.content_hash(), search, self.confirm_envs, window)

    def cost(self) -> float:
        # one learner: 4096 candidates x search games; several: the ideal population alone
        games = 4096 * self.search_envs if self.scenario.num_focal == 1 else self.confirm_envs
        return float(games * len(self.scenario.population))


def _reference_key(ref: Mapping) -> tuple | None:
    """The key of a computed reference (None: it lacks what the key needs)."""
    try:
        protocol = ref["protocol"]
        search = ref["search"]["games"] if ref["kind"] == "exhaustive_search" else None
        return (ref["scenario_hash"], search, protocol["num_envs"], protocol["window"])
    except (KeyError, TypeError):
        return None


class References:
    """References by scenario content and protocol, shared by the stages of a study."""

    def __init__(self, refs: Iterable[Mapping] = ()):
        self._refs: dict[tuple, dict] = {}
        self.add(refs)

    def add(self, refs: Iterable[Mapping]) -> None:
        for ref in refs:
            key = _reference_key(ref)
            if key is not None:
                self._refs[key] = dict(ref)

    def get(self, request: ReferenceRequest) -> dict | None:
        return self._refs.get(request.key())

    def __len__(self) -> int:
        return len(self._refs)

    def values(self) -> list[dict]:
        return list(self._refs.values())


# -- cells ---------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One training run of a study: all its seeds, into ``run_dir`` (relative to the study's
    folder). ``meta`` is the study's own description of the cell (its hyper-parameters, budgets,
    institution, start, ...), carried to its records."""

    config: Any  # TrainConfig
    run_dir: str
    meta: dict = field(default_factory=dict)

    def cost(self) -> float:
        """Relative cost: every game-round of every seed steps N agents and updates F learners."""
        config = self.config
        env = config.scenario_data.env_config
        n, f = env.num_agents, int(env.focal_slots.size)
        per_round = n + f * config.algorithm.relative_cost(config.learner_config(), n)
        if config.warmup:  # every learner alone in its own games
            per_round += f * n * config.warmup / config.rounds
        return float(config.rounds * len(config.seeds) * config.num_envs * per_round)


# -- the engine ----------------------------------------------------------------------------------
class Engine:
    """Runs jobs on a backend (see the module docstring).

    Args:
        backend: ``"local"`` or ``"ray"``.
        workers: processes (local), or CPUs of a new local Ray instance.
        ray_address: a Ray cluster to join (default ``$RAY_ADDRESS``, else a local instance).
        progress: show a progress bar per batch of jobs.
    """

    def __init__(self, backend: str = "local", workers: int = 2, *,
                 ray_address: str | None = None, progress: bool = True):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        if workers > MAX_WORKERS:
            raise ValueError(f"workers must be at most {MAX_WORKERS} (processes on this machine, "
                             f"or CPUs of a new local Ray instance), got {workers}")
        if backend == "ray":
            import_ray()
        self.backend, self.workers = backend, workers
        self.ray_address, self.progress = ray_address, progress

    def describe(self) -> dict:
        """The backend and its size, for a study's records of how it ran."""
        return {"backend": self.backend, "workers": self.workers,
                "cpu_count": os.cpu_count()}

    def run(self, jobs: Sequence[Job], desc: str, unit: str = "job", *,
            longest_first: bool = True) -> list:
        """Run the jobs, the most costly first (or in the order given: a study that times its
        jobs interleaves them itself); their results in the order given."""
        from tqdm.auto import tqdm

        order = sorted(range(len(jobs)), key=lambda k: -jobs[k].cost) if longest_first else \
            list(range(len(jobs)))
        bar = tqdm(total=len(jobs), desc=f"{desc} ({self.backend})",
                   disable=not self.progress or not jobs, unit=unit)
        try:
            calls = [(jobs[k].fn, jobs[k].args) for k in order]
            if not calls:
                results = []
            elif self.backend == "local":
                results = _run_local(calls, self.workers, bar)
            else:
                results = _run_ray(calls, self.workers, bar, self.ray_address)
        finally:
            bar.close()
        return [r for _, r in sorted(zip(order, results, strict=True), key=lambda kv: kv[0])]

    def references(self, requests: Iterable[ReferenceRequest], cache: References | None = None,
                   desc: str = "references", *, out: str | Path | None = None
                   ) -> dict[str, dict]:
        """Scenario id -> reference for every request, computing only those ``cache`` lacks
        (and adding them to it); with ``out``, also written into the run folder ``out`` (as
        :func:`write_references`), as every study keeps the references it measured against."""
        cache = References() if cache is None else cache
        requests = list({r.key(): r for r in requests}.values())
        missing = [r for r in requests if cache.get(r) is None]
        cache.add(self.run([Job(run_reference, (r,), r.cost()) for r in missing], desc))
        found = {}
        for r in requests:
            sid = r.scenario.id
            if sid in found and found[sid] is not cache.get(r):
                raise ValueError(f"scenario id {sid!r} stands for two games or protocols in "
                                 "one study")
            found[sid] = cache.get(r)
        if out is not None:
            write_references(out, found)
        return found

    def train(self, cells: Sequence[Cell], out: str | Path, desc: str) -> list[list[dict]]:
        """Train every cell into ``out / cell.run_dir``; per cell its per-seed metrics."""
        out = Path(out)
        return self.run([Job(run_cell, (c.config, str(out / c.run_dir)), c.cost())
                         for c in cells], desc, unit="run")


def write_references(out: str | Path, refs: Mapping[str, dict]) -> None:
    """``out/references/<scenario>.json`` for every reference."""
    folder = Path(out) / "references"
    folder.mkdir(parents=True, exist_ok=True)
    for ref in refs.values():
        write_json(folder / f"{ref['scenario']}.json", ref)


# -- command line --------------------------------------------------------------------------------
def add_engine_options(parser, *, default_workers: int | None = 2,
                       default_backend: str | None = "local") -> None:
    """``--backend``, ``--workers`` and ``--ray-address`` of a study's command (defaults None:
    the options are optional, e.g. where only some modes of a command run a study)."""
    parser.add_argument("--backend", choices=BACKENDS, default=default_backend,
                        help="local: a pool of --workers processes; ray: Ray tasks (the [ray] "
                             "extra) (default: local)")
    parser.add_argument("--workers", type=_positive, default=default_workers,
                        help="processes (local), or CPUs of a new local Ray instance "
                             "(default: 2)")
    parser.add_argument("--ray-address", metavar="ADDRESS",
                        help='with --backend ray: a cluster to join, e.g. "auto" (default: '
                             "$RAY_ADDRESS, else a new local instance)")


def engine_from_args(args) -> Engine:
    """The engine of a command's :func:`add_engine_options` (and ``--quiet``)."""
    return Engine(args.backend or "local", args.workers or 2, ray_address=args.ray_address,
                  progress=not getattr(args, "quiet", False))


def _positive(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# -- backends ------------------------------------------------------------------------------------
def _run_local(calls: list[tuple], workers: int, bar) -> list:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(workers, len(calls))) as pool:
        futures = [pool.submit(fn, *args) for fn, args in calls]
        results = []
        for fut in futures:
            results.append(fut.result())
            bar.update()
    return results


def import_ray():
    """Ray, or an ImportError naming the extra."""
    try:
        import ray
    except ImportError as err:
        raise ImportError('the ray backend needs Ray: install the [ray] extra, e.g. '
                          'pip install -e ".[ray]"') from err
    return ray


def _run_ray(calls: list[tuple], workers: int, bar, address: str | None) -> list:
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        # workers compute with the driver's CPU kernels (see reciprocity.cli.run)
        env_vars = {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY",) if k in os.environ}
        runtime_env = {"env_vars": env_vars} if env_vars else None
        if address:
            ray.init(address=address, runtime_env=runtime_env)
        else:  # a local instance sized like the local backend
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     runtime_env=runtime_env)
        started = True
    try:
        remote = {}
        refs = []
        for fn, args in calls:
            if fn not in remote:
                remote[fn] = ray.remote(num_cpus=1, max_retries=0)(fn)
            refs.append(remote[fn].remote(*args))
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            bar.update(len(done))
        return ray.get(refs)
    finally:
        if started:
            ray.shutdown()
