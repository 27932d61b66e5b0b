"""Pictures of reputations and actions over recent rounds (``ansi`` text and ``rgb_array``).

Both take a sequence of per-round public records of one game (dicts of (N,) arrays, as
returned by ``env.public_record()``) and the focal slot indices. Pure NumPy: no display needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

GOOD = np.array([46, 160, 67], dtype=np.uint8)      # green
BAD = np.array([214, 39, 40], dtype=np.uint8)       # red
COOP = np.array([255, 255, 255], dtype=np.uint8)    # white dot: cooperated
DEFECT = np.array([20, 20, 20], dtype=np.uint8)     # black dot: defected
FOCAL = np.array([31, 119, 180], dtype=np.uint8)    # blue marker column
BACKGROUND = np.array([240, 240, 240], dtype=np.uint8)


def render_ansi(records: Sequence[dict], focal_slots: Sequence[int], reputation: np.ndarray,
                labels: Sequence[str], round_index: int, width: int = 20) -> str:
    """A text table: one row per agent, one column per recent round.

    Each cell is ``<reputation before><action>``: ``G``/``B`` then ``c``/``d`` for the executed
    action as a donor that round. The last column is the current reputation.
    """
    recent = list(records)[-width:]
    focal = set(int(i) for i in focal_slots)
    n = len(reputation)
    first = round_index - len(recent) + 1
    head = f"round {round_index}  (cells: reputation then c=cooperated / d=defected)"
    lines = [head, "agent".ljust(14) + " ".join(f"{r:>3d}"[-3:] for r in
                                                range(first, round_index + 1)) + "  now"]
    for i in range(n):
        name = ("*" if i in focal else " ") + f"{i:>3d} {labels[i]}"
        cells = [("G" if rec["reputation_before"][i] else "B") + ("c" if rec["actions"][i] else "d")
                 for rec in recent]
        lines.append(name[:13].ljust(14) + " ".join(f"{c:>3}" for c in cells)
                     + "  " + ("G" if reputation[i] else "B"))
    lines.append("* = focal (learner) slot")
    return "\n".join(lines)


def render_rgb(records: Sequence[dict], focal_slots: Sequence[int], reputation: np.ndarray,
               width: int = 48, cell: int = 10) -> np.ndarray:
    """An image (H, W, 3) uint8: agents are rows, recent rounds are columns (oldest left).

    A cell's colour is the agent's reputation at the start of that round (green Good, red Bad);
    the dot inside is the executed action as a donor (white cooperated, black defected). The last
    column is the current reputation; a blue bar on the left marks focal slots.
    """
    recent = list(records)[-width:]
    n = len(reputation)
    cols = width + 1
    img = np.empty((n * cell, (cols + 1) * cell, 3), dtype=np.uint8)
    img[:] = BACKGROUND
    focal = set(int(i) for i in focal_slots)
    lo, hi = cell // 3, cell - cell // 3
    offset = width - len(recent)  # right-align the history
    for i in range(n):
        rows = slice(i * cell + 1, (i + 1) * cell - 1)
        if i in focal:
            img[rows, 2:cell - 2] = FOCAL
        for t, rec in enumerate(recent):
            x0 = (1 + offset + t) * cell
            img[rows, x0 + 1:x0 + cell - 1] = GOOD if rec["reputation_before"][i] else BAD
            img[i * cell + lo:i * cell + hi, x0 + lo:x0 + hi] = \
                COOP if rec["actions"][i] else DEFECT
        x0 = (1 + width) * cell
        img[rows, x0 + 1:x0 + cell - 1] = GOOD if reputation[i] else BAD
    return img
