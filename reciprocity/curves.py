"""Sample-efficiency curves and the claim map, from the benchmark's per-budget records.

A **curve point** aggregates the records of one (regime group, algorithm, policy class, budget)
over the group's scenarios: the payoff as a fraction of the reference (for each seed index the
mean over scenarios with a positive reference, then a bootstrap interval over seeds), the shares
of runs whose heads are context-sensitive, constant or undecided (spec §6), the share of runs
whose head *collapsed* — constant where the reference's head is context-sensitive — and the
median training wall-clock time at that budget.

The **claim map** reads the points of the sample-based learners (those that declare
``sample_based``: PPO, REINFORCE, and any registered learner that says so,
:mod:`reciprocity.learners`) and says, for every (regime group, budget, policy class), whether the
paper's claim "sample-based baselines collapse into constant-output policies" holds there; every
other algorithm (RG, a user's learner) appears beside them with its fraction of the reference.
Records of policies evaluated with ``reciprocity evaluate --policy`` (policy class ``own``, no
budget) appear in the claim map in rows of their own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .evaluation import HEAD_DIAGNOSES
from .learners import rank, sample_based
from .records import HEADS
from .report import (
    colour,
    format_interval,
    head_words,
    interaction_ticks,
    pyplot,
    save_figure,
    seconds,
    seconds_axis,
    wrapped,
)
from .stats import interval

__all__ = ["GROUPS", "GROUP_TITLES", "claim_map", "curve_points", "curve_table", "plot_curves"]

GROUPS = ("discriminative", "degenerate", "multi-learner")
GROUP_TITLES = {"discriminative": "discriminative scenarios (one learner)",
                "degenerate": "degenerate scenarios (one learner)",
                "multi-learner": "several learners"}
COLLAPSE = 0.5  # the claim holds in a cell when at least this share of runs collapsed


def curve_points(records: list[dict]) -> list[dict]:
    """One point per (group, algo, policy class, budget) present in ``records``."""
    cells: dict[tuple, list[dict]] = {}
    for r in records:
        cells.setdefault((r["group"], r["algo"], r["policy_class"], r["budget"]), []).append(r)
    points = []
    for (group, algo, policy, budget), rs in sorted(cells.items(), key=_order):
        num_seeds = min(len(r["per_seed"]) for r in rs)
        scored = [r for r in rs if r["reference_payoff"] > 0]
        fraction = [np.mean([r["per_seed"][i]["reference_performance"] for r in scored])
                    if scored else np.nan for i in range(num_seeds)]
        heads, collapsed = {}, {}
        for head in HEADS:
            heads[head] = {d: interval([np.mean([_share(r["per_seed"][i], head, d) for r in rs])
                                        for i in range(num_seeds)], bounded=True)
                           for d in HEAD_DIAGNOSES}
            sensitive = [r for r in rs if r["reference_heads"][head]["diagnosis"]
                         == "context-sensitive"]
            collapsed[head] = interval(
                [np.mean([_share(r["per_seed"][i], head, "constant") for r in sensitive])
                 if sensitive else np.nan for i in range(num_seeds)], bounded=True)
        points.append({
            "group": group, "algo": algo, "policy_class": policy, "budget": budget,
            "interactions_per_seed": rs[0].get("interactions_per_seed"),
            "scenarios": [r["scenario"] for r in rs],
            "scored_scenarios": [r["scenario"] for r in scored],
            "reference_sensitive": {head: sum(r["reference_heads"][head]["diagnosis"]
                                              == "context-sensitive" for r in rs)
                                    for head in HEADS},
            "fraction_of_reference": interval(fraction, bounded=True),
            "heads": heads, "collapsed": collapsed,
            "wall_seconds": _median([r.get("wall_seconds") for r in rs]),
        })
    return points


POLICY_ORDER = ("tabular", "mlp", "own")


def _median(values) -> float | None:
    """Median of the known values (None where no record has one: an own policy)."""
    known = [v for v in values if v is not None]
    return float(np.median(known)) if known else None


def _rank(value, order: tuple) -> tuple:
    return (order.index(value) if value in order else len(order), value)


def _budget(budget) -> tuple:
    """Budgets in ascending order; a record without one (an own policy) last."""
    return (budget is None, budget or 0)


def _order(item) -> tuple:
    (group, algo, policy, budget), _ = item
    return (_rank(group, GROUPS), rank(algo), _rank(policy, POLICY_ORDER), _budget(budget))


def _share(seed: dict, head: str, diagnosis: str) -> float:
    """Share of a seed's focal learners whose head has ``diagnosis``."""
    return float(np.mean([h[head]["diagnosis"] == diagnosis for h in seed["heads"].values()]))


def _verdict(points: dict, baselines: list[str]) -> str:
    """Whether the collapse claim holds in one cell, in words."""
    any_point = next(iter(points.values()))
    if not any_point["reference_sensitive"]["action"]:
        return "not applicable: the optimal action rule is constant here"
    parts = []
    for algo in baselines:
        p = points.get(algo)
        if p is None:
            continue
        collapsed = p["collapsed"]["action"]["mean"]
        undecided = p["heads"]["action"]["undecided"]["mean"]
        if collapsed >= COLLAPSE:
            parts.append(f"**holds** for {algo} (action head constant in {collapsed:.0%} of "
                         "the runs where the optimum conditions)")
        elif undecided >= COLLAPSE:
            parts.append(f"not yet for {algo} (action head undecided in {undecided:.0%}: "
                         "still learning)")
        else:
            parts.append(f"**does not hold** for {algo} (constant in {collapsed:.0%}, "
                         f"conditional in "
                         f"{p['heads']['action']['context-sensitive']['mean']:.0%})")
    return "; ".join(parts) or "no sample-based learner here"


