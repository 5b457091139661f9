"""Rollouts with vLLM: what the colocated engine and the server are told so that they sample what the
trainer trains on (:mod:`rft.rollout.engine`), and ``rft serve`` (:mod:`rft.rollout.serve`)."""
