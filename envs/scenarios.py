"""Scenarios: named, versioned, registered configurations (population + institution).

A scenario is data (spec §3): a JSON or YAML mapping with the constructor keywords of the
environment plus an ``id`` (``<name>-v<version>``) and an optional ``description``. The
built-in catalogue lives in ``catalogue/*.json`` next to this module; users register their own
with :func:`register` or load a file by path anywhere a scenario id is accepted.

Population entries in a file may be repeated compactly: ``{"count": 9, "slot": "L6"}``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from .config import DEFAULTS, FOCAL, EnvConfig, expand_population, merge_overrides
from .norms import Strategy

__all__ = [
    "Scenario",
    "get_scenario",
    "load_scenario",
    "make",
    "make_parallel",
    "register",
    "scenarios",
]

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*-v\d+$")
GYMNASIUM_NAMESPACE = "reciprocity"
_FIELDS = ("id", "description", *DEFAULTS)


@dataclass(frozen=True)
class Scenario:
    """A validated scenario. ``population`` is expanded: one entry per slot."""

    id: str
    population: tuple
    benefit: float
    cost: float
    execution_error: float
    assessment_error: float
    update_probability: float
    max_rounds: int
    initial_reputation: str | float
    signal_audit: float
    audit_norm: str | list | None
    observers_per_interaction: int
    description: str = ""
    env_config: EnvConfig = field(repr=False, compare=False, default=None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "scenario") -> Scenario:
        """Validate a mapping; errors name ``source`` and the offending field. NumPy scalars and
        arrays are accepted and stored as plain numbers and lists."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: a scenario must be a mapping, got {type(data).__name__}")
        data = plain_data(data)
        unknown = set(data) - set(_FIELDS)
        if unknown:
            raise ValueError(f"{source}: unknown field(s) {sorted(unknown)}; "
                             f"known: {list(_FIELDS)}")
        for required in ("id", "population", "benefit", "cost"):
            if required not in data:
                raise ValueError(f"{source}: missing field {required!r}")
        sid = data["id"]
        if not isinstance(sid, str) or not ID_PATTERN.match(sid):
            raise ValueError(f"{source}: id must look like 'name-v0', got {sid!r}")
        kwargs = {k: data[k] for k in DEFAULTS if k in data}
        try:
            kwargs["population"] = tuple(expand_population(kwargs["population"]))
            env_config = EnvConfig.from_kwargs(**kwargs)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None
        description = data.get("description", "")
        if not isinstance(description, str):
            raise ValueError(f"{source}: description must be a string")
        full = {**DEFAULTS, **kwargs}
        return cls(id=sid, description=description, env_config=env_config,
                   **{k: full[k] for k in DEFAULTS})

    @property
    def num_focal(self) -> int:
        return sum(1 for s in self.population if isinstance(s, str) and s.strip().lower() == FOCAL)

    def config(self) -> dict[str, Any]:
        """The environment constructor keywords of this scenario."""
        return {k: getattr(self, k) for k in DEFAULTS}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able mapping that :meth:`from_dict` reads back."""
        out = {"id": self.id, "description": self.description, **self.config()}
        out["population"] = [s.to_spec() if isinstance(s, Strategy) else s
                             for s in self.population]
        return out

    def content_hash(self) -> str:
        """SHA-256 (hex) of the game this scenario defines: every constructor keyword, with each
        slot written as ``"focal"`` or its strategy's tables, so that equivalent spellings
        (``"L6"``, ``"disc+L6"``, tables, ``{"count": ...}``) hash alike. The id and the
        description are names, not part of the game: run records compare ids separately."""
        game = self.config()
        game["population"] = ["focal" if s is None else s.to_spec()
                              for s in self.env_config.strategies]
        text = json.dumps(_canonical(game), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def plain_data(value: Any) -> Any:
    """NumPy scalars and arrays inside mappings and lists -> plain Python numbers and lists."""
    if isinstance(value, Mapping):
        return {k: plain_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_data(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain_data(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _canonical(value: Any) -> Any:
    """Numbers as floats (5 and 5.0 are the same benefit), containers as lists and dicts."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


