"""Shared code of the transfer-learning course.

Modules follow the course's stages: ``config`` (paths and profiles), ``demo_data``
(the offline demo dataset), ``dataset`` (validation, duplicates, splits, pipelines),
``backbones`` (registry, weights policy, classifier builder), ``lite0``
(EfficientNet-Lite0 with ImageNet weights read offline), ``runs`` (run folders and
records), ``plots`` (figures).
"""

__version__ = "0.1.0"
