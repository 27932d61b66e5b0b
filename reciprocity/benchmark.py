"""The results benchmark: every catalogue scenario x {rg, ppo, reinforce} x seeds.

    reciprocity benchmark --out docs/results

For each scenario the reference (exhaustive search or ideal discriminator) is computed once; for
each algorithm all seeds train together in one process (vectorised over seeds), with the same
interaction budget for every algorithm; each seed is evaluated against the reference. Work is
spread over ``workers`` processes. Writes ``results.json`` (one record per scenario and
algorithm), ``runs/<scenario>/<algo>/default/`` (per-seed metrics and learning curves),
``references/<scenario>.json``, learning-curve and policy heat-map PNGs, and refreshes the
generated table in ``results.md`` next to the output folder (text outside the table markers is
kept, so the discussion survives regeneration).
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .envs.norms import ACTION_CONTEXTS, SIGNAL_CONTEXTS
from .envs.scenarios import scenarios
from .runfolder import open_run, save_figure, write_json, write_text

ALGOS = ("rg", "ppo", "reinforce")
TABLE_START = "<!-- results-table:start -->"
TABLE_END = "<!-- results-table:end -->"


@dataclass
class BenchmarkConfig:
    """What to run."""

    scenarios: tuple[str, ...] = field(default_factory=lambda: tuple(scenarios()))
    algos: tuple[str, ...] = ALGOS
    seeds: int = 5  # seeds 0..seeds-1 per (scenario, algorithm)
    rounds: int = 1000  # interaction budget: rounds in each game, identical for all algorithms
    num_envs: int = 16  # games per seed
    eval_envs: int = 256  # evaluation games per learner (= confirm_envs: paired games)
    search_envs: int = 32  # games per candidate in the reference search
    confirm_envs: int = 256  # fresh games confirming the reference (= eval_envs)
    workers: int = 2  # processes
    algo_config: dict = field(default_factory=dict)  # {algo: {hyper-parameter: value}}

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["scenarios"], d["algos"] = list(self.scenarios), list(self.algos)
        return d


def run_benchmark(cfg: BenchmarkConfig, out: str | Path, *, progress: bool = True,
                  write_table: bool = True, overwrite: bool = False) -> list[dict]:
    """Run everything and write the outputs; returns the results records.

    The runs are a sweep (:func:`reciprocity.sweep.run_sweep`, local backend) over the fixed grid
    of ``cfg`` with one hyper-parameter combination per algorithm; this function adds the
    figures and the results table. ``out`` holding another run is refused unless ``overwrite``.
    """
    from .sweep import SweepGrid, run_config

    grid = SweepGrid.from_dict(
        {"scenarios": list(cfg.scenarios), "algos": list(cfg.algos), "seeds": cfg.seeds,
         "rounds": cfg.rounds, "num_envs": cfg.num_envs, "eval_envs": cfg.eval_envs,
         "search_envs": cfg.search_envs, "confirm_envs": cfg.confirm_envs,
         "params": {a: {k: [v] for k, v in cfg.algo_config[a].items()}
                    for a in cfg.algos if cfg.algo_config.get(a)}}, source="benchmark")
    with open_run(out, "benchmark", run_config(grid), overwrite=overwrite) as folder:
        records = _run_benchmark(cfg, grid, folder, progress, write_table)
        folder.complete()
    return records


def _run_benchmark(cfg, grid, folder, progress: bool, write_table: bool) -> list[dict]:
    from .sweep import run_sweep

    out = folder.path
    start = time.perf_counter()
    records = run_sweep(grid, folder, backend="local", workers=cfg.workers, progress=progress)
    meta = {"config": cfg.to_dict(), "wall_seconds": time.perf_counter() - start,
            "cpu_count": os.cpu_count()}
    write_json(out / "benchmark.json", meta)
    refs = {s: json.loads((out / "references" / f"{s}.json").read_text())
            for s in {r["scenario"] for r in records}}
    run_dirs = {(r["scenario"], r["algo"]): out / r["run"] for r in records}
    runs = {key: _load_metrics(path) for key, path in run_dirs.items()}
    scenario_ids = list(dict.fromkeys(r["scenario"] for r in records))
    plot_learning_curves(out, scenario_ids, cfg.algos, refs, run_dirs)
    plot_policy_heatmaps(out, scenario_ids, cfg.algos, refs, runs)
    for s in scenario_ids:
        plot_scenario(out, s, cfg.algos, refs[s], {a: runs[(s, a)] for a in cfg.algos},
                      {a: run_dirs[(s, a)] for a in cfg.algos})
    if write_table:
        write_results_table(out, records, meta)
    return records


def _load_metrics(run_dir: Path) -> list[dict]:
    """The evaluated per-seed metrics of a run folder (one seed: metrics.json at the top)."""
    single = run_dir / "metrics.json"
    if single.is_file():
        return [json.loads(single.read_text())]
    files = sorted(run_dir.glob("seed_*/metrics.json"), key=lambda p: int(p.parent.name[5:]))
    return [json.loads(f.read_text()) for f in files]


def build_record(scenario: str, algo: str, metrics: list[dict], ref: dict,
                 params: Mapping[str, Any] | None = None,
                 run_dir: Path | None = None) -> dict:
    """One results.json record for (scenario, algorithm) over its seeds; ``params`` are the
    hyper-parameters that differ from the defaults. Adds each seed's evaluation to its metrics
    (and rewrites its metrics.json when ``run_dir`` is given)."""
    from .evaluation import evaluate_run, mean_ci95

    evals = [evaluate_run(m, ref) for m in metrics]
    for m, e in zip(metrics, evals, strict=True):
        m["evaluation"] = e
        if run_dir is not None:
            seed_dir = run_dir / (f"seed_{m['seed']}" if len(metrics) > 1 else "")
            seed_dir.mkdir(parents=True, exist_ok=True)
            write_json(seed_dir / "metrics.json", m)
    payoff = mean_ci95([m["per_interaction_payoff"] for m in metrics])
    perf = mean_ci95([e["reference_performance"] for e in evals])
    adher = mean_ci95([e["adherence"] for e in evals])
    return {
        "scenario": scenario, "algo": algo, "regime": ref["regime"],
        "seeds": [m["seed"] for m in metrics],
        "per_interaction_payoff": {"mean": payoff[0], "ci95": payoff[1]},
        "reference_payoff": ref["reference_payoff"],
        "reference_kind": ref["kind"],
        "full_cooperation_payoff": ref["full_cooperation_payoff"],
        "reference_performance": {"mean": perf[0], "ci95": perf[1]},
        "adherence": {"mean": adher[0], "ci95": adher[1]},
        "constant_output": float(np.mean([e["constant_output_any_head"] for e in evals])),
        "constant_output_action": float(np.mean(
            [next(iter(e["constant_output"].values()))["action"] for e in evals])),
        "constant_output_signal": float(np.mean(
            [next(iter(e["constant_output"].values()))["signal"] for e in evals])),
        "reference_constant_output": reference_constant_output(ref),
        "rounds": metrics[0]["rounds"], "interactions_per_seed": metrics[0]["interactions"],
        "wall_seconds": metrics[0]["wall_seconds"],
        "params": dict(params or {}),
    }


def reference_constant_output(ref: dict) -> dict[str, bool]:
    """Whether the reference policy's own heads are constant over the visited contexts."""
    from .evaluation import evaluate_run

    fake = {"scenario": ref["scenario"], "per_interaction_payoff": ref["reference_payoff"],
            "policies": {"reference": ref["policy"]}}
    return evaluate_run(fake, ref)["constant_output"]["reference"]


