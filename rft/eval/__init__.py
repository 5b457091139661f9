"""Evaluation: generate answers for held-out rows and score them with the rewards' own code."""
