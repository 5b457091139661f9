"""The one seam to each library's non-public API: every private attribute rft reads or sets, private method
it overrides or calls, and module global it replaces lives in :mod:`rft.compat.trl`,
:mod:`rft.compat.transformers` or :mod:`rft.compat.vllm`, each with the versions it was written for
(checked at import) and contract tests against the real objects (tests/test_compat.py)."""
