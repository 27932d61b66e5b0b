"""Sample-based baseline learners (REINFORCE, PPO) land here."""
