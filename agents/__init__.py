"""Learners that control focal agents (the reciprocity-gradient learner lands here)."""