def _curves(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(rounds (U,), reward per round (U, seeds)) from a run's progress.csv."""
    with (run_dir / "progress.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    seeds = sorted({int(r["seed"]) for r in rows})
    rounds = sorted({int(r["rounds"]) for r in rows})
    grid = np.full((len(rounds), len(seeds)), np.nan)
    for r in rows:
        grid[rounds.index(int(r["rounds"])), seeds.index(int(r["seed"]))] = \
            float(r["train_reward_per_round"])
    return np.array(rounds), grid


def _smooth(y: np.ndarray, k: int = 5) -> np.ndarray:
    """Centred moving average over k updates along axis 0 (shorter windows at the edges)."""
    kernel = np.ones(max(1, min(k, len(y))))
    count = np.convolve(np.ones(len(y)), kernel, mode="same")
    return np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="same") / count, 0, y)


def plot_learning_curves(out: Path, scenario_ids, algos, refs: dict, run_dirs: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(scenario_ids)
    cols = 4
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, s in zip(axes.flat, scenario_ids, strict=False):
        for a in algos:
            x, y = _curves(run_dirs[(s, a)])
            y = _smooth(y)
            mean = np.nanmean(y, axis=1)
            half = 1.96 * np.nanstd(y, axis=1, ddof=1) / np.sqrt(y.shape[1]) \
                if y.shape[1] > 1 else np.zeros_like(mean)
            ax.plot(x, mean, label=a)
            ax.fill_between(x, mean - half, mean + half, alpha=0.2)
        ax.axhline(refs[s]["reference_payoff"], color="k", ls="--", lw=1, label="reference")
        ax.set_title(s, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("rounds played per game")
    fig.supylabel("training payoff per round (mean ± 95% CI over seeds)")
    fig.tight_layout()
    save_figure(fig, out / "learning_curves.png", dpi=110)
    plt.close(fig)


def plot_policy_heatmaps(out: Path, scenario_ids, algos, refs: dict, runs: dict) -> None:
    """Per scenario: rows = reference + algorithms, columns = the 12 contexts, colour = mean
    probability of C / Good of the first focal learner over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("action", k) for k in ACTION_CONTEXTS] + [("signal", k) for k in SIGNAL_CONTEXTS]
    n = len(scenario_ids)
    cols = 3
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 1.0 + 0.45 * (len(algos) + 1)
                                                  * rows + 0.6 * rows), squeeze=False)
    for ax, s in zip(axes.flat, scenario_ids, strict=False):
        grid = [[refs[s]["policy"][h][k] for h, k in keys]]
        for a in algos:
            grid.append([float(np.mean([m["policy"][h][k] for m in runs[(s, a)]]))
                         for h, k in keys])
        im = ax.imshow(np.array(grid), vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
        ax.set_yticks(range(len(algos) + 1), ["reference", *algos], fontsize=7)
        ax.set_xticks(range(12), [k for _, k in keys], fontsize=6, rotation=90)
        ax.axvline(3.5, color="k", lw=1)
        ax.set_title(f"{s} ({refs[s]['regime']})", fontsize=8)
    for ax in axes.flat[n:]:
        ax.axis("off")
    fig.subplots_adjust(wspace=0.35)
    fig.colorbar(im, ax=axes, shrink=0.6, label="P(C) | P(Good), mean over seeds")
    save_figure(fig, out / "policy_heatmaps.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_scenario(out: Path, scenario: str, algos, ref: dict, runs: dict,
                  run_dirs: dict) -> Path:
    """One figure for one scenario: learning curves (left), policies (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8),
                                      gridspec_kw={"width_ratios": [1, 1.3]})
    for a in algos:
        x, y = _curves(run_dirs[a])
        mean = np.nanmean(_smooth(y), axis=1)
        left.plot(x, mean, label=a)
        for k in range(y.shape[1]):
            left.plot(x, _smooth(y)[:, k], lw=0.5, alpha=0.4, color=left.lines[-1].get_color())
    left.axhline(ref["reference_payoff"], color="k", ls="--", lw=1, label="reference optimum")
    left.axhline(ref["full_cooperation_payoff"], color="grey", ls=":", lw=1,
                 label="b − c (full cooperation)")
    left.set(xlabel="rounds played per game", ylabel="training payoff per round",
             title=f"{scenario}: learning curves (thin: seeds)")
    left.legend(fontsize=8)
    keys = [("action", k) for k in ACTION_CONTEXTS] + [("signal", k) for k in SIGNAL_CONTEXTS]
    grid = [[ref["policy"][h][k] for h, k in keys]]
    grid += [[float(np.mean([m["policy"][h][k] for m in runs[a]])) for h, k in keys]
             for a in algos]
    im = right.imshow(np.array(grid), vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            right.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
    right.set_yticks(range(len(algos) + 1), ["reference", *algos])
    right.set_xticks(range(12), [k for _, k in keys], rotation=90, fontsize=8)
    right.axvline(3.5, color="k", lw=1.5)
    right.set_title("P(C | own, recipient)   |   P(Good | donor, recipient, action)")
    fig.colorbar(im, ax=right, shrink=0.8)
    fig.tight_layout()
    path = out / f"{scenario}.png"
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def _fmt(stat: dict, digits: int = 3) -> str:
    mean, half = stat["mean"], stat["ci95"]
    if half != half:  # nan
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def results_table(records: list[dict]) -> str:
    lines = ["| scenario | regime | algo | payoff / round | reference | b − c | "
             "reference performance | adherence | constant-output seeds (action / signal) | "
             "reference constant (action / signal) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in records:
        perf = r["reference_performance"]
        perf = "n/a (reference ≤ 0)" if perf["mean"] != perf["mean"] else _fmt(perf)
        ref_const = r["reference_constant_output"]
        yes_no = " / ".join("yes" if ref_const[h] else "no" for h in ("action", "signal"))
        lines.append(
            f"| {r['scenario']} | {r['regime']} | {r['algo']} | "
            f"{_fmt(r['per_interaction_payoff'])} | {r['reference_payoff']:.3f} | "
            f"{r['full_cooperation_payoff']:g} | {perf} | {_fmt(r['adherence'])} | "
            f"{r['constant_output_action']:.0%} / {r['constant_output_signal']:.0%} | "
            f"{yes_no} |")
    return "\n".join(lines)


def write_results_table(out: Path, records: list[dict], meta: dict) -> None:
    """Refresh the generated block of ``<out>.md`` (e.g. docs/results.md for docs/results)."""
    cfg = meta["config"]
    block = "\n".join([
        TABLE_START,
        f"Generated by `reciprocity benchmark --out {out.as_posix()} --overwrite` "
        f"({cfg['seeds']} seeds, {cfg['rounds']} rounds x {cfg['num_envs']} games per seed "
        f"for every algorithm; {meta['wall_seconds'] / 60:.1f} min on {meta['cpu_count']} "
        "cores). Mean ± 95% interval over seeds.",
        "",
        results_table(records),
        "",
        f"![learning curves]({out.name}/learning_curves.png)",
        "",
        f"![policy heat-maps]({out.name}/policy_heatmaps.png)",
        TABLE_END,
    ])
    md = out.with_suffix(".md")
    text = md.read_text() if md.is_file() else f"# Results\n\n{TABLE_START}\n{TABLE_END}\n"
    if TABLE_START in text and TABLE_END in text:
        head, rest = text.split(TABLE_START, 1)
        _, tail = rest.split(TABLE_END, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    write_text(md, text)
