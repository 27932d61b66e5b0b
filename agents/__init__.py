"""Learners that control focal agents: the reciprocity-gradient learner and its parts.

:mod:`~reciprocity.agents.rg` (the learner), :mod:`~reciprocity.agents.estimators` (private
estimators fitted to the public record), :mod:`~reciprocity.agents.model` (the differentiable
model of the game), :mod:`~reciprocity.agents.policy` (the two-headed policy shared by all
learners), :mod:`~reciprocity.agents.rollout` (experience collection).
"""
