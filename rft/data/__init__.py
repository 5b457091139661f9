"""Datasets -> rows (:mod:`rft.data.records`) -> TRL rows (:mod:`rft.data.build`).

Loaders (each returns ``(rows, LoadReport)``): :mod:`~rft.data.coco`, :mod:`~rft.data.classification`,
:mod:`~rft.data.grounding`, :mod:`~rft.data.tagging`, :mod:`~rft.data.visual_rft`, :mod:`~rft.data.rows`.
Prompts: :mod:`~rft.data.prompts`. Images and box checks: :mod:`~rft.data.images`.
"""
