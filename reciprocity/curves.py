"""Sample-efficiency curves and the claim map, from the benchmark's per-budget records.

A **curve point** aggregates the records of one (regime group, algorithm, policy class, budget)
over the group's scenarios: the payoff as a fraction of the reference (for each seed index the
mean over scenarios with a positive reference, then a bootstrap interval over seeds), the shares
of runs whose heads are context-sensitive, constant or undecided (spec §6), the share of runs
whose head *collapsed* — constant where the reference's head is context-sensitive — and the
median training wall-clock time at that budget.

The **claim map** reads the points of the baselines (PPO, REINFORCE) and says, for every
(regime group, budget, policy class), whether the paper's claim "sample-based baselines collapse
into constant-output policies" holds there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .evaluation import HEAD_DIAGNOSES
from .records import HEADS
from .runfolder import save_figure
from .stats import format_interval, interval

__all__ = ["ALGO_COLOURS", "BASELINES", "GROUPS", "claim_map", "curve_points", "curve_table",
           "head_words", "interaction_ticks", "plot_curves", "seconds"]

GROUPS = ("discriminative", "degenerate", "multi-learner")
GROUP_TITLES = {"discriminative": "discriminative scenarios (one learner)",
                "degenerate": "degenerate scenarios (one learner)",
                "multi-learner": "several learners"}
BASELINES = ("ppo", "reinforce")
COLLAPSE = 0.5  # the claim holds in a cell when at least this share of runs collapsed
WORDS = {"context-sensitive": "conditional", "constant": "constant", "undecided": "undecided"}


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
            "interactions_per_seed": rs[0]["interactions_per_seed"],
            "scenarios": [r["scenario"] for r in rs],
            "scored_scenarios": [r["scenario"] for r in scored],
            "reference_sensitive": {head: sum(r["reference_heads"][head]["diagnosis"]
                                              == "context-sensitive" for r in rs)
                                    for head in HEADS},
            "fraction_of_reference": interval(fraction, bounded=True),
            "heads": heads, "collapsed": collapsed,
            "wall_seconds": float(np.median([r["wall_seconds"] for r in rs])),
        })
    return points


ALGO_ORDER = ("rg", "ppo", "reinforce")
POLICY_ORDER = ("tabular", "mlp")


def _rank(value, order: tuple) -> tuple:
    return (order.index(value) if value in order else len(order), value)


def _order(item) -> tuple:
    (group, algo, policy, budget), _ = item
    return (_rank(group, GROUPS), _rank(algo, ALGO_ORDER), _rank(policy, POLICY_ORDER), budget)


def _share(seed: dict, head: str, diagnosis: str) -> float:
    """Share of a seed's focal learners whose head has ``diagnosis``."""
    return float(np.mean([h[head]["diagnosis"] == diagnosis for h in seed["heads"].values()]))


def head_words(heads: dict) -> str:
    """``conditional 80%, undecided 20%`` from a point's shares of one head (zeros left out)."""
    return ", ".join(f"{WORDS[d]} {heads[d]['mean']:.0%}" for d in HEAD_DIAGNOSES
                     if round(heads[d]["mean"], 2) > 0)


def seconds(value: float) -> str:
    """Wall-clock time with two significant digits: ``0.31 s``, ``4.2 s``, ``130 s``."""
    return f"{value:.2g} s" if value < 100 else f"{value:.0f} s"


def _verdict(points: dict, group: str) -> str:
    """Whether the collapse claim holds in one cell, in words."""
    any_point = next(iter(points.values()))
    if not any_point["reference_sensitive"]["action"]:
        return "not applicable: the optimal action rule is constant here"
    parts = []
    for algo in BASELINES:
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
    return "; ".join(parts)


