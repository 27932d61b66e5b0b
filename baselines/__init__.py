"""Sample-based baseline learners (spec §5): REINFORCE and PPO.

Independent learners trained on sampled environment returns only, with the same policy
parameterisation as the reciprocity-gradient learner
(:class:`~reciprocity.agents.policy.ReputationPolicy`). Both share one interface::

    learner = PPO(PPOConfig(), env_config, batch_shape=(S, F), seed=0, device="cpu")
    metrics = learner.update(collect(game, learner.policy, config.rounds_per_update, rng, S))
    learner.state_dict() / learner.load_state_dict(state)   # checkpoint / resume
"""

from .ppo import PPO, PPOConfig
from .reinforce import Reinforce, ReinforceConfig

__all__ = ["PPO", "PPOConfig", "Reinforce", "ReinforceConfig"]
