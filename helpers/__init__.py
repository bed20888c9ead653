"""Shared code of the transfer-learning course.

Modules follow the course's stages: ``config`` (paths and profiles), ``demo_data``
(the offline demo dataset), ``dataset`` (validation, duplicates, splits, pipelines),
``augmentation`` (the sheet's augmentations), ``backbones`` (registry, weights policy,
classifier builder), ``lite0`` (EfficientNet-Lite0 with ImageNet weights read offline),
``training`` (phases, feature cache, diagnosis, evaluation), ``quantization`` (LiteRT
conversion), ``verification`` (LiteRT checks and shipping artefacts), ``antispoofing``
(ISO/IEC 30107-3 metrics, Grad-CAM), ``runs``/``runner``/``sweep`` (run folders, headless
runs, parameter sweeps), ``plots`` (figures), ``samples`` (problem files for lessons).
"""

__version__ = "0.1.0"
