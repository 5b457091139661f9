"""Datasets -> rows (:mod:`rft.data.records`) -> TRL rows (:mod:`rft.data.build`).

Loaders (each returns ``(rows, LoadReport)``): :mod:`~rft.data.coco`, :mod:`~rft.data.classification`,
:mod:`~rft.data.grounding`, :mod:`~rft.data.tagging`, :mod:`~rft.data.rows`, and other projects' formats
as they are: :mod:`~rft.data.visual_rft`, :mod:`~rft.data.vlm_r1`, :mod:`~rft.data.messages` (Qwen-VL
fine-tuning tools), reading conversations and answers through :mod:`~rft.data.chat`.
Checking a recipe's data without a model (``rft data``): :mod:`~rft.data.check`.
Prompts: :mod:`~rft.data.prompts`; visual-prompt exemplars (written, drawn, cropped): :mod:`~rft.data.exemplars`.
Images and box checks: :mod:`~rft.data.images`.
"""