def claim_map(points: list[dict]) -> str:
    """Markdown table: per (group, budget, policy class) the baselines' heads and fractions of
    the reference (RG's fraction beside them), and whether the collapse claim holds."""
    cells: dict[tuple, dict] = {}
    for p in points:
        cells.setdefault((p["group"], p["budget"], p["policy_class"]), {})[p["algo"]] = p
    baselines = [a for a in BASELINES if any(a in c for c in cells.values())]
    header = ["regime", "rounds per game", "policy"]
    for a in baselines:
        header += [f"{a}: fraction of the reference", f"{a}: action head",
                   f"{a}: signal head"]
    header += ["rg: fraction of the reference",
               "do the baselines collapse into constant action heads?"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for (group, budget, policy), by_algo in sorted(
            cells.items(), key=lambda kv: (_rank(kv[0][0], GROUPS), kv[0][1],
                                           _rank(kv[0][2], POLICY_ORDER))):
        row = [group, str(budget), policy]
        for a in baselines:
            p = by_algo.get(a)
            row += ["–"] * 3 if p is None else [
                format_interval(p["fraction_of_reference"], 2),
                head_words(p["heads"]["action"]), head_words(p["heads"]["signal"])]
        rg = by_algo.get("rg")
        row.append("–" if rg is None else format_interval(rg["fraction_of_reference"], 2))
        row.append(_verdict(by_algo, group))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def curve_table(points: list[dict], group: str) -> str:
    """Markdown: fraction of the reference per (algorithm, policy class) x budget, and the
    training wall-clock time (median over scenarios, all seeds trained together)."""
    rows = [p for p in points if p["group"] == group]
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


ALGO_COLOURS = {"rg": "tab:blue", "ppo": "tab:orange", "reinforce": "tab:green"}


def interaction_ticks(ax, values) -> None:
    """Log x axis with plain tick labels at the budgets' interaction counts."""
    from matplotlib.ticker import NullFormatter

    values = sorted(set(values))
    ax.set_xscale("log")
    ax.set_xticks(values, [f"{v / 1000:g}k" if v >= 1000 else str(v) for v in values])
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_curves(out: Path, points: list[dict], group: str, seeds: int) -> Path:
    """One figure for a regime group: a panel per policy class; payoff as a fraction of the
    reference (left axis: solid, mean and 95% bootstrap band over seeds) and training
    wall-clock time (right axis: dotted) against interactions per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [p for p in points if p["group"] == group]
    policies = list(dict.fromkeys(p["policy_class"] for p in rows))
    fig, axes = plt.subplots(1, len(policies), figsize=(5.6 * len(policies) + 0.8, 4.8),
                             squeeze=False, sharey=True, layout="constrained")
    scenarios = len(rows[0]["scored_scenarios"]) if rows else 0
    clocks = []
    for ax, policy in zip(axes[0], policies, strict=True):
        clock = ax.twinx()
        clock.set_yscale("log")
        clocks.append(clock)
        for algo in dict.fromkeys(p["algo"] for p in rows):
            line = sorted((p for p in rows if (p["algo"], p["policy_class"]) == (algo, policy)),
                          key=lambda p: p["budget"])
            if not line:
                continue
            x = [p["interactions_per_seed"] for p in line]
            colour = ALGO_COLOURS.get(algo)
            ax.plot(x, [p["fraction_of_reference"]["mean"] for p in line], marker="o",
                    color=colour, label=algo)
            ax.fill_between(x, [p["fraction_of_reference"]["low"] for p in line],
                            [p["fraction_of_reference"]["high"] for p in line], color=colour,
                            alpha=0.2, lw=0)
            clock.plot(x, [p["wall_seconds"] for p in line], ls=":", marker=".", color=colour)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(0.95, color="grey", lw=0.8, ls="--")
        interaction_ticks(ax, [p["interactions_per_seed"] for p in rows])
        ax.set_xlabel("interactions per seed (rounds x games)")
        ax.set_title(f"{policy} policy", fontsize=10)
    axes[0][0].set_ylabel("long-run payoff / reference payoff (solid)\nmean over scenarios, "
                          "band: 95% bootstrap over seeds", fontsize=8)
    clocks[-1].set_ylabel(f"training wall-clock, s (dotted; {seeds} seeds together)",
                          fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8)
    fig.suptitle(f"{GROUP_TITLES.get(group, group)}: {scenarios} scenario"
                 f"{'s' if scenarios != 1 else ''} with a positive reference "
                 "(grey dashed line: 95% of the reference)", fontsize=10)
    path = out / f"curves_{group}.png"
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path