def claim_map(points: list[dict]) -> str:
    """Markdown table: per (group, budget, policy class) the sample-based learners' heads and
    fractions of the reference (every other algorithm's fraction beside them), and whether the
    collapse claim holds."""
    cells: dict[tuple, dict] = {}
    for p in points:
        cells.setdefault((p["group"], p["budget"], p["policy_class"]), {})[p["algo"]] = p
    algos = sorted({p["algo"] for p in points}, key=rank)
    baselines = [a for a in algos if sample_based(a)]
    others = [a for a in algos if a not in baselines]
    header = ["regime", "rounds per game", "policy"]
    for a in baselines:
        header += [f"{a}: fraction of the reference", f"{a}: action head",
                   f"{a}: signal head"]
    header += [f"{a}: fraction of the reference" for a in others]
    header.append("do the baselines collapse into constant action heads?")
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for (group, budget, policy), by_algo in sorted(
            cells.items(), key=lambda kv: (_rank(kv[0][0], GROUPS), _budget(kv[0][1]),
                                           _rank(kv[0][2], POLICY_ORDER))):
        row = [group, "–" if budget is None else str(budget), policy]
        for a in baselines:
            p = by_algo.get(a)
            row += ["–"] * 3 if p is None else [
                format_interval(p["fraction_of_reference"], 2),
                head_words(p["heads"]["action"]), head_words(p["heads"]["signal"])]
        for a in others:
            p = by_algo.get(a)
            row.append("–" if p is None else format_interval(p["fraction_of_reference"], 2))
        row.append(_verdict(by_algo, baselines))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def curve_table(points: list[dict], group: str) -> str:
    """Markdown: fraction of the reference per (algorithm, policy class) x budget, and the
    training wall-clock time (median over scenarios, all seeds trained together)."""
    rows = [p for p in points if p["group"] == group and p["budget"] is not None]
    budgets = sorted({p["budget"] for p in rows})
    lines = ["| algorithm | policy | " + " | ".join(f"{b} rounds" for b in budgets) + " |",
             "| --- | --- |" + " --- |" * len(budgets)]
    for algo, policy in dict.fromkeys((p["algo"], p["policy_class"]) for p in rows):
        cells = []
        for b in budgets:
            p = next((q for q in rows if (q["algo"], q["policy_class"], q["budget"])
                      == (algo, policy, b)), None)
            cells.append("–" if p is None else
                         f"{format_interval(p['fraction_of_reference'], 2)} "
                         f"({seconds(p['wall_seconds'])})")
        lines.append(f"| {algo} | {policy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(out: Path, points: list[dict], group: str, seeds: int) -> Path:
    """One figure for a regime group, a column per policy class: payoff as a fraction of the
    reference (top: mean and 95% bootstrap band over seeds) and training wall-clock time
    (bottom, log scale) against interactions per seed."""
    plt = pyplot()
    rows = [p for p in points if p["group"] == group and p["budget"] is not None]
    policies = list(dict.fromkeys(p["policy_class"] for p in rows))
    width = 5.6 * len(policies) + 0.8
    fig, axes = plt.subplots(2, len(policies), figsize=(width, 6.8),
                             squeeze=False, sharey="row", sharex="col", layout="constrained",
                             gridspec_kw={"height_ratios": [2, 1]})
    scenarios = len(rows[0]["scored_scenarios"]) if rows else 0
    for col, policy in enumerate(policies):
        ax, clock = axes[0][col], axes[1][col]
        for algo in sorted({p["algo"] for p in rows}, key=rank):
            line = sorted((p for p in rows if (p["algo"], p["policy_class"]) == (algo, policy)),
                          key=lambda p: p["budget"])
            if not line:
                continue
            x = [p["interactions_per_seed"] for p in line]
            c = colour(algo)
            ax.plot(x, [p["fraction_of_reference"]["mean"] for p in line], marker="o",
                    color=c, label=algo)
            ax.fill_between(x, [p["fraction_of_reference"]["low"] for p in line],
                            [p["fraction_of_reference"]["high"] for p in line], color=c,
                            alpha=0.2, lw=0)
            clock.plot(x, [p["wall_seconds"] for p in line], marker=".", color=c)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(0.95, color="grey", lw=0.8, ls="--")
        interaction_ticks(clock, [p["interactions_per_seed"] for p in rows])
        clock.set_xlabel("interactions per seed (rounds x games)")
        ax.set_title(f"{policy} policy", fontsize=10)
    for clock in axes[1]:  # the times of every column drawn: one shared scale
        seconds_axis(clock)
    axes[0][0].set_ylabel("long-run payoff / reference payoff\n(mean over scenarios;\n"
                          "band: 95% bootstrap over seeds)", fontsize=8)
    axes[1][0].set_ylabel(f"training wall-clock\n({seeds} seeds together,\nmedian over "
                          "scenarios)", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=max(1, len(labels)),
               fontsize=8)
    fig.suptitle(wrapped(f"{GROUP_TITLES.get(group, group)}: {scenarios} scenario"
                         f"{'s' if scenarios != 1 else ''} with a positive reference "
                         "(grey dashed line: 95% of the reference)", width, fontsize=10),
                 fontsize=10)
    path = out / f"curves_{group}.png"
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path
