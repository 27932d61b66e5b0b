"""Indirect-reciprocity environments: the batched core, PettingZoo shells, scenarios."""

from . import indirect_reciprocity_v0
from .config import FOCAL, EnvConfig
from .core import BatchedGame, GameParams, RoundNoise, RoundRecord, sample_round_noise
from .norms import (
    ACTION_CONTEXTS,
    ACTION_RULES,
    ASSESSMENT_RULES,
    SIGNAL_CONTEXTS,
    Strategy,
    parse_strategy,
)
from .scenarios import Scenario, get_scenario, load_scenario, make, make_parallel, register
from .scenarios import scenarios as scenarios
from .simulate import SimulationResult, play_scenario, simulate

__all__ = [
    "ACTION_CONTEXTS",
    "ACTION_RULES",
    "ASSESSMENT_RULES",
    "FOCAL",
    "SIGNAL_CONTEXTS",
    "BatchedGame",
    "EnvConfig",
    "GameParams",
    "RoundNoise",
    "RoundRecord",
    "Scenario",
    "SimulationResult",
    "Strategy",
    "get_scenario",
    "indirect_reciprocity_v0",
    "load_scenario",
    "make",
    "make_parallel",
    "parse_strategy",
    "play_scenario",
    "register",
    "sample_round_noise",
    "scenarios",
    "simulate",
]
