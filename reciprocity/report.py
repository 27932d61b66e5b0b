"""The report side of every study: generated blocks, numbers in words, figure style.

* **Generated blocks** (:func:`write_block`): the measured part of a Markdown page lives between
  two markers and is replaced atomically; the text around it (the discussion) is kept.
* **Numbers** (:func:`format_interval`, :func:`seconds`): how intervals over seeds and wall-clock
  times are printed.
* **Heads in words** (:func:`seed_words`, :func:`head_words`, :func:`reference_words`): how the
  learned heads came out, as the spec's head diagnosis (conditional, constant, undecided).
* **Figures** (:func:`pyplot`, :func:`colour`, :func:`line_style`, :func:`label`,
  :func:`interaction_ticks`, :func:`seconds_axis`, :func:`panel_grid`, :func:`smooth`,
  :func:`wrapped`): the Agg backend, one colour per algorithm (declared by the learner,
  :mod:`reciprocity.learners`), one line style, marker and shade per policy class
  (:func:`line_kwargs`: MLP lighter, dashed, squares), log axes with plain labels, titles and
  captions wrapped to the figure.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from .learners import colour
from .runfolder import save_figure, write_text

__all__ = ["DIAGNOSIS_WORDS", "POLICY_MARKERS", "POLICY_SHADES", "POLICY_STYLES", "SIDES",
           "colour", "format_interval", "head_words", "interaction_ticks", "label", "line_kwargs",
           "line_style", "panel_grid", "policy_colour", "pyplot",
           "reference_words", "save_figure", "seconds", "seconds_axis", "seed_words", "smooth",
           "wrapped", "write_block"]


# -- generated blocks ----------------------------------------------------------------------------
def write_block(path: str | Path, start: str, end: str, markdown: str) -> Path:
    """Replace the generated block of a Markdown page (the text between the markers ``start``
    and ``end``, kept) atomically; a page without the markers gets the block appended."""
    path = Path(path)
    text = path.read_text() if path.is_file() else ""
    body = f"{start}\n{markdown}\n{end}"
    if start in text and end in text:
        head, _, rest = text.partition(start)
        _, _, tail = rest.partition(end)
        text = head + body + tail
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    return write_text(path, text)


# -- numbers -------------------------------------------------------------------------------------
def format_interval(stat: dict, digits: int = 3) -> str:
    """``mean ± half`` (t), ``mean [low, high]`` (bootstrap), ``mean`` alone for one seed or an
    interval that vanishes at this precision, or ``n/a`` when the mean is undefined."""
    mean = stat["mean"]
    if mean != mean:
        return "n/a"
    text = f"{mean:.{digits}f}"
    if "low" in stat:
        low, high = f"{stat['low']:.{digits}f}", f"{stat['high']:.{digits}f}"
        return text if low == high == text else f"{text} [{low}, {high}]"
    half = stat.get("ci95", float("nan"))
    return text if half != half else f"{text} ± {half:.{digits}f}"


def seconds(value: float) -> str:
    """Wall-clock time with two significant digits: ``0.31 s``, ``4.2 s``, ``130 s``."""
    return f"{value:.2g} s" if value < 100 else f"{value:.0f} s"


# -- heads in words ------------------------------------------------------------------------------
SIDES = {"action": ("always D", "always C"), "signal": ("always Bad", "always Good")}
DIAGNOSIS_WORDS = {"context-sensitive": "conditional", "constant": "constant",
                   "undecided": "undecided"}


def seed_words(record: dict, head: str) -> str:
    """How a record's runs' head came out, in words, most frequent first:
    ``conditional 4/5, always C 1/5``."""
    labels = []
    for s in record["per_seed"]:
        for h in s["heads"].values():
            d = h[head]
            labels.append("conditional" if d["diagnosis"] == "context-sensitive" else
                          SIDES[head][d["side"]] if d["diagnosis"] == "constant" else
                          "undecided")
    total = len(labels)
    # most frequent first, ties by name (a set's order changes from process to process)
    counts = {k: labels.count(k) for k in sorted(set(labels), key=lambda k: (-labels.count(k), k))}
    unit = "" if total == len(record["per_seed"]) else " learners"
    return ", ".join(f"{k} {n}/{total}{unit}" for k, n in counts.items())


def reference_words(record: dict, head: str) -> str:
    """How the reference's head of a record's scenario conditions, in words."""
    d = record["reference_heads"][head]
    if d["diagnosis"] == "constant":
        return SIDES[head][d["side"]]
    return "conditional" if d["diagnosis"] == "context-sensitive" else "undecided"


def head_words(heads: dict) -> str:
    """``conditional 80%, undecided 20%`` from a curve point's shares of one head (zeros left
    out)."""
    return ", ".join(f"{DIAGNOSIS_WORDS[d]} {heads[d]['mean']:.0%}" for d in DIAGNOSIS_WORDS
                     if round(heads[d]["mean"], 2) > 0)


# -- figures -------------------------------------------------------------------------------------
#: Line style per policy class (own: a policy evaluated with ``reciprocity evaluate --policy``).
POLICY_STYLES = {"tabular": "-", "mlp": "--", "own": ":"}
#: Marker and shade (the share of white mixed into the algorithm's colour) per policy class: an
#: MLP line is lighter, dashed and marked with squares, so that it is told from the tabular line
#: of the same algorithm at a glance, in every figure where both share a panel.
POLICY_MARKERS = {"tabular": "o", "mlp": "s", "own": "D"}
POLICY_SHADES = {"tabular": 0.0, "mlp": 0.45, "own": 0.0}


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def line_style(policy: str) -> str:
    return POLICY_STYLES.get(policy, "-.")


def policy_colour(algo: str, policy: str) -> tuple[float, float, float]:
    """The algorithm's colour, lighter for an MLP policy (:data:`POLICY_SHADES`)."""
    from matplotlib.colors import to_rgb

    shade = POLICY_SHADES.get(policy, 0.0)
    return tuple(c + (1.0 - c) * shade for c in to_rgb(colour(algo)))


