"""Action rules, assessment rules (social norms) and strategy specs.

Conventions used everywhere in the library:

* A reputation is 1 (Good) or 0 (Bad); an action is 1 (cooperate, C) or 0 (defect, D); a signal
  is 1 (Good) or 0 (Bad).
* An **action rule** p(x, y) gives the probability that a donor with reputation x intends to
  cooperate with a recipient of reputation y. It is stored as a length-4 array indexed by the
  *action context* ``2 * x + y``.
* An **assessment rule** d(x, y, a) gives the probability that an observer judges a donor of
  reputation x, who played the executed action a against a recipient of reputation y, as Good.
  It is stored as a length-8 array indexed by the *signal context* ``4 * x + 2 * y + a``.
* Human-readable context names follow the published tables: (own/donor reputation, recipient
  reputation[, action]), Good/Cooperate first: ``ACTION_CONTEXTS = ("GG", "GB", "BG", "BB")`` and
  ``SIGNAL_CONTEXTS = ("GGC", "GGD", ..., "BBD")``. Because G = 1 and C = 1, the display order is
  exactly the reverse of the index order: ``ACTION_CONTEXTS[k]`` has index ``3 - k`` and
  ``SIGNAL_CONTEXTS[k]`` has index ``7 - k``.

A **strategy spec** is one of

* a leading-eight name, ``"L1"`` ... ``"L8"``: that norm's own action and assessment rule;
* ``"<action>+<assess>"``, e.g. ``"disc+image_scoring"`` or ``"alld+L6"``;
* a dict ``{"action": <action>, "assess": <assess>}`` where each value is a rule name or a list
  of probabilities in display order (4 for an action rule, 8 for an assessment rule).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ACTION_CONTEXTS: tuple[str, ...] = ("GG", "GB", "BG", "BB")
SIGNAL_CONTEXTS: tuple[str, ...] = ("GGC", "GGD", "GBC", "GBD", "BGC", "BGD", "BBC", "BBD")
NUM_ACTION_CONTEXTS = 4
NUM_SIGNAL_CONTEXTS = 8


def action_context(own_reputation, recipient_reputation):
    """Index ``2 x + y`` of the action context (works on ints and integer arrays)."""
    return 2 * own_reputation + recipient_reputation


def signal_context(donor_reputation, recipient_reputation, action):
    """Index ``4 x + 2 y + a`` of the signal context (works on ints and integer arrays)."""
    return 4 * donor_reputation + 2 * recipient_reputation + action


def from_display_order(values: Sequence[float]) -> np.ndarray:
    """Convert a rule listed in display order (GG first / GGC first) to index order."""
    return np.asarray(values, dtype=np.float64)[::-1].copy()


def to_display_order(table: np.ndarray) -> np.ndarray:
    """Convert a rule in index order to display order (GG first / GGC first)."""
    return np.asarray(table)[..., ::-1]


def _gb(s: str) -> list[int]:
    """'GBBG' -> [1, 0, 0, 1]; also accepts C/D."""
    return [1 if ch in "GC" else 0 for ch in s.replace(" ", "")]


# --- Assessment rules, in display order GGC GGD GBC GBD BGC BGD BBC BBD (spec §2). -------------
# Second-order rules ignore the donor's reputation x: columns (C vs G, D vs G, C vs B, D vs B).
_SECOND_ORDER = {
    "image_scoring": "GBGB",
    "simple_standing": "GBGG",
    "stern_judging": "GBBG",
    "shunning": "GBBB",
}
# Leading eight (Ohtsuki & Iwasa 2004): d(x, y, a) in the order GGC GGD GBC GBD BGC BGD BBC BBD,
# then the action rule's p(B, B).
LEADING_EIGHT_TABLE: dict[str, tuple[str, str]] = {
    "L1": ("GBGGGBGB", "C"),
    "L2": ("GBBGGBGB", "C"),
    "L3": ("GBGGGBGG", "D"),
    "L4": ("GBGGGBBG", "D"),
    "L5": ("GBBGGBGG", "D"),
    "L6": ("GBBGGBBG", "D"),
    "L7": ("GBGGGBBB", "D"),
    "L8": ("GBBGGBBB", "D"),
}

ASSESSMENT_RULES: dict[str, np.ndarray] = {}
for _name, _cols in _SECOND_ORDER.items():
    ASSESSMENT_RULES[_name] = from_display_order(_gb(_cols * 2))
for _name, (_cols, _) in LEADING_EIGHT_TABLE.items():
    ASSESSMENT_RULES[_name] = from_display_order(_gb(_cols))

# --- Action rules, in display order p(G,G) p(G,B) p(B,G) p(B,B). -------------------------------
ACTION_RULES: dict[str, np.ndarray] = {
    "allc": from_display_order([1, 1, 1, 1]),
    "alld": from_display_order([0, 0, 0, 0]),
    "disc": from_display_order([1, 0, 1, 0]),  # p = y: cooperate with Good recipients only
}
for _name, (_, _pbb) in LEADING_EIGHT_TABLE.items():
    ACTION_RULES[_name] = from_display_order([1, 0, 1, _gb(_pbb)[0]])

for _table in (*ASSESSMENT_RULES.values(), *ACTION_RULES.values()):
    _table.flags.writeable = False


@dataclass(frozen=True)
class Strategy:
    """A scripted strategy: an action rule and an assessment rule (index order, probabilities).

    Attributes:
        name: canonical spec string, e.g. ``"L6"`` or ``"alld+L6"``.
        action: shape (4,), P(intend C | action context ``2x + y``).
        assess: shape (8,), P(signal Good | signal context ``4x + 2y + a``).
    """

    name: str
    action: np.ndarray
    assess: np.ndarray

    def to_spec(self) -> dict[str, list[float]]:
        """A JSON-able dict spec (display order) that parses back to this strategy."""
        return {"action": to_display_order(self.action).tolist(),
                "assess": to_display_order(self.assess).tolist()}


def _canonical(name: str) -> str:
    key = name.strip().replace("-", "_").replace(" ", "_")
    if len(key) == 2 and key[0] in "lL" and key[1].isdigit():
        return key.upper()
    return key.lower()


def _rule(value: Any, rules: Mapping[str, np.ndarray], size: int, kind: str, field: str):
    """Resolve an action/assessment rule given by name or by a list in display order."""
    if isinstance(value, str):
        key = _canonical(value)
        if key not in rules:
            raise ValueError(
                f"{field}: unknown {kind} rule {value!r}; known: {', '.join(sorted(rules))}"
            )
        return key, rules[key]
    if isinstance(value, Sequence | np.ndarray) and not isinstance(value, str | bytes):
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != (size,):
            raise ValueError(
                f"{field}: an {kind} rule given as a list needs {size} probabilities in display "
                f"order, got shape {arr.shape}"
            )
        if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 1):
            raise ValueError(f"{field}: {kind} rule probabilities must lie in [0, 1], got {value}")
        table = arr[::-1].copy()
        table.flags.writeable = False
        return "[" + ",".join(f"{v:g}" for v in arr) + "]", table
    raise ValueError(f"{field}: an {kind} rule must be a name or a list, got {value!r}")


def parse_strategy(spec: Any, field: str = "strategy") -> Strategy:
    """Parse a strategy spec (see module docstring). ``field`` names the spec in error messages."""
    if isinstance(spec, Strategy):
        return spec
    if isinstance(spec, str):
        text = spec.strip()
        if "+" in text:
            action, _, assess = text.partition("+")
        else:
            key = _canonical(text)
            if key not in LEADING_EIGHT_TABLE:
                if key in ASSESSMENT_RULES:
                    raise ValueError(
                        f"{field}: {spec!r} is an assessment rule only; add an action rule, "
                        f"e.g. 'disc+{key}'"
                    )
                if key in ACTION_RULES:
                    raise ValueError(
                        f"{field}: {spec!r} is an action rule only; add an assessment rule, "
                        f"e.g. '{key}+L6' or {{'action': '{key}', 'assess': 'L6'}}"
                    )
                raise ValueError(
                    f"{field}: unknown strategy {spec!r}; use a leading-eight name (L1..L8), "
                    "'<action>+<assess>' or {'action': ..., 'assess': ...}"
                )
            action = assess = key
    elif isinstance(spec, Mapping):
        extra = set(spec) - {"action", "assess"}
        if extra or "action" not in spec or "assess" not in spec:
            raise ValueError(
                f"{field}: a strategy dict needs exactly the keys 'action' and 'assess', "
                f"got {sorted(spec)}"
            )
        action, assess = spec["action"], spec["assess"]
    else:
        raise ValueError(f"{field}: cannot parse strategy spec {spec!r}")
    a_name, a_table = _rule(action, ACTION_RULES, NUM_ACTION_CONTEXTS, "action", field + ".action")
    s_name, s_table = _rule(assess, ASSESSMENT_RULES, NUM_SIGNAL_CONTEXTS, "assessment",
                            field + ".assess")
    name = a_name if a_name == s_name else f"{a_name}+{s_name}"
    return Strategy(name=name, action=a_table, assess=s_table)


def parse_assessment_rule(value: Any, field: str = "assess") -> tuple[str, np.ndarray]:
    """An assessment rule by name or as 8 probabilities in display order -> (name, (8,) table in
    index order). ``field`` names the value in error messages."""
    return _rule(value, ASSESSMENT_RULES, NUM_SIGNAL_CONTEXTS, "assessment", field)