_REGISTRY: dict[str, Scenario] = {}


def register(scenario: Scenario | Mapping[str, Any], *, overwrite: bool = False) -> Scenario:
    """Register a scenario (a :class:`Scenario` or a mapping). Single-focal scenarios are also
    registered with Gymnasium as ``reciprocity/<id>``."""
    if not isinstance(scenario, Scenario):
        scenario = Scenario.from_dict(scenario)
    if scenario.id in _REGISTRY and not overwrite:
        raise ValueError(f"id: scenario {scenario.id!r} is already registered "
                         "(pass overwrite=True to replace it)")
    _REGISTRY[scenario.id] = scenario
    gym_id = f"{GYMNASIUM_NAMESPACE}/{scenario.id}"
    if gym_id in gymnasium.registry:  # a replaced scenario's registration must not linger
        del gymnasium.registry[gym_id]
    if scenario.num_focal == 1:
        gymnasium.register(id=gym_id,
                           entry_point="reciprocity.envs.gymnasium_env:SingleFocalEnv",
                           kwargs={"scenario": scenario.id})
    return scenario


def scenarios() -> list[str]:
    """Ids of all registered scenarios, sorted."""
    return sorted(_REGISTRY)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (``.json``, ``.yaml`` or ``.yml``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"scenario file {str(path)!r} does not exist")
    text = read_text_file(path, "scenario file")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise ValueError(f"scenario file {str(path)!r}: use a .json, .yaml or .yml file")
    except (json.JSONDecodeError, ImportError) as err:
        raise ValueError(f"scenario file {str(path)!r} could not be parsed: {err}") from None
    except Exception as err:  # yaml.YAMLError and friends
        if isinstance(err, ValueError):
            raise
        raise ValueError(f"scenario file {str(path)!r} could not be parsed: "
                         f"{_yaml_error(err)}") from None
    return Scenario.from_dict(data, source=f"scenario file {str(path)!r}")


def _yaml_error(err: Exception) -> str:
    """A YAML parse error on one line: where it is noticed (line, column) and what is wrong."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None)
    if mark is None or problem is None:
        return " ".join(str(err).split())
    context = getattr(err, "context", None)
    return (f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
            + (f" ({context})" if context else ""))


def read_text_file(path: Path, what: str) -> str:
    """A UTF-8 text file, or a ValueError naming ``what`` and the file."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{what} {str(path)!r} is not a text file (not UTF-8)") from None
    except OSError as err:
        raise ValueError(f"{what} {str(path)!r} cannot be read: {err.strerror}") from None


def get_scenario(scenario: str | Path | Scenario) -> Scenario:
    """A registered scenario by id, or a scenario file by path."""
    if isinstance(scenario, Scenario):
        return scenario
    key = str(scenario)
    if key in _REGISTRY:
        return _REGISTRY[key]
    if key.endswith((".json", ".yaml", ".yml")) or Path(key).is_file():
        return load_scenario(key)
    raise ValueError(f"scenario: unknown id {key!r}; known: {', '.join(scenarios())}")


def make(scenario: str | Path | Scenario, **overrides):
    """The AEC environment of a scenario, with constructor keywords overridden."""
    from .indirect_reciprocity_v0 import env

    return env(**merge_overrides(get_scenario(scenario).config(), overrides))


def make_parallel(scenario: str | Path | Scenario, **overrides):
    """The parallel environment of a scenario, with constructor keywords overridden."""
    from .indirect_reciprocity_v0 import parallel_env

    return parallel_env(**merge_overrides(get_scenario(scenario).config(), overrides))


def _load_catalogue() -> None:
    folder = resources.files(__package__).joinpath("catalogue")
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".json"):
            data = json.loads(entry.read_text())
            register(Scenario.from_dict(data, source=f"catalogue/{entry.name}"))


_load_catalogue()