def line_kwargs(algo: str, policy: str) -> dict:
    """``plot`` keywords of an algorithm's line with a policy class: colour (lighter for MLP),
    line style and marker."""
    return {"color": policy_colour(algo, policy), "ls": line_style(policy),
            "marker": POLICY_MARKERS.get(policy, "^")}


def label(algo: str, policy: str) -> str:
    """``rg (tabular)``."""
    return f"{algo} ({policy})"


def interaction_ticks(ax, values) -> None:
    """Log x axis with plain tick labels at the budgets' interaction counts."""
    from matplotlib.ticker import NullFormatter

    values = sorted(set(values))
    ax.set_xscale("log")
    ax.set_xticks(values, [f"{v / 1000:g}k" if v >= 1000 else str(v) for v in values])
    ax.xaxis.set_minor_formatter(NullFormatter())


def seconds_axis(ax) -> None:
    """Log y axis of wall-clock times with plain labels (``0.5 s``, ``2 s``, ``100 s``) at 1, 2
    and 5 times the powers of ten (also 3 and 7 when the data span less than a decade); call it
    once the data are drawn."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    low, high = ax.get_ylim()
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if high >= 10 * low else
                                          (1.0, 2.0, 3.0, 5.0, 7.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g} s"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def panel_grid(n: int, cols: int) -> tuple[int, int]:
    """(rows, columns) of a panel grid for n panels: no more than cols - 1 empty panels."""
    cols = max(1, min(n, cols))
    return -(-n // cols), cols


def smooth(y, k: int = 5):
    """Centred moving average over k points along axis 0 (shorter windows at the edges): a
    learning curve's trend under the noise of single updates."""
    import numpy as np

    y = np.asarray(y, dtype=float)
    kernel = np.ones(max(1, min(k, len(y))))
    count = np.convolve(np.ones(len(y)), kernel, mode="same")
    return np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="same") / count, 0, y)


def wrapped(text: str, width_inches: float, fontsize: float = 7) -> str:
    """A caption or title wrapped to a width (about 16 characters per inch at 7 pt, fewer at
    larger sizes), so that it is not cut off at the figure's edges."""
    return "\n".join(textwrap.wrap(text, max(30, int(width_inches * 16 * 7 / fontsize))))
